//! The core path through the real API, workers, rustc and wasmtime:
//! register → compile → READY → execute → history.

use plat_tests::{executor_config, TestApp, Workers, HELLO, MIGRATOR};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_function_goes_from_source_to_ready_to_a_recorded_execution(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    // Registering answers at once, before any build.
    let created = app
        .request(
            Method::POST,
            "/functions",
            Some(json!({
                "name": "hello", "language": "rust", "source": HELLO,
                "description": "greets", "tags": ["demo"],
            })),
        )
        .await;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
    assert_eq!(created.body["status"], "PENDING");
    assert_eq!(created.body["version"], 1);
    assert_eq!(created.body["activeVersion"], serde_json::Value::Null);
    assert_eq!(
        created.body["executionConfig"],
        json!({ "timeoutMs": 10000, "memoryLimitMb": 128, "environmentVariables": {} })
    );
    let id = created.body["id"].as_str().unwrap().to_owned();

    let function = app.wait_for_build(&id, 1).await;
    assert_eq!(function["status"], "READY", "{function}");
    assert_eq!(function["activeVersion"], 1);
    assert_eq!(function["compileError"], serde_json::Value::Null);

    let run = app.execute(&id, json!({ "name": "Ada" }), 30).await;
    assert_eq!(run.status, StatusCode::OK, "{}", run.body);
    let execution = &run.body;
    assert_eq!(execution["status"], "SUCCEEDED");
    assert_eq!(execution["output"], json!({ "greeting": "Hello, Ada!" }));
    assert_eq!(execution["input"], json!({ "name": "Ada" }));
    assert_eq!(execution["error"], serde_json::Value::Null);
    assert_eq!(execution["logs"], "greeting \"Ada\"\n");
    assert_eq!(execution["functionVersion"], 1);
    assert_eq!(execution["attempts"], 1);
    assert!(execution["durationMs"].as_i64().is_some());
    assert!(execution["startedAt"].is_string() && execution["finishedAt"].is_string());
    let execution_id = execution["id"].as_str().unwrap();
    assert_eq!(
        run.headers["location"],
        format!("/executions/{execution_id}").as_str()
    );

    let history = app.get(&format!("/functions/{id}/executions")).await;
    assert_eq!(history.status, StatusCode::OK);
    assert_eq!(history.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(history.body["items"][0]["id"], execution_id);
    let single = app.get(&format!("/executions/{execution_id}")).await;
    assert_eq!(single.body, run.body);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_function_is_addressable_by_its_name(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = app.ready_function("by-name", HELLO, json!({})).await;

    let function = app.get("/functions/by-name").await;
    let run = app.execute("by-name", json!({ "name": "Bo" }), 30).await;

    assert_eq!(function.body["id"], id.as_str());
    assert_eq!(run.body["output"]["greeting"], "Hello, Bo!");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn typed_handlers_get_their_input_deserialized_and_output_serialized(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let source = r#"
use serde::{Deserialize, Serialize};
#[derive(Deserialize)]
pub struct Order { items: Vec<u32>, discount: Option<u32> }
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Total { total: u32, item_count: usize }
#[derive(Debug)]
pub struct Refused(String);
impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "refused: {}", self.0) }
}
pub fn handler(order: Order) -> Result<Total, Refused> {
    if order.items.is_empty() { return Err(Refused("empty order".into())); }
    let sum: u32 = order.items.iter().sum();
    Ok(Total { total: sum - order.discount.unwrap_or(0), item_count: order.items.len() })
}
"#;
    let id = app.ready_function("typed", source, json!({})).await;

    let ok = app
        .execute(&id, json!({ "items": [3, 4, 5], "discount": 2 }), 30)
        .await;
    let refused = app.execute(&id, json!({ "items": [] }), 30).await;
    let wrong_shape = app.execute(&id, json!({ "items": "three" }), 30).await;

    assert_eq!(ok.body["output"], json!({ "total": 10, "itemCount": 3 }));
    assert_eq!(refused.body["status"], "FAILED");
    assert_eq!(
        refused.body["error"],
        json!({ "type": "HANDLER_ERROR", "message": "refused: empty order" })
    );
    assert_eq!(wrong_shape.body["status"], "FAILED");
    assert_eq!(wrong_shape.body["error"]["type"], "INVALID_INPUT");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_handler_err_is_a_failed_execution_with_its_message(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let source = r#"
pub fn handler(input: serde_json::Value) -> Result<serde_json::Value, String> {
    eprintln!("about to fail");
    Err(format!("cannot handle {}", input))
}
"#;
    let id = app.ready_function("failing", source, json!({})).await;

    let run = app.execute(&id, json!(42), 30).await;

    // A function failure is still a completed call: 200 with status FAILED.
    assert_eq!(run.status, StatusCode::OK);
    assert_eq!(run.body["status"], "FAILED");
    assert_eq!(
        run.body["error"],
        json!({ "type": "HANDLER_ERROR", "message": "cannot handle 42" })
    );
    assert_eq!(run.body["logs"], "about to fail\n");
    assert_eq!(run.body["output"], serde_json::Value::Null);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_compile_error_points_at_the_line_in_the_users_source(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let source = "use serde_json::Value;\n\npub fn handler(input: Value) -> Result<Value, String> {\n    let n: u32 = \"not a number\";\n    Ok(input)\n}\n";
    let id = app.create_function("broken", source, json!({})).await;

    let function = app.wait_for_build(&id, 1).await;

    assert_eq!(function["status"], "FAILED");
    assert_eq!(function["activeVersion"], serde_json::Value::Null);
    let error = function["compileError"].as_str().unwrap();
    assert!(error.contains("mismatched types"), "{error}");
    assert!(error.contains("handler.rs:4:18"), "{error}");
    assert!(
        !error.contains("/build") && !error.contains("main.rs"),
        "{error}"
    );
    let run = app.execute(&id, json!({}), 0).await;
    assert!(run
        .problem(StatusCode::CONFLICT)
        .contains("no READY version"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn executing_before_the_build_finishes_is_a_conflict(pool: PgPool) {
    // No compiler: the function stays PENDING.
    let app = TestApp::spawn_with(pool, Workers::EXECUTOR_ONLY).await;
    let id = app.create_function("not-yet", HELLO, json!({})).await;

    let run = app.execute(&id, json!({}), 0).await;

    let detail = run.problem(StatusCode::CONFLICT);
    assert!(detail.contains("PENDING"), "{detail}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_infinite_loop_is_stopped_at_the_timeout(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let source = r#"
pub fn handler(_: serde_json::Value) -> Result<u64, String> {
    let mut i: u64 = 0;
    loop { i = std::hint::black_box(i.wrapping_add(1)); }
}
"#;
    let id = app
        .ready_function("spin", source, json!({ "timeoutMs": 300 }))
        .await;

    let run = app.execute(&id, json!(null), 30).await;

    assert_eq!(run.body["status"], "FAILED");
    assert_eq!(run.body["error"]["type"], "TIMEOUT");
    assert!(run.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("300 ms"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_memory_bomb_hits_the_memory_limit(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let source = r#"
pub fn handler(_: serde_json::Value) -> Result<usize, String> {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop { chunks.push(std::hint::black_box(vec![1u8; 1 << 20])); }
}
"#;
    let id = app
        .ready_function("bomb", source, json!({ "memoryLimitMb": 32 }))
        .await;

    let run = app.execute(&id, json!(null), 30).await;

    assert_eq!(run.body["status"], "FAILED");
    assert_eq!(
        run.body["error"],
        json!({ "type": "OUT_OF_MEMORY", "message": "memory limit of 32 MiB exceeded" })
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_function_sees_only_its_configured_environment(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let source = r#"
pub fn handler(_: serde_json::Value) -> Result<serde_json::Value, String> {
    let vars: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let file = std::fs::read_to_string("/etc/passwd").is_ok();
    Ok(serde_json::json!({ "vars": vars, "canReadFiles": file }))
}
"#;
    let id = app
        .ready_function(
            "env",
            source,
            json!({ "environmentVariables": { "GREETING": "hi" } }),
        )
        .await;

    let run = app.execute(&id, json!(null), 30).await;

    assert_eq!(
        run.body["output"],
        json!({ "vars": { "GREETING": "hi" }, "canReadFiles": false })
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn wait_zero_answers_at_once_and_the_execution_completes_later(pool: PgPool) {
    // No executor yet, so the run cannot finish before the answer.
    let mut app = TestApp::spawn_with(pool, Workers::COMPILER_ONLY).await;
    let id = app.ready_function("async", HELLO, json!({})).await;

    let queued = app.execute(&id, json!({ "name": "Cy" }), 0).await;

    assert_eq!(queued.status, StatusCode::ACCEPTED);
    assert!(
        matches!(queued.body["status"].as_str(), Some("QUEUED" | "RUNNING")),
        "{}",
        queued.body
    );
    app.start_executor(executor_config()).await;
    let finished = app
        .wait_for_execution(queued.body["id"].as_str().unwrap())
        .await;
    assert_eq!(finished["status"], "SUCCEEDED");
    assert_eq!(finished["output"]["greeting"], "Hello, Cy!");
    assert_eq!(finished["trigger"], json!({ "type": "api" }));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_new_version_takes_over_only_once_it_is_ready(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = app.ready_function("versioned", HELLO, json!({})).await;

    // Version 2 does not compile: version 1 keeps serving.
    let broken = app
        .request(
            Method::PUT,
            &format!("/functions/{id}"),
            Some(json!({ "source": "pub fn handler(" })),
        )
        .await;
    assert_eq!(broken.status, StatusCode::ACCEPTED, "{}", broken.body);
    assert_eq!(broken.body["version"], 2);
    let function = app.wait_for_build(&id, 2).await;
    assert_eq!(function["status"], "FAILED");
    assert_eq!(function["activeVersion"], 1);
    let still_v1 = app.execute(&id, json!({ "name": "Di" }), 30).await;
    assert_eq!(still_v1.body["functionVersion"], 1);
    assert_eq!(still_v1.body["output"]["greeting"], "Hello, Di!");

    // Version 3 compiles and takes over; its config came along.
    let v3 = r#"pub fn handler(input: serde_json::Value) -> Result<String, String> { Ok(format!("v3 {}", input["name"])) }"#;
    let updated = app
        .request(
            Method::PUT,
            &format!("/functions/{id}"),
            Some(json!({ "source": v3, "executionConfig": { "timeoutMs": 2000 } })),
        )
        .await;
    assert_eq!(updated.body["version"], 3);
    let function = app.wait_for_build(&id, 3).await;
    assert_eq!(function["status"], "READY");
    assert_eq!(function["activeVersion"], 3);
    assert_eq!(function["executionConfig"]["timeoutMs"], 2000);
    assert_eq!(function["executionConfig"]["memoryLimitMb"], 128);
    let v3_run = app.execute(&id, json!({ "name": "Di" }), 30).await;
    assert_eq!(v3_run.body["functionVersion"], 3);
    assert_eq!(v3_run.body["output"], json!("v3 \"Di\""));

    // Metadata alone changes in place, without a new version.
    let renamed = app
        .request(
            Method::PUT,
            &format!("/functions/{id}"),
            Some(json!({ "description": "now v3" })),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK);
    assert_eq!(renamed.body["version"], 3);
    assert_eq!(renamed.body["description"], "now v3");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn deleting_a_function_cancels_its_queue_and_keeps_its_history(pool: PgPool) {
    // No executor, so the executions stay queued.
    let app = TestApp::spawn_with(pool, Workers::COMPILER_ONLY).await;
    let id = app.ready_function("doomed", HELLO, json!({})).await;
    let queued = app.execute(&id, json!({ "name": "Ed" }), 0).await;
    let execution_id = queued.body["id"].as_str().unwrap();

    let deleted = app
        .request(Method::DELETE, &format!("/functions/{id}"), None)
        .await;

    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    app.get(&format!("/functions/{id}"))
        .await
        .problem(StatusCode::NOT_FOUND);
    app.get(&format!("/functions/{id}/executions"))
        .await
        .problem(StatusCode::NOT_FOUND);
    let execution = app.get(&format!("/executions/{execution_id}")).await;
    assert_eq!(execution.status, StatusCode::OK);
    assert_eq!(execution.body["status"], "CANCELLED");
    assert_eq!(execution.body["input"], json!({ "name": "Ed" }));
    let jobs = app.count("execution_jobs").await;
    assert_eq!(jobs, 0);
    // The name is free again.
    app.create_function("doomed", HELLO, json!({})).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn health_and_readiness_answer(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;

    assert_eq!(app.get("/healthz").await.body, json!({ "status": "ok" }));
    assert_eq!(app.get("/readyz").await.body, json!({ "status": "ready" }));
}
