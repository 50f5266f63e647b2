//! The `plat` command.
//!
//! For developers (see docs/cli.md): `plat init` makes a function folder,
//! `plat test` compiles and runs it locally with the platform's own compiler
//! and executor code, `plat deploy` sends it and waits for the build, and
//! `plat invoke`, `executions`, `logs`, `ls`, `info`, `versions`,
//! `rollback`, `deprecate`, `retire`, `rm`, `login`, `logout` talk to the API
//! ([`commands`]).
//!
//! For running Plat: `plat up` runs the whole platform in one process (API,
//! one compiler, one executor), with a PostgreSQL cluster of its own unless
//! `DATABASE_URL` is given; `plat migrate` applies the schema.

pub mod client;
pub mod commands;
pub mod credentials;
pub mod events;
pub mod failure;
pub mod input;
pub mod manifest;
pub mod output;
pub mod source_location;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use plat_api::ApiConfig;
use plat_common::roles::ServiceRole;
use plat_common::secrets::SecretsKey;
use plat_local_postgres::{LocalPostgres, Options};
use plat_worker_compiler::CompilerConfig;
use plat_worker_executor::ExecutorConfig;
use secrecy::ExposeSecret as _;

/// Plat: send a function's source, run it on demand.
#[derive(Debug, Parser)]
#[command(name = "plat", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    options: commands::GlobalOptions,
}

impl Cli {
    /// How results and errors are printed.
    pub fn output(&self) -> output::OutputFormat {
        self.options.output
    }

    /// Whether this command runs the platform, whose logs are its output.
    /// The workflow commands print for people and programs; their logs
    /// (the compiler's, in `plat test`) only show when `RUST_LOG` asks.
    pub fn runs_the_platform(&self) -> bool {
        matches!(self.command, Command::Up(_) | Command::Migrate(_))
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Workflow(commands::Command),
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
    /// Folder for Plat's local state: the PostgreSQL cluster (`postgres/`),
    /// the compiler's cache (`cache/`) and the executor's compiled code
    /// (`module-cache/`). Survives restarts.
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
    service_urls: ServiceUrls,
    #[command(flatten)]
    api: ApiConfig,
    #[command(flatten)]
    compiler: CompilerConfig,
    #[command(flatten)]
    executor: ExecutorConfig,
}

/// How each component connects. With Plat's own cluster, `plat up` makes a
/// login role per service (members of the roles the migrations grant to,
/// docs/security.md "Database roles") with passwords kept in the data
/// folder, and these are ignored. With `DATABASE_URL`, that URL applies the
/// migrations, and each component uses its own URL when given, else
/// `DATABASE_URL` too.
#[derive(Debug, Args)]
struct ServiceUrls {
    /// The API's connection string (a member of `plat_api`).
    #[arg(long, env = "PLAT_API_DATABASE_URL")]
    api_database_url: Option<String>,
    /// The compiler's connection string (a member of `plat_compiler`).
    #[arg(long, env = "PLAT_COMPILER_DATABASE_URL")]
    compiler_database_url: Option<String>,
    /// The executor's connection string (a member of `plat_executor`).
    #[arg(long, env = "PLAT_EXECUTOR_DATABASE_URL")]
    executor_database_url: Option<String>,
}

impl ServiceUrls {
    fn given(&self, role: ServiceRole) -> Option<&String> {
        match role {
            ServiceRole::Api => self.api_database_url.as_ref(),
            ServiceRole::Compiler => self.compiler_database_url.as_ref(),
            ServiceRole::Executor => self.executor_database_url.as_ref(),
        }
    }
}

/// The local cluster's database.
const DATABASE: &str = "plat";

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Workflow(command) => commands::run(command, cli.options).await,
        Command::Up(up) => run_up(*up).await,
        Command::Migrate(database) => {
            let (url, cluster) = database.resolve().await?;
            let migrated = migrate(&url).await;
            if let Some(cluster) = cluster {
                // A cluster that was already running may be serving a
                // `plat up`: leave it as we found it.
                if !cluster.was_running() {
                    stop(cluster).await?;
                }
            }
            migrated?;
            println!("migrations applied to {}", without_password(&url));
            Ok(())
        }
    }
}

async fn migrate(url: &str) -> anyhow::Result<()> {
    let pool = connect(url, 2).await?;
    plat_common::db::migrate(&pool)
        .await
        .context("applying migrations")?;
    pool.close().await;
    Ok(())
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
            "PostgreSQL: {} on 127.0.0.1:{}",
            options.data_dir.display(),
            options.port
        );
        let cluster = tokio::task::spawn_blocking(move || LocalPostgres::start(options))
            .await?
            .context("starting the local PostgreSQL (or set DATABASE_URL to use another)")?;
        if cluster.was_running() {
            println!(
                "PostgreSQL was already running there (a previous `plat` left it): reusing it"
            );
        }
        println!("PostgreSQL log: {}", cluster.log_file().display());
        println!(
            "PostgreSQL superuser `postgres`, password in {}",
            cluster.password_file().display()
        );
        if let Err(error) = create_database(&cluster.url("postgres")).await {
            if !cluster.was_running() {
                stop(cluster).await?;
            }
            return Err(error);
        }
        Ok((cluster.url(DATABASE), Some(cluster)))
    }
}

/// Creates [`DATABASE`] unless it exists (`create database` has no
/// `if not exists`).
async fn create_database(admin_url: &str) -> anyhow::Result<()> {
    let admin = connect(admin_url, 1).await?;
    let exists = sqlx::query_scalar!(
        r#"select exists (select from pg_database where datname = $1) as "exists!""#,
        DATABASE
    )
    .fetch_one(&admin)
    .await?;
    if !exists {
        // `create database` takes no parameters and its name is an
        // identifier: it stays a runtime statement, with the name quoted
        // by the server (`%I`), like the roles in `plat_common::roles`.
        let statement = sqlx::query_scalar!(
            r#"select format('create database %I', $1::text) as "statement!""#,
            DATABASE
        )
        .fetch_one(&admin)
        .await?;
        let created = sqlx::raw_sql(&statement).execute(&admin).await;
        match created {
            Ok(_) => {}
            // Another `plat` created it between our check and now.
            Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("42P04") => {}
            Err(error) => {
                return Err(
                    anyhow::Error::new(error).context(format!("creating database {DATABASE}"))
                )
            }
        }
    }
    admin.close().await;
    Ok(())
}

async fn stop(cluster: LocalPostgres) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || cluster.stop())
        .await?
        .context("stopping the local PostgreSQL")
}

async fn run_up(mut up: Up) -> anyhow::Result<()> {
    let (url, cluster) = up.database.resolve().await?;
    // The compiler's cache lives with the rest of the local state unless
    // configured elsewhere.
    if up.compiler.cache_dir == Path::new(plat_worker_compiler::DEFAULT_CACHE_DIR) {
        up.compiler.cache_dir = up.database.data_dir.join("cache");
    }
    // Likewise the executor's compiled code (an empty value still turns it off).
    if up.executor.module_cache_dir == Path::new(ExecutorConfig::DEFAULT_MODULE_CACHE_DIR) {
        up.executor.module_cache_dir = up.database.data_dir.join("module-cache");
    }
    let data_dir = up.database.data_dir.clone();
    let admin_key = match &up.api.bootstrap_admin_key {
        Some(key) => key.clone(),
        None => local_secret(&data_dir.join("admin-key"), plat_api::new_api_key)?.into(),
    };
    up.api.bootstrap_admin_key = Some(admin_key.clone());
    // For the dashboard, whose sign-in takes a password.
    let admin_password = match &up.api.bootstrap_admin_password {
        Some(password) => password.clone(),
        None => local_secret(&data_dir.join("admin-password"), plat_api::new_password)?.into(),
    };
    up.api.bootstrap_admin_password = Some(admin_password.clone());
    if up.api.secrets_key.is_none() {
        let key = local_secret(&data_dir.join("secrets-key"), SecretsKey::generate)?;
        up.api.secrets_key = Some(
            key.parse()
                .context("the stored secrets-key is not a valid key")?,
        );
    }
    up.executor.secrets_key = up.api.secrets_key.clone();
    up.compiler.secrets_key = up.api.secrets_key.clone();
    // A rotation's previous keys (PLAT_SECRETS_PREVIOUS_KEYS), if set, go to
    // every component, as the key does.
    up.executor.secrets_previous_keys = up.api.secrets_previous_keys.clone();
    up.compiler.secrets_previous_keys = up.api.secrets_previous_keys.clone();
    // `plat up` serves plain HTTP: browsers drop a `Secure` cookie there
    // (Chromium excepted, on localhost only), so the dashboard's login would
    // not stick. Off unless the operator set it (a TLS proxy in front).
    up.api.cookie_secure.get_or_insert(false);
    let admin = Admin {
        email: up.api.bootstrap_admin_email.clone(),
        key: admin_key.expose_secret().to_owned(),
        password: admin_password.expose_secret().to_owned(),
    };
    let result = match service_urls(&url, cluster.as_ref(), &up).await {
        Ok(urls) => serve(&urls, up, &admin).await,
        Err(error) => Err(error),
    };
    if let Some(cluster) = cluster {
        println!("stopping PostgreSQL");
        stop(cluster).await?;
    }
    result
}

/// A secret `plat up` keeps in its data folder (mode 0600), made by `make`
/// on the first start and read on every later one.
fn local_secret(path: &Path, make: impl FnOnce() -> String) -> anyhow::Result<String> {
    use std::io::Write as _;
    if let Ok(existing) = std::fs::read_to_string(path) {
        return Ok(existing.trim().to_owned());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let secret = make();
    let mut file = credentials::create_private(path)?;
    writeln!(file, "{secret}").with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

/// The bootstrap admin's credentials, which the welcome text shows.
struct Admin {
    email: String,
    key: String,
    password: String,
}

/// Where each component connects, as its own role.
struct Urls {
    /// The owner's (the superuser's, with our own cluster), for migrations.
    owner: String,
    api: String,
    compiler: String,
    executor: String,
}

/// Applies the migrations as the owner (they create the service roles),
/// then picks each component's URL: with our own cluster, a login role per
/// service whose password `plat up` generates into the data folder
/// (`api-db-password`, ...) and sets on every start; otherwise the URLs
/// given, else the owner's.
async fn service_urls(
    owner: &str,
    cluster: Option<&LocalPostgres>,
    up: &Up,
) -> anyhow::Result<Urls> {
    let pool = connect(owner, 2).await?;
    plat_common::db::migrate(&pool)
        .await
        .context("applying migrations")?;
    let mut urls = Vec::with_capacity(ServiceRole::ALL.len());
    for role in ServiceRole::ALL {
        let url = match (cluster, up.service_urls.given(role)) {
            (Some(cluster), _) => {
                let file = up
                    .database
                    .data_dir
                    .join(format!("{}-db-password", role.name()));
                let password = local_secret(&file, plat_api::new_password)?;
                plat_common::roles::set_password(&pool, role, &password)
                    .await
                    .with_context(|| format!("setting up the {} login role", role.login()))?;
                cluster.url_as(role.login(), &password, DATABASE)
            }
            (None, Some(url)) => url.clone(),
            (None, None) => {
                tracing::warn!(
                    component = role.name(),
                    "connecting as DATABASE_URL's user; give it a role of its own with PLAT_{}_DATABASE_URL (docs/security.md, \"Database roles\")",
                    role.name().to_uppercase()
                );
                owner.to_owned()
            }
        };
        urls.push(url);
    }
    pool.close().await;
    let [api, compiler, executor] = <[String; 3]>::try_from(urls).expect("one URL per role");
    Ok(Urls {
        owner: owner.to_owned(),
        api,
        compiler,
        executor,
    })
}

async fn connect(url: &str, max_connections: u32) -> anyhow::Result<sqlx::PgPool> {
    plat_common::db::connect(url, max_connections)
        .await
        .with_context(|| format!("connecting to {}", without_password(url)))
}

/// `url` with its password (if any) left out, to print.
fn without_password(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

async fn serve(urls: &Urls, up: Up, admin: &Admin) -> anyhow::Result<()> {
    // One pool per component, each as its own role, sized like the
    // binaries' (the workers need a few connections: claims, heartbeats,
    // LISTEN).
    let api_pool = connect(&urls.api, up.api.db_max_connections).await?;
    let compiler_pool = connect(&urls.compiler, 4).await?;
    let executor_pool = connect(&urls.executor, 8).await?;
    // Bound here rather than in `plat_api::serve` so a taken port fails
    // before we claim to be running.
    let listen = up.api.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen} (choose another with --listen)"))?;
    let shutdown = plat_common::shutdown::on_signal();

    let mut components = tokio::task::JoinSet::new();
    components.spawn(named(
        "API",
        plat_api::serve_on(listener, api_pool, up.api, shutdown.clone()),
    ));
    components.spawn(named(
        "compiler worker",
        plat_worker_compiler::run(compiler_pool, up.compiler, shutdown.clone()),
    ));
    components.spawn(named(
        "executor worker",
        plat_worker_executor::run(executor_pool, up.executor, shutdown.clone()),
    ));
    print_welcome(listen, &without_password(&urls.owner), admin);

    // The first component to stop (an error, or the shutdown signal) stops
    // the others; the first error is the result.
    let mut result = Ok(());
    while let Some(ended) = components.join_next().await {
        let (name, outcome) = match ended {
            Ok(ended) => ended,
            Err(panicked) => ("a component", Err(anyhow::Error::new(panicked))),
        };
        if let Err(error) = outcome {
            tracing::error!(
                component = name,
                error = format!("{error:#}"),
                "component failed; stopping the others"
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

fn print_welcome(listen: SocketAddr, database_url: &str, admin: &Admin) {
    println!("{}", welcome(listen, database_url, admin));
}

/// The hello-world function of the welcome text.
const HELLO_SOURCE: &str = r#"use serde_json::{json, Value};

pub fn handler(input: Value) -> Result<Value, String> {
    let name = input["name"].as_str().unwrap_or("world");
    Ok(json!({ "greeting": format!("Hello, {name}!") }))
}
"#;

/// The same function in TypeScript.
const HELLO_TS_SOURCE: &str =
    "export default (input: { name?: string }) => ({ greeting: `Hello, ${input.name ?? \"world\"}!` });\n";

/// What `plat up` prints once it listens: where it runs, which database it
/// uses, and two commands to paste.
fn welcome(listen: SocketAddr, database_url: &str, admin: &Admin) -> String {
    let Admin {
        email,
        key: admin_key,
        password,
    } = admin;
    // `--listen 0.0.0.0:8080` listens everywhere, but curl needs one address.
    let mut reachable = listen;
    if reachable.ip().is_unspecified() {
        reachable.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let base = format!("http://{reachable}");
    // Where this very binary is, so `plat` works in another terminal.
    let bin_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.display().to_string()))
        .unwrap_or_else(|| "target/release".to_owned());
    let body = quotable_json(&serde_json::json!({
        "name": "hello",
        "language": plat_common::Language::Rust,
        "source": HELLO_SOURCE,
    }));
    let ts_body = quotable_json(&serde_json::json!({
        "name": "hello-ts",
        "language": plat_common::Language::TypeScript,
        "source": HELLO_TS_SOURCE,
    }));
    format!(
        r#"
Plat is running at {base}
Database: {database_url}
(Ctrl-C stops it. The first start prepares the Rust toolchain: the compiler
worker builds serde and serde_json once, 10-60 s, before the first build.)

The dashboard is at {base}/ui (the API reference at {base}/docs).
Sign in as {email} with the password kept in the data folder as admin-password:
  {password}

Every call needs an API key. This admin key was made for this platform when
its database had no users yet (it is kept in the data folder as admin-key):
  export PLAT_KEY={admin_key}

With the plat command (docs/cli.md), from another terminal:
  export PATH="{bin_dir}:$PATH" PLAT_API_URL={base} PLAT_API_KEY={admin_key}
  plat init hello --lang rust && cd hello && plat test && plat deploy
  plat invoke hello --input '{{"name":"Ada"}}'

Or with curl. Create a function:
  curl -s -X POST {base}/functions -H "authorization: Bearer $PLAT_KEY" -H 'content-type: application/json' -d '{body}'
Wait until it is READY:
  curl -s {base}/functions/hello -H "authorization: Bearer $PLAT_KEY"
Run it (by name, or by the "id" the first call returned):
  curl -s -X POST {base}/functions/hello/execute -H "authorization: Bearer $PLAT_KEY" -d '{{"name":"Ada"}}'

The same in TypeScript (READY in milliseconds):
  curl -s -X POST {base}/functions -H "authorization: Bearer $PLAT_KEY" -H 'content-type: application/json' -d '{ts_body}'
  curl -s -X POST '{base}/functions/hello-ts/execute?wait=10' -H "authorization: Bearer $PLAT_KEY" -d '{{"name":"Ada"}}'
"#
    )
}

/// `value` as compact JSON for a shell's single quotes: a `'` can only be
/// inside a JSON string, where `\u0027` means the same.
fn quotable_json(value: &serde_json::Value) -> String {
    value.to_string().replace('\'', "\\u0027")
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

    fn admin(key: &str) -> Admin {
        Admin {
            email: "admin@localhost".to_owned(),
            key: key.to_owned(),
            password: "s3cret-passw0rd".to_owned(),
        }
    }

    #[test]
    fn every_flag_of_every_component_fits_in_one_command_line() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_welcome_shows_where_plat_runs_and_which_database_it_uses() {
        let text = welcome(
            "127.0.0.1:8080".parse().unwrap(),
            "postgres://postgres@127.0.0.1:54329/plat",
            &admin("plat_k3y"),
        );

        assert!(
            text.contains("Plat is running at http://127.0.0.1:8080\n"),
            "{text}"
        );
        assert!(
            text.contains("postgres://postgres@127.0.0.1:54329/plat"),
            "{text}"
        );
        assert!(text.contains("Rust toolchain"), "{text}");
        assert!(text.contains("export PLAT_KEY=plat_k3y\n"), "{text}");
        assert!(
            text.contains("dashboard is at http://127.0.0.1:8080/ui"),
            "{text}"
        );
        assert!(
            text.contains("Sign in as admin@localhost with the password kept in the data folder as admin-password:\n  s3cret-passw0rd\n"),
            "{text}"
        );
        assert!(
            text.contains("curl -s -X POST http://127.0.0.1:8080/functions/hello/execute -H \"authorization: Bearer $PLAT_KEY\""),
            "{text}"
        );
    }

    #[test]
    fn the_pasted_create_commands_send_the_hello_functions_as_valid_json() {
        let text = welcome(
            "127.0.0.1:8080".parse().unwrap(),
            "postgres://x",
            &admin("k"),
        );
        // What the shell passes to curl: everything inside the single quotes.
        let bodies: Vec<serde_json::Value> = text
            .lines()
            .filter(|line| line.contains("/functions -H"))
            .map(|create| {
                let body = create
                    .split("-d '")
                    .nth(1)
                    .unwrap()
                    .strip_suffix('\'')
                    .unwrap();
                serde_json::from_str(body).unwrap()
            })
            .collect();

        assert_eq!(bodies.len(), 2, "{text}");
        assert_eq!(bodies[0]["name"], "hello");
        assert_eq!(bodies[0]["language"], "rust");
        assert_eq!(bodies[0]["source"], HELLO_SOURCE);
        assert_eq!(bodies[1]["name"], "hello-ts");
        assert_eq!(bodies[1]["language"], "typescript");
        assert_eq!(bodies[1]["source"], HELLO_TS_SOURCE);
    }

    #[test]
    fn listening_everywhere_is_shown_as_an_address_curl_can_reach() {
        let text = welcome("0.0.0.0:9000".parse().unwrap(), "postgres://x", &admin("k"));

        assert!(
            text.contains("Plat is running at http://127.0.0.1:9000"),
            "{text}"
        );
    }
}
