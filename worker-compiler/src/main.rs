use clap::Parser;
use plat_worker_compiler::CompilerConfig;

/// Plat compiler worker: builds function sources to WebAssembly.
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
    config: CompilerConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = plat_common::telemetry::init("plat-worker-compiler");
    let cli = Cli::parse();
    let shutdown = plat_common::shutdown::on_signal();
    if let Some(listen) = cli.metrics_listen {
        plat_common::metrics::start_endpoint(listen);
    }
    let pool = plat_common::db::connect(&cli.database_url, 4).await?;
    plat_worker_compiler::run(pool, cli.config, shutdown).await
}
