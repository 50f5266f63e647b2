//! The OpenAPI 3.1 document of the API, built from the same
//! `#[utoipa::path]` attributes that register the routes (utoipa-axum's
//! `OpenApiRouter` + `routes!`), so a route cannot exist without its
//! description: see docs/api.md. Served at `GET /openapi.json`, with an
//! interactive reference at `GET /docs` whose Swagger UI assets come from
//! the `swagger-ui-dist` crate and are served by Plat itself (no CDN).
//!
//! What the attributes leave out, because it holds for many routes at once,
//! is added here when the document is assembled: the security requirements
//! (from which router a route is in, not from a list), the errors of the
//! authentication layer (401, 403, 429) and of the database (500, 503), the
//! `application/problem+json` body of every error, and the `X-Request-Id`
//! header.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use tower::ServiceExt as _;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{Components, Content, Object, OpenApi, Ref, RefOr, Type};
use utoipa::{Modify, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{Error, Result};
use crate::extract::Path;
use crate::AppState;

/// The router every route module returns: axum routes together with their
/// OpenAPI operations.
pub type ApiRouter = OpenApiRouter<AppState>;

/// The problem `type`, `title`, `status` and `detail` of every error.
pub const PROBLEM_JSON: &str = "application/problem+json";
/// Where the reference page loads the document from.
const DOCUMENT_PATH: &str = "/openapi.json";
/// The Swagger UI files `/docs/{asset}` serves, from `swagger-ui-dist`.
const ASSETS: &[&str] = &[
    "swagger-ui.css",
    "swagger-ui-bundle.js",
    "swagger-ui.css.map",
    "swagger-ui-bundle.js.map",
];

/// The execution config as functions and versions show it (a stand-in for
/// `plat_common::ExecutionConfig`, which does not depend on utoipa).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct ExecutionConfig {
    /// Wall-clock limit of one run.
    timeout_ms: u32,
    /// Cap on the module's linear memory.
    memory_limit_mb: u32,
    /// The function's own environment variables (its environment's join
    /// them at a run). Only admins read the values: for anyone else each
    /// value is `"***"`, so the names show but the values do not.
    environment_variables: std::collections::BTreeMap<String, String>,
    /// Most runs of this function RUNNING at once across all executors;
    /// absent: no limit. Runs over it wait QUEUED, in order.
    #[schema(minimum = 1)]
    max_concurrency: Option<u32>,
    /// Runs again after a `HANDLER_ERROR` or a `TIMEOUT`; absent: never.
    retry: Option<RetryPolicy>,
}

/// `executionConfig.retry` (a stand-in for `plat_common::RetryPolicy`). A
/// failed run runs again after `backoffMs * backoffMultiplier^(n-1)` ms (n:
/// the attempt that failed; at most an hour, plus up to 25% jitter); each
/// run sees its attempt in `PLAT_EXECUTION_ATTEMPT`. An execution that fails
/// its last attempt is a dead letter (`GET /executions?deadLetter=true`).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct RetryPolicy {
    /// Most runs in all, the first included.
    #[schema(minimum = 1, maximum = 10)]
    max_attempts: u32,
    /// Wait before the second run (default 1000).
    #[schema(minimum = 0, maximum = 3600000)]
    backoff_ms: u32,
    /// Each further wait is this many times the one before (default 2).
    #[schema(minimum = 1, maximum = 10)]
    backoff_multiplier: f64,
}

/// The base of the document: what no route attribute says.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Plat API",
        description = "Register Rust and TypeScript functions, which Plat compiles to WebAssembly, run them and read their history. Every error is `application/problem+json` (RFC 9457). See the README's \"HTTP API\" section and docs/security.md.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(crate::error::Problem, ExecutionConfig, RetryPolicy)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "functions", description = "Register, change, search and delete functions"),
        (name = "versions", description = "A function's versions: rollback and deprecation"),
        (name = "executions", description = "Run functions and read their history"),
        (name = "schedules", description = "Run a function at the ticks of a cron expression"),
        (name = "stats", description = "How a function behaved over time"),
        (name = "routes", description = "A function's HTTP route: `/run/{name}` and an optional path prefix (the requests to routes are not in this document: docs/api.md)"),
        (name = "auth", description = "Browser sessions"),
        (name = "users", description = "Users (admins manage them)"),
        (name = "groups", description = "Groups of users, for access lists"),
        (name = "api-keys", description = "API keys"),
        (name = "environments", description = "Shared, encrypted environment variables"),
        (name = "webhooks", description = "Completion webhooks: signing secrets and deliveries"),
        (name = "operations", description = "Audit log, queues, metrics, health"),
        (name = "meta", description = "This document and its reference page"),
    )
)]
struct Base;

/// The serialised document, shared by every request for it.
#[derive(Clone)]
pub struct Document(Bytes);

/// Builds the document from the authenticated routes' operations and the
/// public ones'. Panics only on a programming error (the document always
/// serialises).
pub fn document(mut secured: OpenApi, mut public: OpenApi) -> Document {
    Completion::Secured.modify(&mut secured);
    Completion::Public.modify(&mut public);
    // Merging adds the paths and schemas the base lacks, and a path's
    // operations one method at a time (a path can be public for one method
    // and authenticated for another).
    let mut document = <Base as utoipa::OpenApi>::openapi();
    document.merge(secured);
    document.merge(public);
    Document(Bytes::from(
        serde_json::to_vec(&document).expect("the document serialises"),
    ))
}

/// Completes every operation of one router's document with what holds for
/// all of its routes: their security, the errors every route of the kind
/// can answer, the problem body of every error and the request id header of
/// every response. Applied to each router's document before they are
/// merged, since which router a route is in says whether it is public.
enum Completion {
    /// Behind the authentication layer (`auth::authenticate`).
    Secured,
    /// Asks for no credentials and checks none.
    Public,
}

impl Modify for Completion {
    fn modify(&self, openapi: &mut OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for (changes, operation) in operations(item) {
                self.complete(operation, changes);
            }
        }
    }
}

/// The operations of a path item, each with whether it changes something
/// (everything but `GET`, `HEAD` and `OPTIONS`: what needs a CSRF token).
fn operations(item: &mut PathItem) -> impl Iterator<Item = (bool, &mut Operation)> {
    [
        (false, &mut item.get),
        (true, &mut item.put),
        (true, &mut item.post),
        (true, &mut item.delete),
        (true, &mut item.patch),
        (false, &mut item.head),
        (false, &mut item.options),
    ]
    .into_iter()
    .filter_map(|(changes, operation)| operation.as_mut().map(|operation| (changes, operation)))
}

impl Completion {
    fn complete(&self, operation: &mut Operation, changes: bool) {
        let responses = &mut operation.responses.responses;
        if matches!(self, Self::Secured) {
            for (status, description) in authenticated_errors(changes) {
                responses
                    .entry(status.to_owned())
                    .or_insert_with(|| utoipa::openapi::Response::new(description).into());
            }
        }
        for (status, response) in responses.iter_mut() {
            // Every response is written inline; a shared one (`$ref`) would
            // be completed where it is declared.
            let RefOr::T(response) = response else {
                continue;
            };
            if (status.starts_with('4') || status.starts_with('5')) && response.content.is_empty() {
                response.content.insert(
                    PROBLEM_JSON.to_owned(),
                    Content::new(Some(Ref::from_schema_name("Problem"))).into(),
                );
            }
            response.headers.insert(
                "X-Request-Id".to_owned(),
                response_header(
                    Type::String,
                    "The request's id: the client's `X-Request-Id` if it sent a valid one (1 to 128 visible ASCII characters), else a new UUID. Logs, traces and the executions it queued carry it.",
                ),
            );
            match status.as_str() {
                "401" => {
                    response.headers.insert(
                        "WWW-Authenticate".to_owned(),
                        response_header(Type::String, "`Bearer realm=\"plat\"`"),
                    );
                }
                "429" | "503" => {
                    response.headers.insert(
                        "Retry-After".to_owned(),
                        response_header(Type::Integer, "Seconds to wait before retrying."),
                    );
                }
                _ => {}
            }
        }
        const NO_SCOPES: [&str; 0] = [];
        operation.security = Some(match self {
            // Explicitly none: no credentials are asked for or checked.
            Self::Public => Vec::new(),
            Self::Secured if changes => vec![
                SecurityRequirement::new("apiKey", NO_SCOPES),
                SecurityRequirement::new("session", NO_SCOPES).add("csrf", NO_SCOPES),
            ],
            Self::Secured => vec![
                SecurityRequirement::new("apiKey", NO_SCOPES),
                SecurityRequirement::new("session", NO_SCOPES),
            ],
        });
    }
}

/// A response header of type `schema_type`.
fn response_header(schema_type: Type, description: &str) -> RefOr<Header> {
    HeaderBuilder::new()
        .schema(Some(Object::with_type(schema_type)))
        .description(Some(description))
        .build()
        .into()
}

/// The errors the authentication layer and the database add to every
/// authenticated route.
fn authenticated_errors(changes: bool) -> [(&'static str, &'static str); 5] {
    [
        (
            "401",
            "No credentials, or an API key or session that is unknown, expired, revoked or whose user is disabled",
        ),
        (
            "403",
            if changes {
                "The caller's role may not do this, or a session cookie came without a matching `X-CSRF-Token`"
            } else {
                "The caller's role may not do this"
            },
        ),
        (
            "429",
            "The user's rate limit (all their keys and sessions together) is spent; see `Retry-After`",
        ),
        (
            "500",
            "An unexpected error; it was logged and the body says no more",
        ),
        (
            "503",
            "The database is unavailable (retry after `Retry-After`), or a feature is not configured",
        ),
    ]
}

/// The ways to authenticate, which the operations' `security` name: the
/// base document's modifier (`#[openapi(modifiers(...))]`).
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Components::default);
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key: `Authorization: Bearer plat_...` (POST /api-keys; the first admin's is in `.plat/admin-key`).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::session_cookie::SECURE_NAME.to_owned(),
                format!(
                    "The browser session cookie that `POST /auth/login` sets (`{}` instead where the operator turned `Secure` off for plain HTTP).",
                    crate::session_cookie::PLAIN_NAME
                ),
            ))),
        );
        components.add_security_scheme(
            "csrf",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-CSRF-Token",
                "With a session cookie, every request that changes something carries the `csrfToken` from `POST /auth/login` (or `GET /me`).",
            ))),
        );
    }
}

/// The public routes of this module: the document and its reference page.
pub fn router() -> ApiRouter {
    OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .routes(routes!(reference))
        .routes(routes!(asset))
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    operation_id = "getOpenApi",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)),
)]
async fn openapi_json(Extension(document): Extension<Document>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        document.0,
    )
        .into_response()
}

/// An interactive reference of this document (Swagger UI, served by Plat).
#[utoipa::path(
    get,
    path = "/docs",
    tag = "meta",
    operation_id = "getReference",
    responses((status = 200, description = "The reference page", content_type = "text/html", body = String)),
)]
async fn reference() -> Response {
    // Plat's own page rather than the crate's: `validatorUrl: null` keeps
    // Swagger UI from asking validator.swagger.io about the document.
    let page = format!(
        r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Plat API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script>
window.onload = () => {{
  window.ui = SwaggerUIBundle({{ url: "{DOCUMENT_PATH}", dom_id: "#swagger-ui", validatorUrl: null }});
}};
</script>
</body>
</html>"##
    );
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        page,
    )
        .into_response()
}

/// A file of the reference page.
#[utoipa::path(
    get,
    path = "/docs/{asset}",
    tag = "meta",
    operation_id = "getReferenceAsset",
    params(("asset" = String, Path, description = "`swagger-ui.css`, `swagger-ui-bundle.js` or their source maps")),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/css"),
            (String = "text/javascript"),
            (String = "application/json"),
        )),
        (status = 404, description = "No such file"),
    ),
)]
async fn asset(Path(name): Path<String>) -> Result<Response> {
    if !ASSETS.contains(&name.as_str()) {
        return Err(Error::NotFound(format!("no reference page file {name:?}")));
    }
    // The crate serves its files as an axum router; it answers this one
    // request and is never part of the app, so nothing undocumented is
    // routed (the index page it would also serve is never reached).
    let files = swagger_ui_dist::generate_routes(swagger_ui_dist::ApiDefinition {
        uri_prefix: "/docs",
        api_definition: swagger_ui_dist::OpenApiSource::Uri(DOCUMENT_PATH),
        title: Some("Plat API"),
    });
    let request = Request::get(format!("/docs/{name}"))
        .body(Body::empty())
        .map_err(anyhow::Error::from)?;
    let response = files.oneshot(request).await.map_err(anyhow::Error::from)?;
    if response.status() != StatusCode::OK {
        return Err(Error::NotFound(format!("no reference page file {name:?}")));
    }
    Ok(response)
}
