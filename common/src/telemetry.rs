//! Logging set-up shared by every binary.
//!
//! Logs go to stderr, filtered by `RUST_LOG`: as text by default, or as one
//! JSON object per line with `LOG_FORMAT=json` (for log shippers). Each line
//! carries the fields of its spans: `request_id` for everything an API
//! request does, and `request_id`, `job_id` and `function_id` for what a
//! worker does with the job that request queued.

use tracing_subscriber::EnvFilter;

const DEFAULT_FILTER: &str = "info,sqlx=warn,wasmtime=warn,cranelift=warn";

/// Installs a `tracing` subscriber writing to stderr. Safe to call more than
/// once: later calls are no-ops.
pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json_requested() {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init()
    } else {
        builder.try_init()
    };
}

/// Whether `LOG_FORMAT` asks for JSON lines.
fn json_requested() -> bool {
    std::env::var("LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"))
}

/// Like [`init`], but through the test harness's capture, so the logs of a
/// test are shown only when it fails.
pub fn init_for_tests() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
