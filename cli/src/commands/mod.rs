//! The developer workflow: one module per group of commands. Every command
//! gets a [`Context`] (the global options) and returns `Ok` or an error that
//! `main` prints; a failed build or run is [`FunctionFailed`](crate::failure::FunctionFailed).

mod auth;
mod dead_letters;
mod deploy;
mod executions;
mod functions;
mod init;
mod invoke;
mod local_test;
mod report;
mod route;
mod schedule;
mod versions;

use std::io::IsTerminal as _;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::client::ApiClient;
use crate::credentials;
use crate::output::OutputFormat;

/// Where the API is when neither a flag, the environment nor a login says.
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:8080";

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalOptions {
    /// Base URL of the Plat API [default: the stored login's, else http://127.0.0.1:8080]
    #[arg(long, env = "PLAT_API_URL", global = true)]
    pub api_url: Option<String>,
    /// API key sent as `Authorization: Bearer` [default: the stored login's]
    #[arg(long, env = "PLAT_API_KEY", global = true, hide_env_values = true)]
    pub api_key: Option<String>,
    /// How results are printed: `human` tables, or one JSON document on stdout.
    #[arg(long, short = 'o', value_enum, global = true, default_value = "human")]
    pub output: OutputFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a function folder: handler source, function.json, input.json.
    Init(init::Init),
    /// Compile and run the function here, as the platform would (no server).
    Test(local_test::Test),
    /// Create or update the function from its folder and wait for the build.
    Deploy(deploy::Deploy),
    /// Run a deployed function and print its output.
    Invoke(invoke::Invoke),
    /// List a function's executions, newest first.
    Executions(executions::ListExecutions),
    /// Print an execution's logs.
    Logs(executions::Logs),
    /// List dead letters: executions that failed every attempt of their retry policy.
    DeadLetters(dead_letters::ListDeadLetters),
    /// Run a dead letter again with the same input (admins).
    Requeue(dead_letters::Requeue),
    /// List every run of an execution (retries included).
    Attempts(dead_letters::Attempts),
    /// List the functions you can see.
    Ls(functions::List),
    /// Show a function and its recent statistics.
    Info(functions::Info),
    /// List a function's versions, or show one with its dependencies and lockfile.
    Versions(versions::ListVersions),
    /// Make an earlier version the one that runs.
    Rollback(versions::Rollback),
    /// Mark a version deprecated: runs of it still work, with a warning.
    Deprecate(versions::Deprecate),
    /// Retire a version for good: it never runs again, and its queued runs are cancelled.
    Retire(versions::Retire),
    /// Delete a function, its versions and its queued runs.
    Rm(functions::Remove),
    /// Check an API key and store it for later commands.
    Login(auth::Login),
    /// Forget the stored API key.
    Logout,
    /// Show, set or remove a function's HTTP route (`/run/{name}`).
    #[command(subcommand)]
    Route(route::Route),
    /// Manage a function's schedules: add, ls, rm, pause, resume.
    Schedule(schedule::Schedule),
}

/// What a command knows beyond its own arguments.
pub struct Context {
    pub options: GlobalOptions,
}

impl Context {
    pub fn output(&self) -> OutputFormat {
        self.options.output
    }

    pub fn json(&self) -> bool {
        self.options.output.is_json()
    }

    /// Whether progress may be drawn: people reading a terminal.
    pub fn interactive_stderr(&self) -> bool {
        !self.json() && std::io::stderr().is_terminal()
    }

    /// The API to talk to and the key to send: flags or environment first,
    /// then the stored login. The stored key is only sent to the API it was
    /// stored for, never to another URL.
    pub fn client(&self) -> anyhow::Result<ApiClient> {
        let stored = credentials::load()?;
        let url = self
            .options
            .api_url
            .clone()
            .or_else(|| stored.as_ref().map(|c| c.api_url.clone()))
            .unwrap_or_else(|| DEFAULT_API_URL.to_owned());
        let key = self.options.api_key.clone().or_else(|| {
            stored
                .filter(|c| credentials::same_api(&c.api_url, &url))
                .map(|c| c.api_key)
        });
        Ok(ApiClient::new(&url, key)?)
    }
}

/// Runs one workflow command.
pub async fn run(command: Command, options: GlobalOptions) -> anyhow::Result<()> {
    let context = Context { options };
    match command {
        Command::Init(init) => init::run(&context, init),
        Command::Test(test) => local_test::run(&context, test).await,
        Command::Deploy(deploy) => deploy::run(&context, deploy).await,
        Command::Invoke(invoke) => invoke::run(&context, invoke).await,
        Command::Executions(list) => executions::list(&context, list).await,
        Command::Logs(logs) => executions::logs(&context, logs).await,
        Command::DeadLetters(list) => dead_letters::list(&context, list).await,
        Command::Requeue(requeue) => dead_letters::requeue(&context, requeue).await,
        Command::Attempts(attempts) => dead_letters::attempts(&context, attempts).await,
        Command::Ls(list) => functions::list(&context, list).await,
        Command::Info(info) => functions::info(&context, info).await,
        Command::Versions(list) => versions::list(&context, list).await,
        Command::Rollback(rollback) => versions::rollback(&context, rollback).await,
        Command::Deprecate(deprecate) => versions::deprecate(&context, deprecate).await,
        Command::Retire(retire) => versions::retire(&context, retire).await,
        Command::Rm(remove) => functions::remove(&context, remove).await,
        Command::Login(login) => auth::login(&context, login).await,
        Command::Logout => auth::logout(&context),
        Command::Route(route) => route::run(&context, route).await,
        Command::Schedule(schedule) => schedule::run(&context, schedule).await,
    }
}

/// The function folder a command works on: `--dir`, else the current one.
#[derive(Debug, Clone, Args)]
pub struct FunctionDirArg {
    /// The function folder (holding function.json) [default: the current folder]
    #[arg(long, value_name = "PATH")]
    pub dir: Option<PathBuf>,
}

impl FunctionDirArg {
    pub fn path(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| PathBuf::from("."))
    }
}

/// The way a path is shown to the user: relative paths as given.
pub fn shown(path: &std::path::Path) -> String {
    path.display().to_string()
}
