//! Answers requests to functions' HTTP routes: a middleware around the
//! API's router that looks at the requests the router matched no route
//! for. `/run/{name}/...` is always a route's (or a 404); any other
//! unmatched path is looked up among the routes' prefixes, and passed on to
//! the router's own 404 when no route has it. Paths under the API's own
//! first segments ([`ApiPaths`]) are never looked up.
//!
//! A request to a route is one execution: the function's active version
//! runs with the request as input (`envelope`), under the caller's quota
//! (a public route's owner's), and the call waits up to the function's
//! timeout plus [`WAIT_MARGIN_SECS`] for the result.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use moka::sync::Cache;
use plat_common::{ExecutionConfig, ExecutionStatus, Trigger};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::envelope::{self, Answer, BadBody, RequestInput};
use super::{first_segment, ApiPaths, RUN};
use crate::auth::rate_limit::{Rate, RateLimiter};
use crate::auth::{self, Caller, Credential, Role};
use crate::client_addr;
use crate::error::{Error, Result};
use crate::executions::{self, Ran, Run};
use crate::functions::{self, FunctionKey};
use crate::session_cookie;
use crate::AppState;

/// Beyond the function's own timeout, how long a request waits for its
/// run: time to be claimed, started and recorded.
const WAIT_MARGIN_SECS: u32 = 10;
/// The header every route's response names its execution in.
static EXECUTION_ID: HeaderName = HeaderName::from_static("plat-execution-id");
/// Functions answer on the API's own origin: in a sandbox (an opaque
/// origin), a page a function serves cannot use the dashboard's session,
/// read the API's answers or its cookies, whatever its scripts do.
const SANDBOX: &str = "sandbox allow-scripts allow-forms allow-popups allow-downloads";
/// Both names of Plat's session cookie, whichever the operator uses: a
/// function never sees it, and may not set it.
const SESSION_COOKIES: &[&str] = &[session_cookie::SECURE_NAME, session_cookie::PLAIN_NAME];
/// Routes whose limiters are kept in each process; an idle one is
/// forgotten after an hour, which only refills its buckets.
const MAX_LIMITERS: u64 = 10_000;

/// The middleware's state: the app's, the API's paths, and each public
/// route's rate limiter.
#[derive(Clone)]
pub struct Dispatch {
    state: AppState,
    api_paths: Arc<ApiPaths>,
    limiters: Cache<Uuid, Arc<RouteLimiter>>,
}

impl Dispatch {
    pub fn new(state: AppState, api_paths: Arc<ApiPaths>) -> Self {
        Self {
            state,
            api_paths,
            limiters: Cache::builder()
                .max_capacity(MAX_LIMITERS)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
        }
    }

    /// The route's limiter, made afresh when its settings changed.
    fn limiter(&self, route: &Route) -> Arc<RouteLimiter> {
        let settings = (route.rate_limit_per_sec, route.rate_limit_burst);
        if let Some(limiter) = self.limiters.get(&route.function_id) {
            if limiter.settings == settings {
                return limiter;
            }
        }
        let limiter = Arc::new(RouteLimiter {
            settings,
            per_client: RateLimiter::new(Rate {
                per_sec: route.rate_limit_per_sec,
                burst: u32::try_from(route.rate_limit_burst).unwrap_or(1),
            }),
        });
        self.limiters.insert(route.function_id, limiter.clone());
        limiter
    }
}

/// One public route's limit, per client address.
struct RouteLimiter {
    settings: (f64, i32),
    per_client: RateLimiter<String>,
}

/// A route as a request needs it.
struct Route {
    function_id: Uuid,
    path_prefix: Option<String>,
    enabled: bool,
    public: bool,
    rate_limit_per_sec: f64,
    rate_limit_burst: i32,
    forward_headers: Vec<String>,
    owner_id: Option<Uuid>,
    /// The active version's, when there is one.
    execution_config: Option<sqlx::types::Json<ExecutionConfig>>,
}

/// A route found for a path: the prefix it matched and the path below it.
struct Found {
    route: Route,
    prefix: String,
    rest: String,
}

/// The middleware (see the module's documentation).
pub async fn serve(State(dispatch): State<Dispatch>, request: Request, next: Next) -> Response {
    if request.extensions().get::<MatchedPath>().is_some() {
        return next.run(request).await;
    }
    let path = request.uri().path().to_owned();
    let first = first_segment(&path);
    let named = first == RUN;
    if !named && dispatch.api_paths.reserves(first) {
        return next.run(request).await;
    }
    let found = if named {
        by_name(&dispatch.state, &path).await
    } else {
        by_prefix(&dispatch.state, &path).await
    };
    let response = match found {
        Ok(Some(found)) if found.route.enabled => run(&dispatch, found, request).await,
        Ok(Some(_)) => Err(no_route(&path)),
        Ok(None) if named => Err(no_route(&path)),
        Ok(None) => return next.run(request).await,
        Err(error) => Err(error),
    };
    let mut response = response.unwrap_or_else(IntoResponse::into_response);
    let headers = response.headers_mut();
    headers.append(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(SANDBOX),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn no_route(path: &str) -> Error {
    Error::NotFound(format!("no HTTP route answers {path}"))
}

/// The columns of [`Route`]; `$tail` joins and filters (a macro so each
/// statement is one checked literal).
macro_rules! select_route {
    ($tail:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            Route,
            r#"
            select r.function_id, r.path_prefix, r.enabled, r.public, r.rate_limit_per_sec, r.rate_limit_burst,
                   r.forward_headers, r.owner_id,
                   v.execution_config as "execution_config?: sqlx::types::Json<ExecutionConfig>"
            from function_routes r
            join functions f on f.id = r.function_id
            left join function_versions v on v.function_id = f.id and v.version = f.active_version
            "# + $tail
            $(, $arg)*
        )
    };
}

/// `/run/{name}` and the path below it.
async fn by_name(state: &AppState, path: &str) -> Result<Option<Found>> {
    let below_run = &path[1 + RUN.len()..];
    let name_and_rest = below_run.strip_prefix('/').unwrap_or_default();
    let (name, rest) = name_and_rest
        .split_once('/')
        .map_or((name_and_rest, ""), |(name, rest)| (name, rest));
    if name.is_empty() {
        return Ok(None);
    }
    let route = select_route!("where f.name = $1", name)
        .fetch_optional(&state.db)
        .await?;
    Ok(route.map(|route| Found {
        route,
        prefix: format!("/{RUN}/{name}"),
        rest: format!("/{rest}"),
    }))
}

/// The route with the longest prefix `path` is at or under.
async fn by_prefix(state: &AppState, path: &str) -> Result<Option<Found>> {
    // Each ancestor of the path, itself included: `/a`, `/a/b`, `/a/b/c`.
    let candidates: Vec<&str> = path
        .match_indices('/')
        .skip(1)
        .map(|(at, _)| &path[..at])
        .chain(std::iter::once(path.trim_end_matches('/')))
        .filter(|candidate| candidate.len() > 1)
        .collect();
    if candidates.is_empty() {
        return Ok(None);
    }
    let route = select_route!(
        r#"
        where r.path_prefix = any($1)
        order by length(r.path_prefix) desc
        limit 1
        "#,
        &candidates as &[&str]
    )
    .fetch_optional(&state.db)
    .await?;
    Ok(route.and_then(|route| {
        let prefix = route.path_prefix.clone()?;
        let rest = match &path[prefix.len()..] {
            "" => "/".to_owned(),
            rest => rest.to_owned(),
        };
        Some(Found {
            route,
            prefix,
            rest,
        })
    }))
}

/// Runs the function for the request and answers with what it returned.
async fn run(dispatch: &Dispatch, found: Found, request: Request) -> Result<Response> {
    let state = &dispatch.state;
    let Found {
        route,
        prefix,
        rest,
    } = found;
    let (parts, body) = request.into_parts();
    let client = client_addr::client_ip(
        &parts.extensions,
        &parts.headers,
        &state.config.trusted_proxies,
    );
    let caller = if route.public {
        take_public_request(dispatch, &route, client)?;
        owner(state, &route).await?
    } else {
        let mut caller = auth::caller(state, &parts.method, &parts.headers, client).await?;
        caller.source_address = client.map(|ip| ip.to_string());
        caller
    };
    let key = FunctionKey::Id(route.function_id);
    let target = functions::find_to_run(&state.db, &caller, &key, None).await?;
    let version = target.runnable(&key, None, &caller)?;

    let bytes = axum::body::to_bytes(body, state.config.max_input_bytes)
        .await
        .map_err(|_| {
            Error::PayloadTooLarge(format!(
                "the request body is larger than the limit of {} bytes",
                state.config.max_input_bytes
            ))
        })?;
    let input = input(&parts, &route, rest, &bytes)?;
    let trigger = Trigger::Http {
        route: prefix,
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
    };
    let timeout_ms = route
        .execution_config
        .map_or(ExecutionConfig::default().timeout_ms, |config| {
            config.0.timeout_ms
        });
    let wait = timeout_ms.div_ceil(1000).saturating_add(WAIT_MARGIN_SECS);
    let Ran { execution, .. } = executions::queue_and_wait(
        state,
        &caller,
        Run {
            function_id: route.function_id,
            version,
            input: &input,
            idempotency_key: None,
            request_id: crate::request_id(&parts.headers),
            trigger: &trigger,
            webhook_urls: target.webhook_urls(&state.config, None)?.as_deref(),
            wait,
        },
    )
    .await?;
    let id = execution.id();
    let mut response = match (execution.status(), execution.output()) {
        (ExecutionStatus::Succeeded, output) => answer(id, output),
        (ExecutionStatus::Queued | ExecutionStatus::Running, _) => {
            Err(Error::GatewayTimeout(format!(
                "the function did not answer within {wait} s; execution {id} is still {}",
                execution.status()
            )))
        }
        (_, _) if execution.error_type() == Some("TIMEOUT") => Err(Error::GatewayTimeout(format!(
            "the function timed out after {timeout_ms} ms (execution {id})"
        ))),
        (status, _) => Err(Error::BadGateway(format!(
            "the function failed: execution {id} is {status} with error {}",
            execution.error_type().unwrap_or("unknown")
        ))),
    }
    .unwrap_or_else(IntoResponse::into_response);
    if let Ok(value) = HeaderValue::from_str(&id.to_string()) {
        response.headers_mut().insert(EXECUTION_ID.clone(), value);
    }
    Ok(response)
}

/// Spends one request of the client's allowance on a public route.
fn take_public_request(
    dispatch: &Dispatch,
    route: &Route,
    client: Option<std::net::IpAddr>,
) -> Result<()> {
    let limiter = dispatch.limiter(route);
    limiter
        .per_client
        .take(&client_addr::rate_key(client))
        .map_err(|wait| {
            let retry_after_secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            Error::RateLimited {
                detail: format!(
                    "too many requests to this route from your address ({} per second, bursts of {}); retry after {retry_after_secs} s",
                    route.rate_limit_per_sec, route.rate_limit_burst
                ),
                retry_after_secs,
            }
        })
}

/// The user a public route runs as: its owner, while they are enabled.
async fn owner(state: &AppState, route: &Route) -> Result<Caller> {
    let gone = || {
        Error::NotConfigured(
            "this route's owner no longer exists or is disabled: an admin must save the route again"
                .to_owned(),
        )
    };
    let owner_id = route.owner_id.ok_or_else(gone)?;
    let user = sqlx::query!(
        r#"
        select u.id, u.email, u.role as "role: Role",
               array(select m.group_id from group_members m where m.user_id = u.id) as "groups!"
        from users u
        where u.id = $1 and not u.disabled
        "#,
        owner_id
    )
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(gone)?;
    Ok(Caller {
        user_id: user.id,
        email: user.email,
        role: user.role,
        groups: Arc::new(user.groups),
        credential: Credential::PublicRoute {
            function_id: route.function_id,
        },
        source_address: None,
    })
}

/// The input of the run: the request envelope.
fn input(parts: &Parts, route: &Route, path: String, bytes: &[u8]) -> Result<Box<RawValue>> {
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    let (body, is_base64_encoded) =
        envelope::body(content_type, bytes).map_err(|BadBody(why)| Error::BadRequest(why))?;
    let input = RequestInput {
        method: parts.method.to_string(),
        path,
        query: envelope::query(&parts.uri),
        raw_query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: envelope::headers(
            &parts.headers,
            &route.forward_headers,
            route.public,
            SESSION_COOKIES,
        ),
        body,
        is_base64_encoded,
    };
    let json = serde_json::to_string(&input).map_err(anyhow::Error::from)?;
    Ok(RawValue::from_string(json).map_err(anyhow::Error::from)?)
}

/// The response for a SUCCEEDED run's output.
fn answer(id: Uuid, output: Option<&RawValue>) -> Result<Response> {
    let output: serde_json::Value = output
        .map(|raw| serde_json::from_str(raw.get()))
        .transpose()
        .map_err(anyhow::Error::from)?
        .unwrap_or_default();
    let Answer {
        status,
        headers,
        body,
    } = envelope::answer(&output, SESSION_COOKIES).map_err(|envelope::BadEnvelope(why)| {
        Error::BadGateway(format!(
            "the function's response cannot be sent (execution {id}): {why}"
        ))
    })?;
    let mut response = Response::new(axum::body::Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}
