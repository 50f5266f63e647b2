//! `Idempotency-Key` on execute, and `POST /executions/{id}/cancel` for
//! queued and running executions.

use plat_tests::{TestApp, Workers, HELLO, MIGRATOR};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

const SPINNER: &str = r#"
pub fn handler(_: serde_json::Value) -> Result<u64, String> {
    let mut i: u64 = 0;
    loop { i = std::hint::black_box(i.wrapping_add(1)); }
}
"#;

async fn execute_with_key(
    app: &TestApp,
    id: &str,
    key: &str,
    input: Value,
    wait: u32,
) -> reqwest::Response {
    app.client
        .post(format!(
            "{}/functions/{id}/execute?wait={wait}",
            app.base_url
        ))
        .header("idempotency-key", key)
        .json(&input)
        .send()
        .await
        .expect("request sent")
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_repeated_idempotency_key_returns_the_first_execution_without_running_again(
    pool: PgPool,
) {
    let app = TestApp::spawn(pool).await;
    let id = app.ready_function("once", HELLO, json!({})).await;

    let first = execute_with_key(&app, &id, "order-17", json!({ "name": "Ida" }), 30).await;
    let first_replayed = first.headers().get("idempotent-replayed").cloned();
    let first: Value = first.json().await.unwrap();
    let second = execute_with_key(&app, &id, "order-17", json!({ "name": "Ida" }), 30).await;
    let second_replayed = second.headers().get("idempotent-replayed").cloned();
    let second: Value = second.json().await.unwrap();

    assert_eq!(first["status"], "SUCCEEDED");
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["output"], first["output"]);
    assert_eq!(first_replayed, None);
    assert_eq!(second_replayed.unwrap(), "true");
    assert_eq!(app.count("executions").await, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn concurrent_requests_with_one_key_create_one_execution(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = app.ready_function("racy", HELLO, json!({})).await;

    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let request = app
            .client
            .post(format!("{}/functions/{id}/execute?wait=30", app.base_url))
            .header("idempotency-key", "same-key")
            .json(&json!({ "name": "Ray" }));
        requests.spawn(async move { request.send().await.expect("request sent") });
    }

    let mut ids = Vec::new();
    while let Some(reply) = requests.join_next().await {
        let reply = reply.unwrap();
        assert_eq!(reply.status(), StatusCode::OK);
        let body: Value = reply.json().await.unwrap();
        assert_eq!(body["status"], "SUCCEEDED");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1, "all replies name the same execution");
    assert_eq!(app.count("executions").await, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_idempotency_key_reused_with_another_input_is_a_conflict(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::COMPILER_ONLY).await;
    let id = app.ready_function("keyed", HELLO, json!({})).await;
    execute_with_key(&app, &id, "k1", json!({ "name": "A" }), 0).await;

    let reused = execute_with_key(&app, &id, "k1", json!({ "name": "B" }), 0).await;
    let too_long = execute_with_key(&app, &id, &"k".repeat(256), json!({}), 0).await;

    assert_eq!(reused.status(), StatusCode::CONFLICT);
    assert!(reused.text().await.unwrap().contains("different input"));
    assert_eq!(too_long.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.count("executions").await, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn cancelling_a_queued_execution_means_it_never_runs(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::COMPILER_ONLY).await;
    let id = app.ready_function("queued", HELLO, json!({})).await;
    let queued = app.execute(&id, json!({ "name": "Q" }), 0).await;
    let execution_id = queued.body["id"].as_str().unwrap();

    let cancelled = app
        .request(
            Method::POST,
            &format!("/executions/{execution_id}/cancel"),
            None,
        )
        .await;

    assert_eq!(cancelled.status, StatusCode::OK);
    assert_eq!(cancelled.body["status"], "CANCELLED");
    assert_eq!(
        cancelled.body["error"],
        json!({ "type": "CANCELLED", "message": "cancelled before it ran" })
    );
    assert_eq!(cancelled.body["startedAt"], Value::Null);
    let jobs = app.count("execution_jobs").await;
    assert_eq!(jobs, 0);
    let again = app
        .request(
            Method::POST,
            &format!("/executions/{execution_id}/cancel"),
            None,
        )
        .await;
    assert!(again.problem(StatusCode::CONFLICT).contains("CANCELLED"));
    app.request(
        Method::POST,
        "/executions/0190a0e4-7c3e-7000-8000-000000000000/cancel",
        None,
    )
    .await
    .problem(StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn cancelling_a_running_execution_stops_it_and_the_worker_keeps_serving(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let spinner = app
        .ready_function("spinner", SPINNER, json!({ "timeoutMs": 120000 }))
        .await;
    let hello = app.ready_function("after", HELLO, json!({})).await;
    let started = app.execute(&spinner, json!(null), 0).await;
    let execution_id = started.body["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&execution_id, "RUNNING").await;

    let cancelled = app
        .request(
            Method::POST,
            &format!("/executions/{execution_id}/cancel"),
            None,
        )
        .await;

    let finished = match cancelled.status {
        StatusCode::OK => cancelled.body,
        StatusCode::ACCEPTED => app.wait_for_execution(&execution_id).await,
        other => panic!("unexpected {other}: {}", cancelled.body),
    };
    assert_eq!(finished["status"], "CANCELLED");
    assert_eq!(
        finished["error"],
        json!({ "type": "CANCELLED", "message": "cancelled while running" })
    );
    assert_eq!(finished["attempts"], 1);
    let next = app.execute(&hello, json!({ "name": "Next" }), 30).await;
    assert_eq!(next.body["status"], "SUCCEEDED");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_call_waiting_for_its_result_answers_at_once_when_the_api_stops(pool: PgPool) {
    // No executor: the execution stays QUEUED, so the call would wait out `wait`.
    let app = TestApp::spawn_with(pool, Workers::COMPILER_ONLY).await;
    let id = app.ready_function("patient", HELLO, json!({})).await;
    let call = app
        .client
        .post(format!("{}/functions/{id}/execute?wait=300", app.base_url))
        .json(&json!({ "name": "Pat" }))
        .send();
    let waiting = tokio::spawn(call);
    app.wait_until(plat_common::notify::EXECUTION_JOBS, || async {
        (app.count("executions").await == 1).then_some(())
    })
    .await;

    app.stop_api();
    // Far below the 300 s the call asked for: only a hang fails this.
    let reply = tokio::time::timeout(std::time::Duration::from_secs(120), waiting)
        .await
        .expect("the waiting call was answered when the API stopped")
        .unwrap()
        .expect("a reply");

    assert_eq!(reply.status(), StatusCode::ACCEPTED);
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["status"], "QUEUED");
}
