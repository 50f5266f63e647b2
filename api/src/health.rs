//! `GET /healthz` (the process answers) and `GET /readyz` (it can reach the
//! database), for load balancers and orchestrators.

use std::time::Duration;

use axum::extract::State;
use serde_json::{json, Value};
use sqlx::PgPool;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{Error, Result};
use crate::extract::Json;

const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> crate::openapi::ApiRouter {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    responses((status = 200, description = "The process is up: `{\"status\": \"ok\"}`", body = Object)),
)]
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    responses(
        (status = 200, description = "The database answered within 2 s: `{\"status\": \"ready\"}`", body = Object),
        (status = 503, description = "The database did not answer"),
    ),
)]
async fn readyz(State(db): State<PgPool>) -> Result<Json<Value>> {
    let ping = sqlx::query_scalar!("select 1").fetch_one(&db);
    match tokio::time::timeout(READINESS_TIMEOUT, ping).await {
        Ok(Ok(_)) => Ok(Json(json!({ "status": "ready" }))),
        Ok(Err(error)) => Err(Error::Unavailable(error)),
        Err(_) => Err(Error::Unavailable(sqlx::Error::PoolTimedOut)),
    }
}
