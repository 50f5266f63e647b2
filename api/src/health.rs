//! `GET /healthz` (the process answers) and `GET /readyz` (it can reach the
//! database), for load balancers and orchestrators.

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::error::{Error, Result};
use crate::extract::Json;
use crate::AppState;

const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(db): State<PgPool>) -> Result<Json<Value>> {
    match tokio::time::timeout(READINESS_TIMEOUT, sqlx::query("select 1").execute(&db)).await {
        Ok(Ok(_)) => Ok(Json(json!({ "status": "ready" }))),
        Ok(Err(error)) => Err(Error::Unavailable(error)),
        Err(_) => Err(Error::Unavailable(sqlx::Error::PoolTimedOut)),
    }
}
