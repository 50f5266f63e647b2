//! Live streams: `GET /executions/{id}/events` and
//! `GET /functions/{function}/events` (Server-Sent Events).

use plat_tests::{client_with_key, executor_config, TestApp, Workers, MIGRATOR};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;

/// Runs for about two seconds of wall time, then succeeds: long enough
/// for the stream to see it RUNNING.
const SLOW: &str = r#"
export default () => {
  const end = Date.now() + 2000;
  while (Date.now() < end) {}
  return { done: true };
};
"#;

const ECHO: &str = "export default (input: unknown) => ({ echo: input });\n";

fn statuses_in_order(seen: &[String], order: &[&str]) -> bool {
    let mut rest = order.iter();
    seen.iter()
        .all(|status| rest.any(|expected| expected == status))
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_execution_stream_shows_each_status_then_the_final_record_and_ends(pool: PgPool) {
    // Arrange: a slow function, queued while no executor runs.
    let mut app = TestApp::spawn_with(pool, Workers::COMPILER_ONLY).await;
    let function = app
        .ready_function_in("typescript", "slow", SLOW, json!({}))
        .await;
    let queued = app.execute(&function, json!(null), 0).await;
    let id = queued.body["id"].as_str().unwrap().to_owned();

    // Act: follow it, then start an executor.
    let mut stream = app.events(&format!("/executions/{id}/events")).await;
    let (event, first) = stream.next().await.expect("a first event");
    app.start_executor(executor_config()).await;

    // Assert: QUEUED, RUNNING, SUCCEEDED, the record, the end.
    assert_eq!(
        (event.as_str(), first["status"].as_str()),
        ("status", Some("QUEUED"))
    );
    assert_eq!(first["id"], id.as_str());
    let (event, running) = stream.next().await.expect("RUNNING");
    assert_eq!(
        (event.as_str(), running["status"].as_str()),
        ("status", Some("RUNNING"))
    );
    assert_eq!(running["attempts"], 1);
    let (event, succeeded) = stream.next().await.expect("SUCCEEDED");
    assert_eq!(
        (event.as_str(), succeeded["status"].as_str()),
        ("status", Some("SUCCEEDED"))
    );
    let (event, record) = stream.next().await.expect("the final record");
    assert_eq!(event, "execution");
    assert_eq!(record["status"], "SUCCEEDED");
    assert_eq!(record["output"], json!({ "done": true }));
    assert!(
        stream.next().await.is_none(),
        "the stream ends after the record"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_finished_execution_stream_answers_the_final_record_at_once(pool: PgPool) {
    // Arrange: a run that finished.
    let app = TestApp::spawn(pool).await;
    let function = app
        .ready_function_in("typescript", "echo", ECHO, json!({}))
        .await;
    let done = app.execute(&function, json!({ "a": 1 }), 30).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let id = done.body["id"].as_str().unwrap();

    // Act
    let mut stream = app.events(&format!("/executions/{id}/events")).await;

    // Assert: its status, its record, the end.
    let (event, status) = stream.next().await.expect("its status");
    assert_eq!(
        (event.as_str(), status["status"].as_str()),
        ("status", Some("SUCCEEDED"))
    );
    assert!(
        status.get("output").is_none(),
        "a status event has no output: {status}"
    );
    let (event, record) = stream.next().await.expect("its record");
    assert_eq!(event, "execution");
    assert_eq!(record["output"], json!({ "echo": { "a": 1 } }));
    assert!(stream.next().await.is_none());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_function_stream_shows_build_progress_and_new_executions(pool: PgPool) {
    // Arrange: a function whose first version is built while watched.
    let mut app = TestApp::spawn_with(pool, Workers::NONE).await;
    let function = app
        .create_function_in("typescript", "watched", ECHO, json!({}))
        .await;
    let mut stream = app.events(&format!("/functions/{function}/events")).await;
    let (event, pending) = stream.next().await.expect("the latest version's state");
    assert_eq!(
        (event.as_str(), pending["version"].as_i64()),
        ("version", Some(1))
    );
    assert_eq!(pending["status"], "PENDING");

    // Act and assert: the build goes on, READY last.
    app.start_compiler().await;
    let mut builds = vec![];
    while builds.last().map(String::as_str) != Some("READY") {
        let (_, version) = stream.until(|event, _| event == "version").await;
        assert_eq!(version["version"], 1, "{version}");
        builds.push(version["status"].as_str().unwrap().to_owned());
    }
    assert!(
        statuses_in_order(&builds, &["PENDING", "COMPILING", "READY"]),
        "{builds:?}"
    );

    // A new version: its build is shown from the start.
    let update = app
        .request(
            Method::PUT,
            &format!("/functions/{function}"),
            Some(json!({ "source": ECHO.replace("echo", "again") })),
        )
        .await;
    assert_eq!(update.status, StatusCode::ACCEPTED, "{}", update.body);
    let mut builds = vec![];
    while builds.last().map(String::as_str) != Some("READY") {
        let (_, version) = stream.until(|event, _| event == "version").await;
        if version["version"] == 2 {
            builds.push(version["status"].as_str().unwrap().to_owned());
        }
    }
    assert!(
        statuses_in_order(&builds, &["PENDING", "COMPILING", "READY"]),
        "{builds:?}"
    );

    // A new execution appears QUEUED, and is seen finishing once run.
    let queued = app.execute(&function, json!(null), 0).await;
    let id = queued.body["id"].as_str().unwrap().to_owned();
    let (_, execution) = stream
        .until(|event, data| event == "execution" && data["id"] == id.as_str())
        .await;
    assert_eq!(execution["status"], "QUEUED");
    assert_eq!(execution["functionVersion"], 2);
    app.start_executor(executor_config()).await;
    stream
        .until(|event, data| {
            event == "execution" && data["id"] == id.as_str() && data["status"] == "SUCCEEDED"
        })
        .await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_stream_the_caller_may_not_see_is_a_404_problem(pool: PgPool) {
    // Arrange: the admin's run, and a DEV with a key.
    let app = TestApp::spawn_with(pool, Workers::COMPILER_ONLY).await;
    let function = app
        .ready_function_in("typescript", "private", ECHO, json!({}))
        .await;
    let admin_run = app.execute(&function, json!(null), 0).await;
    let admin_run = admin_run.body["id"].as_str().unwrap();
    let dev = app.create_user("dev@example.com", "DEV", None).await;
    let dev = client_with_key(&app.create_key(&dev).await);

    // Act and assert: a DEV cannot follow the admin's run, nor an unknown
    // execution or function; nobody follows anything unauthenticated.
    for path in [
        format!("/executions/{admin_run}/events"),
        "/executions/not-an-id/events".to_owned(),
        "/functions/no-such-function/events".to_owned(),
    ] {
        let reply = plat_tests::read(
            dev.get(format!("{}{path}", app.base_url))
                .send()
                .await
                .unwrap(),
        )
        .await;
        reply.problem(StatusCode::NOT_FOUND);
    }
    let anonymous = plat_tests::read(
        reqwest::get(format!("{}/functions/{function}/events", app.base_url))
            .await
            .unwrap(),
    )
    .await;
    anonymous.problem(StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn streams_end_when_the_api_stops(pool: PgPool) {
    // Arrange: a function followed, with nothing happening to it.
    let app = TestApp::spawn_with(pool, Workers::NONE).await;
    let function = app
        .create_function_in("typescript", "quiet", ECHO, json!({}))
        .await;
    let mut stream = app.events(&format!("/functions/{function}/events")).await;
    stream.until(|event, _| event == "version").await;

    // Act
    app.stop_api();

    // Assert: the stream ends (rather than holding up the shutdown).
    assert!(stream.next().await.is_none());
}
