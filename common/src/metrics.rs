//! Prometheus metrics. Every component records into one process-wide
//! registry (the `metrics` facade with the Prometheus recorder); the API
//! serves it at `GET /metrics`, and a worker process serves it on its own
//! address when `PLAT_METRICS_LISTEN` is set, through the exporter's own
//! listener. Under `plat up` the three
//! components share one process, so the API's `/metrics` shows them all.
//!
//! The metric names are listed in docs/observability.md.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{
    BuildError, ExporterFuture, Matcher, PrometheusBuilder, PrometheusHandle,
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Buckets (seconds) for request and job durations: 0.5 ms to 5 min.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), DURATION_BUCKETS)
        .expect("the buckets are not empty")
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's registry, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder is installed already (a test
        // binary's second harness): that one then keeps recording.
        if ::metrics::set_global_recorder(recorder).is_err() {
            tracing::debug!("a metrics recorder was installed already");
        }
        handle
    })
}

/// The metrics in the Prometheus text format.
pub fn render() -> String {
    handle().render()
}

/// Why a worker's scrape endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
enum EndpointError {
    /// The exporter could not bind `listen` or build its recorder.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Something recorded metrics before the endpoint was set up, so the
    /// registry exists already without it.
    #[error("the registry was installed before its endpoint")]
    AlreadyInstalled,
}

/// Installs the registry with a scrape endpoint of its own on `listen`
/// (unauthenticated, at any path, `/metrics` included) and serves it in the
/// background until the process ends: for worker processes, which have no
/// API. Call it first thing in `main`, inside the runtime. A failure is
/// logged, and the worker runs without the endpoint. Bind it to an address
/// only the scraper reaches.
pub fn start_endpoint(listen: SocketAddr) {
    match endpoint(listen) {
        Ok(exporter) => {
            tracing::info!(address = %listen, "serving metrics at /metrics");
            tokio::spawn(async move {
                if let Err(error) = exporter.await {
                    tracing::error!(?error, %listen, "the metrics endpoint stopped");
                }
            });
        }
        Err(error) => tracing::error!(%error, %listen, "cannot serve metrics"),
    }
}

fn endpoint(listen: SocketAddr) -> Result<ExporterFuture, EndpointError> {
    let (recorder, exporter) = builder().with_http_listener(listen).build()?;
    HANDLE
        .set(recorder.handle())
        .map_err(|_| EndpointError::AlreadyInstalled)?;
    ::metrics::set_global_recorder(recorder).map_err(|_| EndpointError::AlreadyInstalled)?;
    Ok(exporter)
}

/// Reports the pool's connections (`in_use`, `idle`) every few seconds as
/// `plat_db_pool_connections{component, state}`, until `shutdown`.
pub async fn watch_pool(component: &'static str, pool: PgPool, shutdown: CancellationToken) {
    handle();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => record_pool(component, &pool),
        }
    }
}

/// Sets `plat_db_pool_connections` for `pool` now.
pub fn record_pool(component: &'static str, pool: &PgPool) {
    let (size, idle) = (pool.size() as f64, pool.num_idle() as f64);
    ::metrics::gauge!("plat_db_pool_connections", "component" => component, "state" => "idle")
        .set(idle);
    ::metrics::gauge!("plat_db_pool_connections", "component" => component, "state" => "in_use")
        .set((size - idle).max(0.0));
}
