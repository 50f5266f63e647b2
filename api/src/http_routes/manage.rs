//! `GET/PUT/DELETE /functions/{function}/route`: a function's HTTP route,
//! one per function and not versioned (changing it takes effect at once,
//! in every API process, since each request reads it).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderName, StatusCode};
use axum::Extension;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgExecutor;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::envelope::never_forwarded;
use super::{first_segment, ApiPaths, RUN};
use crate::auth::Caller;
use crate::error::{self, Error, Result};
use crate::extract::{Json, Path};
use crate::functions::{self, FunctionKey};
use crate::{audit, policy, AppState};

/// A public route's limit per client address unless the route sets one:
/// enough for a person or a webhook sender, not for a flood.
const DEFAULT_RATE: RateLimit = RateLimit {
    per_sec: 10.0,
    burst: 20,
};
const MAX_PREFIX_BYTES: usize = 200;
const MAX_FORWARD_HEADERS: usize = 32;

pub fn router() -> crate::openapi::ApiRouter {
    OpenApiRouter::new().routes(routes!(read, put, remove))
}

/// A public route's limit on requests from one client address (an IPv6
/// client by its /64), in each API process.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second; 0: no limit.
    #[schema(minimum = 0)]
    pub per_sec: f64,
    /// Requests at once.
    #[schema(minimum = 1)]
    pub burst: u32,
}

/// A function's HTTP route.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteView {
    function_id: Uuid,
    enabled: bool,
    /// true: anyone may call it without credentials, and it runs as
    /// `ownerId`; false: callers need an API key or session and must be
    /// allowed to run the function.
    public: bool,
    /// The prefix it also answers under, e.g. `/hooks/github`.
    path_prefix: Option<String>,
    /// The paths it answers under: `/run/{name}`, and `pathPrefix`.
    urls: Vec<String>,
    /// Applies to a public route only.
    rate_limit: RateLimit,
    /// Request headers passed to the function, lower case.
    forward_headers: Vec<String>,
    /// Who last saved it; a public route's runs are theirs (their queue
    /// quota, their history).
    owner_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// A route as stored, with its function's name.
struct RouteRow {
    function_id: Uuid,
    name: String,
    enabled: bool,
    public: bool,
    path_prefix: Option<String>,
    rate_limit_per_sec: f64,
    rate_limit_burst: i32,
    forward_headers: Vec<String>,
    owner_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<RouteRow> for RouteView {
    fn from(row: RouteRow) -> Self {
        let urls = std::iter::once(format!("/{RUN}/{}", row.name))
            .chain(row.path_prefix.clone())
            .collect();
        RouteView {
            function_id: row.function_id,
            enabled: row.enabled,
            public: row.public,
            path_prefix: row.path_prefix,
            urls,
            rate_limit: RateLimit {
                per_sec: row.rate_limit_per_sec,
                burst: u32::try_from(row.rate_limit_burst).unwrap_or(1),
            },
            forward_headers: row.forward_headers,
            owner_id: row.owner_id,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

async fn fetch(db: impl PgExecutor<'_>, function_id: Uuid) -> Result<Option<RouteView>> {
    let row = sqlx::query_as!(
        RouteRow,
        r#"
        select r.function_id, f.name, r.enabled, r.public, r.path_prefix, r.rate_limit_per_sec,
               r.rate_limit_burst, r.forward_headers, r.owner_id, r.created_at, r.updated_at
        from function_routes r join functions f on f.id = r.function_id
        where r.function_id = $1
        "#,
        function_id
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(RouteView::from))
}

fn no_route(key: &FunctionKey) -> Error {
    Error::NotFound(format!(
        "function {key} has no HTTP route; create one with PUT /functions/{key}/route"
    ))
}

#[utoipa::path(
    get,
    path = "/functions/{function}/route",
    tag = "routes",
    operation_id = "getFunctionRoute",
    params(("function" = String, Path, description = "The function's id or name")),
    responses(
        (status = 200, description = "The route", body = RouteView),
        (status = 404, description = "No such function, not accessible, or it has no route"),
    ),
)]
async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<Json<RouteView>> {
    let key = FunctionKey::parse(key);
    let function = functions::find(&state.db, &caller, &key, false).await?;
    fetch(&state.db, function.id)
        .await?
        .map(Json)
        .ok_or_else(|| no_route(&key))
}

/// The route's settings; what is left out takes its default.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RouteInput {
    /// Default true.
    enabled: Option<bool>,
    /// Default false: callers need credentials.
    public: Option<bool>,
    /// A path the route also answers under: `/` then segments of letters,
    /// digits, `-`, `.`, `_` and `~`, at most 200 bytes, unique across
    /// functions, and not starting with a segment of the API's own paths
    /// (`/functions`, `/ui`, `/run`, ...).
    #[schema(example = "/hooks/github")]
    path_prefix: Option<String>,
    /// Default 10 per second, bursts of 20; applies to public routes.
    rate_limit: Option<RateLimit>,
    /// Request headers to pass to the function (at most 32). An
    /// authenticated route may not pass `authorization` or `x-csrf-token`.
    #[schema(example = json!(["content-type", "x-github-event"]))]
    forward_headers: Option<Vec<String>>,
}

/// Creates or replaces the function's route (admins): the caller becomes
/// its owner, whose quota and history a public route's runs count in.
#[utoipa::path(
    put,
    path = "/functions/{function}/route",
    tag = "routes",
    operation_id = "putFunctionRoute",
    params(("function" = String, Path, description = "The function's id or name")),
    request_body = RouteInput,
    responses(
        (status = 200, description = "The route as saved", body = RouteView),
        (status = 400, description = "An invalid field: a prefix under the API's paths, a header that may not be passed, a rate out of range"),
        (status = 404, description = "No such function, or not accessible"),
        (status = 409, description = "Another function's route has this prefix"),
        (status = 415, description = "The body is not `application/json`"),
    ),
)]
async fn put(
    State(state): State<AppState>,
    Extension(api_paths): Extension<Arc<ApiPaths>>,
    caller: Caller,
    Path(key): Path<String>,
    Json(input): Json<RouteInput>,
) -> Result<Json<RouteView>> {
    let key = FunctionKey::parse(key);
    let mut tx = state.db.begin().await?;
    let function = functions::find(&mut *tx, &caller, &key, true).await?;
    policy::may_change_functions(&caller)?;
    let public = input.public.unwrap_or(false);
    let enabled = input.enabled.unwrap_or(true);
    let prefix = input.path_prefix.filter(|prefix| !prefix.is_empty());
    if let Some(prefix) = &prefix {
        check_prefix(prefix, &api_paths)?;
    }
    let rate = input.rate_limit.unwrap_or(DEFAULT_RATE);
    check_rate(rate)?;
    let forward_headers = forward_headers(input.forward_headers.unwrap_or_default(), public)?;
    sqlx::query!(
        r#"
        insert into function_routes (function_id, enabled, public, path_prefix, rate_limit_per_sec,
                                     rate_limit_burst, forward_headers, owner_id)
        values ($1, $2, $3, $4, $5, $6, $7, $8)
        on conflict (function_id) do update
        set enabled = excluded.enabled, public = excluded.public, path_prefix = excluded.path_prefix,
            rate_limit_per_sec = excluded.rate_limit_per_sec,
            rate_limit_burst = excluded.rate_limit_burst,
            forward_headers = excluded.forward_headers, owner_id = excluded.owner_id,
            updated_at = now()
        "#,
        function.id,
        enabled,
        public,
        prefix,
        rate.per_sec,
        i32::try_from(rate.burst).unwrap_or(i32::MAX),
        &forward_headers,
        caller.user_id,
    )
    .execute(&mut *tx)
    .await
    .map_err(error::unique("function_routes_path_prefix_key", || {
        format!(
            "another function's route already answers under {:?}; choose another pathPrefix",
            prefix.as_deref().unwrap_or_default()
        )
    }))?;
    audit::record(
        &mut tx,
        &caller,
        "function.route.update",
        ("function", function.id.to_string()),
        json!({
            "enabled": enabled,
            "public": public,
            "pathPrefix": prefix,
            "rateLimit": rate,
            "forwardHeaders": forward_headers,
        }),
    )
    .await?;
    let view = fetch(&mut *tx, function.id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the route just saved is gone"))?;
    tx.commit().await?;
    Ok(Json(view))
}

/// Removes the function's route (admins): its paths answer 404 at once.
#[utoipa::path(
    delete,
    path = "/functions/{function}/route",
    tag = "routes",
    operation_id = "deleteFunctionRoute",
    params(("function" = String, Path, description = "The function's id or name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such function, not accessible, or it has no route"),
    ),
)]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<StatusCode> {
    let key = FunctionKey::parse(key);
    let mut tx = state.db.begin().await?;
    let function = functions::find(&mut *tx, &caller, &key, true).await?;
    policy::may_change_functions(&caller)?;
    let deleted = sqlx::query!(
        "delete from function_routes where function_id = $1",
        function.id
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if deleted == 0 {
        return Err(no_route(&key));
    }
    audit::record(
        &mut tx,
        &caller,
        "function.route.delete",
        ("function", function.id.to_string()),
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A prefix is `/` and segments of URI-unreserved characters (RFC 3986
/// §2.3), so it matches the request path exactly as sent, with no
/// percent-encoding or dot segments to interpret.
fn check_prefix(prefix: &str, api_paths: &ApiPaths) -> Result<()> {
    let segments: Vec<&str> = prefix.strip_prefix('/').unwrap_or("").split('/').collect();
    let well_formed = prefix.starts_with('/')
        && prefix.len() <= MAX_PREFIX_BYTES
        && segments.iter().all(|segment| {
            !segment.is_empty()
                && *segment != "."
                && *segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        });
    if !well_formed {
        return Err(Error::BadRequest(format!(
            "`pathPrefix` must be `/` and segments of letters, digits, `-`, `.`, `_` or `~` separated by `/` (no trailing `/`), at most {MAX_PREFIX_BYTES} bytes; got {prefix:?}"
        )));
    }
    let first = first_segment(prefix);
    if api_paths.reserves(first) {
        return Err(Error::BadRequest(format!(
            "`pathPrefix` {prefix:?} is under /{first}, one of the API's own paths; a route may not answer there"
        )));
    }
    Ok(())
}

fn check_rate(rate: RateLimit) -> Result<()> {
    if !rate.per_sec.is_finite() || rate.per_sec < 0.0 || rate.burst == 0 || rate.burst > 1_000_000
    {
        return Err(Error::BadRequest(format!(
            "`rateLimit` needs `perSec` of 0 (no limit) or more and `burst` from 1 to 1000000; got {} and {}",
            rate.per_sec, rate.burst
        )));
    }
    Ok(())
}

/// The header names, lower case, sorted and without repeats.
fn forward_headers(names: Vec<String>, public: bool) -> Result<Vec<String>> {
    if names.len() > MAX_FORWARD_HEADERS {
        return Err(Error::BadRequest(format!(
            "`forwardHeaders` may name at most {MAX_FORWARD_HEADERS} headers, got {}",
            names.len()
        )));
    }
    let mut checked = Vec::with_capacity(names.len());
    for name in names {
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            Error::BadRequest(format!("`forwardHeaders`: {name:?} is not a header name"))
        })?;
        if never_forwarded(header.as_str(), public) {
            return Err(Error::BadRequest(format!(
                "`forwardHeaders`: an authenticated route never passes `{header}`, the caller's Plat credentials, to the function"
            )));
        }
        checked.push(header.as_str().to_owned());
    }
    checked.sort();
    checked.dedup();
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use utoipa::openapi::OpenApi;

    use super::*;

    fn api_paths() -> Arc<ApiPaths> {
        let mut document = OpenApi::default();
        document
            .paths
            .paths
            .insert("/functions/{function}".to_owned(), Default::default());
        ApiPaths::of(&[&document])
    }

    #[test]
    fn prefixes_are_plain_segments_outside_the_api_paths() {
        let paths = api_paths();
        for good in ["/hooks", "/hooks/github", "/v1.2/a_b~c-d", "/functionsx"] {
            assert!(check_prefix(good, &paths).is_ok(), "{good}");
        }
        for bad in [
            "hooks",
            "/",
            "/hooks/",
            "//x",
            "/a/../b",
            "/a%20b",
            "/run",
            "/run/x",
            "/functions",
            "/FUNCTIONS/x",
        ] {
            assert!(check_prefix(bad, &paths).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_authenticated_route_never_passes_credentials() {
        assert!(forward_headers(vec!["Authorization".to_owned()], false).is_err());
        assert_eq!(
            forward_headers(
                vec![
                    "X-B".to_owned(),
                    "authorization".to_owned(),
                    "x-b".to_owned()
                ],
                true
            )
            .unwrap(),
            ["authorization", "x-b"]
        );
    }
}
