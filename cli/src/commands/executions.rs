//! `plat executions NAME` (history, `--follow` for new runs) and
//! `plat logs EXECUTION_ID`.

use std::collections::HashMap;

use clap::Args;
use serde_json::{json, Value};

use super::{report, Context};
use crate::client::ApiClient;
use crate::output::{self, Table};

/// The API's page size cap.
const MAX_PAGE: u32 = 100;

#[derive(Debug, Args)]
pub struct ListExecutions {
    /// The function's name (or id).
    pub name: String,
    /// Only runs in this status: QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED.
    #[arg(long, value_name = "S")]
    pub status: Option<String>,
    /// How many to list (newest first).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: u32,
    /// Keep printing runs as they start and finish, until Ctrl-C.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct Logs {
    /// The execution's id (as `plat invoke --async` or `plat executions` show it).
    pub execution_id: String,
}

pub async fn list(context: &Context, list: ListExecutions) -> anyhow::Result<()> {
    let client = context.client()?;
    if list.follow {
        return follow(context, &client, &list).await;
    }
    let executions = fetch(&client, &list, list.limit).await?;
    if context.json() {
        output::print_json(&json!({ "items": executions }));
        return Ok(());
    }
    let mut table = Table::new(&HEADER);
    for execution in &executions {
        table.row(row(execution));
    }
    if table.is_empty() {
        eprintln!("no executions of {}", list.name);
    } else {
        table.print();
    }
    Ok(())
}

/// Up to `limit` executions, newest first, following the API's cursor.
async fn fetch(
    client: &ApiClient,
    list: &ListExecutions,
    limit: u32,
) -> anyhow::Result<Vec<Value>> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    while (items.len() as u32) < limit {
        let mut query = vec![(
            "limit",
            (limit - items.len() as u32).min(MAX_PAGE).to_string(),
        )];
        if let Some(status) = &list.status {
            query.push(("status", status.clone()));
        }
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.clone()));
        }
        let page = client
            .get(&["functions", &list.name, "executions"], &query)
            .await?
            .body;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["nextCursor"].as_str() {
            Some(next) if !next.is_empty() => cursor = Some(next.to_owned()),
            _ => break,
        }
    }
    Ok(items)
}

const HEADER: [&str; 6] = ["ID", "STATUS", "VERSION", "DURATION", "CREATED", "ERROR"];

fn row(execution: &Value) -> Vec<String> {
    vec![
        output::cell(execution, "id"),
        output::cell(execution, "status"),
        output::cell(execution, "functionVersion"),
        output::millis(&execution["durationMs"]),
        output::time(&execution["createdAt"]),
        execution["error"]["type"]
            .as_str()
            .map_or_else(|| "-".to_owned(), str::to_owned),
    ]
}

/// Prints what is there, then every run that appears or changes status as
/// the function's live stream tells, until Ctrl-C. JSON mode prints one
/// execution (the whole record) per line.
async fn follow(
    context: &Context,
    client: &ApiClient,
    list: &ListExecutions,
) -> anyhow::Result<()> {
    // Opened first (it connects on the first read), so nothing that
    // happens after the listing below is missed.
    let mut stream = crate::events::Stream::new(client, &["functions", &list.name, "events"]);
    // Every run of the listing counts as seen, so only the newest
    // `--limit` are shown and later only what is new or changed.
    let mut latest = fetch(client, list, MAX_PAGE).await?;
    let mut seen: HashMap<String, String> = latest
        .iter()
        .map(|e| (output::cell(e, "id"), output::cell(e, "status")))
        .collect();
    latest.truncate(list.limit as usize);
    if !context.json() {
        println!("{}", follow_line(HEADER.map(str::to_owned).to_vec()));
    }
    // The API lists newest first; a log reads oldest first.
    for execution in latest.iter().rev() {
        print_followed(context, client, execution).await?;
    }
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let (event, data) = tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            next = stream.next_json() => next?,
        };
        let changed = match event.as_str() {
            // Events may have been missed: what the listing shows now.
            "resync" => {
                let mut listed = fetch(client, list, MAX_PAGE).await?;
                listed.reverse();
                listed
            }
            "execution" => vec![data],
            _ => continue,
        };
        for execution in changed {
            let (id, status) = (
                output::cell(&execution, "id"),
                output::cell(&execution, "status"),
            );
            let wanted = list.status.as_ref().is_none_or(|only| *only == status);
            if wanted && seen.get(&id) != Some(&status) {
                seen.insert(id, status);
                print_followed(context, client, &execution).await?;
            }
        }
    }
}

/// A followed run as a row, or in JSON mode as its whole record (the
/// stream's events leave out the input, output and logs).
async fn print_followed(
    context: &Context,
    client: &ApiClient,
    execution: &Value,
) -> anyhow::Result<()> {
    if !context.json() {
        println!("{}", follow_line(row(execution)));
        return Ok(());
    }
    if execution.get("input").is_some() {
        output::print_json_line(execution);
        return Ok(());
    }
    let id = output::cell(execution, "id");
    let record = client.get(&["executions", &id], &[]).await?.body;
    output::print_json_line(&record);
    Ok(())
}

/// One row with fixed column widths, since rows are printed as they come.
fn follow_line(cells: Vec<String>) -> String {
    const WIDTHS: [usize; 5] = [36, 9, 7, 8, 19];
    let mut line = String::new();
    for (index, cell) in cells.iter().enumerate() {
        match WIDTHS.get(index) {
            Some(width) => line.push_str(&format!("{cell:<width$}  ")),
            None => line.push_str(cell),
        }
    }
    line.trim_end().to_owned()
}

pub async fn logs(context: &Context, logs: Logs) -> anyhow::Result<()> {
    let client = context.client()?;
    let execution = client
        .get(&["executions", &logs.execution_id], &[])
        .await?
        .body;
    if context.json() {
        output::print_json(&execution);
        return Ok(());
    }
    print!("{}", execution["logs"].as_str().unwrap_or_default());
    if execution["logsTruncated"].as_bool() == Some(true) {
        eprintln!("(the logs were cut at the platform's cap)");
    }
    eprintln!("{}", report::status_line(&execution, &logs.execution_id));
    Ok(())
}
