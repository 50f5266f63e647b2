//! The OpenAPI document describes the API exactly: it is valid 3.1 with an
//! id, responses and security on every operation; every operation it lists
//! reaches a real handler; and no code registers a route the document does
//! not describe (docs/api.md explains how the three fit together).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use plat_tests::{TestApp, Workers, MIGRATOR};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::PgPool;

/// The routes that need no credentials; everything else must ask for them.
const PUBLIC: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("post", "/auth/login"),
    ("post", "/auth/password-reset"),
    ("get", "/openapi.json"),
    ("get", "/docs"),
    ("get", "/docs/{asset}"),
    ("get", "/ui"),
    ("get", "/ui/{asset}"),
];

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

async fn document(app: &TestApp) -> Value {
    let response = reqwest::get(format!("{}/openapi.json", app.base_url))
        .await
        .expect("request sent");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "the document is JSON"
    );
    response.json().await.expect("the document is valid JSON")
}

/// Every (method, path template, operation) of the document.
fn operations(document: &Value) -> Vec<(String, String, Value)> {
    let paths = document["paths"].as_object().expect("paths");
    let mut all = Vec::new();
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("a path item") {
            if METHODS.contains(&method.as_str()) {
                all.push((method.clone(), path.clone(), operation.clone()));
            }
        }
    }
    all
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_document_is_openapi_3_1_and_every_operation_says_its_id_responses_and_security(
    pool: PgPool,
) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;

    let document = document(&app).await;

    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "openapi: {}",
        document["openapi"]
    );
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["apiKey"]["scheme"], "bearer");
    assert_eq!(schemes["session"]["in"], "cookie");
    assert_eq!(schemes["csrf"]["in"], "header");
    let problem = &document["components"]["schemas"]["Problem"];
    for field in ["type", "title", "status", "detail"] {
        assert!(
            problem["properties"][field].is_object(),
            "Problem has {field}"
        );
    }
    let operations = operations(&document);
    assert!(operations.len() >= 40, "{} operations", operations.len());
    let mut ids = BTreeSet::new();
    let mut public = BTreeSet::new();
    for (method, path, operation) in &operations {
        let name = format!("{} {path}", method.to_uppercase());
        let id = operation["operationId"].as_str().expect(&name);
        assert!(ids.insert(id.to_owned()), "{name}: operationId {id} twice");
        let responses = operation["responses"].as_object().expect(&name);
        assert!(!responses.is_empty(), "{name} has no responses");
        assert!(
            responses.keys().any(|status| status.starts_with('2')),
            "{name} has no success response"
        );
        for (status, response) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                assert!(
                    response["content"]["application/problem+json"]["schema"]["$ref"]
                        == "#/components/schemas/Problem",
                    "{name} {status} is not a problem+json: {response}"
                );
            }
        }
        let security = operation["security"].as_array().expect(&name);
        if security.is_empty() {
            public.insert((method.clone(), path.clone()));
        } else {
            assert!(responses.contains_key("401"), "{name} lacks its 401");
            assert!(
                security.iter().any(|s| s.get("apiKey").is_some()),
                "{name}: {security:?}"
            );
        }
    }
    let expected: BTreeSet<_> = PUBLIC
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(public, expected, "the public operations");
}

/// A path template with sample values: ids that exist nowhere, so handlers
/// answer their own 404s.
fn sample(path: &str) -> String {
    path.replace("{function}", "0191a1a1-0000-7000-8000-000000000001")
        .replace("{id}", "0191a1a1-0000-7000-8000-000000000002")
        .replace("{user_id}", "0191a1a1-0000-7000-8000-000000000003")
        .replace("{version}", "1")
        .replace("{asset}", "swagger-ui.css")
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn every_documented_operation_reaches_a_handler(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    let document = document(&app).await;
    // What the router answers when no route matches, for comparison.
    let unrouted = app.get("/no-such-route").await;
    let fallback = unrouted.problem(StatusCode::NOT_FOUND).to_owned();
    assert!(fallback.starts_with("no route for"), "{fallback}");

    for (method, path, _) in operations(&document) {
        let url = format!("{}{}", app.base_url, sample(&path));
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let mut request = app.client.request(method.clone(), &url);
        if method == Method::POST || method == Method::PUT {
            request = request
                .header("content-type", "application/json")
                .body("{}");
        }
        if path.ends_with("/execute") {
            request = request.query(&[("wait", "0")]);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.text().await.unwrap_or_default();

        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: the router does not know this method: {body}"
        );
        if status == StatusCode::NOT_FOUND {
            let problem: Value = serde_json::from_str(&body).expect("a problem");
            let detail = problem["detail"].as_str().unwrap_or_default();
            assert!(
                !detail.starts_with("no route for"),
                "{method} {path}: no route: {detail}"
            );
        }
        assert!(
            !status.is_server_error(),
            "{method} {path}: {status} {body}"
        );
        if status.is_client_error() {
            assert_eq!(
                content_type, "application/problem+json",
                "{method} {path}: {status} {body}"
            );
        }
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_reference_page_is_served_by_plat_without_a_cdn(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    let anonymous = reqwest::Client::new();

    let page = anonymous
        .get(format!("{}/docs", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    let script = anonymous
        .get(format!("{}/docs/swagger-ui-bundle.js", app.base_url))
        .send()
        .await
        .unwrap();
    let missing = app.get("/docs/evil.js").await;

    assert!(html.contains("/openapi.json"), "{html}");
    for attribute in ["src=\"", "href=\""] {
        for (at, _) in html.match_indices(attribute) {
            let target = &html[at + attribute.len()..];
            assert!(
                target.starts_with('/') && !target.starts_with("//"),
                "an outside asset: {target:.60}"
            );
        }
    }
    assert_eq!(script.status(), StatusCode::OK);
    assert!(script.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("javascript"));
    assert!(script.text().await.unwrap().contains("SwaggerUIBundle"));
    missing.problem(StatusCode::NOT_FOUND);
}

/// Where routes may be registered: only `api/src/lib.rs` assembles the app,
/// from `OpenApiRouter`s whose routes come from `routes!` (and so from
/// `#[utoipa::path]`). Anywhere else, any of these would add a route the
/// document does not describe.
const FORBIDDEN_OUTSIDE_ASSEMBLY: &[&str] = &[
    ".route(",
    ".route_service(",
    ".nest(",
    ".nest_service(",
    ".fallback(",
    ".fallback_service(",
    "axum::routing",
    "axum::Router",
    "Router::new(",
    "Router<",
    "OpenApiRouter::from(",
    "MethodRouter",
];
/// In the assembly itself, routes are only merged from documented routers.
const FORBIDDEN_IN_ASSEMBLY: &[&str] = &[
    ".route(",
    ".route_service(",
    ".nest(",
    ".nest_service(",
    "axum::routing",
    "Router::new(",
    "OpenApiRouter::from(",
    "MethodRouter",
];

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("api/src is readable") {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// `needle` in `code` as its own token: `Router::new(` does not count inside
/// `OpenApiRouter::new(`.
fn uses(code: &str, needle: &str) -> bool {
    code.match_indices(needle).any(|(at, _)| {
        !needle.starts_with(|c: char| c.is_alphabetic())
            || !code[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// The undocumented route registrations in one file's code.
fn violations(relative: &str, source: &str) -> Vec<String> {
    let forbidden = if relative == "lib.rs" {
        FORBIDDEN_IN_ASSEMBLY
    } else {
        FORBIDDEN_OUTSIDE_ASSEMBLY
    };
    let mut found = Vec::new();
    for (number, line) in source.lines().enumerate() {
        // Comments may talk about routes.
        let code = line.split("//").next().unwrap_or_default();
        for needle in forbidden {
            if uses(code, needle) {
                found.push(format!(
                    "api/src/{relative}:{}: `{needle}` in `{}`",
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    found
}

#[test]
fn no_route_is_registered_outside_the_documented_routers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../api/src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() > 10, "found the API's sources: {files:?}");

    let mut found = Vec::new();
    for file in &files {
        let relative = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let source = std::fs::read_to_string(file).unwrap();
        found.extend(violations(&relative, &source));
    }

    assert!(
        found.is_empty(),
        "routes outside the documented routers (register them with `routes!` and `#[utoipa::path]`, see docs/api.md):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_route_scan_catches_an_undocumented_route() {
    let module = r#"
        pub fn router() -> crate::openapi::ApiRouter {
            OpenApiRouter::new().routes(routes!(list)) // .route( in a comment is fine
                .route("/secret", axum::routing::get(secret))
        }
    "#;
    let assembly = "let app = OpenApiRouter::new().merge(a::router()).split_for_parts().0.route(\"/x\", get(x));";

    assert_eq!(
        violations("groups.rs", module).len(),
        2,
        "{:?}",
        violations("groups.rs", module)
    );
    assert_eq!(violations("lib.rs", assembly).len(), 1);
    assert!(violations("groups.rs", "OpenApiRouter::new().routes(routes!(a, b))").is_empty());
}
