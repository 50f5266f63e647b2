//! How a finished run is shown, whether it ran here (`plat test`) or on the
//! platform (`plat invoke`, `plat logs`): the output on stdout, the logs and
//! a status line on stderr; in JSON mode the run as one document.

use serde_json::Value;

use super::Context;
use crate::failure::FunctionFailed;
use crate::output;

/// Prints a run shaped like the API's execution (`status`, `output`,
/// `error: {type, message}`, `logs`, `durationMs`). A run that did not
/// succeed is a [`FunctionFailed`] error, after it was printed.
pub fn finished_run(context: &Context, run: &Value, label: &str) -> anyhow::Result<()> {
    let status = run["status"].as_str().unwrap_or("UNKNOWN");
    if context.json() {
        output::print_json(run);
    } else {
        print_logs(run);
        if status == "SUCCEEDED" {
            println!("{}", output::pretty(&run["output"]));
        }
        eprintln!("{}", status_line(run, label));
    }
    if status == "SUCCEEDED" {
        Ok(())
    } else {
        Err(FunctionFailed(failure_summary(run, label)).into())
    }
}

/// The logs on stderr, each line indented under a `logs:` heading.
pub fn print_logs(run: &Value) {
    let logs = run["logs"].as_str().unwrap_or_default();
    if logs.is_empty() {
        return;
    }
    eprintln!("logs:");
    for line in logs.lines() {
        eprintln!("  {line}");
    }
}

/// `SUCCEEDED in 2 ms (version 3)`, or the status with the error's type and
/// message.
pub fn status_line(run: &Value, label: &str) -> String {
    let status = run["status"].as_str().unwrap_or("UNKNOWN");
    let mut line = format!("{label}: {status}");
    if !run["durationMs"].is_null() {
        line.push_str(&format!(" in {}", output::millis(&run["durationMs"])));
    }
    if let Some(version) = run["functionVersion"].as_i64() {
        line.push_str(&format!(" (version {version})"));
    }
    if let Some(kind) = run["error"]["type"].as_str() {
        let message = run["error"]["message"].as_str().unwrap_or_default();
        line.push_str(&format!("\n{kind}: {message}"));
    }
    line
}

fn failure_summary(run: &Value, label: &str) -> String {
    let status = run["status"].as_str().unwrap_or("UNKNOWN");
    match run["error"]["type"].as_str() {
        Some(kind) => format!("{label} ended {status} ({kind})"),
        None => format!("{label} ended {status}"),
    }
}
