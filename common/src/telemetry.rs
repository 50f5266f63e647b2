//! Logging and tracing set-up shared by every binary.
//!
//! Logs go to stderr, filtered by `RUST_LOG`: as text by default, or as one
//! JSON object per line with `LOG_FORMAT=json` (for log shippers). Each line
//! carries the fields of its spans: `request_id` for everything an API
//! request does, and `request_id`, `job_id` and `function_id` for what a
//! worker does with the job that request queued.
//!
//! When `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! is set, the same spans are also exported as OpenTelemetry traces over
//! OTLP/HTTP (protobuf). An API request and the jobs it queued run in
//! different processes that share nothing but the database row, so instead of
//! storing a trace context on every job, both sides derive the trace id from
//! the request id ([`join_request`]): the request's span and the worker's span
//! land in one trace without a byte more on the hot path.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use sha2::{Digest as _, Sha256};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{fmt, EnvFilter};

const DEFAULT_FILTER: &str = "info,sqlx=warn,wasmtime=warn,cranelift=warn";

/// Whether spans go to an OpenTelemetry exporter; [`join_request`] is free
/// when they do not.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Keeps the trace exporter alive; dropping it flushes the spans still
/// buffered. Hold it in `main` until the process is about to exit.
#[must_use = "dropping the guard stops the trace export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            EXPORTING.store(false, Ordering::Relaxed);
            if let Err(error) = provider.shutdown() {
                eprintln!("flushing traces on exit failed: {error}");
            }
        }
    }
}

/// Installs a `tracing` subscriber writing to stderr, plus the OTLP trace
/// exporter when the environment names an endpoint. `service` is the
/// `service.name` traces carry unless `OTEL_SERVICE_NAME` says otherwise.
/// Safe to call more than once: later calls install nothing.
pub fn init(service: &'static str) -> Telemetry {
    let filter = filter();
    let (text, json) = if json_requested() {
        let json = fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stderr);
        (None, Some(json))
    } else {
        (Some(fmt::layer().with_writer(std::io::stderr)), None)
    };
    let provider = export_requested().then(|| tracer_provider(service));
    let otel = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("plat")));
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .with(otel)
        .try_init()
        .is_ok();
    let provider = provider.filter(|_| installed);
    if provider.is_some() {
        EXPORTING.store(true, Ordering::Relaxed);
        tracing::info!(service, "exporting traces over OTLP/HTTP");
    }
    Telemetry { provider }
}

/// `RUST_LOG`, or the default filter when it is unset or invalid.
fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
}

/// Whether `LOG_FORMAT` asks for JSON lines.
fn json_requested() -> bool {
    std::env::var("LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"))
}

/// Whether the standard OpenTelemetry variables name somewhere to send
/// traces. The exporter reads them itself (and `OTEL_EXPORTER_OTLP_HEADERS`,
/// `…_TIMEOUT`); the SDK reads `OTEL_TRACES_SAMPLER(_ARG)` and `OTEL_BSP_*`.
fn export_requested() -> bool {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|value| !value.trim().is_empty()))
}

/// A batching OTLP/HTTP exporter. The batch processor runs on a thread of its
/// own, so exporting never blocks a request or a run; when the collector is
/// slow, spans beyond the queue (`OTEL_BSP_MAX_QUEUE_SIZE`) are dropped rather
/// than held in memory.
fn tracer_provider(service: &'static str) -> SdkTracerProvider {
    let resource = if std::env::var("OTEL_SERVICE_NAME").is_ok() {
        Resource::builder().build()
    } else {
        Resource::builder().with_service_name(service).build()
    };
    let builder = SdkTracerProvider::builder().with_resource(resource);
    match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(exporter) => builder.with_batch_exporter(exporter).build(),
        Err(error) => {
            // Tracing is an aid, not a dependency: run without it.
            eprintln!("OTLP trace export disabled: {error}");
            builder.build()
        }
    }
}

/// Puts `span` in the trace of the API request `request_id`. Call it before
/// the span is first entered. The API's request span and every worker span
/// for a job that request queued derive the same trace id (and the same
/// parent span id) from the request id, so they form one trace across
/// processes; a `traceidratio` sampler then also decides the same way for all
/// of them. Does nothing when no exporter runs or there is no request id.
pub fn join_request(span: &tracing::Span, request_id: Option<&str>) {
    let Some(request_id) = request_id else {
        return;
    };
    if !EXPORTING.load(Ordering::Relaxed) {
        return;
    }
    let digest = Sha256::digest(request_id.as_bytes());
    let trace_id = TraceId::from_bytes(digest[..16].try_into().expect("16 bytes"));
    let span_id = SpanId::from_bytes(digest[16..24].try_into().expect("8 bytes"));
    let parent = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let context = opentelemetry::Context::new().with_remote_span_context(parent);
    // Fails only when the span was already entered or is disabled by the
    // filter: then it simply stays in a trace of its own.
    let _ = span.set_parent(context);
}

/// Like [`init`], but through the test harness's capture, so the logs of a
/// test are shown only when it fails. Never exports traces.
pub fn init_for_tests() {
    let filter = filter();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
