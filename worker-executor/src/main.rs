use clap::Parser;
use plat_worker_executor::ExecutorConfig;

/// Plat executor worker: runs function modules in wasmtime.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// PostgreSQL connection string.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    #[command(flatten)]
    config: ExecutorConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    plat_common::telemetry::init();
    let cli = Cli::parse();
    let shutdown = plat_common::shutdown::on_signal();
    let pool = plat_common::db::connect(&cli.database_url, 8).await?;
    plat_worker_executor::run(pool, cli.config, shutdown).await
}
