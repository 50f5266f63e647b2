//! `plat versions NAME`, `plat rollback NAME VERSION`,
//! `plat deprecate NAME VERSION --message M`, `plat retire NAME VERSION`.

use clap::Args;
use serde_json::{json, Value};

use super::Context;
use crate::output::{self, Table};

#[derive(Debug, Args)]
pub struct ListVersions {
    /// The function's name (or id).
    pub name: String,
    /// Show this one version instead (semver or number): its dependencies,
    /// build warnings and lockfile.
    pub version: Option<String>,
}

#[derive(Debug, Args)]
pub struct Rollback {
    /// The function's name (or id).
    pub name: String,
    /// The version to run from now on (semver, e.g. 0.1.0).
    pub version: String,
}

#[derive(Debug, Args)]
pub struct Deprecate {
    /// The function's name (or id).
    pub name: String,
    /// The version to deprecate (semver or number).
    pub version: String,
    /// What callers of this version are told (in a warning on each run).
    #[arg(long, short = 'm', value_name = "M")]
    pub message: String,
}

#[derive(Debug, Args)]
pub struct Retire {
    /// The function's name (or id).
    pub name: String,
    /// The version to retire for good (semver or number).
    pub version: String,
}

pub async fn list(context: &Context, list: ListVersions) -> anyhow::Result<()> {
    let client = context.client()?;
    if let Some(version) = &list.version {
        let version = client
            .get(&["functions", &list.name, "versions", version], &[])
            .await?
            .body;
        show(context, &version);
        return Ok(());
    }
    let versions = client
        .get(&["functions", &list.name, "versions"], &[])
        .await?
        .body;
    if context.json() {
        output::print_json(&versions);
        return Ok(());
    }
    let mut table = Table::new(&[
        "VERSION",
        "#",
        "STATUS",
        "ACTIVE",
        "DEPRECATED",
        "RETIRED",
        "CREATED",
        "COMPILED",
    ]);
    for version in versions["items"].as_array().into_iter().flatten() {
        table.row(vec![
            output::cell(version, "semver"),
            output::cell(version, "version"),
            output::cell(version, "status"),
            if version["active"].as_bool() == Some(true) {
                "*".to_owned()
            } else {
                String::new()
            },
            deprecation(version),
            if version["retired"].as_bool() == Some(true) {
                "yes".to_owned()
            } else {
                String::new()
            },
            output::time(&version["createdAt"]),
            output::time(&version["compiledAt"]),
        ]);
    }
    if table.is_empty() {
        eprintln!("{} has no versions", list.name);
    } else {
        table.print();
    }
    Ok(())
}

/// One version: what it is, what it depends on and what its build resolved.
fn show(context: &Context, version: &Value) {
    if context.json() {
        output::print_json(version);
        return;
    }
    println!(
        "version {} (#{}): {}",
        output::cell(version, "semver"),
        output::cell(version, "version"),
        output::cell(version, "status")
    );
    if let Some(error) = version["compileError"].as_str() {
        println!("compile error:\n{error}");
    }
    match version["dependencies"].as_object() {
        Some(dependencies) if !dependencies.is_empty() => {
            println!("dependencies:");
            for (name, spec) in dependencies {
                println!("  {name} {spec}");
            }
        }
        _ => println!("dependencies: none"),
    }
    for warning in version["buildWarnings"].as_array().into_iter().flatten() {
        println!("warning: {}", warning.as_str().unwrap_or_default());
    }
    if let Some(lockfile) = version["lockfile"].as_str() {
        println!("lockfile:\n{lockfile}");
    }
}

fn deprecation(version: &Value) -> String {
    if version["deprecated"].as_bool() != Some(true) {
        return String::new();
    }
    match version["deprecationMessage"].as_str() {
        Some(message) if !message.is_empty() => format!("yes: {message}"),
        _ => "yes".to_owned(),
    }
}

pub async fn rollback(context: &Context, rollback: Rollback) -> anyhow::Result<()> {
    let client = context.client()?;
    let function = client
        .post(
            &["functions", &rollback.name, "rollback"],
            &json!({ "version": rollback.version }),
        )
        .await?
        .body;
    if context.json() {
        output::print_json(&function);
    } else {
        println!(
            "{} now runs version {} (#{})",
            rollback.name,
            function["activeSemver"]
                .as_str()
                .unwrap_or(&rollback.version),
            output::cell(&function, "activeVersion")
        );
    }
    Ok(())
}

pub async fn deprecate(context: &Context, deprecate: Deprecate) -> anyhow::Result<()> {
    let client = context.client()?;
    let answer = client
        .post(
            &[
                "functions",
                &deprecate.name,
                "versions",
                &deprecate.version,
                "deprecate",
            ],
            &json!({ "message": deprecate.message }),
        )
        .await?
        .body;
    if context.json() {
        output::print_json(&answer);
    } else {
        println!(
            "version {} of {} is deprecated; its callers are warned: {}",
            deprecate.version, deprecate.name, deprecate.message
        );
    }
    Ok(())
}

pub async fn retire(context: &Context, retire: Retire) -> anyhow::Result<()> {
    let client = context.client()?;
    let answer = client
        .post(
            &[
                "functions",
                &retire.name,
                "versions",
                &retire.version,
                "retire",
            ],
            &json!({}),
        )
        .await?
        .body;
    if context.json() {
        output::print_json(&answer);
    } else {
        println!(
            "version {} of {} is retired: it never runs again (queued runs of it were cancelled)",
            retire.version, retire.name
        );
    }
    Ok(())
}
