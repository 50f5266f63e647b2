//! `plat invoke NAME`: runs a deployed function and prints its output.

use std::time::Duration;

use clap::Args;
use reqwest::Method;
use serde_json::Value;

use super::{report, Context};
use crate::client::{ApiClient, ApiResponse, Body};
use crate::{input, output};

/// How long the server holds the call for the result before answering 202
/// (the API's default).
const DEFAULT_WAIT_SECS: u32 = 30;
/// Extra time the HTTP request gets on top of the server's wait.
const REQUEST_SLACK: Duration = Duration::from_secs(30);

#[derive(Debug, Args)]
pub struct Invoke {
    /// The function's name (or id).
    pub name: String,
    /// The input: a JSON file, `-` for stdin, or JSON text [default: null]
    #[arg(long, value_name = "FILE|JSON")]
    pub input: Option<String>,
    /// Queue the run, print its execution id and return without waiting.
    #[arg(long = "async")]
    pub detach: bool,
    /// Run this version (semver or number) instead of the active one.
    #[arg(long, value_name = "V")]
    pub version: Option<String>,
    /// Seconds the server holds the call for the result; after that the run
    /// is followed through its live stream.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_WAIT_SECS)]
    pub wait: u32,
}

pub async fn run(context: &Context, invoke: Invoke) -> anyhow::Result<()> {
    let input = match &invoke.input {
        Some(argument) => input::read(argument)?,
        None => Value::Null,
    };
    let client = context.client()?;
    let wait = if invoke.detach { 0 } else { invoke.wait };
    let mut query = vec![("wait", wait.to_string())];
    if let Some(version) = &invoke.version {
        query.push(("version", version.clone()));
    }
    let response = client
        .send(
            Method::POST,
            &["functions", &invoke.name, "execute"],
            &query,
            Some(Body::Raw(serde_json::to_vec(&input)?)),
            Duration::from_secs(u64::from(wait)) + REQUEST_SLACK,
        )
        .await?;
    warn_if_deprecated(&response);
    let execution = response.body;
    let id = execution["id"].as_str().unwrap_or_default().to_owned();

    if invoke.detach {
        if context.json() {
            output::print_json(&execution);
        } else {
            println!("{id}");
            eprintln!(
                "queued ({}); `plat logs {id}` shows it when it has run",
                output::cell(&execution, "status")
            );
        }
        return Ok(());
    }
    let execution = if is_finished(&execution) {
        execution
    } else {
        follow(&client, &id).await?
    };
    report::finished_run(context, &execution, &invoke.name)
}

/// Follows the execution's live stream until it finished.
async fn follow(client: &ApiClient, id: &str) -> anyhow::Result<Value> {
    Ok(crate::events::finished_execution(client, id).await?)
}

pub fn is_finished(execution: &Value) -> bool {
    matches!(
        execution["status"].as_str(),
        Some("SUCCEEDED" | "FAILED" | "CANCELLED" | "TIMED_OUT")
    )
}

/// A run of a deprecated version works, with a warning from its owner.
fn warn_if_deprecated(response: &ApiResponse) {
    if response.header("deprecation").is_none() {
        return;
    }
    match response.header("plat-deprecation-message") {
        Some(message) if !message.is_empty() => {
            eprintln!("warning: this version is deprecated: {message}")
        }
        _ => eprintln!("warning: this version is deprecated"),
    }
}
