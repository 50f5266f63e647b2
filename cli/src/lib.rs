//! The `plat` command. Today: `plat up` runs the whole platform in one
//! process (API, one compiler, one executor), with a PostgreSQL cluster of
//! its own unless `DATABASE_URL` is given; `plat migrate` applies the schema.

pub mod postgres;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use plat_api::ApiConfig;
use plat_worker_compiler::CompilerConfig;
use plat_worker_executor::ExecutorConfig;

use crate::postgres::{LocalPostgres, Options};

/// Plat: send a function's source, run it on demand.
#[derive(Debug, Parser)]
#[command(name = "plat", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole platform locally: API, one compiler worker, one executor.
    Up(Box<Up>),
    /// Apply pending database migrations and exit.
    Migrate(Database),
}

/// Which database to use: `DATABASE_URL`, or a local cluster of our own.
#[derive(Debug, Args)]
struct Database {
    /// PostgreSQL connection string; without it, Plat runs its own cluster.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Folder for Plat's local state: the PostgreSQL cluster (`postgres/`)
    /// and the compiler's cache (`cache/`). Survives restarts.
    #[arg(long, env = "PLAT_DATA_DIR", default_value = ".plat")]
    data_dir: PathBuf,
    /// Port of the local PostgreSQL cluster (127.0.0.1 only).
    #[arg(long, env = "PLAT_PG_PORT", default_value_t = 54329)]
    pg_port: u16,
}

#[derive(Debug, Args)]
struct Up {
    #[command(flatten)]
    database: Database,
    #[command(flatten)]
    api: ApiConfig,
    #[command(flatten)]
    compiler: CompilerConfig,
    #[command(flatten)]
    executor: ExecutorConfig,
}

/// The local cluster's database.
const DATABASE: &str = "plat";

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(up) => run_up(*up).await,
        Command::Migrate(database) => {
            let (url, cluster) = database.resolve().await?;
            let pool = plat_common::db::connect(&url, 2).await?;
            plat_common::db::migrate(&pool).await?;
            println!("migrations applied to {url}");
            if let Some(cluster) = cluster {
                cluster.stop()?;
            }
            Ok(())
        }
    }
}

impl Database {
    /// The URL to use, starting the local cluster (and creating its `plat`
    /// database) when no `DATABASE_URL` was given.
    async fn resolve(&self) -> anyhow::Result<(String, Option<LocalPostgres>)> {
        if let Some(url) = &self.database_url {
            return Ok((url.clone(), None));
        }
        let options = Options {
            data_dir: absolute(&self.data_dir.join("postgres"))?,
            port: self.pg_port,
            settings: Vec::new(),
        };
        println!(
            "starting PostgreSQL in {} on 127.0.0.1:{}",
            options.data_dir.display(),
            options.port
        );
        let cluster = tokio::task::spawn_blocking(move || LocalPostgres::start(options)).await??;
        let admin = plat_common::db::connect(&cluster.url("postgres"), 1).await?;
        let exists: Option<(i32,)> = sqlx::query_as("select 1 from pg_database where datname = $1")
            .bind(DATABASE)
            .fetch_optional(&admin)
            .await?;
        if exists.is_none() {
            sqlx::query(&format!("create database {DATABASE}"))
                .execute(&admin)
                .await?;
        }
        admin.close().await;
        Ok((cluster.url(DATABASE), Some(cluster)))
    }
}

async fn run_up(mut up: Up) -> anyhow::Result<()> {
    let (url, cluster) = up.database.resolve().await?;
    // The compiler's cache lives with the rest of the local state unless
    // configured elsewhere.
    if up.compiler.cache_dir == Path::new(plat_worker_compiler::DEFAULT_CACHE_DIR) {
        up.compiler.cache_dir = up.database.data_dir.join("cache");
    }
    let result = serve(&url, up).await;
    if let Some(cluster) = cluster {
        println!("stopping PostgreSQL");
        tokio::task::spawn_blocking(move || cluster.stop()).await??;
    }
    result
}

async fn serve(url: &str, up: Up) -> anyhow::Result<()> {
    let pool = plat_common::db::connect(url, up.api.db_max_connections + 8)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    plat_common::db::migrate(&pool)
        .await
        .context("applying migrations")?;
    let listen = up.api.listen;
    let shutdown = plat_common::shutdown::on_signal();

    let mut components = tokio::task::JoinSet::new();
    components.spawn(named(
        "api",
        plat_api::serve(pool.clone(), up.api, shutdown.clone()),
    ));
    println!("preparing the Rust toolchain (the first start builds serde once, up to a minute)");
    components.spawn(named(
        "compiler",
        plat_worker_compiler::run(pool.clone(), up.compiler, shutdown.clone()),
    ));
    components.spawn(named(
        "executor",
        plat_worker_executor::run(pool, up.executor, shutdown.clone()),
    ));
    print_welcome(listen, url);

    // The first component to stop (an error, or the shutdown signal) stops
    // the others; the first error is the result.
    let mut result = Ok(());
    while let Some(ended) = components.join_next().await {
        let (name, outcome) = ended.context("a component panicked")?;
        if let Err(error) = outcome {
            tracing::error!(
                component = name,
                error = format!("{error:#}"),
                "component failed; stopping"
            );
            if result.is_ok() {
                result = Err(error.context(format!("the {name} failed")));
            }
        }
        shutdown.cancel();
    }
    result
}

async fn named(
    name: &'static str,
    component: impl std::future::Future<Output = anyhow::Result<()>>,
) -> (&'static str, anyhow::Result<()>) {
    (name, component.await)
}

fn print_welcome(listen: SocketAddr, database_url: &str) {
    let base = format!("http://{listen}");
    println!();
    println!("Plat is running at {base}   (database: {database_url}; Ctrl-C stops)");
    println!();
    println!("Try it:");
    println!(
        r#"  curl -s -X POST {base}/functions -H 'content-type: application/json' -d '{{"name":"hello","language":"rust","source":"use serde_json::{{json, Value}};\npub fn handler(input: Value) -> Result<Value, String> {{\n    Ok(json!({{ \"greeting\": format!(\"Hello, {{}}!\", input[\"name\"].as_str().unwrap_or(\"world\")) }}))\n}}\n"}}'"#
    );
    println!("  curl -s {base}/functions/hello          # until \"status\":\"READY\"");
    println!(r#"  curl -s -X POST {base}/functions/hello/execute -d '{{"name":"Ada"}}'"#);
    println!();
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    Ok(std::env::current_dir()?.join(path))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_flag_of_every_component_fits_in_one_command_line() {
        Cli::command().debug_assert();
    }
}
