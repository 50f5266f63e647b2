//! The loop every worker runs: claim as many jobs as there are free slots,
//! run each in its own task, keep their leases alive, rescue jobs lost by
//! dead workers, and stop in two stages.
//!
//! Workers wake on `LISTEN` notifications (a hint only) and also poll on a
//! jittered interval, so a lost notification costs at most one poll interval.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::Rng;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::notify;

/// Jobs claimed when told of new jobs while a backlog is being worked
/// through. The claim order is fair (the execution queue stamps another
/// user's new run at the front), so a new run is among the first few
/// claimed; waiting for the next refill would hold it for up to a whole
/// batch of runs. Small, so that frequent wake-ups do not turn the
/// backlog's large claims into many small ones.
const WOKEN_CLAIM: usize = 4;

/// What became of one job in one worker: the `outcome` label of
/// `plat_jobs_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// A build produced a module.
    Ready,
    /// A run produced an output.
    Succeeded,
    /// The build or run failed for a reason of the user's (recorded).
    Failed,
    /// The run was cancelled (recorded).
    Cancelled,
    /// Our infrastructure failed, or the run failed under its version's
    /// retry policy; the job went back to the queue.
    Retried,
    /// Another attempt owned the job by the time the result was written.
    LeaseLost,
    /// The result could not be written; the job's lease expires and the
    /// rescuer hands it to another attempt.
    Unrecorded,
}

impl JobOutcome {
    /// The metric label, e.g. `lease_lost`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Ready => "ready",
            JobOutcome::Succeeded => "succeeded",
            JobOutcome::Failed => "failed",
            JobOutcome::Cancelled => "cancelled",
            JobOutcome::Retried => "retried",
            JobOutcome::LeaseLost => "lease_lost",
            JobOutcome::Unrecorded => "unrecorded",
        }
    }
}

/// A unique name for one worker process: kind, host, pid and a random suffix.
pub fn worker_id(kind: &str) -> String {
    let suffix: u32 = rand::thread_rng().gen();
    format!("{kind}-{}-{}-{suffix:08x}", host_name(), std::process::id())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".to_string())
}

/// Records this worker in the `workers` table (or refreshes its row): its
/// kind, host, pid, last sign of life and jobs done. Operators see it in
/// `GET /queues`.
async fn report(pool: &PgPool, id: &str, kind: &str, jobs_done: u64) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        insert into workers (id, kind, host, pid, jobs_done) values ($1, $2, $3, $4, $5)
        on conflict (id) do update set last_seen_at = now(), jobs_done = excluded.jobs_done
        "#,
        id,
        kind,
        host_name(),
        std::process::id() as i32,
        i64::try_from(jobs_done).unwrap_or(i64::MAX),
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// How a worker loop behaves; every field has a documented default.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// Jobs run at once by this process.
    pub concurrency: usize,
    /// How long a claim stays valid without a heartbeat.
    pub lease: Duration,
    /// Fallback poll interval when no notification arrives.
    pub poll_interval: Duration,
    /// On shutdown, how long running jobs may take to finish before their
    /// leases are released back to the queue.
    pub shutdown_grace: Duration,
}

/// One kind of queue, as the generic loop sees it.
pub trait Queue: Send + Sync + 'static {
    /// A claimed job.
    type Job: Send + 'static;

    /// Kind name for logs and worker ids (`compile`, `execute`).
    fn kind(&self) -> &'static str;
    /// This worker's id, as its claims record it.
    fn worker_id(&self) -> &str;
    /// The `LISTEN` channel that announces new jobs.
    fn channel(&self) -> &'static str;
    /// Whether this worker can start another job now (e.g. a run thread is
    /// idle). Asked before each claim, so a worker busy with long jobs leaves
    /// new ones to others; except the few claimed when woken in a backlog,
    /// which [`Queue::wanted`] still bounds.
    fn ready_for_more(&self) -> bool {
        true
    }
    /// How many jobs this worker wants to hold now (running, waiting to
    /// run, or having their result written), at most `concurrency`. The
    /// executor holds fewer when its runs are slow, so it does not hoard
    /// jobs other workers could start.
    fn wanted(&self, concurrency: usize) -> usize {
        concurrency
    }
    /// Told of a notification on [`Queue::channel`], with its payload,
    /// before the loop wakes to claim.
    fn heard(&self, _payload: &str) {}
    /// Claims up to `limit` jobs.
    fn claim(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Self::Job>, sqlx::Error>> + Send;
    /// The lease token of a claimed job.
    fn lease_token(job: &Self::Job) -> Uuid;
    /// Runs one job to the end, including writing its result (or retrying
    /// it); returns what became of it.
    fn process(self: Arc<Self>, job: Self::Job) -> impl Future<Output = JobOutcome> + Send;
    /// The span `job` is processed in: its fields (request, job and function
    /// ids) go on every log line, and it joins the request's trace
    /// ([`crate::telemetry::join_request`]).
    fn span(job: &Self::Job) -> tracing::Span;
    /// Extends the leases of running jobs.
    fn heartbeat(&self, tokens: &[Uuid]) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;
    /// Gives a job back to the queue without counting the attempt.
    fn release(&self, token: Uuid) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
    /// Returns jobs with expired leases to the queue.
    fn rescue(&self) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;
}

/// Runs the worker loop until `shutdown` is cancelled, then stops in two
/// stages: no new claims, running jobs get `shutdown_grace` to finish, and
/// the leases of those still running are released.
pub async fn run<Q: Queue>(
    queue: Arc<Q>,
    pool: PgPool,
    config: LoopConfig,
    shutdown: CancellationToken,
) {
    crate::metrics::handle();
    let wake = Arc::new(Notify::new());
    let listener = tokio::spawn(listen(
        queue.clone(),
        pool.clone(),
        wake.clone(),
        shutdown.clone(),
    ));
    let in_flight: Arc<Mutex<HashSet<Uuid>>> = Arc::default();
    let jobs_done = Arc::new(AtomicU64::new(0));
    if let Err(error) = report(&pool, queue.worker_id(), queue.kind(), 0).await {
        tracing::warn!(%error, "could not register in the workers table; retrying with the heartbeats");
    }
    let background = tokio::spawn(maintain(
        queue.clone(),
        pool.clone(),
        config.clone(),
        in_flight.clone(),
        jobs_done.clone(),
        shutdown.clone(),
    ));

    let mut tasks = JoinSet::new();
    let mut claim_failures = 0u32;
    // Whether the last claim filled every free slot, so more jobs are likely
    // waiting. Then slots are refilled in batches (one claim per half of the
    // slots, not one per finished job); otherwise a claim is made when told
    // of new jobs or when polling.
    let mut backlog = false;
    let mut claim_now = true;
    // Told of new jobs while working through a backlog: claim a few at once
    // (see `WOKEN_CLAIM`).
    let mut claim_few = false;
    let wanted = || queue.wanted(config.concurrency).min(config.concurrency);
    while !shutdown.is_cancelled() {
        let free = wanted().saturating_sub(tasks.len());
        if claim_now && free > 0 && (claim_few || queue.ready_for_more()) {
            let limit = if claim_few {
                free.min(WOKEN_CLAIM)
            } else {
                free
            };
            (claim_now, claim_few) = (false, false);
            match queue.claim(limit).await {
                Ok(jobs) => {
                    claim_failures = 0;
                    backlog = jobs.len() == limit;
                    for job in jobs {
                        spawn_job(&mut tasks, &queue, job, &in_flight, &jobs_done);
                    }
                }
                Err(error) => {
                    // The database is down or restarting: back off and retry,
                    // never exit (the operator should not have to restart us).
                    claim_failures = claim_failures.saturating_add(1);
                    let pause = Duration::from_millis(200 * 2u64.pow(claim_failures.min(5)));
                    tracing::warn!(%error, retry_in_ms = pause.as_millis() as u64, "claim failed");
                    claim_now = true;
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(pause) => continue,
                    }
                }
            }
        }
        let refill = |tasks: &JoinSet<()>| {
            let wanted = wanted();
            backlog && wanted.saturating_sub(tasks.len()) >= wanted.div_ceil(2).max(1)
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {
                // Finished jobs come in bursts: collect the whole burst first.
                while tasks.try_join_next().is_some() {}
                claim_now = claim_now || refill(&tasks);
            }
            _ = wake.notified(), if tasks.len() < wanted() => {
                // New jobs: claim now. In a backlog, only a few unless a
                // refill is due anyway.
                claim_few = !claim_now && backlog && !refill(&tasks);
                claim_now = true;
            }
            _ = tokio::time::sleep(jittered(config.poll_interval)) => claim_now = true,
        }
    }

    finish(&queue, tasks, &in_flight, config.shutdown_grace).await;
    background.abort();
    listener.abort();
    mark_stopped(&pool, queue.worker_id(), &jobs_done).await;
}

/// Listens on the queue's channel: every notification is passed to the
/// queue and wakes the loop.
async fn listen<Q: Queue>(
    queue: Arc<Q>,
    pool: PgPool,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    notify::listen(pool, queue.channel(), shutdown, move |heard| {
        if let notify::Heard::Notification(payload) = heard {
            queue.heard(payload);
        }
        wake.notify_one();
    })
    .await
}

/// Processes `job` in a task of its own, its lease held in `in_flight`
/// (which the heartbeats extend) until it is done.
fn spawn_job<Q: Queue>(
    tasks: &mut JoinSet<()>,
    queue: &Arc<Q>,
    job: Q::Job,
    in_flight: &Arc<Mutex<HashSet<Uuid>>>,
    jobs_done: &Arc<AtomicU64>,
) {
    let token = Q::lease_token(&job);
    let span = Q::span(&job);
    in_flight.lock().insert(token);
    let (queue, in_flight, jobs_done) = (queue.clone(), in_flight.clone(), jobs_done.clone());
    tasks.spawn(
        async move {
            let kind = queue.kind();
            let started = Instant::now();
            let outcome = queue.process(job).instrument(span).await;
            in_flight.lock().remove(&token);
            jobs_done.fetch_add(1, Ordering::Relaxed);
            ::metrics::counter!("plat_jobs_total", "kind" => kind, "outcome" => outcome.as_str())
                .increment(1);
            ::metrics::histogram!("plat_job_duration_seconds", "kind" => kind)
                .record(started.elapsed().as_secs_f64());
        }
        .in_current_span(),
    );
}

/// The second stage of a stop: running jobs get `grace` to finish, then the
/// leases of those still running are released (their runs stopped).
async fn finish<Q: Queue>(
    queue: &Arc<Q>,
    mut tasks: JoinSet<()>,
    in_flight: &Mutex<HashSet<Uuid>>,
    grace: Duration,
) {
    tracing::info!(
        kind = queue.kind(),
        running = tasks.len(),
        "stopping: no new claims"
    );
    let drained =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        let tokens: Vec<Uuid> = in_flight.lock().iter().copied().collect();
        tracing::warn!(
            kind = queue.kind(),
            jobs = tokens.len(),
            "grace period over: releasing unfinished jobs"
        );
        for token in tokens {
            if let Err(error) = queue.release(token).await {
                tracing::warn!(%error, %token, "could not release job; its lease will expire instead");
            }
        }
        tasks.abort_all();
    }
}

/// Marks the worker stopped in `workers`, with the jobs it did.
async fn mark_stopped(pool: &PgPool, worker_id: &str, jobs_done: &AtomicU64) {
    let stopped = sqlx::query!(
        "update workers set stopped_at = now(), last_seen_at = now(), jobs_done = $2 where id = $1",
        worker_id,
        i64::try_from(jobs_done.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
    )
    .execute(pool)
    .await;
    if let Err(error) = stopped {
        tracing::debug!(%error, "could not mark the worker stopped");
    }
}

/// Heartbeats running jobs (and reports the worker alive), and rescues
/// expired ones, each on its own cadence.
async fn maintain<Q: Queue>(
    queue: Arc<Q>,
    pool: PgPool,
    config: LoopConfig,
    in_flight: Arc<Mutex<HashSet<Uuid>>>,
    jobs_done: Arc<AtomicU64>,
    shutdown: CancellationToken,
) {
    // Heartbeat three times per lease so one slow round trip never loses it.
    let mut heartbeat = tokio::time::interval(config.lease / 3);
    let mut rescue = tokio::time::interval(jittered(config.lease / 2));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = heartbeat.tick() => {
                let tokens: Vec<Uuid> = in_flight.lock().iter().copied().collect();
                if !tokens.is_empty() {
                    if let Err(error) = queue.heartbeat(&tokens).await {
                        tracing::warn!(%error, kind = queue.kind(), "heartbeat failed");
                    }
                }
                let done = jobs_done.load(Ordering::Relaxed);
                if let Err(error) = report(&pool, queue.worker_id(), queue.kind(), done).await {
                    tracing::debug!(%error, "could not report the worker alive");
                }
            }
            _ = rescue.tick() => match queue.rescue().await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(kind = queue.kind(), jobs = n, "rescued jobs whose lease expired"),
                Err(error) => tracing::warn!(%error, kind = queue.kind(), "rescue failed"),
            },
        }
    }
}

fn jittered(base: Duration) -> Duration {
    base.mul_f64(rand::thread_rng().gen_range(0.8..=1.2))
}
