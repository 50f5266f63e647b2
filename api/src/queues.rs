//! `GET /queues`, for operators (admins): per queue what is ready, running,
//! scheduled for a retry and failed lately, the oldest ready job's age and
//! the last minute's throughput; and the workers seen in the last five
//! minutes. psql users get the same from the `queue_overview` view.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::Result;
use crate::extract::Json;
use crate::AppState;

pub fn router() -> crate::openapi::ApiRouter {
    OpenApiRouter::new().routes(routes!(overview))
}

#[derive(Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct QueueView {
    #[sqlx(rename = "queue")]
    name: String,
    ready: i64,
    scheduled: i64,
    running: i64,
    failed_last_hour: i64,
    oldest_ready_age_secs: Option<f64>,
    done_last_minute: i64,
}

#[derive(Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct WorkerView {
    id: String,
    kind: String,
    host: String,
    pid: i32,
    started_at: DateTime<Utc>,
    last_seen_at: DateTime<Utc>,
    stopped_at: Option<DateTime<Utc>>,
    jobs_done: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Overview {
    queues: Vec<QueueView>,
    workers: Vec<WorkerView>,
}

/// The queues and the live workers (admins).
#[utoipa::path(
    get,
    path = "/queues",
    tag = "operations",
    operation_id = "getQueues",
    responses((status = 200, description = "Per queue: ready, scheduled, running, failed in the last hour, the oldest ready job's age, the last minute's throughput; the workers seen in the last five minutes", body = Overview)),
)]
async fn overview(State(state): State<AppState>, caller: Caller) -> Result<Json<Overview>> {
    caller.require_admin("read the queues")?;
    let queues = sqlx::query_as(
        r#"
        select queue, ready, scheduled, running, failed_last_hour::int8 as failed_last_hour,
               extract(epoch from oldest_ready_age)::float8 as oldest_ready_age_secs,
               done_last_minute::int8 as done_last_minute
        from queue_overview order by queue
        "#,
    )
    .fetch_all(&state.db)
    .await?;
    let workers = sqlx::query_as(
        r#"
        select id, kind, host, pid, started_at, last_seen_at, stopped_at, jobs_done
        from workers where last_seen_at > now() - interval '5 minutes'
        order by kind, started_at
        "#,
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(Overview { queues, workers }))
}
