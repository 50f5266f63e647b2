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
use serde_json::{json, Map, Value};
use tower::ServiceExt as _;
use utoipa::openapi::OpenApi;
use utoipa::ToSchema;
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
}

/// The base of the document: what no route attribute says.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Plat API",
        description = "Register Rust and TypeScript functions, which Plat compiles to WebAssembly, run them and read their history. Every error is `application/problem+json` (RFC 9457). See the README's \"HTTP API\" section and docs/security.md.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(crate::error::Problem, ExecutionConfig)),
    tags(
        (name = "functions", description = "Register, change, search and delete functions"),
        (name = "versions", description = "A function's versions: rollback and deprecation"),
        (name = "executions", description = "Run functions and read their history"),
        (name = "stats", description = "How a function behaved over time"),
        (name = "auth", description = "Browser sessions"),
        (name = "users", description = "Users (admins manage them)"),
        (name = "groups", description = "Groups of users, for access lists"),
        (name = "api-keys", description = "API keys"),
        (name = "environments", description = "Shared, encrypted environment variables"),
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
pub fn document(secured: OpenApi, public: OpenApi) -> Document {
    let mut base = <Base as utoipa::OpenApi>::openapi();
    base.merge(secured);
    let secured = to_value(&base);
    let mut public_doc = <Base as utoipa::OpenApi>::openapi();
    public_doc.merge(public);
    let public = to_value(&public_doc);

    let mut document = secured;
    let paths = document["paths"]
        .as_object_mut()
        .expect("the document has paths");
    for item in paths.values_mut() {
        for (method, operation) in operations(item) {
            complete(method, operation, true);
        }
    }
    if let Some(public_paths) = public["paths"].as_object() {
        for (path, public_item) in public_paths {
            let mut public_item = public_item.clone();
            for (method, operation) in operations(&mut public_item) {
                complete(method, operation, false);
            }
            let item = paths.entry(path.clone()).or_insert_with(|| json!({}));
            for (method, operation) in public_item.as_object().into_iter().flatten() {
                item[method] = operation.clone();
            }
        }
    }
    if let Some(schemas) = public["components"]["schemas"].as_object() {
        let all = document["components"]["schemas"]
            .as_object_mut()
            .expect("the base declares schemas");
        for (name, schema) in schemas {
            all.entry(name.clone()).or_insert_with(|| schema.clone());
        }
    }
    document["components"]["securitySchemes"] = security_schemes();
    Document(Bytes::from(
        serde_json::to_vec(&document).expect("the document serialises"),
    ))
}

fn to_value(openapi: &OpenApi) -> Value {
    serde_json::to_value(openapi).expect("the document serialises")
}

/// The operations of a path item, with their methods.
fn operations(item: &mut Value) -> impl Iterator<Item = (&str, &mut Value)> {
    const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];
    item.as_object_mut()
        .into_iter()
        .flat_map(|map| map.iter_mut())
        .filter_map(|(method, operation)| {
            METHODS
                .iter()
                .find(|m| **m == method.as_str())
                .map(|m| (*m, operation))
        })
}

/// Adds to one operation what holds for all: its security, the errors every
/// route of its kind can answer, the problem body of every error and the
/// request id header of every response.
fn complete(method: &str, operation: &mut Value, secured: bool) {
    let changes = !matches!(method, "get" | "head" | "options");
    let responses = operation["responses"]
        .as_object_mut()
        .expect("every operation declares its responses");
    let mut common: Vec<(&str, &str)> = Vec::new();
    if secured {
        operation_security(&mut common, changes);
    }
    for (status, description) in common {
        responses
            .entry(status)
            .or_insert_with(|| json!({ "description": description }));
    }
    for (status, response) in responses.iter_mut() {
        let Some(response) = response.as_object_mut() else {
            continue;
        };
        if status.starts_with('4') || status.starts_with('5') {
            response.entry("content").or_insert_with(|| {
                json!({ PROBLEM_JSON: { "schema": { "$ref": "#/components/schemas/Problem" } } })
            });
        }
        let headers = response
            .entry("headers")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("headers are an object");
        headers.insert(
            "X-Request-Id".to_owned(),
            json!({
                "description": "The request's id: the client's `X-Request-Id` if it sent a valid one (1 to 128 visible ASCII characters), else a new UUID. Logs, traces and the executions it queued carry it.",
                "schema": { "type": "string" }
            }),
        );
        match status.as_str() {
            "401" => {
                headers.insert(
                    "WWW-Authenticate".to_owned(),
                    json!({ "schema": { "type": "string" }, "description": "`Bearer realm=\"plat\"`" }),
                );
            }
            "429" | "503" => {
                headers.insert(
                    "Retry-After".to_owned(),
                    json!({ "schema": { "type": "integer" }, "description": "Seconds to wait before retrying." }),
                );
            }
            _ => {}
        }
    }
    let operation = operation
        .as_object_mut()
        .expect("an operation is an object");
    let security = if !secured {
        // Explicitly none: no credentials are asked for or checked.
        json!([])
    } else if changes {
        json!([{ "apiKey": [] }, { "session": [], "csrf": [] }])
    } else {
        json!([{ "apiKey": [] }, { "session": [] }])
    };
    operation.insert("security".to_owned(), security);
}

/// The errors the authentication layer and the database add to every
/// authenticated route.
fn operation_security(common: &mut Vec<(&str, &str)>, changes: bool) {
    common.push((
        "401",
        "No credentials, or an API key or session that is unknown, expired, revoked or whose user is disabled",
    ));
    common.push((
        "403",
        if changes {
            "The caller's role may not do this, or a session cookie came without a matching `X-CSRF-Token`"
        } else {
            "The caller's role may not do this"
        },
    ));
    common.push((
        "429",
        "The user's rate limit (all their keys and sessions together) is spent; see `Retry-After`",
    ));
    common.push((
        "500",
        "An unexpected error; it was logged and the body says no more",
    ));
    common.push((
        "503",
        "The database is unavailable (retry after `Retry-After`), or a feature is not configured",
    ));
}

fn security_schemes() -> Value {
    let mut schemes = Map::new();
    schemes.insert(
        "apiKey".to_owned(),
        json!({
            "type": "http",
            "scheme": "bearer",
            "description": "An API key: `Authorization: Bearer plat_...` (POST /api-keys; the first admin's is in `.plat/admin-key`)."
        }),
    );
    schemes.insert(
        "session".to_owned(),
        json!({
            "type": "apiKey",
            "in": "cookie",
            "name": crate::session_cookie::SECURE_NAME,
            "description": format!(
                "The browser session cookie that `POST /auth/login` sets (`{}` instead where the operator turned `Secure` off for plain HTTP).",
                crate::session_cookie::PLAIN_NAME
            )
        }),
    );
    schemes.insert(
        "csrf".to_owned(),
        json!({
            "type": "apiKey",
            "in": "header",
            "name": "X-CSRF-Token",
            "description": "With a session cookie, every request that changes something carries the `csrfToken` from `POST /auth/login` (or `GET /me`)."
        }),
    );
    Value::Object(schemes)
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
