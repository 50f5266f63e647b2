use clap::Parser;
use plat_common::secrets::{PreviousSecretsKeys, SecretsKey};
use plat_worker_executor::ExecutorConfig;

/// Plat executor worker: runs function modules in wasmtime.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// PostgreSQL connection string.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Serve Prometheus metrics at `/metrics` on this address (no
    /// authentication: bind it where only the scraper reaches).
    #[arg(long, env = "PLAT_METRICS_LISTEN")]
    metrics_listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    config: ExecutorConfig,
    /// Key that decrypts environments (base64 or hex of 32 bytes); the same
    /// as the API's.
    #[arg(long, env = "PLAT_SECRETS_KEY", hide_env_values = true)]
    secrets_key: Option<SecretsKey>,
    /// Keys `PLAT_SECRETS_KEY` replaced, comma-separated, during a rotation:
    /// the same as the API's.
    #[arg(
        long,
        env = "PLAT_SECRETS_PREVIOUS_KEYS",
        hide_env_values = true,
        default_value = ""
    )]
    secrets_previous_keys: PreviousSecretsKeys,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = plat_common::telemetry::init("plat-worker-executor");
    let mut cli = Cli::parse();
    cli.config.secrets_key = cli.secrets_key.take();
    cli.config.secrets_previous_keys = std::mem::take(&mut cli.secrets_previous_keys);
    let shutdown = plat_common::shutdown::on_signal();
    if let Some(listen) = cli.metrics_listen {
        plat_common::metrics::start_endpoint(listen);
    }
    let pool = plat_common::db::connect(&cli.database_url, 8).await?;
    plat_worker_executor::run(pool, cli.config, shutdown).await
}
