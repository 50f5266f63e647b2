//! `GET /queues`, for operators (admins): per queue what is ready, running,
//! scheduled for a retry and failed lately, the oldest ready job's age and
//! the last minute's throughput; the workers seen in the last five minutes;
//! and the newest failed builds and runs. psql users get the same from the
//! `queue_overview` view.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::Result;
use crate::extract::Json;
use crate::policy;
use crate::AppState;

pub fn router() -> crate::openapi::ApiRouter {
    OpenApiRouter::new().routes(routes!(overview))
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct QueueView {
    name: String,
    ready: i64,
    scheduled: i64,
    running: i64,
    failed_last_hour: i64,
    oldest_ready_age_secs: Option<f64>,
    done_last_minute: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
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

/// A failed build (`compile`) or run (`execute`).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct FailureView {
    queue: String,
    function_id: Uuid,
    /// None when the function has been deleted since.
    function_name: Option<String>,
    version: i32,
    /// The failed execution (runs only).
    execution_id: Option<Uuid>,
    /// The execution's error type, or `COMPILE_ERROR`.
    error_type: String,
    /// The first 300 characters of the error.
    message: String,
    at: DateTime<Utc>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Overview {
    queues: Vec<QueueView>,
    workers: Vec<WorkerView>,
    /// The 20 newest failures of the last 24 hours, newest first.
    recent_failures: Vec<FailureView>,
}

/// The queues and the live workers (admins).
#[utoipa::path(
    get,
    path = "/queues",
    tag = "operations",
    operation_id = "getQueues",
    responses((status = 200, description = "Per queue: ready, scheduled, running, failed in the last hour, the oldest ready job's age, the last minute's throughput; the workers seen in the last five minutes; the newest failures", body = Overview)),
)]
async fn overview(State(state): State<AppState>, caller: Caller) -> Result<Json<Overview>> {
    policy::may_read_queues(&caller)?;
    // A view's columns are nullable to PostgreSQL; these never are null.
    let queues = sqlx::query_as!(
        QueueView,
        r#"
        select queue as "name!", ready as "ready!", scheduled as "scheduled!", running as "running!",
               failed_last_hour::int8 as "failed_last_hour!",
               extract(epoch from oldest_ready_age)::float8 as oldest_ready_age_secs,
               done_last_minute::int8 as "done_last_minute!"
        from queue_overview order by queue
        "#,
    )
    .fetch_all(&state.db)
    .await?;
    let workers = sqlx::query_as!(
        WorkerView,
        r#"
        select id, kind, host, pid, started_at, last_seen_at, stopped_at, jobs_done
        from workers where last_seen_at > now() - interval '5 minutes'
        order by kind, started_at
        "#,
    )
    .fetch_all(&state.db)
    .await?;
    // Each side reads an index of failures newest first and stops after 20:
    // for executions, `unsuccessful_executions` (migration 20261128000001);
    // for builds, a partial index (migration 20261126000001).
    let recent_failures = sqlx::query_as!(
        FailureView,
        r#"
        select queue as "queue!", function_id as "function_id!", function_name,
               version as "version!", execution_id, error_type as "error_type!",
               message as "message!", at as "at!"
        from (
            (select 'execute' as queue, e.function_id, f.name as function_name,
                    e.function_version as version, e.id as execution_id,
                    e.error_type, left(coalesce(e.error_message, ''), 300) as message,
                    u.finished_at as at
             from unsuccessful_executions u join executions e on e.id = u.id
                  left join functions f on f.id = e.function_id
             where u.status = 'FAILED' and u.finished_at > now() - interval '24 hours'
             order by u.finished_at desc limit 20)
            union all
            (select 'compile', v.function_id, f.name, v.version, null,
                    'COMPILE_ERROR', left(v.compile_error, 300), v.updated_at
             from function_versions v join functions f on f.id = v.function_id
             where v.status = 'FAILED' and v.updated_at > now() - interval '24 hours'
             order by v.updated_at desc limit 20)
        ) failures
        order by at desc limit 20
        "#,
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(Overview {
        queues,
        workers,
        recent_failures,
    }))
}
