//! The command line, and the sizes of a full run and of a `--quick` one.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::cluster::Profile;

/// Plat's end-to-end benchmark: starts a throwaway PostgreSQL per profile,
/// the API and workers in-process, and measures throughput, latency, cold
/// starts, compile times and the queue under load.
#[derive(Debug, Clone, Parser)]
#[command(name = "plat-bench", about)]
pub struct Options {
    /// A small smoke run (a tenth of the executions, 5 s contention windows).
    #[arg(long)]
    pub quick: bool,
    /// Where to write the JSON results [default: bench/results/latest.json].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Which PostgreSQL settings to measure under.
    #[arg(long, value_enum, default_value_t = ProfileChoice::Both)]
    pub profile: ProfileChoice,
    /// Length of each contention window, in seconds [default: 60; quick: 5].
    #[arg(long)]
    pub hold_secs: Option<u64>,
    /// Run only these scenarios (comma separated), in the usual order.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Scenario>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProfileChoice {
    Durable,
    Async,
    Both,
}

/// The scenarios, in the order they run. Each one is a row group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    Throughput,
    Latency,
    ColdStart,
    Compile,
    Backlog,
    Contention,
    Stats,
    Fairness,
    Webhooks,
}

impl Scenario {
    pub const ALL: [Scenario; 9] = [
        Scenario::Throughput,
        Scenario::Latency,
        Scenario::ColdStart,
        Scenario::Compile,
        Scenario::Backlog,
        Scenario::Contention,
        Scenario::Stats,
        Scenario::Fairness,
        Scenario::Webhooks,
    ];

    /// The group name in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Throughput => "throughput",
            Scenario::Latency => "latency",
            Scenario::ColdStart => "cold_start",
            Scenario::Compile => "compile",
            Scenario::Backlog => "backlog",
            Scenario::Contention => "contention",
            Scenario::Stats => "stats",
            Scenario::Fairness => "fairness",
            Scenario::Webhooks => "webhooks",
        }
    }
}

impl Options {
    pub fn profiles(&self) -> Vec<Profile> {
        match self.profile {
            ProfileChoice::Durable => vec![Profile::Durable],
            ProfileChoice::Async => vec![Profile::Async],
            ProfileChoice::Both => vec![Profile::Durable, Profile::Async],
        }
    }

    pub fn scenarios(&self) -> Vec<Scenario> {
        Scenario::ALL
            .into_iter()
            .filter(|s| self.only.is_empty() || self.only.contains(s))
            .collect()
    }

    /// `--out`, else `bench/results/latest.json` of this workspace (not of
    /// the current folder, so the file lands in one place wherever the
    /// command is run from).
    pub fn out_path(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("results")
                .join("latest.json")
        })
    }

    pub fn scale(&self) -> Scale {
        let hold = |default| Duration::from_secs(self.hold_secs.unwrap_or(default));
        if self.quick {
            Scale {
                executions: 2_000,
                warmup_calls: 20,
                sequential_calls: 200,
                concurrent_calls: 1_000,
                history_rows: 100_000,
                queued_rows: 10_000,
                claims: 100,
                runs: 1_000,
                hold: hold(5),
                fairness_backlog: 2_000,
            }
        } else {
            Scale {
                executions: 20_000,
                warmup_calls: 100,
                sequential_calls: 2_000,
                concurrent_calls: 10_000,
                history_rows: 1_000_000,
                queued_rows: 100_000,
                claims: 500,
                runs: 1_000,
                hold: hold(60),
                fairness_backlog: 200_000,
            }
        }
    }
}

/// How much work each scenario does.
#[derive(Debug, Clone)]
pub struct Scale {
    /// Executions per throughput run, and per enqueue-rate measurement.
    pub executions: usize,
    /// Latency: calls before measuring.
    pub warmup_calls: usize,
    /// Latency: one client's sequential calls.
    pub sequential_calls: usize,
    /// Latency: calls shared by the concurrent clients.
    pub concurrent_calls: usize,
    /// Backlog: finished executions in the large history.
    pub history_rows: i64,
    /// Backlog: queued jobs next to the large history.
    pub queued_rows: i64,
    /// Backlog: claims measured per limit and history.
    pub claims: usize,
    /// Cold start: instantiate+run samples per language.
    pub runs: usize,
    /// Contention: the length of each measured window.
    pub hold: Duration,
    /// User A's backlog in the fairness scenario.
    pub fairness_backlog: usize,
}
