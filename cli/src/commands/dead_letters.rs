//! Retries and dead letters: `plat dead-letters` (executions out of
//! attempts), `plat requeue EXECUTION_ID` (run one again, admins) and
//! `plat attempts EXECUTION_ID` (every run of an execution).

use clap::Args;
use serde_json::{json, Value};

use super::Context;
use crate::output::{self, Table};

/// The API's page size cap.
const MAX_PAGE: u32 = 100;

#[derive(Debug, Args)]
pub struct ListDeadLetters {
    /// Only this function's (name or id).
    #[arg(long, value_name = "NAME")]
    pub function: Option<String>,
    /// How many to list (newest first).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: u32,
}

#[derive(Debug, Args)]
pub struct Requeue {
    /// The dead letter's execution id.
    pub execution_id: String,
}

#[derive(Debug, Args)]
pub struct Attempts {
    /// The execution's id.
    pub execution_id: String,
}

pub async fn list(context: &Context, list: ListDeadLetters) -> anyhow::Result<()> {
    let client = context.client()?;
    let function_id = match &list.function {
        Some(name) => Some(output::cell(
            &client.get(&["functions", name], &[]).await?.body,
            "id",
        )),
        None => None,
    };
    let mut items: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    while (items.len() as u32) < list.limit {
        let mut query = vec![
            ("deadLetter", "true".to_owned()),
            (
                "limit",
                (list.limit - items.len() as u32).min(MAX_PAGE).to_string(),
            ),
        ];
        if let Some(function_id) = &function_id {
            query.push(("functionId", function_id.clone()));
        }
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.clone()));
        }
        let page = client.get(&["executions"], &query).await?.body;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["nextCursor"].as_str() {
            Some(next) if !next.is_empty() => cursor = Some(next.to_owned()),
            _ => break,
        }
    }
    if context.json() {
        output::print_json(&json!({ "items": items }));
        return Ok(());
    }
    let mut table = Table::new(&["ID", "FUNCTION", "ATTEMPTS", "FINISHED", "ERROR"]);
    for execution in &items {
        table.row(vec![
            output::cell(execution, "id"),
            output::cell(execution, "functionId"),
            output::cell(execution, "attempts"),
            output::time(&execution["finishedAt"]),
            format!(
                "{}: {}",
                output::cell(&execution["error"], "type"),
                output::cell(&execution["error"], "message")
            ),
        ]);
    }
    if table.is_empty() {
        eprintln!("no dead letters");
    } else {
        table.print();
    }
    Ok(())
}

pub async fn requeue(context: &Context, requeue: Requeue) -> anyhow::Result<()> {
    let client = context.client()?;
    let execution = client
        .post(
            &["executions", &requeue.execution_id, "requeue"],
            &json!({}),
        )
        .await?
        .body;
    if context.json() {
        output::print_json(&execution);
    } else {
        println!(
            "re-queued {} as execution {}",
            requeue.execution_id,
            output::cell(&execution, "id")
        );
    }
    Ok(())
}

pub async fn attempts(context: &Context, attempts: Attempts) -> anyhow::Result<()> {
    let client = context.client()?;
    let runs = client
        .get(&["executions", &attempts.execution_id, "attempts"], &[])
        .await?
        .body;
    if context.json() {
        output::print_json(&runs);
        return Ok(());
    }
    let mut table = Table::new(&["ATTEMPT", "STATUS", "DURATION", "FINISHED", "ERROR"]);
    for run in runs["items"].as_array().into_iter().flatten() {
        table.row(vec![
            output::cell(run, "attempt"),
            output::cell(run, "status"),
            output::millis(&run["durationMs"]),
            output::time(&run["finishedAt"]),
            run["error"]["type"]
                .as_str()
                .map_or_else(|| "-".to_owned(), str::to_owned),
        ]);
    }
    table.print();
    Ok(())
}
