//! Plat's executor worker: claims execution jobs from Postgres and runs each
//! function's module in wasmtime under its limits.

mod completions;
mod config;
mod environments;
mod modules;
mod prefetch;
pub mod runtime;
mod scan_start;
mod worker;

use std::sync::Arc;

use plat_common::notify::{self, Heard};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use config::ExecutorConfig;

/// Claims and runs executions until `shutdown`, then stops in two stages.
pub async fn run(
    pool: PgPool,
    config: ExecutorConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let runtime = Arc::new(runtime::Runtime::with_disk_cache(
        config.module_cache_dir(),
    )?);
    let loop_config = config.loop_config();
    let queue = Arc::new(worker::ExecuteQueue {
        pool: pool.clone(),
        modules: modules::ModuleCache::new(runtime.clone(), config.module_cache_size),
        environments: environments::Environments::new(
            config
                .secrets_key
                .clone()
                .map(|key| key.with_previous(&config.secrets_previous_keys)),
        ),
        completions: completions::Completions::start(pool.clone()),
        runtime,
        run_threads: runtime::RunThreads::start(config.runs_at_once())?,
        prefetch: prefetch::Prefetch::new(config.prefetch),
        scan_start: scan_start::ScanStart::default(),
        worker_id: plat_common::worker::worker_id("execute"),
        lease: loop_config.lease,
        running: Default::default(),
    });
    tracing::info!(
        worker_id = %queue.worker_id,
        runs_at_once = config.runs_at_once(),
        claimed_at_most = loop_config.concurrency,
        "executor worker started"
    );
    let preload = tokio::spawn({
        let (queue, pool) = (queue.clone(), pool.clone());
        async move {
            // Only a head start: a failure here is retried by the first run.
            if let Err(error) = queue.modules.preload_newest_engine(&pool).await {
                tracing::warn!(%error, "could not preload the JavaScript engine");
            }
        }
    });
    let cancels = tokio::spawn(notify::listen(
        pool.clone(),
        notify::EXECUTION_CANCEL,
        shutdown.clone(),
        {
            let queue = queue.clone();
            move |heard| {
                if let Heard::Notification(payload) = heard {
                    if let Ok(execution_id) = payload.parse() {
                        queue.cancel_execution(execution_id);
                    }
                }
            }
        },
    ));
    let pool_gauges = tokio::spawn(plat_common::metrics::watch_pool(
        "executor",
        pool.clone(),
        shutdown.clone(),
    ));
    plat_common::worker::run(queue, pool, loop_config, shutdown).await;
    pool_gauges.abort();
    cancels.abort();
    preload.abort();
    Ok(())
}
