//! Retention: execution history older than `PLAT_RETENTION_DAYS` (30) is
//! deleted, in batches, by a background task in every API process (one at a
//! time across processes, by advisory lock). Each batch is its own short
//! transaction that locks only the rows it deletes, so the task never holds
//! long locks nor stops vacuum. Per-function statistics (the rollups) are
//! kept longer, `PLAT_STATS_RETENTION_DAYS` (400).
//!
//! Execution ids are UUIDv7, whose leading 48 bits are the creation time in
//! milliseconds, so "created before the cutoff" is a range of the primary
//! key: each batch reads the oldest rows by index, whatever the table's size.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Rows deleted per transaction.
const BATCH: i64 = 5000;
/// Pause between batches, so a large backlog of old rows is worked off
/// without crowding out the queue's own statements.
const BETWEEN_BATCHES: Duration = Duration::from_millis(50);
/// How often a sweep starts.
const EVERY: Duration = Duration::from_secs(60);
/// `pg_try_advisory_xact_lock` key: one sweeper at a time.
const LOCK_KEY: i64 = 0x706c_6174_7265_7465; // "platrete"

/// What to keep.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Days of execution history; 0 keeps everything.
    pub execution_days: u32,
    /// Days of per-function statistics; 0 keeps everything.
    pub stats_days: u32,
}

/// What one sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub executions: u64,
    pub rollups: u64,
}

/// Sweeps every minute until `shutdown`.
pub async fn run(pool: PgPool, retention: Retention, shutdown: CancellationToken) {
    loop {
        match sweep(&pool, retention, Utc::now(), &shutdown).await {
            Ok(swept) if swept != Swept::default() => {
                tracing::info!(
                    executions = swept.executions,
                    rollups = swept.rollups,
                    "retention removed old history"
                )
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "retention sweep failed; retrying next round"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// Deletes what is older than the windows, as of `now`: finished executions
/// created before `now - execution_days` (their rows only; unfinished ones
/// stay until they finish), statistics of hours before `now - stats_days`,
/// and stale throughput counters and worker rows.
pub async fn sweep(
    pool: &PgPool,
    retention: Retention,
    now: DateTime<Utc>,
    stop: &CancellationToken,
) -> Result<Swept, sqlx::Error> {
    let mut swept = Swept::default();
    if retention.execution_days > 0 {
        let cutoff = now - chrono::Duration::days(i64::from(retention.execution_days));
        let below = first_v7_id_at(cutoff);
        loop {
            let mut tx = pool.begin().await?;
            let mine = sqlx::query_scalar!(
                r#"select pg_try_advisory_xact_lock($1) as "mine!""#,
                LOCK_KEY
            )
            .fetch_one(&mut *tx)
            .await?;
            if !mine {
                return Ok(swept);
            }
            let deleted = sqlx::query!(
                r#"
                with doomed as (
                    select id from executions
                    where id < $1 and created_at < $2 and finished_at is not null
                    order by id limit $3
                    for update skip locked
                )
                delete from executions e using doomed d where e.id = d.id
                "#,
                below,
                cutoff,
                BATCH,
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            swept.executions += deleted;
            if deleted < BATCH as u64 || stop.is_cancelled() {
                break;
            }
            tokio::time::sleep(BETWEEN_BATCHES).await;
        }
    }
    if retention.stats_days > 0 {
        let cutoff = now - chrono::Duration::days(i64::from(retention.stats_days));
        swept.rollups = sqlx::query!("delete from execution_rollups where hour < $1", cutoff)
            .execute(pool)
            .await?
            .rows_affected();
    }
    sqlx::query!(
        "delete from execution_throughput where minute < $1",
        now - chrono::Duration::days(1)
    )
    .execute(pool)
    .await?;
    sqlx::query!(
        "delete from workers where last_seen_at < $1",
        now - chrono::Duration::days(7)
    )
    .execute(pool)
    .await?;
    Ok(swept)
}

/// The smallest UUIDv7 of the millisecond `at`: every v7 id made before
/// `at` sorts below it.
fn first_v7_id_at(at: DateTime<Utc>) -> Uuid {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    Uuid::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boundary_id_sorts_between_ids_made_before_and_after_it() {
        let at = Utc::now();
        let boundary = first_v7_id_at(at);
        let ms = |t: DateTime<Utc>| {
            uuid::Timestamp::from_unix(
                uuid::NoContext,
                t.timestamp() as u64,
                t.timestamp_subsec_nanos(),
            )
        };
        let before = Uuid::new_v7(ms(at - chrono::Duration::milliseconds(1)));
        let after = Uuid::new_v7(ms(at));
        assert!(before < boundary, "{before} < {boundary}");
        assert!(after >= boundary, "{after} >= {boundary}");
    }
}
