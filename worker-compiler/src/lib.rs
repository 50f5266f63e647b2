//! Plat's compiler worker: claims compile jobs from Postgres and builds each
//! function version to a WebAssembly module (Rust in a sandbox; TypeScript
//! in-process, against the shared JavaScript engine).

pub mod compile;
mod config;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use config::{CompilerConfig, DEFAULT_CACHE_DIR};

/// Prepares the toolchains (once per process; the first start on a machine
/// builds serde and serde_json), then claims and builds jobs until `shutdown`.
pub async fn run(
    pool: PgPool,
    config: CompilerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let toolchains = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        prepared = compile::Toolchains::prepare(&config.cache_dir) => {
            prepared.context("preparing the toolchains")?
        }
    };
    let mut toolchains = toolchains;
    toolchains.typescript.set_npm(&config.npm_settings());
    run_with_toolchains(pool, config, Arc::new(toolchains), shutdown).await
}

/// Like [`run`] with already prepared toolchains (tests share them). Fails
/// only when the dependency policy file cannot be used.
pub async fn run_with_toolchains(
    pool: PgPool,
    config: CompilerConfig,
    toolchains: Arc<compile::Toolchains>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let secrets_key = config
        .secrets_key
        .clone()
        .map(|key| key.with_previous(&config.secrets_previous_keys))
        .context(
        "PLAT_SECRETS_KEY is not set: the compiler opens the sources it builds with the key the API seals them with",
    )?;
    let policy = compile::policy::PolicySource::new(config.dependency_policy.as_deref())
        .context("loading the dependency policy")?;
    // Executors load the engine from the database; it must be there before
    // the first TypeScript version built with it is READY.
    if !store_js_engine(&pool, &toolchains.typescript, &shutdown).await {
        return Ok(());
    }
    let loop_config = config.loop_config();
    let queue = worker::CompileQueue {
        pool: pool.clone(),
        toolchains,
        policy,
        secrets_key,
        limits: config.limits(),
        worker_id: plat_common::worker::worker_id("compile"),
        lease: loop_config.lease,
    };
    tracing::info!(worker_id = %queue.worker_id, concurrency = loop_config.concurrency, "compiler worker started");
    let pool_gauges = tokio::spawn(plat_common::metrics::watch_pool(
        "compiler",
        pool.clone(),
        shutdown.clone(),
    ));
    plat_common::worker::run(Arc::new(queue), pool, loop_config, shutdown).await;
    pool_gauges.abort();
    Ok(())
}

/// Stores the engine, retrying while the database is unreachable. `false`
/// when shut down first.
async fn store_js_engine(
    pool: &PgPool,
    typescript: &compile::TypeScriptToolchain,
    shutdown: &CancellationToken,
) -> bool {
    let (sha256, module) = typescript.engine();
    let mut delay = Duration::from_millis(100);
    loop {
        match plat_common::js_module::store_engine(pool, sha256, module).await {
            Ok(()) => {
                tracing::info!(
                    engine_sha256 = sha256,
                    bytes = module.len(),
                    "JavaScript engine stored"
                );
                return true;
            }
            Err(error) => {
                tracing::warn!(%error, "could not store the JavaScript engine; retrying");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
