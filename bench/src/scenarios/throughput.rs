//! How many executions per second the executors finish, for 1, 2 and 4
//! workers: with the whole queue there before they start ("preloaded"), and
//! while a client keeps adding to it ("live"). Then how fast the API alone
//! takes work in: single calls from concurrent clients, and bulk.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use plat_common::queue::execute::{self, Finished};
use serde_json::json;
use uuid::Uuid;

use crate::cpu::{CpuPerUnit, CpuTimes};
use crate::options::Scale;
use crate::platform::Platform;
use crate::queue::{self, between, Outcome};
use crate::report::Group;
use crate::stats::per_sec;

const EXECUTOR_COUNTS: [usize; 3] = [1, 2, 4];
/// Concurrent claim-and-complete loops of the queue-only drain.
const QUEUE_ONLY_LOOPS: [usize; 2] = [2, 4];
/// Jobs each queue-only claim takes: the executor's default prefetch, the
/// most it claims at once for runs of microseconds.
const QUEUE_ONLY_CLAIM: i64 = 128;
/// Clients sending single enqueue calls at once.
const CLIENTS: usize = 32;
/// Time for freshly started executors to finish starting (each preloads the
/// JavaScript engine: 0.6 s of Cranelift, or a read from the disk cache)
/// before a live run, which measures the steady state rather than the start.
const SETTLE: Duration = Duration::from_secs(2);

pub async fn run(
    platform: &mut Platform,
    scale: &Scale,
    notes: &mut Vec<String>,
) -> anyhow::Result<Group> {
    let function = platform.echo_function().await?;
    prime(platform, function).await?;
    let n = scale.executions;
    let mut group = Group::new("throughput");
    let mut not_succeeded = 0;
    for executors in EXECUTOR_COUNTS {
        let workers = if executors == 1 {
            "executor"
        } else {
            "executors"
        };

        let (from_start, from_claim, cpu, outcome) =
            preloaded(platform, function, n, executors).await?;
        group.push(
            format!("preloaded_{executors}_executors_per_sec"),
            format!("preloaded, {executors} {workers}: executions/s"),
            from_start,
        );
        group.push(
            format!("preloaded_{executors}_executors_from_first_claim_per_sec"),
            format!("preloaded, {executors} {workers}, from first claim: executions/s"),
            from_claim,
        );
        group.push(
            format!("preloaded_{executors}_executors_per_claim_count"),
            format!("preloaded, {executors} {workers}: executions per claim statement"),
            per_statement(&outcome, outcome.claims),
        );
        group.push(
            format!("preloaded_{executors}_executors_per_result_write_count"),
            format!("preloaded, {executors} {workers}: executions per result statement"),
            per_statement(&outcome, outcome.result_writes),
        );
        not_succeeded += report_failures(&outcome, "preloaded", executors, notes);
        if let Some(cpu) = cpu {
            group.push(
                format!("preloaded_{executors}_executors_postgres_cpu_us"),
                format!("preloaded, {executors} {workers}: PostgreSQL CPU per execution, µs"),
                cpu.postgres_us,
            );
            group.push(
                format!("preloaded_{executors}_executors_platform_cpu_us"),
                format!("preloaded, {executors} {workers}: platform CPU per execution, µs"),
                cpu.platform_us,
            );
            group.push(
                format!("preloaded_{executors}_executors_cpu_ceiling_per_sec"),
                format!("preloaded, {executors} {workers}: CPU-bound ceiling, executions/s"),
                cpu.ceiling_per_sec(crate::machine::cpus()),
            );
        }

        let (rate, outcome) = live(platform, function, n, executors).await?;
        group.push(
            format!("live_{executors}_executors_per_sec"),
            format!("live, {executors} {workers}: executions/s"),
            rate,
        );
        not_succeeded += report_failures(&outcome, "live", executors, notes);
    }
    for loops in QUEUE_ONLY_LOOPS {
        let (rate, cpu) = queue_only(platform, function, n, loops).await?;
        group.push(
            format!("queue_only_{loops}_loops_per_sec"),
            format!("queue statements only, no-op handler, {loops} loops: executions/s"),
            rate,
        );
        if let Some(cpu) = cpu {
            group.push(
                format!("queue_only_{loops}_loops_postgres_cpu_us"),
                format!("queue statements only, {loops} loops: PostgreSQL CPU per execution, µs"),
                cpu.postgres_us,
            );
        }
    }
    group.push(
        "not_succeeded_count",
        "executions not SUCCEEDED (all runs)",
        not_succeeded as f64,
    );

    let single = enqueue_single(platform, function, n).await?;
    group.push(
        "enqueue_single_per_sec",
        format!("enqueue alone, single calls, {CLIENTS} clients: calls/s"),
        single,
    );
    let bulk = enqueue_bulk(platform, function, n).await?;
    group.push(
        "enqueue_bulk_inputs_per_sec",
        "enqueue alone, bulk (1000 per call): inputs/s",
        bulk,
    );
    notes.push(format!(
        "throughput: {n} executions per run. Preloaded: all queued first, then the executors \
         start; executions/s = N / (last finished_at - executor start), where the start \
         includes each worker's start-up (runtime, JavaScript engine preload and module \
         load, both from the disk cache a priming run filled); 'from first claim' divides by (last finished_at - first started_at) instead. \
         Live: executors started {SETTLE:?} earlier, one client enqueues in batches of 1000; \
         executions/s = N / (last finished_at - first enqueue). CPU per execution: \
         /proc times of the PostgreSQL server's processes and of this process (API, \
         workers, bench) over the preloaded drain, divided by N; the ceiling is the \
         machine's cores divided by their sum. Executions per claim and per result \
         statement: N / the number of distinct started_at and finished_at (each is its \
         statement's transaction start). Queue only: the executor's claim \
         ({QUEUE_ONLY_CLAIM} at a time) and complete_batch statements in concurrent loops with a no-op handler: \
         the rate the queue's SQL alone allows."
    ));
    Ok(group)
}

/// Runs the function once on an executor that then lives for [`SETTLE`]:
/// the first executor on a machine Cranelift-compiles the module and the
/// JavaScript engine into the shared disk cache, a once-per-machine cost
/// (cold_start measures it) that would otherwise land in whichever run
/// comes first (in a --quick run it cut the first run from ~3,700 to ~750
/// executions/s).
async fn prime(platform: &Platform, function: Uuid) -> anyhow::Result<()> {
    let executor = platform.start_executors(1).await?;
    platform
        .api
        .execute_ok(function, &json!({ "n": 0 }))
        .await?;
    tokio::time::sleep(SETTLE).await;
    executor.stop().await
}

/// Queues `n` runs with no executor running, then starts `executors` and
/// waits until the queue is empty. Returns executions/s from the executors'
/// start and from the first claim, and the CPU each execution cost (when
/// the server's process is known).
async fn preloaded(
    platform: &Platform,
    function: Uuid,
    n: usize,
    executors: usize,
) -> anyhow::Result<(f64, f64, Option<CpuPerUnit>, Outcome)> {
    let ids = platform.api.enqueue_numbers(function, 0..n).await?;
    let cpu_read = || platform.postmaster.map(CpuTimes::read).transpose();
    let cpu_before = cpu_read()?;
    let start = queue::now(&platform.db).await?;
    let workers = platform.start_executors(executors).await?;
    queue::wait_until_drained(&platform.db).await?;
    let cpu = cpu_read()?
        .zip(cpu_before)
        .map(|(after, before)| after.per_unit_since(&before, n));
    workers.stop().await?;
    let outcome = queue::outcome(&platform.db, &ids).await?;
    let last = outcome.last_finished.context("no execution finished")?;
    let first_claim = outcome.first_started.context("no execution started")?;
    Ok((
        per_sec(n, between(start, last)),
        per_sec(n, between(first_claim, last)),
        cpu,
        outcome,
    ))
}

/// Starts `executors`, then queues `n` runs while they work; returns
/// executions/s from the first enqueue to the last finish.
async fn live(
    platform: &Platform,
    function: Uuid,
    n: usize,
    executors: usize,
) -> anyhow::Result<(f64, Outcome)> {
    let workers = platform.start_executors(executors).await?;
    tokio::time::sleep(SETTLE).await;
    let start = queue::now(&platform.db).await?;
    let ids = platform.api.enqueue_numbers(function, 0..n).await?;
    queue::wait_until_drained(&platform.db).await?;
    workers.stop().await?;
    let outcome = queue::outcome(&platform.db, &ids).await?;
    let last = outcome.last_finished.context("no execution finished")?;
    Ok((per_sec(n, between(start, last)), outcome))
}

/// The database's share alone: `n` queued runs drained by `loops` tasks that
/// use the executor's own statements (`claim` of 128, `complete_batch`) with
/// a no-op handler (the output is the input), no WebAssembly and no worker
/// machinery. Its rate is the ceiling the queue's SQL sets on this machine;
/// returns it with PostgreSQL's CPU per execution.
async fn queue_only(
    platform: &Platform,
    function: Uuid,
    n: usize,
    loops: usize,
) -> anyhow::Result<(f64, Option<CpuPerUnit>)> {
    let ids = platform.api.enqueue_numbers(function, 0..n).await?;
    let pool = platform.pool(loops as u32).await?;
    let cpu_before = platform.postmaster.map(CpuTimes::read).transpose()?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..loops {
        let pool = pool.clone();
        tasks.spawn(async move {
            loop {
                let jobs = execute::claim(
                    &pool,
                    "queue-only",
                    Duration::from_secs(60),
                    QUEUE_ONLY_CLAIM,
                )
                .await?;
                if jobs.is_empty() {
                    return Ok::<_, anyhow::Error>(());
                }
                let finished: Vec<Finished> = jobs
                    .iter()
                    .map(|job| Finished::succeeded(job.input.clone(), 0))
                    .collect();
                let results: Vec<_> = jobs.iter().zip(&finished).collect();
                execute::complete_batch(&pool, &results).await?;
            }
        });
    }
    while let Some(task) = tasks.join_next().await {
        task??;
    }
    let elapsed = started.elapsed();
    let cpu = platform
        .postmaster
        .map(CpuTimes::read)
        .transpose()?
        .zip(cpu_before)
        .map(|(after, before)| after.per_unit_since(&before, n));
    pool.close().await;
    let outcome = queue::outcome(&platform.db, &ids).await?;
    if outcome.not_succeeded() > 0 {
        anyhow::bail!("queue-only drain: {:?}", outcome.failures);
    }
    Ok((per_sec(n, elapsed), cpu))
}

/// `n` calls of `execute?wait=0` from [`CLIENTS`] clients, no executor
/// running: calls/s. The queued runs are deleted afterwards.
async fn enqueue_single(platform: &Platform, function: Uuid, n: usize) -> anyhow::Result<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (api, next) = (platform.api.clone(), next.clone());
        clients.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                api.enqueue(function, &json!({ "n": i })).await?;
            }
        });
    }
    while let Some(client) = clients.join_next().await {
        client??;
    }
    let rate = per_sec(n, started.elapsed());
    queue::clear_queue(&platform.db).await?;
    Ok(rate)
}

/// `n` inputs through the bulk endpoint, one call after the other, no
/// executor running: inputs/s. The queued runs are deleted afterwards.
async fn enqueue_bulk(platform: &Platform, function: Uuid, n: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    platform.api.enqueue_numbers(function, 0..n).await?;
    let rate = per_sec(n, started.elapsed());
    queue::clear_queue(&platform.db).await?;
    Ok(rate)
}

/// The executions of a run per statement of a kind (how well it batched).
fn per_statement(outcome: &Outcome, statements: usize) -> f64 {
    outcome.total as f64 / statements.max(1) as f64
}

/// Notes the executions of a run that did not succeed; returns how many.
fn report_failures(
    outcome: &Outcome,
    mode: &str,
    executors: usize,
    notes: &mut Vec<String>,
) -> usize {
    let failed = outcome.not_succeeded();
    if failed > 0 {
        notes.push(format!(
            "throughput {mode}, {executors} executors: {failed} of {} executions did not succeed: {:?}",
            outcome.total, outcome.failures
        ));
    }
    failed
}
