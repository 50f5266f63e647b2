//! Rust functions with crates from crates.io, through the real API, compiler
//! worker (resolution, vendoring, the sandboxed set build) and executor.

use plat_tests::{TestApp, MIGRATOR};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

const FIND_NUMBERS: &str = r#"use serde::Deserialize;
#[derive(Deserialize)]
pub struct Input { text: String }
pub fn handler(input: Input) -> Result<Vec<String>, String> {
    let re = regex::Regex::new(r"[0-9]+").map_err(|e| e.to_string())?;
    Ok(re.find_iter(&input.text).map(|m| m.as_str().to_owned()).collect())
}
"#;

async fn create_with_dependencies(app: &TestApp, name: &str, source: &str) -> String {
    let reply = app
        .request(
            Method::POST,
            "/functions",
            Some(json!({
                "name": name,
                "language": "rust",
                "source": source,
                "executionConfig": {},
                "dependencies": { "regex": "1" },
            })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let id = reply.body["id"].as_str().expect("an id").to_owned();
    let function = app.wait_for_build(&id, 1).await;
    assert_eq!(function["status"], "READY", "{function}");
    id
}

async fn version(app: &TestApp, id: &str, version: i64) -> Value {
    let reply = app
        .get(&format!("/functions/{id}/versions/{version}"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_function_using_regex_builds_runs_and_keeps_its_lockfile(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = create_with_dependencies(&app, "numbers", FIND_NUMBERS).await;

    let run = app.execute(&id, json!({ "text": "a1 b22 c333" }), 60).await;
    assert_eq!(run.status, StatusCode::OK, "{}", run.body);
    assert_eq!(run.body["status"], "SUCCEEDED", "{}", run.body);
    assert_eq!(run.body["output"], json!(["1", "22", "333"]));

    let first = version(&app, &id, 1).await;
    assert_eq!(first["dependencies"], json!({ "regex": "1" }));
    let lockfile = first["lockfile"].as_str().expect("a lockfile");
    assert!(lockfile.contains("name = \"regex\""), "{lockfile}");
    assert!(lockfile.contains("checksum = \""), "{lockfile}");

    // A new source with the same dependencies keeps the lockfile.
    let reply = app
        .request(
            Method::PUT,
            &format!("/functions/{id}"),
            Some(json!({ "source": FIND_NUMBERS.replace("[0-9]+", "[0-9]") })),
        )
        .await;
    assert!(reply.status.is_success(), "{}", reply.body);
    let function = app.wait_for_build(&id, 2).await;
    assert_eq!(function["status"], "READY", "{function}");
    let second = version(&app, &id, 2).await;
    assert_eq!(second["lockfile"], first["lockfile"]);
    assert_eq!(second["dependencies"], json!({ "regex": "1" }));
    let run = app.execute(&id, json!({ "text": "a12" }), 60).await;
    assert_eq!(run.body["output"], json!(["1", "2"]), "{}", run.body);

    // The same source and dependencies elsewhere: the same module.
    let twin = create_with_dependencies(&app, "numbers-twin", FIND_NUMBERS).await;
    let twin_version = version(&app, &twin, 1).await;
    assert!(first["moduleSha256"].is_string(), "{first}");
    assert_eq!(twin_version["moduleSha256"], first["moduleSha256"]);
}
