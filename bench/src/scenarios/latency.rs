//! The full round trip of `POST /functions/{id}/execute?wait=30`, as a
//! client sees it, with 2 executors in their default configuration: one
//! client calling sequentially, then many clients at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;

use crate::client::Api;
use crate::options::Scale;
use crate::platform::Platform;
use crate::queue;
use crate::report::Group;
use crate::stats::{per_sec, Samples};

const EXECUTORS: usize = 2;
const CLIENTS: usize = 32;

pub async fn run(
    platform: &mut Platform,
    scale: &Scale,
    notes: &mut Vec<String>,
) -> anyhow::Result<Group> {
    let function = platform.echo_function().await?;
    let executors = platform.start_executors(EXECUTORS).await?;
    let api = &platform.api;
    for i in 0..scale.warmup_calls {
        api.execute_ok(function, &json!({ "n": i })).await?;
    }

    let mut group = Group::new("latency");
    let mut sequential = Vec::with_capacity(scale.sequential_calls);
    let mut ids = Vec::with_capacity(scale.sequential_calls);
    for i in 0..scale.sequential_calls {
        let (id, took) = timed_call(api, function, i).await?;
        ids.push(id);
        sequential.push(took);
    }
    let sequential = Samples::new(sequential);
    group.push("sequential_p50_ms", "1 client: p50 ms", sequential.ms(50.0));
    group.push("sequential_p90_ms", "1 client: p90 ms", sequential.ms(90.0));
    group.push("sequential_p99_ms", "1 client: p99 ms", sequential.ms(99.0));
    let phases = queue::phases(&platform.db, &ids).await?;
    group.push(
        "sequential_queued_p50_ms",
        "1 client: enqueue → claim, p50 ms",
        Samples::new(phases.queued).ms(50.0),
    );
    group.push(
        "sequential_running_p50_ms",
        "1 client: claim → result write, p50 ms",
        Samples::new(phases.running).ms(50.0),
    );

    let started = Instant::now();
    let concurrent = concurrent_calls(api, function, scale.concurrent_calls).await?;
    let rate = per_sec(scale.concurrent_calls, started.elapsed());
    let concurrent = Samples::new(concurrent);
    group.push(
        "concurrent_p50_ms",
        format!("{CLIENTS} clients: p50 ms"),
        concurrent.ms(50.0),
    );
    group.push(
        "concurrent_p99_ms",
        format!("{CLIENTS} clients: p99 ms"),
        concurrent.ms(99.0),
    );
    group.push(
        "concurrent_per_sec",
        format!("{CLIENTS} clients: calls/s"),
        rate,
    );
    executors.stop().await?;
    // With the executors stopped, the bench claims the jobs it queues.
    super::latency_floor::measure(platform, function, scale.sequential_calls, &mut group).await?;
    notes.push(format!(
        "latency: {EXECUTORS} executors, default configuration; each sample is one \
         execute?wait=30 call from sending the request to reading the whole answer \
         (200, SUCCEEDED), after {} warm-up calls; {} sequential calls, then {} calls \
         shared by {CLIENTS} concurrent clients. The sequential calls' phases come from \
         the database's stamps: created_at (enqueue) → started_at (claim) → finished_at \
         (result write); the rest of a round trip is HTTP, the enqueue and result \
         commits, the wake-up of the waiting call and its read of the result. \
         Floor: with the executors stopped, each part of a round trip alone, {} times \
         after 50 untimed: GET /healthz through the API; a one-row read by primary key; \
         the queue's enqueue, claim (limit 1), result and a read of the execution, back \
         to back on one connection with the executor's own functions; and NOTIFY sent \
         as a statement of its own until heard on another connection. The floor sums \
         their p50s, with the notification twice (the executors' wake-up and the \
         waiting call's).",
        scale.warmup_calls, scale.sequential_calls, scale.concurrent_calls, scale.sequential_calls
    ));
    Ok(group)
}

/// One waiting execute, timed; fails unless it SUCCEEDED.
async fn timed_call(api: &Api, function: Uuid, i: usize) -> anyhow::Result<(Uuid, Duration)> {
    let started = Instant::now();
    let id = api.execute_ok(function, &json!({ "n": i })).await?;
    Ok((id, started.elapsed()))
}

/// `total` calls shared by [`CLIENTS`] clients; every call's duration.
async fn concurrent_calls(
    api: &Api,
    function: Uuid,
    total: usize,
) -> anyhow::Result<Vec<Duration>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (api, next) = (api.clone(), next.clone());
        clients.spawn(async move {
            let mut samples = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(samples);
                }
                samples.push(timed_call(&api, function, i).await?.1);
            }
        });
    }
    let mut samples = Vec::with_capacity(total);
    while let Some(client) = clients.join_next().await {
        samples.extend(client??);
    }
    Ok(samples)
}
