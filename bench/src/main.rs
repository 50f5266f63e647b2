use clap::Parser;
use plat_bench::options::Options;
use tracing_subscriber::EnvFilter;

/// Warnings only unless `RUST_LOG` says otherwise: the components' info
/// lines (one per request, build and worker start) would bury the bench's
/// progress. sqlx's slow-statement warnings are the bench's own bulk set-up.
const DEFAULT_FILTER: &str = "warn,sqlx::query=error";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    // Ctrl-C drops the run, and with it each throwaway cluster (whose `Drop`
    // stops the server and removes its folder) instead of leaving it behind.
    tokio::select! {
        result = plat_bench::run(Options::parse()) => result.map(drop),
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted: stopped the throwaway clusters"),
    }
}
