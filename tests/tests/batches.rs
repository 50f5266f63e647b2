//! Many runs at once: `POST /functions/{id}/executions/batch` on the way in,
//! and results recorded in batches on the way out.

use std::collections::HashSet;
use std::time::Duration;

use plat_common::queue::execute::{self, Finished};
use plat_tests::{executor_config, TestApp, Workers, HELLO, MIGRATOR};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use uuid::Uuid;

/// Echoes its input, except `{"nul": true}`, which it answers with a string
/// holding NUL: valid JSON that PostgreSQL's jsonb refuses.
const ECHO_OR_NUL: &str = r#"
use serde_json::{json, Value};
pub fn handler(input: Value) -> Result<Value, String> {
    if input["nul"] == json!(true) {
        return Ok(json!("before\u{0}after"));
    }
    Ok(input)
}
"#;

fn ids(reply: &Value) -> Vec<String> {
    reply["executionIds"]
        .as_array()
        .expect("executionIds")
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_batch_queues_one_execution_per_input_in_input_order(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = app.ready_function("batched", HELLO, json!({})).await;
    let names = ["Ada", "Grace", "Alan", "Edsger", "Barbara"];

    let reply = app
        .request(
            Method::POST,
            &format!("/functions/{id}/executions/batch"),
            Some(json!({ "inputs": names.map(|name| json!({ "name": name })) })),
        )
        .await;

    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(reply.body["functionId"], id.as_str());
    assert_eq!(reply.body["version"], 1);
    let execution_ids = ids(&reply.body);
    assert_eq!(execution_ids.len(), names.len());
    for (name, execution_id) in names.iter().zip(&execution_ids) {
        let execution = app.wait_for_execution(execution_id).await;
        assert_eq!(execution["status"], "SUCCEEDED", "{execution}");
        assert_eq!(execution["input"]["name"], *name);
        assert_eq!(execution["output"]["greeting"], format!("Hello, {name}!"));
        assert_eq!(execution["attempts"], 1);
    }
    // The history lists them newest first: the reverse of the input order.
    let listed = app.get(&format!("/functions/{id}/executions")).await;
    let listed: Vec<&str> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    let mut expected: Vec<&str> = execution_ids.iter().map(String::as_str).collect();
    expected.reverse();
    assert_eq!(listed, expected);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_batch_is_refused_whole_with_the_reason(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::COMPILER_ONLY).await;
    let id = app.ready_function("refused", HELLO, json!({})).await;
    let path = format!("/functions/{id}/executions/batch");
    let too_many: Vec<Value> = (0..1001).map(|i| json!(i)).collect();
    let too_large = "x".repeat(64 * 1024);
    let cases = [
        (
            json!({ "inputs": [] }),
            StatusCode::BAD_REQUEST,
            "1 to 1000 inputs",
        ),
        (
            json!({ "inputs": too_many }),
            StatusCode::BAD_REQUEST,
            "got 1001",
        ),
        (
            json!([1, 2]),
            StatusCode::BAD_REQUEST,
            "{\"inputs\": [...]}",
        ),
        (
            json!({ "inputs": [1], "wait": 5 }),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (
            json!({ "inputs": [1, too_large] }),
            StatusCode::PAYLOAD_TOO_LARGE,
            "input 1 is larger than the limit",
        ),
        (
            json!({ "inputs": [1, "\u{0}"] }),
            StatusCode::BAD_REQUEST,
            "cannot be stored: unsupported Unicode escape sequence",
        ),
    ];

    for (body, status, reason) in cases {
        let reply = app.request(Method::POST, &path, Some(body)).await;

        assert_eq!(reply.status, status, "{}", reply.body);
        let detail = reply.problem(status);
        assert!(detail.contains(reason), "{detail:?} should say {reason:?}");
    }
    let keyed = app
        .client
        .post(format!("{}{path}", app.base_url))
        .header("Idempotency-Key", "k1")
        .json(&json!({ "inputs": [1] }))
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), StatusCode::BAD_REQUEST);
    assert!(keyed
        .text()
        .await
        .unwrap()
        .contains("Idempotency-Key is not supported on batches"));
    let unknown = app
        .request(
            Method::POST,
            "/functions/no-such-function/executions/batch",
            Some(json!({ "inputs": [1] })),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);
    assert_eq!(app.count("executions").await, 0, "nothing was queued");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_batch_for_a_function_not_yet_ready_is_a_conflict(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    let id = app.create_function("pending", HELLO, json!({})).await;

    let reply = app
        .request(
            Method::POST,
            &format!("/functions/{id}/executions/batch"),
            Some(json!({ "inputs": [1] })),
        )
        .await;

    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert!(reply
        .problem(StatusCode::CONFLICT)
        .contains("no READY version"));
}

// A batch of results is written in one statement, each still only under its
// own lease; the one notification names every execution it finished.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_batch_of_results_is_written_only_where_the_lease_still_holds(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), Workers::COMPILER_ONLY).await;
    let id = app.ready_function("leased", HELLO, json!({})).await;
    for i in 0..3 {
        app.execute(&id, json!({ "name": i }), 0).await;
    }
    let jobs = execute::claim(&pool, "batcher", Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 3);
    // The third job's lease was lost: another worker holds it now.
    sqlx::query("update execution_jobs set lease_token = gen_random_uuid() where id = $1")
        .bind(jobs[2].id)
        .execute(&pool)
        .await
        .unwrap();
    let finished = Finished {
        result: Ok("\"done\"".to_owned()),
        logs: "ran\n".to_owned(),
        logs_truncated: false,
        duration_ms: 1,
    };
    let mut listener = PgListener::connect_with(&pool).await.unwrap();
    listener
        .listen(plat_common::notify::EXECUTION_FINISHED)
        .await
        .unwrap();

    let written = execute::complete_batch(
        &pool,
        &jobs.iter().map(|j| (j, &finished)).collect::<Vec<_>>(),
    )
    .await
    .unwrap();

    let written: HashSet<Uuid> = written.into_iter().collect();
    assert_eq!(written, HashSet::from([jobs[0].id, jobs[1].id]));
    for job in &jobs[..2] {
        let execution = app.get(&format!("/executions/{}", job.id)).await.body;
        assert_eq!(execution["status"], "SUCCEEDED", "{execution}");
        assert_eq!(execution["output"], "done");
        assert_eq!(execution["logs"], "ran\n");
    }
    let still_running = app.get(&format!("/executions/{}", jobs[2].id)).await.body;
    assert_eq!(still_running["status"], "RUNNING", "{still_running}");
    assert_eq!(app.count("execution_jobs").await, 1);
    let notification = tokio::time::timeout(Duration::from_secs(30), listener.recv())
        .await
        .expect("a notification")
        .unwrap();
    let named: HashSet<Uuid> = notification
        .payload()
        .split(',')
        .map(|id| id.parse().unwrap())
        .collect();
    assert_eq!(named, written);
}

// One output the database refuses must not sink the results batched with
// it: each is recorded, the refused one as INVALID_OUTPUT, none retried.
#[sqlx::test(migrator = "MIGRATOR")]
async fn an_unstorable_output_fails_alone_without_losing_its_batch(pool: PgPool) {
    let mut app = TestApp::spawn_with(pool, Workers::COMPILER_ONLY).await;
    let id = app.ready_function("mixed", ECHO_OR_NUL, json!({})).await;
    // Queued before the executor starts, so it claims and finishes them
    // together and their results share batches.
    let inputs: Vec<Value> = (0..60)
        .map(|i| json!({ "i": i, "nul": i % 10 == 3 }))
        .collect();
    let reply = app
        .request(
            Method::POST,
            &format!("/functions/{id}/executions/batch"),
            Some(json!({ "inputs": inputs })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);

    app.start_executor(executor_config()).await;

    for (i, execution_id) in ids(&reply.body).iter().enumerate() {
        let execution = app.wait_for_execution(execution_id).await;
        assert_eq!(execution["attempts"], 1, "{execution}");
        if i % 10 == 3 {
            assert_eq!(execution["status"], "FAILED", "{execution}");
            assert_eq!(execution["error"]["type"], "INVALID_OUTPUT");
        } else {
            assert_eq!(execution["status"], "SUCCEEDED", "{execution}");
            assert_eq!(execution["output"]["i"], i);
        }
    }
}
