//! Running functions and reading their history: `POST /functions/{id}/execute`,
//! `GET /functions/{id}/executions`, `GET /executions/{id}`.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use plat_common::queue::execute::{self, CancelOutcome, Enqueued, NewExecution};
use plat_common::{ExecutionStatus, Trigger};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sqlx::types::Json as SqlJson;
use sqlx::{PgExecutor, QueryBuilder};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt as _};
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::extract::{Json, Path, Query};
use crate::functions::versions::VersionKey;
use crate::functions::{self, FunctionKey};
use crate::pagination::{Page, Position};
use crate::policy;
use crate::waiters::Waiter;
use crate::AppState;

const DEFAULT_WAIT_SECS: u32 = 30;
/// serde_json's own limit, so anything accepted can be read back as a
/// `Value`; the executor holds outputs to the same.
pub(crate) use plat_common::json_depth::{nesting_depth, MAX_JSON_DEPTH as MAX_INPUT_DEPTH};
/// Longest wait a cancel call spends for the run to actually stop.
const CANCEL_WAIT_SECS: u32 = 10;
const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;
pub(crate) static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set on a response that returns the execution an earlier request with the
/// same `Idempotency-Key` created.
static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

pub fn router(state: &AppState) -> crate::openapi::ApiRouter {
    OpenApiRouter::new()
        .routes(routes!(execute).layer(DefaultBodyLimit::max(state.config.max_input_bytes)))
        .routes(routes!(list))
        .routes(routes!(read))
        .routes(routes!(cancel))
}

/// One execution, as the API shows it.
#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionView {
    id: Uuid,
    function_id: Uuid,
    function_version: i32,
    status: ExecutionStatus,
    /// Any JSON value.
    #[sqlx(json)]
    #[schema(value_type = serde_json::Value)]
    input: Box<RawValue>,
    /// Any JSON value; null until it succeeded.
    #[sqlx(json(nullable))]
    #[schema(value_type = Option<serde_json::Value>)]
    output: Option<Box<RawValue>>,
    #[sqlx(flatten)]
    #[schema(value_type = Option<ExecutionError>)]
    error: ErrorColumns,
    logs: String,
    logs_truncated: bool,
    duration_ms: Option<i32>,
    /// From queued to started; null until it starts.
    queued_ms: Option<i64>,
    /// The executor that ran it (or runs it now).
    worker_id: Option<String>,
    /// The `X-Request-Id` of the call that queued it.
    request_id: Option<String>,
    attempts: i32,
    /// The user who started it.
    created_by: Option<Uuid>,
    /// What started it: `{"type": "api"}` for a call of the API.
    #[sqlx(json(nullable))]
    #[serde(serialize_with = "trigger_or_api")]
    #[schema(value_type = Trigger)]
    trigger: Option<Trigger>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

/// A null `executions.trigger` is a call of the API.
fn trigger_or_api<S: serde::Serializer>(
    trigger: &Option<Trigger>,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    trigger
        .as_ref()
        .unwrap_or(&Trigger::Api)
        .serialize(serializer)
}

/// How an execution failed (the schema of [`ErrorColumns`]).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ExecutionError {
    /// E.g. `TIMEOUT`, `TRAP`, `OUT_OF_MEMORY`, `CANCELLED`.
    #[schema(rename = "type")]
    kind: String,
    message: String,
}

/// `error_type` and `error_message`, shown as `error: {type, message} | null`.
#[derive(Debug, sqlx::FromRow)]
struct ErrorColumns {
    error_type: Option<String>,
    error_message: Option<String>,
}

impl Serialize for ErrorColumns {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct ExecutionError<'a> {
            // Keep in step with the schema below.
            #[serde(rename = "type")]
            kind: &'a str,
            message: &'a str,
        }
        self.error_type
            .as_deref()
            .map(|kind| ExecutionError {
                kind,
                message: self.error_message.as_deref().unwrap_or_default(),
            })
            .serialize(serializer)
    }
}

impl ExecutionView {
    fn is_finished(&self) -> bool {
        self.status.is_finished()
    }

    /// Its id.
    pub(crate) fn id(&self) -> Uuid {
        self.id
    }

    /// Its status as callers see it.
    pub(crate) fn status(&self) -> ExecutionStatus {
        self.status
    }

    /// The output, once it SUCCEEDED.
    pub(crate) fn output(&self) -> Option<&RawValue> {
        self.output.as_deref()
    }

    /// How it failed (`TIMEOUT`, `HANDLER_ERROR`, ...), if it did.
    pub(crate) fn error_type(&self) -> Option<&str> {
        self.error.error_type.as_deref()
    }

    /// Its place in a listing newest first.
    pub(crate) fn position(&self) -> Position {
        Position {
            created_at: self.created_at,
            id: self.id,
        }
    }
}

/// An execution as callers see it: while its job is claimed it is RUNNING,
/// with the job's start, attempt and worker (claims write only the job row;
/// see `plat_common::queue`). A finished execution has no job any more.
pub(crate) const SELECT_EXECUTION: &str = r#"
    select e.id, e.function_id, e.function_version,
           case when j.state = 'running' then 'RUNNING' else e.status end as status,
           e.input, e.output, e.error_type, e.error_message, e.logs, e.logs_truncated,
           e.duration_ms,
           (extract(epoch from (coalesce(j.started_at, e.started_at) - e.created_at)) * 1000)::int8 as queued_ms,
           coalesce(j.worker_id, e.worker_id) as worker_id, e.request_id,
           coalesce(j.attempt, e.attempts) as attempts, e.created_by, e.trigger, e.created_at,
           coalesce(j.started_at, e.started_at) as started_at, e.finished_at
    from executions e left join execution_jobs j on j.id = e.id
"#;

/// [`ExecutionView`]'s columns flat, as `query_as!` reads them (it fills
/// a struct field by field: no `flatten`, no `json` attribute).
struct ExecutionRow {
    id: Uuid,
    function_id: Uuid,
    function_version: i32,
    status: ExecutionStatus,
    input: SqlJson<Box<RawValue>>,
    output: Option<SqlJson<Box<RawValue>>>,
    error_type: Option<String>,
    error_message: Option<String>,
    logs: String,
    logs_truncated: bool,
    duration_ms: Option<i32>,
    queued_ms: Option<i64>,
    worker_id: Option<String>,
    request_id: Option<String>,
    attempts: i32,
    created_by: Option<Uuid>,
    trigger: Option<SqlJson<Trigger>>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

impl From<ExecutionRow> for ExecutionView {
    fn from(row: ExecutionRow) -> Self {
        ExecutionView {
            id: row.id,
            function_id: row.function_id,
            function_version: row.function_version,
            status: row.status,
            input: row.input.0,
            output: row.output.map(|output| output.0),
            error: ErrorColumns {
                error_type: row.error_type,
                error_message: row.error_message,
            },
            logs: row.logs,
            logs_truncated: row.logs_truncated,
            duration_ms: row.duration_ms,
            queued_ms: row.queued_ms,
            worker_id: row.worker_id,
            request_id: row.request_id,
            attempts: row.attempts,
            created_by: row.created_by,
            trigger: row.trigger.map(|trigger| trigger.0),
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
        }
    }
}

/// `query_as!` of [`ExecutionRow`]s: [`SELECT_EXECUTION`], checked, then
/// `$tail` (a string literal: joins, `where`, `order by`, `limit`) with its
/// arguments. A macro because a checked statement must be one literal.
macro_rules! select_executions {
    ($tail:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            ExecutionRow,
            r#"
            select e.id, e.function_id, e.function_version,
                   case when j.state = 'running' then 'RUNNING' else e.status end
                       as "status!: ExecutionStatus",
                   e.input as "input: SqlJson<Box<RawValue>>",
                   e.output as "output: SqlJson<Box<RawValue>>",
                   e.error_type, e.error_message, e.logs, e.logs_truncated, e.duration_ms,
                   (extract(epoch from (coalesce(j.started_at, e.started_at) - e.created_at)) * 1000)::int8 as queued_ms,
                   coalesce(j.worker_id, e.worker_id) as worker_id, e.request_id,
                   coalesce(j.attempt, e.attempts) as "attempts!", e.created_by,
                   e.trigger as "trigger: SqlJson<Trigger>", e.created_at,
                   coalesce(j.started_at, e.started_at) as started_at, e.finished_at
            from executions e left join execution_jobs j on j.id = e.id
            "# + $tail
            $(, $arg)*
        )
    };
}

pub(crate) async fn fetch(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<ExecutionView>> {
    let row = select_executions!("where e.id = $1", id)
        .fetch_optional(db)
        .await?;
    Ok(row.map(ExecutionView::from))
}

/// [`fetch`], if `caller` may see it ([`policy::push_can_see_execution`]:
/// the function's access lists are read in the same query).
pub(crate) async fn fetch_visible(
    db: impl PgExecutor<'_>,
    id: Uuid,
    caller: &Caller,
) -> Result<Option<ExecutionView>> {
    let mut query = QueryBuilder::new(SELECT_EXECUTION);
    query
        .push(" left join functions f on f.id = e.function_id where e.id = ")
        .push_bind(id)
        .push(" and ");
    policy::push_can_see_execution(&mut query, caller, "e", "f");
    Ok(query.build_query_as().fetch_optional(db).await?)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ExecuteParams {
    /// Seconds to wait for the result: 0 answers at once; default 30, at most the operator's cap (300).
    wait: Option<u32>,
    /// A version to run instead of the active one: its running number or
    /// semantic version. It must be READY and not retired; a DEV may name
    /// only the active version or one that is not deprecated.
    version: Option<String>,
    /// Also POST the finished execution here (http or https), signed with
    /// the function's webhook secret like its `webhookUrl` deliveries
    /// (docs/triggers.md, "Completion webhooks").
    #[serde(rename = "callbackUrl")]
    #[param(rename = "callbackUrl")]
    callback_url: Option<String>,
}

/// Queues a run of the function's active version (or `?version=`) with the
/// body as input and, unless `wait=0`, waits up to `wait` seconds for its
/// result: 200 when it finished (whatever its status), 202 while it is still
/// queued or running. With an `Idempotency-Key` already used for this
/// function, nothing new is queued: the earlier execution is answered (and
/// waited for) instead. A run of a deprecated version carries the
/// `Deprecation` and `Plat-Deprecation-Message` headers.
#[utoipa::path(
    post,
    path = "/functions/{function}/execute",
    tag = "executions",
    operation_id = "executeFunction",
    params(
        ("function" = String, Path, description = "The function's id or name"),
        ExecuteParams,
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters: a repeat with the same key (and input) answers the first execution instead of running again"),
    ),
    request_body(content = serde_json::Value, description = "The input: any JSON value (an empty body is `null`), at most 1 MiB and 128 levels deep", content_type = "application/json"),
    responses(
        (status = 200, description = "The execution finished (whatever its status)", body = ExecutionView, headers(
            ("Location" = String, description = "`/executions/{id}`"),
            ("Idempotent-Replayed" = String, description = "`true` when an earlier request with the same `Idempotency-Key` made it"),
            ("Deprecation" = String, description = "`@<unix seconds>` (RFC 9745) when the version run is deprecated"),
            ("Plat-Deprecation-Message" = String, description = "Why, percent-encoded"),
        )),
        (status = 202, description = "Still queued or running after `wait`", body = ExecutionView, headers(
            ("Location" = String, description = "`/executions/{id}`"),
            ("Idempotent-Replayed" = String, description = "`true` when an earlier request with the same `Idempotency-Key` made it"),
            ("Deprecation" = String, description = "`@<unix seconds>` (RFC 9745) when the version run is deprecated"),
            ("Plat-Deprecation-Message" = String, description = "Why, percent-encoded"),
        )),
        (status = 400, description = "Invalid JSON, nesting over 128 levels, a bad `Idempotency-Key`, `wait` over the cap, a refused `callbackUrl` (or one for a function without a webhook signing secret)"),
        (status = 403, description = "A DEV named a deprecated version that is not the active one"),
        (status = 404, description = "No such function or version, or not accessible"),
        (status = 409, description = "No READY version, the version is retired (`version-retired`), or the `Idempotency-Key` was used with another input"),
        (status = 413, description = "The input is over the limit"),
        (status = 429, description = "The caller already has the most executions queued or running one user may have (`PLAT_MAX_QUEUED_PER_USER`); see `Retry-After`"),
    ),
)]
async fn execute(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    Query(params): Query<ExecuteParams>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse> {
    let wait = params.wait.unwrap_or(DEFAULT_WAIT_SECS);
    if wait > state.config.max_wait_secs {
        return Err(Error::BadRequest(format!(
            "`wait` must be at most {} seconds, got {wait}",
            state.config.max_wait_secs
        )));
    }
    let idempotency_key = idempotency_key(&headers)?;
    let body = body.map_err(|rejection| match Error::from(rejection) {
        Error::PayloadTooLarge(_) => Error::PayloadTooLarge(format!(
            "the input is larger than the limit of {} bytes",
            state.config.max_input_bytes
        )),
        other => other,
    })?;
    let input = parse_input(&body)?;

    let key = FunctionKey::parse(key);
    let asked = params.version.map(VersionKey::parse);
    // One query finds the function, the version and its deprecation.
    let target = functions::find_to_run(&state.db, &caller, &key, asked.as_ref()).await?;
    let version = target.runnable(&key, asked.as_ref(), &caller)?;
    let webhook_urls = target.webhook_urls(&state.config, params.callback_url)?;

    let Ran {
        execution,
        replayed,
    } = queue_and_wait(
        &state,
        &caller,
        Run {
            function_id: target.function.id,
            version,
            input: &input,
            idempotency_key: idempotency_key.as_deref(),
            request_id: crate::request_id(&headers),
            trigger: &Trigger::Api,
            webhook_urls: webhook_urls.as_deref(),
            wait,
        },
    )
    .await?;
    let id = execution.id;
    let status = if execution.is_finished() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let location =
        HeaderValue::from_str(&format!("/executions/{id}")).map_err(anyhow::Error::from)?;
    let execution_version = execution.function_version;
    let mut response = (status, [(header::LOCATION, location)], Json(execution)).into_response();
    if replayed {
        response.headers_mut().insert(
            IDEMPOTENT_REPLAYED.clone(),
            HeaderValue::from_static("true"),
        );
    }
    // A replay may answer an execution of another version; the headers are
    // about the version that runs.
    if let Some(deprecation) = target.deprecation() {
        if execution_version == version {
            deprecation.add_to(response.headers_mut());
        }
    }
    Ok(response)
}

/// One run to queue for a caller ([`queue_and_wait`]).
pub(crate) struct Run<'a> {
    pub(crate) function_id: Uuid,
    /// A READY version of the function the caller may run.
    pub(crate) version: i32,
    pub(crate) input: &'a RawValue,
    pub(crate) idempotency_key: Option<&'a str>,
    pub(crate) request_id: Option<&'a str>,
    pub(crate) trigger: &'a Trigger,
    /// Where to POST the finished execution ([`functions::RunTarget::webhook_urls`]).
    pub(crate) webhook_urls: Option<&'a [String]>,
    /// Seconds to wait for the result (0: answer at once).
    pub(crate) wait: u32,
}

/// What [`queue_and_wait`] answers.
pub(crate) struct Ran {
    /// As it was when it finished or `wait` ran out.
    pub(crate) execution: ExecutionView,
    /// An earlier request with the same idempotency key made it.
    pub(crate) replayed: bool,
}

/// Queues `run` for `caller` (under the caller's queue quota) and waits up
/// to `run.wait` seconds for its result. Every way a function is run on
/// someone's behalf goes through here: `execute`, and the HTTP routes.
pub(crate) async fn queue_and_wait(state: &AppState, caller: &Caller, run: Run<'_>) -> Result<Ran> {
    let new = NewExecution {
        id: Uuid::now_v7(),
        function_id: run.function_id,
        version: run.version,
        input_json: run.input.get(),
        idempotency_key: run.idempotency_key,
        created_by: Some(caller.user_id),
        request_id: run.request_id,
        // A lone waiting call is served sooner when its enqueue wakes the
        // executors itself. While other calls wait, the executors are busy
        // or about to be woken: those share the coalesced hint below, which
        // keeps their commits off PostgreSQL's notify lock (waking in every
        // statement cost 32 durable waiting clients 3.5-7.5% of their calls/s).
        wake_executors: run.wait > 0 && state.waiters.is_empty(),
        max_in_flight: queue_quota(state, caller),
        trigger: run.trigger,
        webhook_urls: run.webhook_urls,
    };
    // Registered before the job exists, so even an instant finish is seen.
    let waiter = state.waiters.register(new.id);
    // One statement, atomic on its own: no transaction round trips.
    let mut conn = state.db.acquire().await?;
    let enqueued = execute::enqueue(&mut conn, new)
        .await
        .map_err(unstorable_input)?;
    drop(conn);
    let (id, waiter, replayed) = match enqueued {
        Enqueued::New => {
            if !new.wake_executors {
                state.new_jobs.send();
            }
            (new.id, waiter, false)
        }
        Enqueued::Existing { id, same_input: true } => (id, state.waiters.register(id), true),
        Enqueued::OverQuota => {
            return Err(Error::QueueQuotaExceeded {
                limit: state.config.max_queued_per_user,
                adding: 1,
            })
        }
        Enqueued::Existing { id, same_input: false } => {
            return Err(Error::Conflict(format!(
                "the Idempotency-Key was already used for execution {id} with a different input; use a new key for a new request"
            )))
        }
    };
    let execution = wait_for(state, id, &waiter, run.wait, !replayed).await?;
    Ok(Ran {
        execution,
        replayed,
    })
}

/// Reads the execution, and while it is unfinished waits for a wake-up (or
/// the end of `wait` seconds) and reads it again. `just_queued`: this request
/// created it after registering `waiter`, so it cannot have finished unseen
/// and the first read is skipped (one query less on the execute path).
async fn wait_for(
    state: &AppState,
    id: Uuid,
    waiter: &Waiter<'_>,
    wait: u32,
    just_queued: bool,
) -> Result<ExecutionView> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(u64::from(wait));
    let mut read_now = !just_queued || wait == 0;
    loop {
        if read_now {
            let execution = fetch(&state.db, id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("execution {id} vanished"))?;
            // While stopping, answer with the current state rather than hold
            // up the shutdown for the rest of `wait`.
            let waited_enough =
                tokio::time::Instant::now() >= deadline || state.stopping.is_cancelled();
            if execution.is_finished() || waited_enough {
                return Ok(execution);
            }
        }
        read_now = true;
        tokio::select! {
            _ = waiter.woken() => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = state.stopping.cancelled() => {}
        }
    }
}

/// The `Idempotency-Key` header, if sent: 1 to 255 bytes of visible ASCII.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>> {
    let Some(value) = headers.get(&IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value.to_str().ok().filter(|k| {
        !k.is_empty()
            && k.len() <= MAX_IDEMPOTENCY_KEY_BYTES
            && k.bytes().all(|b| b.is_ascii_graphic())
    });
    match key {
        Some(key) => Ok(Some(key.to_owned())),
        None => Err(Error::BadRequest(format!(
            "the Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} visible ASCII characters"
        ))),
    }
}

/// Cancels an execution. A queued one is CANCELLED at once (200). A running
/// one is stopped by its executor; the call waits up to 10 s for that and
/// answers 200 once it is CANCELLED, or 202 if it is still stopping. An
/// execution that already finished cannot be cancelled (409).
#[utoipa::path(
    post,
    path = "/executions/{id}/cancel",
    tag = "executions",
    operation_id = "cancelExecution",
    params(("id" = String, Path, description = "The execution's id")),
    responses(
        (status = 200, description = "CANCELLED", body = ExecutionView),
        (status = 202, description = "Running and still stopping after 10 s", body = ExecutionView),
        (status = 404, description = "No such execution, or not the caller's to see: a DEV sees only their own, of functions they can still access"),
        (status = 409, description = "It already finished"),
    ),
)]
async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse> {
    let not_found = || Error::NotFound(format!("no execution with id {id}"));
    let id = Uuid::try_parse(&id).map_err(|_| not_found())?;
    // Who may read it may cancel it: admins any; others only their own, of
    // a function they can still access.
    fetch_visible(&state.db, id, &caller)
        .await?
        .ok_or_else(not_found)?;
    let waiter = state.waiters.register(id);
    match execute::cancel(&state.db, id).await? {
        CancelOutcome::Cancelled => {}
        CancelOutcome::Requested => {
            tracing::info!(execution_id = %id, "cancel requested for a running execution")
        }
        CancelOutcome::NotCancellable => {
            let execution = fetch(&state.db, id).await?.ok_or_else(not_found)?;
            return Err(Error::Conflict(format!(
                "execution {id} already finished with status {}; only queued or running executions can be cancelled",
                execution.status
            )));
        }
    }
    let execution = wait_for(&state, id, &waiter, CANCEL_WAIT_SECS, false).await?;
    let status = if execution.is_finished() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(execution)))
}

/// Valid JSON that PostgreSQL's jsonb refuses (a `\u0000` escape, a number
/// beyond its range) is the client's to fix.
/// How many executions the caller may have queued or running: the operator's
/// per-user quota, none for admins. The enqueue statement enforces it.
pub(crate) fn queue_quota(state: &AppState, caller: &Caller) -> Option<i64> {
    policy::has_queue_quota(caller).then_some(i64::from(state.config.max_queued_per_user))
}

pub(crate) fn unstorable_input(error: sqlx::Error) -> Error {
    match plat_common::db::data_exception(&error) {
        Some(reason) => Error::BadRequest(format!(
            "the input is valid JSON but cannot be stored: {reason}"
        )),
        None => Error::from(error),
    }
}

/// The body is the input: any JSON value; an empty body means `null`.
pub(crate) fn parse_input(body: &[u8]) -> Result<Box<RawValue>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(RawValue::from_string("null".to_owned()).map_err(anyhow::Error::from)?);
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| Error::BadRequest("the input is not UTF-8 text".to_owned()))?;
    // A `RawValue` is not checked for depth, and PostgreSQL's jsonb parser
    // overflows its stack on deep nesting (a 500), so the depth is checked first.
    if nesting_depth(text.as_bytes()) > MAX_INPUT_DEPTH {
        return Err(Error::BadRequest(format!(
            "the input is nested too deeply: at most {MAX_INPUT_DEPTH} levels of arrays and objects"
        )));
    }
    serde_json::from_str::<Box<RawValue>>(text).map_err(|e| {
        Error::BadRequest(format!(
            "the input (the request body) is not valid JSON: {e}"
        ))
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// Only executions with this status.
    #[param(value_type = Option<String>, pattern = "^(QUEUED|RUNNING|SUCCEEDED|FAILED|CANCELLED)$")]
    status: Option<String>,
    /// 1 to 100; 20 if not sent.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct ExecutionList {
    items: Vec<ExecutionView>,
    next_cursor: Option<String>,
}

/// A function's executions, newest first, optionally of one status. Admins
/// see them all; others see the ones they started.
#[utoipa::path(
    get,
    path = "/functions/{function}/executions",
    tag = "executions",
    operation_id = "listExecutions",
    params(
        ("function" = String, Path, description = "The function's id or name"),
        ListParams,
    ),
    responses(
        (status = 200, description = "A page of executions, newest first (a DEV sees the ones they started)", body = ExecutionList),
        (status = 400, description = "An invalid parameter or cursor"),
        (status = 404, description = "No such function, or not accessible"),
    ),
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<Json<ExecutionList>> {
    let page = Page::parse(params.limit, params.cursor.as_deref())?;
    let status = params
        .status
        .as_deref()
        .map(str::parse::<ExecutionStatus>)
        .transpose()
        .map_err(|unknown| Error::BadRequest(unknown.to_string()))?;
    // The function's access rule, read now: a DEV who lost access to the
    // function gets 404 here, so the listing itself needs only the creator
    // filter and keeps its plans (see `listing`).
    let function = functions::find(&state.db, &caller, &FunctionKey::parse(key), false).await?;
    let rows = listing(&state.db, function.id, status, &page, &caller).await?;
    let (items, next_cursor) = page.finish(rows, |e| Position {
        created_at: e.created_at,
        id: e.id,
    });
    Ok(Json(ExecutionList { items, next_cursor }))
}

/// The page behind [`list`], by one statement per status filter: `$1` the
/// function, `$2`/`$3` the cursor, `$4` the limit, `$5` the only creator a
/// DEV may see.
///
/// No index of `executions` names the status, so that writing a result
/// updates the history row in place (migration 20261128000001). Each filter
/// therefore starts where its executions are few or indexed:
/// - QUEUED and RUNNING: the queue table, which holds only executions still
///   to finish (a job claimed is RUNNING);
/// - FAILED and CANCELLED: `unsuccessful_executions`, in its own
///   (function, status, newest first) order;
/// - SUCCEEDED: the function's history newest first, skipping the rest,
///   which are usually few. A function that mostly fails reads further for
///   a page of successes.
async fn listing(
    db: &sqlx::PgPool,
    function_id: Uuid,
    status: Option<ExecutionStatus>,
    page: &Page,
    caller: &Caller,
) -> Result<Vec<ExecutionView>> {
    let (after_created_at, after_id) = (page.after_created_at(), page.after_id());
    let limit = page.fetch_limit();
    let creator = policy::whose_executions(caller);
    // Every filter's statement takes the same first five parameters.
    macro_rules! page {
        ($tail:literal $(, $arg:expr)*) => {
            select_executions!(
                $tail,
                function_id,
                after_created_at,
                after_id,
                limit,
                creator
                $(, $arg)*
            )
            .fetch_all(db)
            .await?
        };
    }
    let rows = match status {
        None => page!(
            r#"
            where e.function_id = $1
              and ($2::timestamptz is null or (e.created_at, e.id) < ($2, $3))
              and ($5::uuid is null or e.created_by = $5)
            order by e.created_at desc, e.id desc
            limit $4
            "#
        ),
        Some(ExecutionStatus::Queued | ExecutionStatus::Running) => page!(
            r#"
            where j.function_id = $1
              and j.state = (case when $6 then 'running' else 'available' end)::job_state
              and ($2::timestamptz is null or (e.created_at, e.id) < ($2, $3))
              and ($5::uuid is null or e.created_by = $5)
            order by e.created_at desc, e.id desc
            limit $4
            "#,
            status == Some(ExecutionStatus::Running)
        ),
        Some(status @ (ExecutionStatus::Failed | ExecutionStatus::Cancelled)) => page!(
            r#"
            join unsuccessful_executions u on u.id = e.id
            where u.function_id = $1 and u.status = $6
              and ($2::timestamptz is null or (u.created_at, u.id) < ($2, $3))
              and ($5::uuid is null or e.created_by = $5)
            order by u.created_at desc, u.id desc
            limit $4
            "#,
            status as ExecutionStatus
        ),
        Some(ExecutionStatus::Succeeded) => page!(
            r#"
            where e.function_id = $1 and e.status = 'SUCCEEDED'
              and ($2::timestamptz is null or (e.created_at, e.id) < ($2, $3))
              and ($5::uuid is null or e.created_by = $5)
            order by e.created_at desc, e.id desc
            limit $4
            "#
        ),
    };
    Ok(rows.into_iter().map(ExecutionView::from).collect())
}

#[utoipa::path(
    get,
    path = "/executions/{id}",
    tag = "executions",
    operation_id = "getExecution",
    params(("id" = String, Path, description = "The execution's id")),
    responses(
        (status = 200, description = "The execution", body = ExecutionView),
        (status = 404, description = "No such execution, or not the caller's to see: a DEV sees only their own, of functions they can still access"),
    ),
)]
async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ExecutionView>> {
    let not_found = || Error::NotFound(format!("no execution with id {id}"));
    let parsed = Uuid::try_parse(&id).map_err(|_| not_found())?;
    fetch_visible(&state.db, parsed, &caller)
        .await?
        .map(Json)
        .ok_or_else(not_found)
}
