//! Whether the claim stays cheap as the history grows: the claim statement
//! itself, timed against a small queue with no history, then against a big
//! queue next to a big history. The hot queue table design promises the
//! two are close (target: within 20%).

use std::time::{Duration, Instant};

use anyhow::ensure;
use plat_common::queue::execute;
use sqlx::{Connection as _, PgConnection, PgPool};
use uuid::Uuid;

use crate::options::Scale;
use crate::platform::Platform;
use crate::queue;
use crate::report::Group;
use crate::stats::Samples;

/// Queued jobs next to the empty history.
const SMALL_QUEUE: i64 = 1_000;
const LIMITS: [i64; 2] = [1, 64];
/// Claims before the measured ones (plan cache, buffer cache).
const WARMUP_CLAIMS: usize = 20;

pub async fn run(
    platform: &mut Platform,
    scale: &Scale,
    notes: &mut Vec<String>,
) -> anyhow::Result<Group> {
    let function = platform.echo_function().await?;
    let db = &platform.db;
    let version: i32 = sqlx::query_scalar("select active_version from functions where id = $1")
        .bind(function)
        .fetch_one(db)
        .await?;
    // An empty history means empty: the earlier scenarios' runs go.
    sqlx::query("truncate execution_jobs, unsuccessful_executions, execution_attempts, executions")
        .execute(db)
        .await?;
    insert_queued(db, function, version, SMALL_QUEUE).await?;
    vacuum(db).await?;
    let mut conn = platform.connection().await?;
    let mut small = Vec::new();
    for limit in LIMITS {
        small.push(claim_latencies(&mut conn, limit, scale.claims).await?);
    }

    queue::clear_queue(db).await?;
    let started = Instant::now();
    insert_history(db, function, version, scale.history_rows).await?;
    // Statistics for the new history before anything plans against it: the
    // foreign key check of each queued job is a plan cached per connection,
    // and one made while the truncated table looked empty scans the whole
    // history for every row (100,000 such checks took over ten minutes).
    vacuum(db).await?;
    insert_queued(db, function, version, scale.queued_rows).await?;
    vacuum(db).await?;
    let setup = started.elapsed();
    let mut large = Vec::new();
    for limit in LIMITS {
        large.push(claim_latencies(&mut conn, limit, scale.claims).await?);
    }
    conn.close().await?;

    let (history, queued) = (thousands(scale.history_rows), thousands(scale.queued_rows));
    let mut group = Group::new("backlog");
    for ((limit, small), large) in LIMITS.iter().zip(&small).zip(&large) {
        for (name, p) in [("p50", 50.0), ("p99", 99.0)] {
            group.push(
                format!("claim_limit_{limit}_empty_history_{name}_us"),
                format!("claim limit {limit}, empty history, {SMALL_QUEUE} queued: {name} µs"),
                small.us(p),
            );
            group.push(
                format!("claim_limit_{limit}_large_history_{name}_us"),
                format!("claim limit {limit}, {history} history, {queued} queued: {name} µs"),
                large.us(p),
            );
        }
        group.push(
            format!("claim_limit_{limit}_p50_ratio"),
            format!("claim limit {limit}: large / empty p50 (target <= 1.2)"),
            large.us(50.0) / small.us(50.0),
        );
    }
    // The next scenario starts with an empty queue and a vacuumed table,
    // but keeps the big history.
    queue::clear_queue(db).await?;
    vacuum(db).await?;
    notes.push(format!(
        "backlog: plat_common::queue::execute::claim(lease 30 s) in a transaction that is \
         rolled back (the queue never changes), timed from the call to its rows, {} times \
         per limit after {WARMUP_CLAIMS} warm-up claims. Empty = history truncated, \
         {SMALL_QUEUE} queued; large = {history} SUCCEEDED executions of the same function \
         and {queued} queued (inserted and vacuum analyzed in {:.1} s). The earlier \
         scenarios' history is truncated here; the large history stays for contention.",
        scale.claims,
        setup.as_secs_f64()
    ));
    Ok(group)
}

/// Times `claims` claims of `limit` jobs, each rolled back.
async fn claim_latencies(
    conn: &mut PgConnection,
    limit: i64,
    claims: usize,
) -> anyhow::Result<Samples> {
    let mut samples = Vec::with_capacity(claims);
    for i in 0..WARMUP_CLAIMS + claims {
        let mut tx = conn.begin().await?;
        let started = Instant::now();
        let jobs = execute::claim(&mut *tx, "bench", Duration::from_secs(30), limit).await?;
        let elapsed = started.elapsed();
        tx.rollback().await?;
        ensure!(
            jobs.len() as i64 == limit,
            "a claim of {limit} got {} jobs",
            jobs.len()
        );
        if i >= WARMUP_CLAIMS {
            samples.push(elapsed);
        }
    }
    Ok(Samples::new(samples))
}

/// `count` QUEUED executions with their jobs, in one statement.
async fn insert_queued(
    db: &PgPool,
    function: Uuid,
    version: i32,
    count: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        r#"
        with e as (
            insert into executions (id, function_id, function_version, input)
            select gen_random_uuid(), $1, $2, jsonb_build_object('n', g)
            from generate_series(1, $3) g
            returning id
        )
        insert into execution_jobs (id, function_id, version) select id, $1, $2 from e
        "#,
    )
    .bind(function)
    .bind(version)
    .bind(count)
    .execute(db)
    .await?;
    Ok(())
}

/// `count` SUCCEEDED executions, one every 10 ms up to now, shaped like
/// the echo function's real ones.
async fn insert_history(
    db: &PgPool,
    function: Uuid,
    version: i32,
    count: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        r#"
        insert into executions (id, function_id, function_version, status, input, output,
                                attempts, worker_id, duration_ms, created_at, started_at,
                                finished_at)
        select gen_random_uuid(), $1, $2, 'SUCCEEDED', jsonb_build_object('n', g),
               jsonb_build_object('n', g), 1, 'bench', 0, t, t, t + interval '1 ms'
        from (select g, now() - make_interval(secs => (($3 - g) / 100.0)::float8) as t
              from generate_series(1, $3) g) as s
        "#,
    )
    .bind(function)
    .bind(version)
    .bind(count)
    .execute(db)
    .await?;
    Ok(())
}

/// Vacuums and analyzes the tables, then checkpoints: the set-up writes far
/// more WAL than the claims, and a checkpoint it triggered would otherwise
/// flush its pages while the claims are being timed.
async fn vacuum(db: &PgPool) -> anyhow::Result<()> {
    sqlx::query("vacuum analyze execution_jobs, executions")
        .execute(db)
        .await?;
    sqlx::query("checkpoint").execute(db).await?;
    Ok(())
}

/// 1000000 → "1,000,000".
fn thousands(n: i64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_are_separated_by_commas() {
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(999), "999");
    }
}
