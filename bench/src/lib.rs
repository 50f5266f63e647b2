//! Plat's end-to-end benchmark. For each PostgreSQL profile it starts a
//! throwaway cluster, the platform in-process (API, compiler, executors,
//! each with a pool of its own as separate processes would have), runs the
//! scenarios, and stops everything; then it prints a table and writes JSON.
//!
//! `cargo run --release -p plat-bench` (see `--help`; docs/benchmarks.md).

pub mod client;
pub mod cluster;
pub mod cpu;
pub mod machine;
pub mod options;
pub mod platform;
pub mod queue;
pub mod report;
pub mod scenarios;
pub mod sources;
pub mod stats;

use std::time::Instant;

use anyhow::bail;

use crate::cluster::{Cluster, Profile};
use crate::machine::Machine;
use crate::options::{Options, Scale, Scenario};
use crate::platform::Platform;
use crate::report::{Group, ProfileReport, Report};

/// Runs every profile, prints the table, writes the JSON. A failed scenario
/// is recorded and the others still run; the result is then an error, after
/// the file is written.
pub async fn run(options: Options) -> anyhow::Result<Report> {
    let scale = options.scale();
    let mut report = Report {
        timestamp: chrono::Utc::now(),
        git_revision: machine::git_revision(),
        quick: options.quick,
        machine: Machine::probe(),
        profiles: Vec::new(),
    };
    for profile in options.profiles() {
        eprintln!("plat-bench: profile {}", profile.label());
        // A profile that cannot start is recorded like a failed scenario, so
        // the other profile's numbers are still written.
        let measured = measure(profile, &scale, &options.scenarios(), &mut report.machine).await;
        report.profiles.push(measured.unwrap_or_else(|error| {
            eprintln!("plat-bench: profile {} failed: {error:#}", profile.label());
            let mut failed = ProfileReport::new(profile);
            failed.errors.push(format!("{error:#}"));
            failed
        }));
    }
    let out = options.out_path();
    report.write_json(&out)?;
    print!("{}", report.table());
    println!("\nresults: {}", out.display());
    let errors: Vec<&String> = report.profiles.iter().flat_map(|p| &p.errors).collect();
    if !errors.is_empty() {
        bail!("{} scenario(s) failed: {errors:?}", errors.len());
    }
    Ok(report)
}

/// One profile on a cluster of its own, which is stopped whatever happens.
async fn measure(
    profile: Profile,
    scale: &Scale,
    scenarios: &[Scenario],
    machine: &mut Machine,
) -> anyhow::Result<ProfileReport> {
    let cluster = Cluster::start(profile).await?;
    if machine.postgres_version.is_none() {
        machine.postgres_version = cluster.postgres_version();
    }
    let measured = run_profile(profile, &cluster, scale, scenarios).await;
    cluster.stop().await?;
    measured
}

/// The scenarios on one cluster; the last group holds how long each took.
async fn run_profile(
    profile: Profile,
    cluster: &Cluster,
    scale: &Scale,
    scenarios: &[Scenario],
) -> anyhow::Result<ProfileReport> {
    let mut report = ProfileReport::new(profile);
    let mut platform = Platform::start(&cluster.database_url(), cluster.postmaster_pid()).await?;
    let mut elapsed = Group::new("elapsed");
    for &scenario in scenarios {
        eprintln!("plat-bench: {} / {}", profile.label(), scenario.name());
        let started = Instant::now();
        match scenarios::run(scenario, &mut platform, scale, &mut report.notes).await {
            Ok(group) => report.groups.push(group),
            Err(error) => {
                eprintln!("plat-bench: {} failed: {error:#}", scenario.name());
                report
                    .errors
                    .push(format!("{}: {error:#}", scenario.name()));
            }
        }
        elapsed.push(
            format!("{}_s", scenario.name()),
            format!("{}: s", scenario.name()),
            started.elapsed().as_secs_f64(),
        );
    }
    report.groups.push(elapsed);
    platform.stop().await?;
    Ok(report)
}
