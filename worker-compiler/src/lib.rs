//! Plat's compiler worker: claims compile jobs from Postgres and builds each
//! function version to a wasm32-wasip1 module in a sandbox.

pub mod compile;
mod config;
mod worker;

use std::sync::Arc;

use anyhow::Context as _;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use config::{CompilerConfig, DEFAULT_CACHE_DIR};

/// Prepares the toolchain (once per process; the first start on a machine
/// builds serde and serde_json), then claims and builds jobs until `shutdown`.
pub async fn run(
    pool: PgPool,
    config: CompilerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let toolchain = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        prepared = compile::RustToolchain::prepare(&config.cache_dir) => {
            prepared.context("preparing the Rust toolchain")?
        }
    };
    run_with_toolchain(pool, config, Arc::new(toolchain), shutdown).await;
    Ok(())
}

/// Like [`run`] with an already prepared toolchain (tests share one).
pub async fn run_with_toolchain(
    pool: PgPool,
    config: CompilerConfig,
    toolchain: Arc<compile::RustToolchain>,
    shutdown: CancellationToken,
) {
    let loop_config = config.loop_config();
    let queue = worker::CompileQueue {
        pool: pool.clone(),
        toolchain,
        limits: config.limits(),
        worker_id: plat_common::worker::worker_id("compile"),
        lease: loop_config.lease,
    };
    tracing::info!(worker_id = %queue.worker_id, concurrency = loop_config.concurrency, "compiler worker started");
    plat_common::worker::run(Arc::new(queue), pool, loop_config, shutdown).await;
}
