//! The platform under test, in-process: the API on a loopback port, a
//! compiler, and as many executors as a scenario asks for. Each component
//! gets a pool of its own, as it would as a separate process, and its
//! configuration from the same defaults its binary uses.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use plat_api::ApiConfig;
use plat_worker_compiler::compile::Toolchains;
use plat_worker_compiler::CompilerConfig;
use plat_worker_executor::ExecutorConfig;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection as _, PgConnection, PgPool};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::client::Api;
use crate::sources;

/// Connections of one executor's pool: what `worker-executor`'s `main` opens.
const EXECUTOR_CONNECTIONS: u32 = 8;
/// Connections of the compiler's pool: what `worker-compiler`'s `main` opens.
const COMPILER_CONNECTIONS: u32 = 4;
/// The bench's own pool: polling, producers' backlog checks, result queries.
const BENCH_CONNECTIONS: u32 = 8;
/// How long a component may take to stop before the run reports it.
const STOP_PATIENCE: Duration = Duration::from_secs(90);

// Each component's configuration comes from parsing an empty command line,
// so new options and changed defaults reach the bench without edits here
// (and `PLAT_*` variables apply, as they would to the binaries).
#[derive(Parser)]
struct ApiDefaults {
    #[command(flatten)]
    api: ApiConfig,
}

#[derive(Parser)]
struct CompilerDefaults {
    #[command(flatten)]
    compiler: CompilerConfig,
}

#[derive(Parser)]
struct ExecutorDefaults {
    #[command(flatten)]
    executor: ExecutorConfig,
}

/// The admin key the bench's API bootstraps and every bench call sends.
pub const BENCH_KEY: &str = "plat_bench-admin-key-0000000000000000000000000000";

/// The API's defaults, with the bench's admin bootstrapped and the rate
/// limits off: the bench measures the platform, not a limiter sized for
/// people (bench/README.md).
pub fn api_config() -> anyhow::Result<ApiConfig> {
    let mut config = ApiConfig {
        bootstrap_admin_key: Some(BENCH_KEY.to_owned().into()),
        rate_limit_admin_per_sec: 0.0,
        ..ApiDefaults::try_parse_from(["plat-bench"])?.api
    };
    // The webhooks scenario's receiver listens on 127.0.0.1, and signing
    // needs a secrets key (a fresh one unless PLAT_SECRETS_KEY gives it).
    config.webhooks.outbound_allow = "127.0.0.1".parse()?;
    if config.secrets_key.is_none() {
        config.secrets_key = Some(secrets_key().parse()?);
    }
    Ok(config)
}

/// The key the bench's API seals sources with and its compilers open them
/// with: PLAT_SECRETS_KEY, or one made for this process.
fn secrets_key() -> String {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        std::env::var("PLAT_SECRETS_KEY")
            .unwrap_or_else(|_| plat_common::secrets::SecretsKey::generate())
    })
    .clone()
}

pub fn compiler_config() -> anyhow::Result<CompilerConfig> {
    let mut config = CompilerDefaults::try_parse_from(["plat-bench"])?.compiler;
    if config.secrets_key.is_none() {
        config.secrets_key = Some(secrets_key().parse()?);
    }
    Ok(config)
}

pub fn executor_config() -> anyhow::Result<ExecutorConfig> {
    Ok(ExecutorDefaults::try_parse_from(["plat-bench"])?.executor)
}

/// One running component; stopped (two-stage, as on SIGTERM) by
/// [`Component::stop`], or told to stop when dropped.
pub struct Component {
    name: &'static str,
    stop: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Component {
    fn spawn(
        name: &'static str,
        stop: CancellationToken,
        run: impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    ) -> Self {
        Self {
            name,
            stop,
            task: Some(tokio::spawn(run)),
        }
    }

    /// Asks it to stop, then waits until it has.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.join().await
    }

    async fn join(&mut self) -> anyhow::Result<()> {
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        let name = self.name;
        tokio::time::timeout(STOP_PATIENCE, task)
            .await
            .with_context(|| format!("the {name} did not stop within {STOP_PATIENCE:?}"))?
            .with_context(|| format!("the {name} panicked"))?
            .with_context(|| format!("the {name} failed"))
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A group of executor workers started together.
pub struct Executors(Vec<Component>);

impl Executors {
    /// Stops them all at once (so none keeps draining while another stops).
    pub async fn stop(self) -> anyhow::Result<()> {
        for executor in &self.0 {
            executor.stop.cancel();
        }
        for mut executor in self.0 {
            executor.join().await?;
        }
        Ok(())
    }
}

pub struct Platform {
    /// The bench's own pool, for measurements and set-up.
    pub db: PgPool,
    pub api: Api,
    /// The server's main process, for CPU accounting (`crate::cpu`).
    pub postmaster: Option<u32>,
    connect: PgConnectOptions,
    shutdown: CancellationToken,
    api_server: Option<Component>,
    compiler: Option<Component>,
    /// The long-lived compiler's cache, kept between runs (the compile
    /// scenario measures a fresh one separately).
    cache_dir: PathBuf,
    /// The executors' compiled-code cache: shared by all of them, as by the
    /// executors of one machine, but new for each platform, so each profile
    /// starts cold and no run leaves `.plat/module-cache` behind.
    module_cache: TempDir,
    echo: Option<Uuid>,
}

impl Platform {
    /// Starts the API and a compiler on the database at `url`, served by
    /// the `postmaster` process.
    pub async fn start(url: &str, postmaster: Option<u32>) -> anyhow::Result<Self> {
        let connect: PgConnectOptions = url.parse()?;
        let db = plat_common::db::pool_options(BENCH_CONNECTIONS)
            .connect_with(connect.clone())
            .await?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let api = Api::new(format!("http://{}", listener.local_addr()?))?;
        let shutdown = CancellationToken::new();
        let mut platform = Self {
            db,
            api,
            postmaster,
            connect,
            shutdown,
            api_server: None,
            compiler: None,
            cache_dir: long_lived_cache_dir(),
            module_cache: tempfile::Builder::new()
                .prefix("plat-bench-modules-")
                .tempdir()?,
            echo: None,
        };
        let config = api_config()?;
        let pool = platform.pool(config.db_max_connections).await?;
        let stop = platform.shutdown.child_token();
        platform.api_server = Some(Component::spawn(
            "API",
            stop.clone(),
            plat_api::serve_on(listener, pool, config, stop),
        ));
        platform.ensure_compiler().await?;
        Ok(platform)
    }

    /// A pool of its own for one component, as each process has.
    pub async fn pool(&self, max_connections: u32) -> anyhow::Result<PgPool> {
        Ok(plat_common::db::pool_options(max_connections)
            .connect_with(self.connect.clone())
            .await?)
    }

    /// A connection outside every pool (for a session that must stay one
    /// session, such as an open transaction).
    pub async fn connection(&self) -> anyhow::Result<PgConnection> {
        Ok(PgConnection::connect_with(&self.connect).await?)
    }

    /// Starts `count` executor workers with the default configuration.
    pub async fn start_executors(&self, count: usize) -> anyhow::Result<Executors> {
        let mut executors = Vec::with_capacity(count);
        for _ in 0..count {
            let pool = self.pool(EXECUTOR_CONNECTIONS).await?;
            let config = ExecutorConfig {
                module_cache_dir: self.module_cache.path().join("cache"),
                ..executor_config()?
            };
            let stop = self.shutdown.child_token();
            executors.push(Component::spawn(
                "executor",
                stop.clone(),
                plat_worker_executor::run(pool, config, stop),
            ));
        }
        Ok(Executors(executors))
    }

    /// Starts the long-lived compiler unless it runs. It prepares its
    /// toolchains first, so its first build waits for that.
    pub async fn ensure_compiler(&mut self) -> anyhow::Result<()> {
        if self.compiler.is_some() {
            return Ok(());
        }
        let config = CompilerConfig {
            cache_dir: self.cache_dir.clone(),
            ..compiler_config()?
        };
        let (pool, stop) = (
            self.pool(COMPILER_CONNECTIONS).await?,
            self.shutdown.child_token(),
        );
        self.compiler = Some(Component::spawn(
            "compiler",
            stop.clone(),
            plat_worker_compiler::run(pool, config, stop),
        ));
        Ok(())
    }

    /// Stops the long-lived compiler, so that another one gets every job.
    pub async fn stop_compiler(&mut self) -> anyhow::Result<()> {
        match self.compiler.take() {
            Some(compiler) => compiler.stop().await,
            None => Ok(()),
        }
    }

    /// Starts a compiler with toolchains the caller prepared (and timed),
    /// caching in `cache_dir`: what `plat_worker_compiler::run` does after
    /// its own preparation.
    pub async fn start_compiler_with(
        &self,
        toolchains: Toolchains,
        cache_dir: PathBuf,
    ) -> anyhow::Result<Component> {
        let config = CompilerConfig {
            cache_dir,
            ..compiler_config()?
        };
        let (pool, stop) = (
            self.pool(COMPILER_CONNECTIONS).await?,
            self.shutdown.child_token(),
        );
        let run = plat_worker_compiler::run_with_toolchains(
            pool,
            config,
            Arc::new(toolchains),
            stop.clone(),
        );
        Ok(Component::spawn("fresh compiler", stop, run))
    }

    /// Registers a function and waits until it is READY.
    pub async fn ready_function(
        &mut self,
        name: &str,
        language: &str,
        source: &str,
    ) -> anyhow::Result<Uuid> {
        self.ensure_compiler().await?;
        let id = self.api.create_function(name, language, source).await?;
        self.api.wait_ready(id).await?;
        Ok(id)
    }

    /// The trivial Rust function most scenarios run (built once per profile).
    pub async fn echo_function(&mut self) -> anyhow::Result<Uuid> {
        if let Some(id) = self.echo {
            return Ok(id);
        }
        let id = self
            .ready_function("echo", "rust", sources::ECHO_RUST)
            .await?;
        self.echo = Some(id);
        Ok(id)
    }

    /// Stops every component, then closes the pools.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(compiler) = self.compiler.take() {
            compiler.stop().await?;
        }
        if let Some(api) = self.api_server.take() {
            api.stop().await?;
        }
        self.db.close().await;
        Ok(())
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        // Every component's token is a child of this one.
        self.shutdown.cancel();
    }
}

/// `target/plat-bench-cache`: the prebuilt Rust dependencies survive between
/// runs, as `.plat/cache` does for `plat up`, so only the compile scenario
/// pays for a first preparation.
fn long_lived_cache_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("plat-bench-cache")
}
