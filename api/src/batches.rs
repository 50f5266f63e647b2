//! Queuing many runs in one call: `POST /functions/{id}/executions/batch`
//! with `{"inputs": [...]}`. It never waits; each run is an ordinary
//! execution (history, `GET /executions/{id}`, cancel). Producers that fan
//! out work use it to enqueue thousands of runs per second with one request
//! and one statement per batch instead of one each.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use plat_common::queue::execute;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt as _};
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::executions::{
    nesting_depth, queue_quota, unstorable_input, IDEMPOTENCY_KEY, MAX_INPUT_DEPTH,
};
use crate::extract::{Json, Path, Query};
use crate::functions::versions::VersionKey;
use crate::functions::{self, FunctionKey};
use crate::AppState;

/// Most inputs one call may carry: enough to amortise a round trip, small
/// enough that one statement stays short.
pub const MAX_BATCH_INPUTS: usize = 1000;
/// The body's nesting limit, the same as a single input's; `{"inputs": [`
/// takes two of its levels.
const MAX_BATCH_DEPTH: usize = MAX_INPUT_DEPTH;

pub fn router(state: &AppState) -> crate::openapi::ApiRouter {
    OpenApiRouter::new()
        .routes(routes!(enqueue).layer(DefaultBodyLimit::max(state.config.max_batch_bytes)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Batch<'a> {
    /// 1 to 1000 inputs, each any JSON value of at most 1 MiB.
    #[schema(value_type = Vec<serde_json::Value>, min_items = 1, max_items = 1000)]
    #[serde(borrow)]
    inputs: Vec<&'a RawValue>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Queued {
    function_id: Uuid,
    version: i32,
    /// In the order of the inputs.
    execution_ids: Vec<Uuid>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct BatchParams {
    /// A READY version to run instead of the active one (number or semver);
    /// not a retired one, and for a DEV not a deprecated one unless active.
    version: Option<String>,
}

/// Queues one run of the active version (or `?version=`) per input, all or
/// nothing, and answers 202 with their ids in input order. It costs one
/// request of the caller's rate limit per input. A deprecated
/// version's batch carries the deprecation headers, as single runs do.
#[utoipa::path(
    post,
    path = "/functions/{function}/executions/batch",
    tag = "executions",
    operation_id = "executeBatch",
    params(
        ("function" = String, Path, description = "The function's id or name"),
        BatchParams,
    ),
    request_body = Batch,
    responses(
        (status = 202, description = "Queued, all or nothing", body = Queued, headers(
            ("Deprecation" = String, description = "`@<unix seconds>` (RFC 9745) when the version run is deprecated"),
            ("Plat-Deprecation-Message" = String, description = "Why, percent-encoded"),
        )),
        (status = 400, description = "Invalid JSON, 0 or over 1000 inputs, more inputs than the caller's rate-limit burst, nesting too deep, an `Idempotency-Key` header"),
        (status = 403, description = "A DEV named a deprecated version that is not the active one"),
        (status = 404, description = "No such function or version, or not accessible"),
        (status = 409, description = "No READY version, or the version is retired (`version-retired`)"),
        (status = 413, description = "An input over 1 MiB or the body over 16 MiB"),
        (status = 429, description = "The user's rate limit cannot pay for the inputs now (a batch costs one request per input), or the batch would take the caller over the most executions queued or running one user may have (`PLAT_MAX_QUEUED_PER_USER`); nothing was queued; see `Retry-After`"),
    ),
)]
async fn enqueue(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    Query(params): Query<BatchParams>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    if headers.contains_key(&IDEMPOTENCY_KEY) {
        return Err(Error::BadRequest(
            "Idempotency-Key is not supported on batches: send the runs that need it one by one to POST /functions/{function}/execute".to_owned(),
        ));
    }
    let body = body.map_err(|rejection| match Error::from(rejection) {
        Error::PayloadTooLarge(_) => Error::PayloadTooLarge(format!(
            "the batch is larger than the limit of {} bytes; split it",
            state.config.max_batch_bytes
        )),
        other => other,
    })?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| Error::BadRequest("the batch is not UTF-8 text".to_owned()))?;
    // Checked before parsing, as for a single input (PostgreSQL's jsonb
    // parser overflows on deep nesting, and serde_json stops at 128).
    if nesting_depth(text.as_bytes()) > MAX_BATCH_DEPTH {
        return Err(Error::BadRequest(format!(
            "the batch is nested too deeply: each input may nest at most {} levels of arrays and objects",
            MAX_BATCH_DEPTH - 2
        )));
    }
    let batch: Batch = serde_json::from_str(text).map_err(|e| {
        Error::BadRequest(format!(
            "the body must be a JSON object {{\"inputs\": [...]}}: {e}"
        ))
    })?;
    if batch.inputs.is_empty() || batch.inputs.len() > MAX_BATCH_INPUTS {
        return Err(Error::BadRequest(format!(
            "`inputs` must hold 1 to {MAX_BATCH_INPUTS} inputs, got {}",
            batch.inputs.len()
        )));
    }
    if let Some(at) = batch
        .inputs
        .iter()
        .position(|input| input.get().len() > state.config.max_input_bytes)
    {
        return Err(Error::PayloadTooLarge(format!(
            "input {at} is larger than the limit of {} bytes",
            state.config.max_input_bytes
        )));
    }
    // N runs cost N requests of the user's rate limit, before any database work.
    state.auth.take_batch(&caller, batch.inputs.len())?;

    let key = FunctionKey::parse(key);
    let asked = params.version.map(VersionKey::parse);
    let target = functions::find_to_run(&state.db, &caller, &key, asked.as_ref()).await?;
    let version = target.runnable(&key, asked.as_ref(), &caller)?;
    let function = &target.function;
    // v7 ids in input order keep the history in input order too.
    let ids: Vec<Uuid> = batch.inputs.iter().map(|_| Uuid::now_v7()).collect();
    let inputs: Vec<&str> = batch.inputs.iter().map(|input| input.get()).collect();
    let queued = execute::enqueue_batch(
        &state.db,
        execute::NewBatch {
            function_id: function.id,
            version,
            ids: &ids,
            inputs: &inputs,
            created_by: Some(caller.user_id),
            request_id: crate::request_id(&headers),
            max_in_flight: queue_quota(&state, &caller),
            webhook_urls: target.webhook_urls(&state.config, None)?.as_deref(),
        },
    )
    .await
    .map_err(unstorable_input)?;
    if queued == execute::BatchEnqueued::OverQuota {
        return Err(Error::QueueQuotaExceeded {
            limit: state.config.max_queued_per_user,
            adding: ids.len(),
        });
    }
    state.new_jobs.send();
    let mut response = (
        StatusCode::ACCEPTED,
        Json(Queued {
            function_id: function.id,
            version,
            execution_ids: ids,
        }),
    )
        .into_response();
    if let Some(deprecation) = target.deprecation() {
        deprecation.add_to(response.headers_mut());
    }
    Ok(response)
}
