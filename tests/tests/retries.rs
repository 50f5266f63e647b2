//! Retries and dead letters of runs (`executionConfig.retry`): real
//! functions compiled and run, each run told its attempt in
//! `PLAT_EXECUTION_ATTEMPT`, the failed runs kept and listed, and an
//! execution out of attempts listed as a dead letter an admin re-queues.

use chrono::{DateTime, Utc};
use plat_tests::{client_with_key, TestApp, MIGRATOR};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

/// Picks a behaviour by `input.case`, and logs and answers the attempt it
/// was told (0 when it was told none).
const ATTEMPTS: &str = r#"
use serde_json::{json, Value};
pub fn handler(input: Value) -> Result<Value, String> {
    let attempt: u32 = std::env::var("PLAT_EXECUTION_ATTEMPT")
        .ok()
        .and_then(|attempt| attempt.parse().ok())
        .unwrap_or(0);
    eprintln!("attempt {attempt}");
    match input["case"].as_str().unwrap_or("") {
        "fails_twice" if attempt < 3 => Err(format!("attempt {attempt} fails")),
        "always_fails" => Err(format!("attempt {attempt} fails")),
        "slow_first" if attempt < 2 => {
            std::thread::sleep(std::time::Duration::from_secs(5));
            Ok(json!({ "attempt": attempt }))
        }
        "stdout_noise" => {
            println!("not JSON");
            Ok(json!({ "attempt": attempt }))
        }
        _ => Ok(json!({ "attempt": attempt, "input": input })),
    }
}
"#;

fn retry(max_attempts: u32) -> Value {
    json!({ "retry": { "maxAttempts": max_attempts, "backoffMs": 100, "backoffMultiplier": 2 } })
}

/// Queues `case` (answering at once) and waits for the execution to finish.
async fn run(app: &TestApp, function: &str, case: &str) -> Value {
    let queued = app.execute(function, json!({ "case": case }), 0).await;
    assert_eq!(queued.status, StatusCode::ACCEPTED, "{}", queued.body);
    let id = queued.body["id"].as_str().expect("an id").to_owned();
    app.wait_for_execution(&id).await
}

async fn attempts(app: &TestApp, execution: &Value) -> Vec<Value> {
    let reply = app
        .get(&format!(
            "/executions/{}/attempts",
            execution["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["items"].as_array().expect("items").clone()
}

async fn dead_letters(app: &TestApp) -> Vec<String> {
    let reply = app.get("/executions?deadLetter=true").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|execution| execution["id"].as_str().unwrap().to_owned())
        .collect()
}

fn time(value: &Value) -> DateTime<Utc> {
    value.as_str().expect("a time").parse().expect("RFC 3339")
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_handler_that_fails_twice_then_succeeds_ends_succeeded_with_three_attempts(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let function = app.ready_function("flaky", ATTEMPTS, retry(3)).await;

    let execution = run(&app, &function, "fails_twice").await;

    assert_eq!(execution["status"], "SUCCEEDED", "{execution}");
    assert_eq!(execution["output"]["attempt"], 3);
    assert_eq!(execution["attempts"], 3);
    let runs = attempts(&app, &execution).await;
    assert_eq!(runs.len(), 3, "{runs:?}");
    for (n, failed) in runs[..2].iter().enumerate() {
        let attempt = n + 1;
        assert_eq!(failed["attempt"], attempt);
        assert_eq!(failed["status"], "FAILED");
        assert_eq!(failed["error"]["type"], "HANDLER_ERROR");
        assert_eq!(
            failed["error"]["message"],
            format!("attempt {attempt} fails")
        );
        assert_eq!(failed["logs"], format!("attempt {attempt}\n"));
        assert!(failed["workerId"].is_string(), "{failed}");
        // The backoff the policy asked for: 100 ms, then 200 ms (or up to
        // a quarter more), as recorded with each failed run.
        let backoff = time(&failed["retryAt"]) - time(&failed["finishedAt"]);
        assert!(backoff.num_milliseconds() >= 100 * (1 << n), "{failed}");
    }
    assert_eq!(runs[2]["attempt"], 3);
    assert_eq!(runs[2]["status"], "SUCCEEDED");
    assert_eq!(runs[2]["logs"], "attempt 3\n");
    assert!(dead_letters(&app).await.is_empty());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_execution_out_of_attempts_is_a_dead_letter_that_an_admin_requeues(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let function = app.ready_function("doomed", ATTEMPTS, retry(2)).await;
    let dev = app.create_user("dev@example.com", "DEV", None).await;
    let dev = client_with_key(&app.create_key(&dev).await);

    let failed = run(&app, &function, "always_fails").await;

    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert_eq!(failed["error"]["type"], "HANDLER_ERROR");
    assert_eq!(failed["error"]["message"], "attempt 2 fails");
    assert_eq!(attempts(&app, &failed).await.len(), 2);
    let id = failed["id"].as_str().unwrap().to_owned();
    assert_eq!(dead_letters(&app).await, std::slice::from_ref(&id));
    let scoped = app
        .get(&format!(
            "/executions?deadLetter=true&functionId={function}"
        ))
        .await;
    assert_eq!(scoped.body["items"][0]["id"], id.as_str());
    app.get("/executions")
        .await
        .problem(StatusCode::BAD_REQUEST);

    // Only admins re-queue.
    let path = format!("/executions/{id}/requeue");
    app.request_with(&dev, Method::POST, &path, None)
        .await
        .problem(StatusCode::FORBIDDEN);

    let requeued = app.request(Method::POST, &path, None).await;

    assert_eq!(requeued.status, StatusCode::ACCEPTED, "{}", requeued.body);
    assert_eq!(
        requeued.body["trigger"],
        json!({ "type": "requeue", "executionId": id })
    );
    assert_eq!(requeued.body["input"], failed["input"]);
    assert_ne!(requeued.body["id"], failed["id"]);
    assert!(!dead_letters(&app).await.contains(&id));
    let again = app.request(Method::POST, &path, None).await;
    assert!(again
        .problem(StatusCode::CONFLICT)
        .contains("already re-queued"));
    // The new run is an execution like any other: it fails the same way,
    // and is a dead letter of its own.
    let new_id = requeued.body["id"].as_str().unwrap().to_owned();
    let rerun = app.wait_for_execution(&new_id).await;
    assert_eq!(rerun["status"], "FAILED", "{rerun}");
    assert_eq!(dead_letters(&app).await, [new_id]);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_invalid_output_is_not_retried_and_not_a_dead_letter(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let function = app.ready_function("noisy", ATTEMPTS, retry(3)).await;

    let execution = run(&app, &function, "stdout_noise").await;

    assert_eq!(execution["status"], "FAILED", "{execution}");
    assert_eq!(execution["error"]["type"], "INVALID_OUTPUT");
    assert_eq!(execution["attempts"], 1);
    assert_eq!(attempts(&app, &execution).await.len(), 1);
    assert!(dead_letters(&app).await.is_empty());
    let path = format!("/executions/{}/requeue", execution["id"].as_str().unwrap());
    let refused = app.request(Method::POST, &path, None).await;
    assert!(refused
        .problem(StatusCode::CONFLICT)
        .contains("not a dead letter"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_timeout_is_retried(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let mut config = retry(2);
    config["timeoutMs"] = json!(1000);
    let function = app.ready_function("slow", ATTEMPTS, config).await;

    let execution = run(&app, &function, "slow_first").await;

    assert_eq!(execution["status"], "SUCCEEDED", "{execution}");
    assert_eq!(execution["output"]["attempt"], 2);
    let runs = attempts(&app, &execution).await;
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["error"]["type"], "TIMEOUT");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn without_a_retry_policy_a_failure_is_final_and_no_attempt_is_told(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let function = app.ready_function("plain", ATTEMPTS, json!({})).await;

    let execution = run(&app, &function, "always_fails").await;

    assert_eq!(execution["status"], "FAILED", "{execution}");
    assert_eq!(execution["error"]["message"], "attempt 0 fails");
    assert_eq!(execution["attempts"], 1);
    let runs = attempts(&app, &execution).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["status"], "FAILED");
    assert!(dead_letters(&app).await.is_empty());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_retry_policy_out_of_bounds_is_refused_with_a_reason(pool: PgPool) {
    let app = TestApp::spawn_with(pool, plat_tests::Workers::NONE).await;

    let reply = app
        .request(
            Method::POST,
            "/functions",
            Some(json!({
                "name": "greedy", "language": "rust", "source": ATTEMPTS,
                "executionConfig": { "retry": { "maxAttempts": 50 } },
            })),
        )
        .await;

    assert!(reply
        .problem(StatusCode::BAD_REQUEST)
        .contains("`executionConfig.retry.maxAttempts` must be between 1 and 10"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_retried_run_keeps_its_owners_count_and_its_concurrency_slot_until_it_ends(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let mut config = retry(3);
    config["maxConcurrency"] = json!(1);
    let function = app.ready_function("counted", ATTEMPTS, config).await;

    let execution = run(&app, &function, "fails_twice").await;
    let other = run(&app, &function, "fine").await;

    assert_eq!(execution["status"], "SUCCEEDED", "{execution}");
    assert_eq!(other["status"], "SUCCEEDED", "{other}");
    // Nothing is in flight any more: every count the runs took was given
    // back once, however many times the first went back to the queue.
    let in_flight: i64 =
        sqlx::query_scalar("select coalesce(sum(n), 0)::bigint from queue_owner_counts")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let taken: i64 = sqlx::query_scalar("select taken from function_slots where function_id = $1")
        .bind(function.parse::<uuid::Uuid>().unwrap())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!((in_flight, taken), (0, 0));
}
