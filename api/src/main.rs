use clap::{Parser, Subcommand};
use plat_api::ApiConfig;

/// Plat API server. Applies pending migrations at start (unless told not to).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// PostgreSQL connection string.
    #[arg(long, env = "DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// The schema owner's connection string, used only to apply migrations
    /// (they create tables and the service roles). Default: DATABASE_URL.
    /// With the API connecting as a member of `plat_api`
    /// (docs/security.md, "Database roles"), set this, or run `api migrate`
    /// as the owner beforehand and set PLAT_MIGRATE_AT_START=false.
    #[arg(long, env = "PLAT_MIGRATION_DATABASE_URL", global = true)]
    migration_database_url: Option<String>,
    /// Apply pending migrations when the server starts.
    #[arg(long, env = "PLAT_MIGRATE_AT_START", default_value_t = true, action = clap::ArgAction::Set)]
    migrate_at_start: bool,
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
    let migrate_only = matches!(cli.command, Some(Command::Migrate));
    if migrate_only || cli.migrate_at_start {
        let owner_url = cli.migration_database_url.as_deref().unwrap_or(&url);
        let owner = plat_common::db::connect(owner_url, 2).await?;
        // Under sqlx's advisory lock: many API processes may start at once.
        plat_common::db::migrate(&owner).await?;
        owner.close().await;
        if migrate_only {
            tracing::info!("migrations applied");
            return Ok(());
        }
    }
    let pool = plat_common::db::connect(&url, cli.config.db_max_connections).await?;
    let shutdown = plat_common::shutdown::on_signal();
    plat_api::serve(pool, cli.config, shutdown).await
}
