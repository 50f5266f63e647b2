//! One user's backlog next to another user's waiting calls (issue 25): user
//! A (the bench's admin, exempt from the queue quota) has a large backlog
//! queued while user B (a DEV) calls `execute?wait=30` once every 10 ms.
//! Reported: B's latency next to B's latency on an idle platform, and A's
//! drain rate next to the same drain with B away. The fair claim
//! (docs/architecture.md, "Fairness and quotas") is what keeps B's calls
//! from waiting behind A's backlog.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::client::Api;
use crate::options::Scale;
use crate::platform::Platform;
use crate::queue;
use crate::report::Group;
use crate::stats::{per_sec, Samples};

const EXECUTORS: usize = 2;
/// B's pace: one call started every 10 ms, whatever the earlier ones take.
const PACE: Duration = Duration::from_millis(10);
/// See `throughput::SETTLE`: the executors' start is not what is measured.
const SETTLE: Duration = Duration::from_secs(2);
/// How often the bench looks whether A's backlog is done.
const DONE_POLL: Duration = Duration::from_millis(100);

pub async fn run(
    platform: &mut Platform,
    scale: &Scale,
    notes: &mut Vec<String>,
) -> anyhow::Result<Group> {
    let function = platform.echo_function().await?;
    let a = platform.api.clone();
    let (b_id, b) = a
        .new_dev(&format!(
            "fairness-{}@bench.invalid",
            Uuid::now_v7().simple()
        ))
        .await?;
    let backlog = scale.fairness_backlog;

    // B alone.
    let executors = platform.start_executors(EXECUTORS).await?;
    tokio::time::sleep(SETTLE).await;
    for i in 0..scale.warmup_calls {
        b.execute_ok(function, &json!({ "n": i })).await?;
    }
    let stop = CancellationToken::new();
    let stopper = {
        let stop = stop.clone();
        let calls = scale.sequential_calls as u32;
        tokio::spawn(async move {
            tokio::time::sleep(PACE * calls).await;
            stop.cancel();
        })
    };
    let idle = Samples::new(paced_calls(&b, function, stop).await?);
    stopper.await?;
    executors.stop().await?;

    // A's backlog alone, then with B calling.
    let plain = drain(platform, &a, function, backlog, None).await?;
    let shared = drain(platform, &a, function, backlog, Some((&b, b_id))).await?;
    let during = Samples::new(shared.b_calls.clone());

    let mut group = Group::new("fairness");
    group.push("idle_p50_ms", "B alone: p50 ms", idle.ms(50.0));
    group.push("idle_p99_ms", "B alone: p99 ms", idle.ms(99.0));
    group.push(
        "backlog_p50_ms",
        format!("B while A's {backlog} drain: p50 ms"),
        during.ms(50.0),
    );
    group.push(
        "backlog_p99_ms",
        format!("B while A's {backlog} drain: p99 ms"),
        during.ms(99.0),
    );
    group.push(
        "p99_vs_idle_ratio",
        "B's p99 during the backlog / idle (goal: at most 2)",
        during.ms(99.0) / idle.ms(99.0),
    );
    group.push(
        "plain_drain_per_sec",
        format!("A's {backlog} alone: executions/s"),
        plain.per_sec,
    );
    group.push(
        "shared_drain_per_sec",
        format!("A's {backlog} with B calling: executions/s"),
        shared.per_sec,
    );
    group.push(
        "drain_change_pct",
        "A's drain with B calling vs alone: % (goal: within -10)",
        (shared.per_sec - plain.per_sec) / plain.per_sec * 100.0,
    );
    group.push(
        "b_calls_during_backlog_count",
        "B's calls during the backlog",
        shared.b_calls.len() as f64,
    );
    group.push(
        "not_succeeded_count",
        "A's executions not SUCCEEDED",
        (plain.not_succeeded + shared.not_succeeded) as f64,
    );
    notes.push(format!(
        "fairness: {EXECUTORS} executors. A is the bench's admin (exempt from the queue \
         quota), B a DEV with its own key, both running the echo function. B alone: \
         {} warm-up calls, then one execute?wait=30 call started every {PACE:?} (not \
         waiting for the earlier ones) for {} ticks; a sample is a call's whole round \
         trip. A's backlog: {backlog} executions queued through the batch endpoint with \
         the executors stopped; then the executors start, and A's drain rate is A's \
         executions / (A's last finished_at - A's first started_at). With B: the same, \
         B calling at the same pace from the executors' start until A's last run is \
         done (at least 10 calls).",
        scale.warmup_calls, scale.sequential_calls
    ));
    Ok(group)
}

struct Drain {
    per_sec: f64,
    not_succeeded: usize,
    b_calls: Vec<Duration>,
}

/// Queues `backlog` runs as A with the executors stopped, starts them, and
/// with `b` calls at B's pace until A's runs are done.
async fn drain(
    platform: &Platform,
    a: &Api,
    function: Uuid,
    backlog: usize,
    b: Option<(&Api, Uuid)>,
) -> anyhow::Result<Drain> {
    let ids = a.enqueue_numbers(function, 0..backlog).await?;
    let executors = platform.start_executors(EXECUTORS).await?;
    let b_calls = match b {
        Some((b, b_id)) => {
            let stop = CancellationToken::new();
            let watcher = tokio::spawn(stop_when_only(platform.db.clone(), b_id, stop.clone()));
            let calls = paced_calls(b, function, stop).await?;
            watcher.await??;
            calls
        }
        None => Vec::new(),
    };
    queue::wait_until_drained(&platform.db).await?;
    executors.stop().await?;
    let outcome = queue::outcome(&platform.db, &ids).await?;
    let (first, last) = outcome
        .first_started
        .zip(outcome.last_finished)
        .context("A's runs have no start or finish")?;
    Ok(Drain {
        per_sec: per_sec(outcome.total, queue::between(first, last)),
        not_succeeded: outcome.not_succeeded(),
        b_calls,
    })
}

/// Cancels `stop` once every job left is `owner`'s: A's backlog is done.
async fn stop_when_only(db: PgPool, owner: Uuid, stop: CancellationToken) -> anyhow::Result<()> {
    loop {
        let others: bool =
            sqlx::query_scalar("select exists (select from execution_jobs where owner_id <> $1)")
                .bind(owner)
                .fetch_one(&db)
                .await?;
        if !others {
            stop.cancel();
            return Ok(());
        }
        tokio::time::sleep(DONE_POLL).await;
    }
}

/// Starts one waiting call every [`PACE`] until `stop` (and at least 10),
/// each on its own task; returns every call's round trip.
async fn paced_calls(
    b: &Api,
    function: Uuid,
    stop: CancellationToken,
) -> anyhow::Result<Vec<Duration>> {
    let mut calls = tokio::task::JoinSet::new();
    let mut ticks = tokio::time::interval(PACE);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0;
    while n < 10 || !stop.is_cancelled() {
        ticks.tick().await;
        let b = b.clone();
        calls.spawn(async move {
            let started = Instant::now();
            b.execute_ok(function, &json!({ "n": n })).await?;
            Ok::<_, anyhow::Error>(started.elapsed())
        });
        n += 1;
    }
    let mut samples = Vec::with_capacity(n);
    while let Some(call) = calls.join_next().await {
        samples.push(call??);
    }
    Ok(samples)
}
