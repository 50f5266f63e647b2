//! Completion webhooks: a receiver in the test (axum on 127.0.0.1, allowed
//! by PLAT_OUTBOUND_ALLOW) gets each finished execution, signed per Standard
//! Webhooks (checked with the official `standardwebhooks` crate), retried
//! with growing backoff under one `webhook-id`, dead-lettered after N
//! attempts, delivered even when the delivering process is SIGKILLed
//! mid-delivery; a private destination is refused unless allowlisted.

use std::collections::VecDeque;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use plat_tests::{
    api_config, free_port, wait_until_ready, workspace_binary, TestApp, Workers, ADMIN_KEY, HELLO,
    MIGRATOR, SECRETS_KEY,
};
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// What the receiver answers to one request.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Status(u16),
    /// Never answers: the request hangs until its sender goes away.
    Hold,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

/// A webhook receiver: answers as scripted, then `then`, and keeps every
/// request.
#[derive(Clone)]
struct Receiver {
    script: Arc<Mutex<VecDeque<Answer>>>,
    then: u16,
    received: Arc<Mutex<Vec<Received>>>,
    arrived: Arc<Notify>,
    url: String,
}

impl Receiver {
    async fn start(script: &[Answer], then: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            then,
            received: Arc::default(),
            arrived: Arc::default(),
            url: format!("http://{}/hook", listener.local_addr().unwrap()),
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until the receiver has had `n` requests.
    async fn wait_for(&self, n: usize) {
        tokio::time::timeout(std::time::Duration::from_secs(120), async {
            loop {
                let arrived = self.arrived.notified();
                if self.received.lock().unwrap().len() >= n {
                    return;
                }
                arrived.await;
            }
        })
        .await
        .expect("the receiver got the requests in time");
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    receiver
        .received
        .lock()
        .unwrap()
        .push(Received { headers, body });
    receiver.arrived.notify_waiters();
    let answer = receiver.script.lock().unwrap().pop_front();
    match answer.unwrap_or(Answer::Status(receiver.then)) {
        Answer::Status(code) => StatusCode::from_u16(code).unwrap(),
        Answer::Hold => std::future::pending().await,
    }
}

/// A child process that is SIGKILLed when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The test API's settings with deliveries allowed to loopback and quick
/// retries.
fn webhook_config(allow: &str, max_attempts: i32) -> plat_api::ApiConfig {
    let mut config = api_config();
    config.webhooks.outbound_allow = allow.parse().unwrap();
    config.webhooks.max_attempts = max_attempts;
    config.webhooks.backoff_ms = 300;
    config.webhooks.timeout_ms = 5_000;
    config
}

/// Registers HELLO with `webhookUrl`; answers its id and webhook secret.
async fn function_with_webhook(app: &TestApp, name: &str, url: &str) -> (String, String) {
    let reply = app
        .request(
            Method::POST,
            "/functions",
            Some(json!({ "name": name, "language": "rust", "source": HELLO, "webhookUrl": url })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(reply.body["webhookUrl"], url);
    let secret = reply.body["webhookSecret"]
        .as_str()
        .expect("the secret, once");
    assert!(secret.starts_with("whsec_"), "{secret}");
    let id = reply.body["id"].as_str().unwrap().to_owned();
    let function = app.wait_for_build(&id, 1).await;
    assert_eq!(function["status"], "READY", "{function}");
    assert!(
        function.get("webhookSecret").is_none(),
        "shown only once: {function}"
    );
    (id, secret.to_owned())
}

/// Runs the function once and answers the finished execution.
async fn run(app: &TestApp, function: &str, query: &str) -> Value {
    let reply = app
        .request(
            Method::POST,
            &format!("/functions/{function}/execute?wait=30{query}"),
            Some(json!({ "name": "hooks" })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

async fn deliveries(app: &TestApp, function: &str) -> Vec<Value> {
    let reply = app
        .get(&format!("/functions/{function}/webhooks/deliveries"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["items"].as_array().unwrap().clone()
}

/// Waits until the function's only delivery is no longer PENDING.
async fn finished_delivery(app: &TestApp, function: &str) -> Value {
    app.wait_until("plat_webhook_deliveries", || async {
        let all = deliveries(app, function).await;
        assert!(all.len() <= 1, "{all:?}");
        all.into_iter().find(|d| d["status"] != "PENDING")
    })
    .await
}

fn started_at(attempt: &Value) -> DateTime<Utc> {
    attempt["startedAt"].as_str().unwrap().parse().unwrap()
}

/// Verifies a request with the official Standard Webhooks library.
fn verify(secret: &str, request: &Received) {
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(&request.body, &request.headers)
        .expect("the signature verifies with the official library");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_receiver_answering_500_twice_gets_three_attempts_with_growing_gaps_under_one_id(
    pool: PgPool,
) {
    // Arrange
    let receiver = Receiver::start(&[Answer::Status(500), Answer::Status(500)], 200).await;
    let app =
        TestApp::spawn_configured(pool, Workers::default(), webhook_config("127.0.0.1", 5)).await;
    let (function, secret) = function_with_webhook(&app, "hooked", &receiver.url).await;

    // Act
    let execution = run(&app, &function, "").await;
    let delivery = finished_delivery(&app, &function).await;

    // Assert
    assert_eq!(delivery["status"], "DELIVERED", "{delivery}");
    assert_eq!(delivery["attempts"], 3, "{delivery}");
    assert_eq!(delivery["executionId"], execution["id"]);
    let log = delivery["attemptLog"].as_array().unwrap();
    let codes: Vec<&Value> = log.iter().map(|a| &a["statusCode"]).collect();
    assert_eq!(codes, [&json!(500), &json!(500), &json!(200)], "{delivery}");
    let (first, second) = (
        started_at(&log[1]) - started_at(&log[0]),
        started_at(&log[2]) - started_at(&log[1]),
    );
    assert!(second > first, "the gaps grow: {first} then {second}");

    let requests = receiver.received();
    assert_eq!(requests.len(), 3);
    for request in &requests {
        assert_eq!(
            request.headers["webhook-id"],
            requests[0].headers["webhook-id"]
        );
        assert_eq!(
            request.headers["webhook-id"],
            delivery["webhookId"].as_str().unwrap()
        );
        verify(&secret, request);
    }
    // The body is the execution record, as GET /executions/{id} shows it.
    let body: Value = serde_json::from_slice(&requests[2].body).unwrap();
    let record = app
        .get(&format!(
            "/executions/{}",
            execution["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(body, record.body);
    assert_eq!(body["status"], "SUCCEEDED");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_receiver_that_always_fails_is_dead_lettered_after_the_last_attempt(pool: PgPool) {
    // Arrange
    let receiver = Receiver::start(&[], 503).await;
    let app =
        TestApp::spawn_configured(pool, Workers::default(), webhook_config("127.0.0.1", 3)).await;
    let (function, _) = function_with_webhook(&app, "unlucky", &receiver.url).await;

    // Act
    run(&app, &function, "").await;
    let delivery = finished_delivery(&app, &function).await;

    // Assert
    assert_eq!(delivery["status"], "DEAD_LETTERED", "{delivery}");
    assert_eq!(delivery["attempts"], 3, "{delivery}");
    assert_eq!(delivery["lastStatusCode"], 503, "{delivery}");
    assert_eq!(delivery["attemptLog"].as_array().unwrap().len(), 3);
    assert_eq!(receiver.received().len(), 3);
    let dead = app
        .get(&format!(
            "/functions/{function}/webhooks/deliveries?status=DEAD_LETTERED"
        ))
        .await;
    assert_eq!(dead.body["items"].as_array().unwrap().len(), 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_private_destination_is_refused_unless_allowlisted(pool: PgPool) {
    // Arrange: no allowlist.
    let receiver = Receiver::start(&[], 200).await;
    let app = TestApp::spawn_configured(pool, Workers::default(), webhook_config("", 3)).await;

    // Act / Assert: an IP literal is refused by the API at once...
    let literal = app
        .request(
            Method::POST,
            "/functions",
            Some(json!({ "name": "inside", "language": "rust", "source": HELLO, "webhookUrl": receiver.url })),
        )
        .await;
    assert_eq!(literal.status, StatusCode::BAD_REQUEST, "{}", literal.body);
    assert_eq!(literal.content_type, "application/problem+json");
    assert!(
        literal.body["detail"]
            .as_str()
            .unwrap()
            .contains("not a public address"),
        "{}",
        literal.body
    );
    for (url, why) in [
        ("ftp://example.com/hook", "scheme"),
        ("https://user:pw@example.com/hook", "credentials"),
    ] {
        let reply = app
            .request(
                Method::POST,
                "/functions",
                Some(json!({ "name": "odd", "language": "rust", "source": HELLO, "webhookUrl": url })),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        assert!(
            reply.body["detail"].as_str().unwrap().contains(why),
            "{}",
            reply.body
        );
    }

    // ...and a name that resolves to loopback is refused when delivering.
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    let (function, _) = function_with_webhook(&app, "by-name", &by_name).await;
    run(&app, &function, "").await;
    let delivery = finished_delivery(&app, &function).await;
    assert_eq!(delivery["status"], "DEAD_LETTERED", "{delivery}");
    assert_eq!(
        delivery["attempts"], 1,
        "a refusal is not retried: {delivery}"
    );
    assert!(
        delivery["lastError"]
            .as_str()
            .unwrap()
            .contains("not a public address"),
        "{delivery}"
    );
    assert!(receiver.received().is_empty());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_callback_url_gets_that_call_s_execution_signed_with_the_function_s_secret(pool: PgPool) {
    // Arrange: a function without webhookUrl.
    let receiver = Receiver::start(&[], 200).await;
    let app =
        TestApp::spawn_configured(pool, Workers::default(), webhook_config("127.0.0.1", 3)).await;
    let function = app.ready_function("plain", HELLO, json!({})).await;
    let callback = format!("&callbackUrl={}", receiver.url);
    let refused = app
        .request(
            Method::POST,
            &format!("/functions/{function}/execute?wait=0{callback}"),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "needs a secret: {}",
        refused.body
    );
    let rotated = app
        .request(
            Method::POST,
            &format!("/functions/{function}/webhooks/secret"),
            None,
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let secret = rotated.body["webhookSecret"].as_str().unwrap().to_owned();

    // Act
    let called_back = run(&app, &function, &callback).await;
    run(&app, &function, "").await;
    let delivery = finished_delivery(&app, &function).await;

    // Assert: only the call with a callbackUrl was delivered.
    assert_eq!(delivery["status"], "DELIVERED", "{delivery}");
    assert_eq!(delivery["executionId"], called_back["id"]);
    assert_eq!(delivery["url"], receiver.url);
    assert_eq!(deliveries(&app, &function).await.len(), 1);
    let requests = receiver.received();
    assert_eq!(requests.len(), 1);
    verify(&secret, &requests[0]);
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(body["id"], called_back["id"]);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_delivery_whose_process_is_killed_mid_request_is_delivered_again_under_the_same_id(
    pool: PgPool,
) {
    // Arrange: the test's own API delivers nothing; an `api` process does,
    // and the receiver holds its first request.
    let receiver = Receiver::start(&[Answer::Hold], 200).await;
    let mut quiet = webhook_config("127.0.0.1", 5);
    quiet.webhooks.delivery_concurrency = 0;
    let mut app = TestApp::spawn_configured(pool, Workers::default(), quiet).await;
    let port = free_port();
    let mut sender = KillOnDrop(
        Command::new(workspace_binary("api"))
            .env("DATABASE_URL", app.database_url())
            .env("PLAT_MIGRATE_AT_START", "false")
            .env("PLAT_LISTEN", format!("127.0.0.1:{port}"))
            .env("PLAT_SECRETS_KEY", SECRETS_KEY)
            .env("PLAT_BOOTSTRAP_ADMIN_KEY", ADMIN_KEY)
            .env("PLAT_OUTBOUND_ALLOW", "127.0.0.1")
            // The lease is then 8 s: the attempt after the kill comes then.
            .env("PLAT_WEBHOOK_TIMEOUT_MS", "3000")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the api binary"),
    );
    wait_until_ready(&format!("http://127.0.0.1:{port}")).await;
    let (function, secret) = function_with_webhook(&app, "survivor", &receiver.url).await;

    // Act: SIGKILL the sender while the receiver holds its request, then
    // start another delivering API.
    run(&app, &function, "").await;
    receiver.wait_for(1).await;
    sender.0.kill().expect("SIGKILL the api process");
    sender.0.wait().unwrap();
    app.start_api(webhook_config("127.0.0.1", 5)).await;
    let delivery = finished_delivery(&app, &function).await;

    // Assert
    assert_eq!(delivery["status"], "DELIVERED", "{delivery}");
    assert_eq!(delivery["attempts"], 2, "{delivery}");
    let log = delivery["attemptLog"].as_array().unwrap();
    assert_eq!(
        log[0]["finishedAt"],
        Value::Null,
        "the lost attempt: {delivery}"
    );
    assert_eq!(log[1]["statusCode"], 200, "{delivery}");
    let requests = receiver.received();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].headers["webhook-id"],
        requests[1].headers["webhook-id"]
    );
    for request in &requests {
        verify(&secret, request);
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_webhook_url_can_be_changed_and_removed_and_its_secret_rotated(pool: PgPool) {
    // Arrange
    let app = TestApp::spawn_configured(pool, Workers::NONE, webhook_config("127.0.0.1", 3)).await;
    let function = app.create_function("changing", HELLO, json!({})).await;

    // Act / Assert: the first URL brings a secret; later ones do not.
    let set = app
        .request(
            Method::PUT,
            &format!("/functions/{function}"),
            Some(json!({ "webhookUrl": "http://127.0.0.1:9/one" })),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    let first = set.body["webhookSecret"].as_str().unwrap().to_owned();
    let changed = app
        .request(
            Method::PUT,
            &format!("/functions/{function}"),
            Some(json!({ "webhookUrl": "http://127.0.0.1:9/two" })),
        )
        .await;
    assert_eq!(changed.body["webhookUrl"], "http://127.0.0.1:9/two");
    assert!(
        changed.body.get("webhookSecret").is_none(),
        "{}",
        changed.body
    );
    let rotated = app
        .request(
            Method::POST,
            &format!("/functions/{function}/webhooks/secret"),
            None,
        )
        .await;
    let second = rotated.body["webhookSecret"].as_str().unwrap();
    assert_ne!(second, first);
    let removed = app
        .request(
            Method::PUT,
            &format!("/functions/{function}"),
            Some(json!({ "webhookUrl": null })),
        )
        .await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.body);
    assert_eq!(removed.body["webhookUrl"], Value::Null);
    let stored: Option<Vec<u8>> =
        sqlx::query_scalar("select webhook_secret from functions where id = $1::uuid")
            .bind(&function)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let stored = stored.expect("the secret stays for callbacks");
    assert!(
        !String::from_utf8_lossy(&stored).contains(&second["whsec_".len()..]),
        "stored encrypted"
    );
}
