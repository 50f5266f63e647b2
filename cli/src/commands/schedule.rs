//! `plat schedule add|ls|rm|pause|resume`: a function's schedules
//! (docs/triggers.md, "Schedules").

use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{json, Value};

use super::Context;
use crate::client::Body;
use crate::output::{self, Table};

const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Args)]
pub struct Schedule {
    #[command(subcommand)]
    command: ScheduleCommand,
}

#[derive(Debug, Subcommand)]
enum ScheduleCommand {
    /// Run a function at the ticks of a cron expression.
    Add(Add),
    /// List a function's schedules with their next fire times.
    Ls(OfFunction),
    /// Delete a schedule.
    Rm(OneSchedule),
    /// Pause a schedule: its ticks do not fire until it is resumed.
    Pause(OneSchedule),
    /// Resume a paused schedule, from its next tick.
    Resume(OneSchedule),
}

#[derive(Debug, Args)]
struct Add {
    /// The function's name (or id).
    function: String,
    /// 5 fields (minute hour day-of-month month day-of-week), or 6 with
    /// seconds first; quote it: '*/5 * * * *'.
    cron: String,
    /// The IANA time zone the expression is read in [default: UTC]
    #[arg(long, value_name = "ZONE")]
    timezone: Option<String>,
    /// The input of every run, as JSON [default: null]
    #[arg(long, value_name = "JSON")]
    input: Option<String>,
    /// What ticks missed while Plat was down do.
    #[arg(long, value_enum, default_value = "run-latest")]
    missed_ticks: MissedTicks,
    /// Create it paused.
    #[arg(long)]
    paused: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum MissedTicks {
    /// The latest missed tick runs once.
    RunLatest,
    /// Missed ticks never run.
    Skip,
}

#[derive(Debug, Args)]
struct OfFunction {
    /// The function's name (or id).
    function: String,
}

#[derive(Debug, Args)]
struct OneSchedule {
    /// The function's name (or id).
    function: String,
    /// The schedule's id (from `plat schedule ls`).
    schedule: String,
}

pub async fn run(context: &Context, schedule: Schedule) -> anyhow::Result<()> {
    match schedule.command {
        ScheduleCommand::Add(add) => self::add(context, add).await,
        ScheduleCommand::Ls(of) => list(context, of).await,
        ScheduleCommand::Rm(one) => remove(context, one).await,
        ScheduleCommand::Pause(one) => set_enabled(context, one, false).await,
        ScheduleCommand::Resume(one) => set_enabled(context, one, true).await,
    }
}

async fn add(context: &Context, add: Add) -> anyhow::Result<()> {
    let input: Value = match &add.input {
        Some(text) => serde_json::from_str(text).context("--input is not JSON")?,
        None => Value::Null,
    };
    let mut body = json!({
        "cron": add.cron,
        "input": input,
        "enabled": !add.paused,
        "missedTicks": match add.missed_ticks {
            MissedTicks::RunLatest => "runLatest",
            MissedTicks::Skip => "skip",
        },
    });
    if let Some(zone) = add.timezone {
        body["timezone"] = json!(zone);
    }
    let schedule = context
        .client()?
        .post(&["functions", &add.function, "schedules"], &body)
        .await?
        .body;
    show_one(context, &schedule, "added");
    Ok(())
}

async fn list(context: &Context, of: OfFunction) -> anyhow::Result<()> {
    let schedules = context
        .client()?
        .get(&["functions", &of.function, "schedules"], &[])
        .await?
        .body;
    if context.json() {
        output::print_json(&schedules);
        return Ok(());
    }
    let mut table = Table::new(&[
        "ID", "CRON", "TIMEZONE", "ENABLED", "MISSED", "NEXT", "LAST",
    ]);
    for schedule in schedules["items"].as_array().into_iter().flatten() {
        table.row(vec![
            output::cell(schedule, "id"),
            output::cell(schedule, "cron"),
            output::cell(schedule, "timezone"),
            output::cell(schedule, "enabled"),
            output::cell(schedule, "missedTicks"),
            output::time(&schedule["nextFireTimes"][0]),
            last_fire(schedule),
        ]);
    }
    if table.is_empty() {
        eprintln!("{} has no schedules", of.function);
    } else {
        table.print();
    }
    Ok(())
}

async fn remove(context: &Context, one: OneSchedule) -> anyhow::Result<()> {
    context
        .client()?
        .delete(&["functions", &one.function, "schedules", &one.schedule])
        .await?;
    if context.json() {
        output::print_json(&json!({ "deleted": one.schedule }));
    } else {
        println!("deleted schedule {}", one.schedule);
    }
    Ok(())
}

async fn set_enabled(context: &Context, one: OneSchedule, enabled: bool) -> anyhow::Result<()> {
    let body = json!({ "enabled": enabled });
    let schedule = context
        .client()?
        .send(
            Method::PATCH,
            &["functions", &one.function, "schedules", &one.schedule],
            &[],
            Some(Body::Json(&body)),
            TIMEOUT,
        )
        .await?
        .body;
    show_one(
        context,
        &schedule,
        if enabled { "resumed" } else { "paused" },
    );
    Ok(())
}

/// A schedule just changed: JSON, or a line and its next fire times.
fn show_one(context: &Context, schedule: &Value, what: &str) {
    if context.json() {
        output::print_json(schedule);
        return;
    }
    println!(
        "{what} schedule {} ({} in {})",
        output::cell(schedule, "id"),
        output::cell(schedule, "cron"),
        output::cell(schedule, "timezone")
    );
    for time in schedule["nextFireTimes"].as_array().into_iter().flatten() {
        println!("  next: {}", output::time(time));
    }
}

fn last_fire(schedule: &Value) -> String {
    let last = &schedule["lastFire"];
    if last.is_null() {
        return String::new();
    }
    format!(
        "{} {}",
        output::time(&last["scheduledFor"]),
        output::cell(last, "outcome")
    )
}
