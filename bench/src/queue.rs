//! What the bench reads from the queue and history tables, and the set-up it
//! does on them. Timings come from the database's clock, the same clock
//! that stamps `created_at`, `started_at` and `finished_at`.

use std::time::{Duration, Instant};

use anyhow::bail;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// How often the bench checks whether the queue has drained. Rates are
/// timed by the rows' own timestamps, not by this poll, so it only needs to
/// be cheap: every 20 ms a `count(*)` of 20,000 queued jobs cost 4 ms of
/// server CPU, 11 µs per execution of a drain, taken from the drain itself.
const DRAIN_POLL: Duration = Duration::from_millis(100);
/// The longest a queue may take to drain before the scenario fails.
const DRAIN_PATIENCE: Duration = Duration::from_secs(600);

/// Jobs queued or running.
pub async fn queue_len(db: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("select count(*) from execution_jobs")
        .fetch_one(db)
        .await?)
}

/// Waits until `execution_jobs` is empty. Asks only whether a job is left,
/// which stops at the first one, rather than counting them all.
pub async fn wait_until_drained(db: &PgPool) -> anyhow::Result<()> {
    let deadline = Instant::now() + DRAIN_PATIENCE;
    loop {
        let left: bool = sqlx::query_scalar("select exists (select from execution_jobs)")
            .fetch_one(db)
            .await?;
        if !left {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} executions still queued after {DRAIN_PATIENCE:?}",
                queue_len(db).await?
            );
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// The database's wall clock now (not the transaction's start).
pub async fn now(db: &PgPool) -> anyhow::Result<DateTime<Utc>> {
    Ok(sqlx::query_scalar("select clock_timestamp()")
        .fetch_one(db)
        .await?)
}

/// Deletes every queued (not running) execution with its job: they were
/// only there to be measured, and must not be run by the next scenario.
pub async fn clear_queue(db: &PgPool) -> anyhow::Result<u64> {
    let deleted = sqlx::query(
        r#"
        with j as (delete from execution_jobs where state = 'available' returning id)
        delete from executions e using j where e.id = j.id
        "#,
    )
    .execute(db)
    .await?;
    Ok(deleted.rows_affected())
}

/// How a set of executions ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub total: usize,
    pub succeeded: usize,
    /// The first claim of any of them.
    pub first_started: Option<DateTime<Utc>>,
    /// The last of them to finish.
    pub last_finished: Option<DateTime<Utc>>,
    /// Claim statements that took them: distinct `started_at`, which is
    /// the claim's transaction start.
    pub claims: usize,
    /// Result statements that recorded them: distinct `finished_at`.
    pub result_writes: usize,
    /// `status`/`error_type` counts of those that did not succeed.
    pub failures: Vec<(String, i64)>,
}

impl Outcome {
    pub fn not_succeeded(&self) -> usize {
        self.total - self.succeeded
    }
}

/// One row of [`outcome`]'s query.
#[derive(sqlx::FromRow)]
struct Counts {
    total: i64,
    succeeded: i64,
    first_started: Option<DateTime<Utc>>,
    last_finished: Option<DateTime<Utc>>,
    claims: i64,
    result_writes: i64,
}

/// Reads how the executions `ids` ended.
pub async fn outcome(db: &PgPool, ids: &[Uuid]) -> anyhow::Result<Outcome> {
    let counts: Counts = sqlx::query_as(
        r#"
        select count(*) as total, count(*) filter (where status = 'SUCCEEDED') as succeeded,
               min(started_at) as first_started, max(finished_at) as last_finished,
               count(distinct started_at) as claims, count(distinct finished_at) as result_writes
        from executions where id = any($1)
        "#,
    )
    .bind(ids)
    .fetch_one(db)
    .await?;
    let Counts {
        total,
        succeeded,
        first_started,
        last_finished,
        claims,
        result_writes,
    } = counts;
    let failures = if succeeded < total {
        sqlx::query_as(
            r#"
            select status::text || coalesce(' ' || error_type, ''), count(*)
            from executions where id = any($1) and status <> 'SUCCEEDED'
            group by 1 order by 2 desc
            "#,
        )
        .bind(ids)
        .fetch_all(db)
        .await?
    } else {
        Vec::new()
    };
    if total as usize != ids.len() {
        bail!("{} executions were queued but {total} exist", ids.len());
    }
    Ok(Outcome {
        total: total as usize,
        succeeded: succeeded as usize,
        first_started,
        last_finished,
        claims: claims as usize,
        result_writes: result_writes as usize,
        failures,
    })
}

/// Where the time of finished executions went, by the database's stamps:
/// `created_at` (the enqueue's transaction start) → `started_at` (the claim's)
/// → `finished_at` (the result's write).
#[derive(Debug, Clone)]
pub struct Phases {
    /// Enqueue → claim: the enqueue's commit, the wake-up, the claim.
    pub queued: Vec<Duration>,
    /// Claim → result write: handing the job to a run thread, the run, and
    /// the wait for the result writer.
    pub running: Vec<Duration>,
}

pub async fn phases(db: &PgPool, ids: &[Uuid]) -> anyhow::Result<Phases> {
    let rows: Vec<(f64, f64)> = sqlx::query_as(
        r#"
        select extract(epoch from started_at - created_at)::float8,
               extract(epoch from finished_at - started_at)::float8
        from executions where id = any($1) and finished_at is not null
        "#,
    )
    .bind(ids)
    .fetch_all(db)
    .await?;
    let seconds = |s: f64| Duration::from_secs_f64(s.max(0.0));
    Ok(Phases {
        queued: rows.iter().map(|r| seconds(r.0)).collect(),
        running: rows.iter().map(|r| seconds(r.1)).collect(),
    })
}

/// `later - earlier` as a duration (zero if the clock says otherwise).
pub fn between(earlier: DateTime<Utc>, later: DateTime<Utc>) -> Duration {
    (later - earlier).to_std().unwrap_or_default()
}

/// `execution_jobs`' dead tuples as the statistics system last saw them.
pub async fn dead_tuples(db: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "select n_dead_tup from pg_stat_user_tables where relname = 'execution_jobs'",
    )
    .fetch_one(db)
    .await?)
}
