use clap::{Parser, Subcommand};
use plat_api::ApiConfig;

/// Plat API server. Applies pending migrations at start.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// PostgreSQL connection string.
    #[arg(long, env = "DATABASE_URL", global = true)]
    database_url: Option<String>,
    #[command(flatten)]
    config: ApiConfig,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending database migrations and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = plat_common::telemetry::init("plat-api");
    let cli = Cli::parse();
    let Some(url) = cli.database_url else {
        anyhow::bail!("set DATABASE_URL (or --database-url) to a PostgreSQL connection string");
    };
    let pool = plat_common::db::connect(&url, cli.config.db_max_connections).await?;
    // Under sqlx's advisory lock: many API processes may start at once.
    plat_common::db::migrate(&pool).await?;
    if let Some(Command::Migrate) = cli.command {
        tracing::info!("migrations applied");
        return Ok(());
    }
    let shutdown = plat_common::shutdown::on_signal();
    plat_api::serve(pool, cli.config, shutdown).await
}
