//! The queue under sustained load: producers keep a backlog while 2
//! executors drain it, for a fixed window; then the same while another
//! session holds a transaction open for the whole window, as a long report
//! or a forgotten `BEGIN` would. That session's snapshot stops vacuum from
//! removing the queue's dead rows, so every claim wades through more of
//! them: the degradation is the price of that mistake.

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::{Connection as _, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::client::{Api, MAX_BATCH};
use crate::options::Scale;
use crate::platform::Platform;
use crate::queue::{self, between};
use crate::report::Group;
use crate::stats::per_sec;

const EXECUTORS: usize = 2;
const PRODUCERS: usize = 2;
/// Producers pause while more jobs than this are waiting: the executors
/// always have work, and the queue stays the size a healthy system has.
const BACKLOG_CAP: i64 = 5_000;
/// How often a paused producer looks at the backlog again.
const BACKLOG_POLL: Duration = Duration::from_millis(20);
/// See `throughput::SETTLE`: the executors' start is not what is measured.
const SETTLE: Duration = Duration::from_secs(2);

pub async fn run(
    platform: &mut Platform,
    scale: &Scale,
    notes: &mut Vec<String>,
) -> anyhow::Result<Group> {
    let function = platform.echo_function().await?;
    let executors = platform.start_executors(EXECUTORS).await?;
    tokio::time::sleep(SETTLE).await;
    let free = window(platform, function, scale.hold).await?;

    // `repeatable read` keeps the snapshot of the first statement for the
    // whole transaction; `txid_current()` gives it an xid as well.
    let mut holder = platform.connection().await?;
    sqlx::raw_sql("begin isolation level repeatable read")
        .execute(&mut holder)
        .await?;
    sqlx::raw_sql("select txid_current()")
        .execute(&mut holder)
        .await?;
    let held = window(platform, function, scale.hold).await;
    sqlx::raw_sql("rollback").execute(&mut holder).await?;
    holder.close().await?;
    let held = held?;
    executors.stop().await?;

    let mut group = Group::new("contention");
    group.push(
        "free_per_sec",
        format!("free: {EXECUTORS} executors, backlog <= ~{BACKLOG_CAP}: executions/s"),
        free.per_sec,
    );
    group.push(
        "free_dead_tuples_count",
        "free: execution_jobs n_dead_tup at the end",
        free.dead_tuples as f64,
    );
    group.push(
        "held_per_sec",
        "held: same, one transaction held open: executions/s",
        held.per_sec,
    );
    group.push(
        "held_dead_tuples_count",
        "held: execution_jobs n_dead_tup at the end",
        held.dead_tuples as f64,
    );
    group.push(
        "degradation_pct",
        "degradation with the transaction held: %",
        (free.per_sec - held.per_sec) / free.per_sec * 100.0,
    );
    group.push(
        "not_succeeded_count",
        "executions not SUCCEEDED in the windows",
        (free.not_succeeded + held.not_succeeded) as f64,
    );
    notes.push(format!(
        "contention: {EXECUTORS} executors; {PRODUCERS} producers enqueue in batches of \
         {MAX_BATCH} while count(execution_jobs) <= {BACKLOG_CAP}; after {:?} of warm-up, \
         executions/s = executions finished in the {:?} window / its length (database \
         clock). The held transaction (repeatable read, txid_current()) is opened before \
         the warm-up and rolled back after the window. n_dead_tup comes from \
         pg_stat_user_tables, which backends update about once a second.",
        warmup(scale.hold),
        scale.hold
    ));
    Ok(group)
}

struct Window {
    per_sec: f64,
    dead_tuples: i64,
    not_succeeded: i64,
}

/// The producers run from before the warm-up to the end of the window;
/// then the queue is drained.
async fn window(platform: &Platform, function: Uuid, hold: Duration) -> anyhow::Result<Window> {
    let stop = CancellationToken::new();
    let mut producers = tokio::task::JoinSet::new();
    for _ in 0..PRODUCERS {
        producers.spawn(produce(
            platform.api.clone(),
            platform.db.clone(),
            function,
            stop.clone(),
        ));
    }
    let measured = async {
        tokio::time::sleep(warmup(hold)).await;
        let start = queue::now(&platform.db).await?;
        tokio::time::sleep(hold).await;
        let end = queue::now(&platform.db).await?;
        let dead_tuples = queue::dead_tuples(&platform.db).await?;
        Ok::<_, anyhow::Error>((start, end, dead_tuples))
    }
    .await;
    stop.cancel();
    while let Some(producer) = producers.join_next().await {
        producer.context("a producer panicked")??;
    }
    let (start, end, dead_tuples) = measured?;
    queue::wait_until_drained(&platform.db).await?;
    let (finished, not_succeeded) = finished_between(&platform.db, function, start, end).await?;
    Ok(Window {
        per_sec: per_sec(finished as usize, between(start, end)),
        dead_tuples,
        not_succeeded,
    })
}

/// A quarter of the window, at most 5 s: the backlog builds up and the
/// executors reach their steady state before anything is counted.
fn warmup(hold: Duration) -> Duration {
    (hold / 4).min(Duration::from_secs(5))
}

/// Enqueues batches as fast as the API takes them, pausing while the
/// backlog is over [`BACKLOG_CAP`], until `stop`.
async fn produce(
    api: Api,
    db: PgPool,
    function: Uuid,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut n = 0;
    while !stop.is_cancelled() {
        if queue::queue_len(&db).await? > BACKLOG_CAP {
            tokio::time::sleep(BACKLOG_POLL).await;
            continue;
        }
        let inputs: Vec<Value> = (n..n + MAX_BATCH).map(|i| json!({ "n": i })).collect();
        api.enqueue_batch(function, &inputs).await?;
        n += MAX_BATCH;
    }
    Ok(())
}

/// Executions of `function` that finished in `[start, end)`, and how many
/// of them did not succeed.
async fn finished_between(
    db: &PgPool,
    function: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> anyhow::Result<(i64, i64)> {
    Ok(sqlx::query_as(
        r#"
        select count(*), count(*) filter (where status <> 'SUCCEEDED') from executions
        where function_id = $1 and finished_at >= $2 and finished_at < $3
        "#,
    )
    .bind(function)
    .bind(start)
    .bind(end)
    .fetch_one(db)
    .await?)
}
