//! Retries and dead letters of runs (docs/triggers.md, "Retries and dead
//! letters"): `GET /executions?deadLetter=true`, `GET /executions/{id}/attempts`
//! and `POST /executions/{id}/requeue`. The retries themselves happen in the
//! executor (`plat_common::queue::execute::retry_run`).

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use plat_common::queue::execute::{self, Enqueued, NewExecution};
use plat_common::{ExecutionStatus, Trigger};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::QueryBuilder;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::audit;
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::executions::{self, ExecutionView};
use crate::extract::{Json, Path, Query};
use crate::pagination::Page;
use crate::policy;
use crate::AppState;

pub fn router() -> crate::openapi::ApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list_dead_letters))
        .routes(routes!(attempts))
        .routes(routes!(requeue))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct DeadLetterParams {
    /// Must be `true`: this listing is of dead letters only (a function's
    /// whole history is `GET /functions/{function}/executions`).
    dead_letter: Option<bool>,
    /// Only this function's (its id).
    function_id: Option<Uuid>,
    /// 1 to 100; 20 if not sent.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct DeadLetterList {
    items: Vec<ExecutionView>,
    next_cursor: Option<String>,
}

/// Dead letters, newest first: executions of a version with a retry policy
/// that failed their last attempt, not yet re-queued. Admins see them all;
/// others see the ones they started, of functions they can still access.
#[utoipa::path(
    get,
    path = "/executions",
    tag = "executions",
    operation_id = "listDeadLetters",
    params(DeadLetterParams),
    responses(
        (status = 200, description = "A page of dead letters, newest first", body = DeadLetterList),
        (status = 400, description = "`deadLetter=true` missing, or an invalid parameter or cursor"),
    ),
)]
async fn list_dead_letters(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<DeadLetterParams>,
) -> Result<Json<DeadLetterList>> {
    if params.dead_letter != Some(true) {
        return Err(Error::BadRequest(
            "`GET /executions` lists dead letters: send `deadLetter=true` (a function's history is `GET /functions/{function}/executions`)".to_owned(),
        ));
    }
    let page = Page::parse(params.limit, params.cursor.as_deref())?;
    // Over the partial index of dead letters not yet re-queued, newest first
    // (migration 20261207000005): the executions' own columns stay unindexed,
    // so results stay HOT updates.
    let mut query = QueryBuilder::new(executions::SELECT_EXECUTION);
    query.push(
        " join unsuccessful_executions u on u.id = e.id
          left join functions f on f.id = e.function_id
          where u.dead_letter and u.requeued_as is null and ",
    );
    if let Some(function_id) = params.function_id {
        query
            .push("u.function_id = ")
            .push_bind(function_id)
            .push(" and ");
    }
    if let (Some(created_at), Some(id)) = (page.after_created_at(), page.after_id()) {
        query
            .push("(u.created_at, u.id) < (")
            .push_bind(created_at)
            .push(", ")
            .push_bind(id)
            .push(") and ");
    }
    policy::push_can_see_execution(&mut query, &caller, "e", "f");
    query
        .push(" order by u.created_at desc, u.id desc limit ")
        .push_bind(page.fetch_limit());
    let rows: Vec<ExecutionView> = query.build_query_as().fetch_all(&state.db).await?;
    let (items, next_cursor) = page.finish(rows, ExecutionView::position);
    Ok(Json(DeadLetterList { items, next_cursor }))
}

/// One run of an execution.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct AttemptView {
    /// 1 for the first run: what its `PLAT_EXECUTION_ATTEMPT` said.
    attempt: i32,
    /// FAILED for a run that was retried; the execution's own status for
    /// its latest run (QUEUED while it waits for its backoff or a worker).
    status: ExecutionStatus,
    /// `{type, message}`, or null.
    #[schema(value_type = Option<Object>)]
    error: Option<serde_json::Value>,
    logs: String,
    logs_truncated: bool,
    duration_ms: Option<i32>,
    worker_id: Option<String>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    /// When the next run was due; null for the latest run.
    retry_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct AttemptList {
    items: Vec<AttemptView>,
}

fn error(error_type: Option<String>, message: Option<String>) -> Option<serde_json::Value> {
    error_type.map(|kind| json!({"type": kind, "message": message.unwrap_or_default()}))
}

/// Every run of an execution, oldest first: the runs that failed and were
/// retried, then the latest (or the one to come). An execution without a
/// retry policy has one.
#[utoipa::path(
    get,
    path = "/executions/{id}/attempts",
    tag = "executions",
    operation_id = "listExecutionAttempts",
    params(("id" = String, Path, description = "The execution's id")),
    responses(
        (status = 200, description = "Its runs, oldest first", body = AttemptList),
        (status = 404, description = "No such execution, or not the caller's to see"),
    ),
)]
async fn attempts(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<AttemptList>> {
    let not_found = || Error::NotFound(format!("no execution with id {id}"));
    let id = Uuid::try_parse(&id).map_err(|_| not_found())?;
    executions::fetch_visible(&state.db, id, &caller)
        .await?
        .ok_or_else(not_found)?;
    let retried = sqlx::query!(
        r#"
        select attempt, error_type, error_message, logs, logs_truncated, duration_ms, worker_id,
               started_at, finished_at, retry_at
        from execution_attempts where execution_id = $1 order by attempt
        "#,
        id,
    )
    .fetch_all(&state.db)
    .await?;
    // The latest run is the execution itself, RUNNING while its job is held.
    let latest = sqlx::query!(
        r#"
        select case when j.state = 'running' then 'RUNNING' else e.status end as "status!: ExecutionStatus",
               e.error_type, e.error_message, e.logs, e.logs_truncated, e.duration_ms,
               coalesce(j.worker_id, e.worker_id) as worker_id,
               case when j.state = 'running' or j.id is null then coalesce(j.started_at, e.started_at) end
                   as started_at,
               e.finished_at
        from executions e left join execution_jobs j on j.id = e.id
        where e.id = $1
        "#,
        id,
    )
    .fetch_one(&state.db)
    .await?;
    let mut items: Vec<AttemptView> = retried
        .into_iter()
        .map(|run| AttemptView {
            attempt: run.attempt,
            status: ExecutionStatus::Failed,
            error: error(Some(run.error_type), Some(run.error_message)),
            logs: run.logs,
            logs_truncated: run.logs_truncated,
            duration_ms: Some(run.duration_ms),
            worker_id: run.worker_id,
            started_at: run.started_at,
            finished_at: Some(run.finished_at),
            retry_at: Some(run.retry_at),
        })
        .collect();
    let queued = latest.status == ExecutionStatus::Queued;
    items.push(AttemptView {
        attempt: items.len() as i32 + 1,
        status: latest.status,
        error: error(latest.error_type, latest.error_message),
        logs: latest.logs,
        logs_truncated: latest.logs_truncated,
        duration_ms: latest.duration_ms,
        // A run waiting for its backoff has not started on any worker.
        worker_id: latest.worker_id.filter(|_| !queued),
        started_at: latest.started_at,
        finished_at: latest.finished_at,
        retry_at: None,
    });
    Ok(Json(AttemptList { items }))
}

/// Re-queues a dead letter with the same input, as a new execution of the
/// function's active version, on behalf of the user who started the dead
/// letter (so it shows in their history), with `trigger: {type: "requeue",
/// executionId}`. The dead letter leaves the listing and names the new
/// execution; it can be re-queued once. Admins only.
#[utoipa::path(
    post,
    path = "/executions/{id}/requeue",
    tag = "executions",
    operation_id = "requeueExecution",
    params(("id" = String, Path, description = "The dead letter's id")),
    responses(
        (status = 202, description = "The new execution, QUEUED", body = ExecutionView),
        (status = 403, description = "Only admins may re-queue executions"),
        (status = 404, description = "No such execution"),
        (status = 409, description = "Not a dead letter, already re-queued, or its function was deleted or has no READY version"),
    ),
)]
async fn requeue(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<ExecutionView>)> {
    policy::may_requeue_executions(&caller)?;
    let not_found = || Error::NotFound(format!("no execution with id {id}"));
    let id = Uuid::try_parse(&id).map_err(|_| not_found())?;
    let mut tx = state.db.begin().await?;
    // Locks the dead letter's row, so two re-queues make one execution.
    let letter = sqlx::query!(
        r#"
        select e.status as "status: ExecutionStatus", e.function_id, e.input::text as "input!",
               e.created_by, u.dead_letter, u.requeued_as, f.active_version as "active_version?",
               f.webhook_url as "webhook_url?"
        from unsuccessful_executions u
        join executions e on e.id = u.id
        left join functions f on f.id = e.function_id
        where u.id = $1
        for update of u
        "#,
        id,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let not_a_dead_letter = |status: ExecutionStatus| {
        Error::Conflict(format!(
            "execution {id} is not a dead letter (status {status}): only an execution that failed the last attempt of its retry policy can be re-queued"
        ))
    };
    let letter = match letter {
        Some(letter) if letter.dead_letter => letter,
        Some(letter) => return Err(not_a_dead_letter(letter.status)),
        None => {
            let execution = executions::fetch(&state.db, id)
                .await?
                .ok_or_else(not_found)?;
            return Err(not_a_dead_letter(execution.status()));
        }
    };
    if let Some(new_id) = letter.requeued_as {
        return Err(Error::Conflict(format!(
            "execution {id} was already re-queued as execution {new_id}"
        )));
    }
    let Some(version) = letter.active_version else {
        return Err(Error::Conflict(format!(
            "execution {id} cannot be re-queued: its function was deleted or has no READY version"
        )));
    };
    let new_id = Uuid::now_v7();
    let trigger = Trigger::Requeue { execution_id: id };
    let enqueued = execute::enqueue(
        &mut tx,
        NewExecution {
            id: new_id,
            function_id: letter.function_id,
            version,
            input_json: &letter.input,
            idempotency_key: None,
            created_by: letter.created_by,
            request_id: None,
            wake_executors: false,
            // An admin's action: no quota, as for an admin's own runs.
            max_in_flight: None,
            trigger: &trigger,
            webhook_urls: letter.webhook_url.as_ref().map(std::slice::from_ref),
        },
    )
    .await?;
    if enqueued != Enqueued::New {
        return Err(anyhow::anyhow!("re-queueing {id} queued nothing: {enqueued:?}").into());
    }
    sqlx::query!(
        "update unsuccessful_executions set requeued_as = $2 where id = $1",
        id,
        new_id,
    )
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        &caller,
        "execution.requeue",
        ("execution", id.to_string()),
        json!({ "executionId": new_id, "functionId": letter.function_id, "version": version }),
    )
    .await?;
    tx.commit().await?;
    state.new_jobs.send();
    let execution = executions::fetch(&state.db, new_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("execution {new_id} vanished"))?;
    Ok((StatusCode::ACCEPTED, Json(execution)))
}
