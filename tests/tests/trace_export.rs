//! OpenTelemetry export: the real `api` and `worker-executor` binaries,
//! pointed at an OTLP/HTTP receiver, send the spans of one request and of the
//! run it queued in one trace, whose id comes from the request id.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use plat_tests::{
    client_with_key, free_port, module_cache_dir, wait_until_ready, workspace_binary, TestApp,
    Workers, ADMIN_KEY, HELLO, MIGRATOR,
};
use prost::Message as _;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;

/// One received span: the service that sent it, its name and trace id.
#[derive(Debug, Clone, PartialEq)]
struct Received {
    service: String,
    name: String,
    trace_id: Vec<u8>,
}

type Inbox = Arc<Mutex<Vec<Received>>>;

/// Decodes an OTLP/HTTP protobuf export, as a collector would, and keeps
/// what the test looks at.
async fn receive(State(inbox): State<Inbox>, body: Bytes) -> StatusCode {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut inbox = inbox.lock().unwrap();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|resource| &resource.attributes)
            .find(|attribute| attribute.key == "service.name")
            .and_then(|attribute| attribute.value.as_ref()?.value.as_ref())
            .map(|value| match value {
                AnyValue::StringValue(name) => name.clone(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                inbox.push(Received {
                    service: service.clone(),
                    name: span.name,
                    trace_id: span.trace_id,
                });
            }
        }
    }
    StatusCode::OK
}

/// Starts a component binary exporting to `collector`, with short batch
/// delays so the test's spans are not held back.
fn start(binary: &str, database_url: &str, collector: &str, env: &[(&str, String)]) -> Child {
    Command::new(workspace_binary(binary))
        .env("DATABASE_URL", database_url)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", collector)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("PLAT_SECRETS_KEY", plat_tests::SECRETS_KEY)
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| panic!("start {binary}: {error}"))
}

/// SIGTERM, then wait: the process flushes its buffered spans on the way out.
async fn terminate(mut child: Child) {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exited with {status}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_request_and_the_run_it_queued_export_one_trace(pool: PgPool) {
    let app = TestApp::spawn_with(pool, Workers::COMPILER_ONLY).await;
    let function = app.ready_function("traced", HELLO, json!({})).await;

    let inbox = Inbox::default();
    let collector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_url = format!("http://{}", collector.local_addr().unwrap());
    let router = Router::new()
        .route("/v1/traces", post(receive))
        .with_state(inbox.clone());
    tokio::spawn(async move { axum::serve(collector, router).await });

    let database_url = app.database_url();
    let port = free_port();
    let api = start(
        "api",
        &database_url,
        &collector_url,
        &[("PLAT_LISTEN", format!("127.0.0.1:{port}"))],
    );
    let executor = start(
        "worker-executor",
        &database_url,
        &collector_url,
        &[(
            "PLAT_MODULE_CACHE_DIR",
            module_cache_dir().display().to_string(),
        )],
    );

    let base = format!("http://127.0.0.1:{port}");
    wait_until_ready(&base).await;
    let admin = client_with_key(ADMIN_KEY);

    let request_id = "trace-export-test-request";
    let reply = admin
        .post(format!("{base}/functions/{function}/execute?wait=60"))
        .header("x-request-id", request_id)
        .json(&json!({ "name": "trace" }))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    let execution: Value = reply.json().await.unwrap();
    assert_eq!(execution["status"], "SUCCEEDED", "{execution}");

    terminate(api).await;
    terminate(executor).await;

    let expected_trace: Vec<u8> = Sha256::digest(request_id.as_bytes())[..16].to_vec();
    let received = inbox.lock().unwrap().clone();
    let in_trace: Vec<&Received> = received
        .iter()
        .filter(|span| span.trace_id == expected_trace)
        .collect();
    assert!(
        in_trace
            .iter()
            .any(|span| span.service == "plat-api" && span.name == "request"),
        "no request span from plat-api in the trace; received: {received:?}"
    );
    assert!(
        in_trace
            .iter()
            .any(|span| span.service == "plat-worker-executor" && span.name == "job"),
        "no job span from plat-worker-executor in the trace; received: {received:?}"
    );
    // Requests with other ids (the readiness probes) are other traces.
    assert!(
        received.iter().any(|span| span.trace_id != expected_trace),
        "every span landed in one trace: {received:?}"
    );
}
