//! `plat ls`, `plat info NAME`, `plat rm NAME`.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use clap::Args;
use serde_json::{json, Value};

use super::Context;
use crate::output::{self, Table};

/// The API's page size cap.
const MAX_PAGE: usize = 100;

#[derive(Debug, Args)]
pub struct List {
    /// Only functions with this tag (repeat for several: all must match).
    #[arg(long = "tag", value_name = "T")]
    pub tags: Vec<String>,
    /// Only functions whose name or description contains this text.
    #[arg(long = "q", value_name = "TEXT")]
    pub query: Option<String>,
    /// Only functions in this language (rust, typescript).
    #[arg(long, value_name = "L")]
    pub language: Option<String>,
    /// Only functions whose latest version has this status (PENDING, READY, FAILED).
    #[arg(long, value_name = "S")]
    pub status: Option<String>,
    /// Stop after this many functions [default: all of them]
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

#[derive(Debug, Args)]
pub struct Info {
    /// The function's name (or id).
    pub name: String,
}

#[derive(Debug, Args)]
pub struct Remove {
    /// The function's name (or id).
    pub name: String,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

pub async fn list(context: &Context, list: List) -> anyhow::Result<()> {
    let client = context.client()?;
    let wanted = list.limit.unwrap_or(usize::MAX);
    let mut items: Vec<Value> = Vec::new();
    let mut total = Value::Null;
    let mut cursor: Option<String> = None;
    while items.len() < wanted {
        let mut query: Vec<(&str, String)> =
            vec![("limit", (wanted - items.len()).min(MAX_PAGE).to_string())];
        query.extend(list.tags.iter().map(|tag| ("tag", tag.clone())));
        for (key, value) in [
            ("q", &list.query),
            ("language", &list.language),
            ("status", &list.status),
            ("cursor", &cursor),
        ] {
            if let Some(value) = value {
                query.push((key, value.clone()));
            }
        }
        let page = client.get(&["functions"], &query).await?.body;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        total = page["total"].clone();
        match page["nextCursor"].as_str() {
            Some(next) if !next.is_empty() => cursor = Some(next.to_owned()),
            _ => break,
        }
    }
    if context.json() {
        output::print_json(&json!({ "items": items, "total": total }));
        return Ok(());
    }
    if items.is_empty() {
        eprintln!("no functions");
        return Ok(());
    }
    let mut table = Table::new(&[
        "NAME", "VERSION", "ACTIVE", "STATUS", "LANGUAGE", "RUNS", "SUCCESS", "TAGS",
    ]);
    for function in &items {
        table.row(vec![
            output::cell(function, "name"),
            version_cell(function, "semver", "version"),
            version_cell(function, "activeSemver", "activeVersion"),
            output::cell(function, "status"),
            output::cell(function, "language"),
            output::cell(function, "executionCount"),
            output::percent(&function["successRate"]),
            output::tags(function),
        ]);
    }
    table.print();
    if let Some(total) = total.as_u64().filter(|&t| t as usize > items.len()) {
        eprintln!("({} of {total} shown)", items.len());
    }
    Ok(())
}

/// The semantic version, or the running number from a server that has none.
fn version_cell(function: &Value, semver: &str, number: &str) -> String {
    match function[semver].as_str() {
        Some(version) => version.to_owned(),
        None => output::cell(function, number),
    }
}

pub async fn info(context: &Context, info: Info) -> anyhow::Result<()> {
    let client = context.client()?;
    let function = client.get(&["functions", &info.name], &[]).await?.body;
    // Statistics are a bonus: a failure to read them leaves them out.
    let stats = client
        .get(&["functions", &info.name, "stats"], &[])
        .await
        .map(|r| r.body)
        .unwrap_or(Value::Null);
    if context.json() {
        output::print_json(&json!({ "function": function, "stats": stats }));
        return Ok(());
    }
    let config = &function["executionConfig"];
    let mut lines = vec![
        ("name", output::cell(&function, "name")),
        ("id", output::cell(&function, "id")),
        ("language", output::cell(&function, "language")),
        ("description", output::cell(&function, "description")),
        ("tags", output::tags(&function)),
        (
            "latest",
            format!(
                "{} (#{}) {}",
                version_cell(&function, "semver", "version"),
                output::cell(&function, "version"),
                output::cell(&function, "status")
            ),
        ),
        (
            "active",
            format!(
                "{} (#{})",
                version_cell(&function, "activeSemver", "activeVersion"),
                output::cell(&function, "activeVersion")
            ),
        ),
        ("timeout", output::millis(&config["timeoutMs"])),
        (
            "memory",
            format!("{} MiB", output::cell(config, "memoryLimitMb")),
        ),
        ("runs", output::cell(&function, "executionCount")),
        ("success", output::percent(&function["successRate"])),
        ("created", output::time(&function["createdAt"])),
        ("updated", output::time(&function["updatedAt"])),
    ];
    if let Some(names) = config["environmentVariables"].as_object() {
        if !names.is_empty() {
            let names: Vec<&str> = names.keys().map(String::as_str).collect();
            lines.push(("env vars", names.join(", ")));
        }
    }
    if !stats.is_null() {
        lines.push((
            "last 24 h",
            format!(
                "{} runs, {} succeeded, p50 {}, p95 {}",
                output::cell(&stats, "total"),
                output::percent(&stats["successRate"]),
                output::millis(&stats["durationMs"]["p50"]),
                output::millis(&stats["durationMs"]["p95"]),
            ),
        ));
    }
    for (label, value) in lines {
        println!("{:<12} {value}", format!("{label}:"));
    }
    if let Some(error) = function["compileError"].as_str() {
        println!("\ncompile error of the latest version:\n{error}");
    }
    Ok(())
}

pub async fn remove(context: &Context, remove: Remove) -> anyhow::Result<()> {
    if !remove.yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "refusing to delete {} without confirmation: stdin is not a terminal; pass --yes",
                remove.name
            );
        }
        eprint!(
            "Delete function {} with all its versions? Queued runs are cancelled. [y/N] ",
            remove.name
        );
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            anyhow::bail!("not deleted");
        }
    }
    let client = context.client()?;
    client.delete(&["functions", &remove.name]).await?;
    if context.json() {
        output::print_json(&json!({ "deleted": remove.name }));
    } else {
        println!("deleted {}", remove.name);
    }
    Ok(())
}
