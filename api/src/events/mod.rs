//! Live streams (Server-Sent Events): `GET /executions/{id}/events` and
//! `GET /functions/{function}/events`. docs/triggers.md ("Live streams")
//! describes the events; `hub` how changes reach the streams.

pub mod hub;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use plat_common::{ExecutionStatus, VersionStatus};
use serde::Serialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::executions::{self, ExecutionView};
use crate::extract::Path;
use crate::functions::{self, FunctionKey};
use crate::policy;
use crate::AppState;
use hub::{Change, ExecutionSummary, Subscription, Topic, VersionState};

pub use hub::Hub;

/// How long a client waits before reconnecting (the `retry:` field).
const RETRY: Duration = Duration::from_secs(2);
/// A comment this often keeps proxies and load balancers from closing an
/// idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// A stream ends after this long and the client reconnects: access is
/// checked when a stream opens, so this bounds how long a revoked key or
/// session keeps receiving events.
const MAX_STREAM: Duration = Duration::from_secs(10 * 60);
/// Asks nginx-like proxies not to buffer the stream.
static X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

pub fn router() -> crate::openapi::ApiRouter {
    OpenApiRouter::new()
        .routes(routes!(execution_events))
        .routes(routes!(function_events))
}

/// Follows one execution as Server-Sent Events: a `status` event with its
/// current state, one per later change of status (or attempt), then, once
/// it finished, an `execution` event with the whole record, and the stream
/// ends. A finished execution answers its `status` and `execution` at once.
/// Reconnecting starts again from the current state.
#[utoipa::path(
    get,
    path = "/executions/{id}/events",
    tag = "executions",
    operation_id = "streamExecutionEvents",
    params(("id" = String, Path, description = "The execution's id")),
    responses(
        (status = 200, description = "`text/event-stream`: `status` events (data: the execution without input, output and logs), then one `execution` event (data: the execution record); see docs/triggers.md", content_type = "text/event-stream", body = String),
        (status = 404, description = "No such execution, or not the caller's to see: a DEV sees only their own, of functions they can still access"),
    ),
)]
async fn execution_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    let not_found = || Error::NotFound(format!("no execution with id {id}"));
    let id = Uuid::try_parse(&id).map_err(|_| not_found())?;
    // Subscribed before the read: a change right after it is not missed.
    let subscription = state.events.subscribe(Topic::Execution(id));
    let execution = executions::fetch_visible(&state.db, id, &caller)
        .await?
        .ok_or_else(not_found)?;
    let mut stream = ExecutionStream {
        db: state.db.clone(),
        id,
        subscription,
        shown: None,
    };
    let (events, finished) = stream.show_record(execution)?;
    Ok(respond(
        Source::Execution(stream),
        events,
        finished,
        state.stopping.clone(),
    ))
}

/// Follows a function as Server-Sent Events: `version` events as its
/// versions are created and built (PENDING, COMPILING, READY or FAILED),
/// starting with the latest version's current state, and `execution` events
/// as its executions are queued and change status (a DEV sees only the ones
/// they started). `resync` says events may have been missed (after a
/// reconnection, or when the client reads too slowly): re-read what you show.
#[utoipa::path(
    get,
    path = "/functions/{function}/events",
    tag = "functions",
    operation_id = "streamFunctionEvents",
    params(
        ("function" = String, Path, description = "The function's id or name"),
        ("Last-Event-ID" = Option<String>, Header, description = "Sent by a reconnecting client: the stream then starts with a `resync` event"),
    ),
    responses(
        (status = 200, description = "`text/event-stream`: `version`, `execution` and `resync` events; see docs/triggers.md", content_type = "text/event-stream", body = String),
        (status = 404, description = "No such function, or not accessible"),
    ),
)]
async fn function_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let function = functions::find(&state.db, &caller, &FunctionKey::parse(key), false).await?;
    let subscription = state.events.subscribe(Topic::Function(function.id));
    let latest = sqlx::query_as!(
        VersionState,
        r#"
        select function_id, version, status as "status: VersionStatus", compile_error
        from function_versions
        where function_id = $1
        order by version desc
        limit 1
        "#,
        function.id,
    )
    .fetch_optional(&state.db)
    .await?;
    let mut stream = FunctionStream {
        subscription,
        creator: policy::whose_executions(&caller),
        next_id: 0,
    };
    let mut events = Vec::new();
    if headers.contains_key("last-event-id") {
        events.push(stream.resync("reconnected"));
    }
    if let Some(latest) = latest {
        events.push(stream.event("version", &latest));
    }
    Ok(respond(
        Source::Function(stream),
        events,
        false,
        state.stopping.clone(),
    ))
}

/// The streams, as one type so that the response body has one concrete
/// (and `Send`) future.
enum Source {
    Execution(ExecutionStream),
    Function(FunctionStream),
}

impl Source {
    /// The events of the next change, and whether the stream ends after them.
    async fn next(&mut self) -> (Vec<Event>, bool) {
        let next = match self {
            Source::Execution(stream) => stream.next().await,
            Source::Function(stream) => Ok(stream.next().await),
        };
        next.unwrap_or_else(|error| {
            // The client reconnects and starts from the current state.
            tracing::warn!(error = %error, "a live stream ended on an error");
            (Vec::new(), true)
        })
    }
}

/// The SSE response: `retry:`, the `first` events, then the source's until
/// it ends, the server stops or [`MAX_STREAM`] passed; a keep-alive comment
/// when nothing was sent for a while.
fn respond(
    source: Source,
    first: Vec<Event>,
    ended: bool,
    stopping: CancellationToken,
) -> Response {
    struct Body {
        source: Source,
        queue: VecDeque<Event>,
        ended: bool,
        stopping: CancellationToken,
        deadline: tokio::time::Instant,
    }
    let mut queue = VecDeque::from([Event::default().retry(RETRY)]);
    queue.extend(first);
    let body = Body {
        source,
        queue,
        ended,
        stopping,
        deadline: tokio::time::Instant::now() + MAX_STREAM,
    };
    let events = futures_util::stream::unfold(body, |mut body| async move {
        loop {
            if let Some(event) = body.queue.pop_front() {
                return Some((Ok::<_, Infallible>(event), body));
            }
            if body.ended {
                return None;
            }
            tokio::select! {
                _ = body.stopping.cancelled() => return None,
                _ = tokio::time::sleep_until(body.deadline) => return None,
                (events, ended) = body.source.next() => {
                    body.queue.extend(events);
                    body.ended = ended;
                }
            }
        }
    });
    let sse = Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE));
    (
        [(X_ACCEL_BUFFERING.clone(), HeaderValue::from_static("no"))],
        sse,
    )
        .into_response()
}

struct ExecutionStream {
    db: PgPool,
    id: Uuid,
    subscription: Subscription,
    /// The status and attempt last sent.
    shown: Option<(ExecutionStatus, i32)>,
}

impl ExecutionStream {
    async fn next(&mut self) -> Result<(Vec<Event>, bool)> {
        loop {
            let change = self.subscription.next().await;
            if self.subscription.take_lagged() {
                return self.reread().await;
            }
            match change {
                Some(Change::Execution(summary)) => {
                    let (events, finished) = self.show(&summary).await?;
                    if finished || !events.is_empty() {
                        return Ok((events, finished));
                    }
                }
                Some(Change::Version(_) | Change::Resync) => {}
                None => return Ok((Vec::new(), true)),
            }
        }
    }

    /// The current record, shown as a change.
    async fn reread(&mut self) -> Result<(Vec<Event>, bool)> {
        match executions::fetch(&self.db, self.id).await? {
            Some(execution) => self.show_record(execution),
            None => Ok((Vec::new(), true)),
        }
    }

    /// A `status` event if the status or attempt changed; once finished,
    /// the whole record (read now) as the `execution` event.
    async fn show(&mut self, summary: &ExecutionSummary) -> Result<(Vec<Event>, bool)> {
        if summary.status.is_finished() {
            return self.reread().await;
        }
        Ok((self.status_event(summary).into_iter().collect(), false))
    }

    /// [`Self::show`] for a record already read.
    fn show_record(&mut self, execution: ExecutionView) -> Result<(Vec<Event>, bool)> {
        // The record's own JSON, less input, output and logs, is its summary.
        let summary: ExecutionSummary = serde_json::to_value(&execution)
            .and_then(serde_json::from_value)
            .map_err(anyhow::Error::from)?;
        let mut events: Vec<Event> = self.status_event(&summary).into_iter().collect();
        let finished = summary.status.is_finished();
        if finished {
            events.push(json_event("execution", &execution));
        }
        Ok((events, finished))
    }

    fn status_event(&mut self, summary: &ExecutionSummary) -> Option<Event> {
        let state = (summary.status, summary.attempts);
        if self.shown == Some(state) {
            return None;
        }
        self.shown = Some(state);
        Some(json_event("status", summary))
    }
}

struct FunctionStream {
    subscription: Subscription,
    /// The only user whose executions the caller may see (a DEV's own).
    creator: Option<Uuid>,
    next_id: u64,
}

impl FunctionStream {
    async fn next(&mut self) -> (Vec<Event>, bool) {
        loop {
            let change = self.subscription.next().await;
            let mut events = Vec::new();
            if self.subscription.take_lagged() {
                events.push(self.resync("lagged"));
            }
            match change {
                Some(Change::Execution(summary)) => {
                    if self
                        .creator
                        .is_none_or(|user| summary.created_by == Some(user))
                    {
                        events.push(self.event("execution", &*summary));
                    }
                }
                Some(Change::Version(version)) => events.push(self.event("version", &*version)),
                Some(Change::Resync) => events.push(self.resync("missed")),
                None => return (events, true),
            }
            if !events.is_empty() {
                return (events, false);
            }
        }
    }

    /// An event with the next id, so that a reconnecting browser sends
    /// `Last-Event-ID` (and gets a `resync`).
    fn event(&mut self, name: &str, data: &impl Serialize) -> Event {
        self.next_id += 1;
        json_event(name, data).id(self.next_id.to_string())
    }

    fn resync(&mut self, reason: &str) -> Event {
        self.event("resync", &serde_json::json!({ "reason": reason }))
    }
}

fn json_event(name: &str, data: &impl Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .expect("our records serialise")
}
