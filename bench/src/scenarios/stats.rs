//! Statistics and retention over a big history: `history_rows` executions
//! of one function (1,000,000; `--quick`: 100,000) spread over 30 days,
//! finished the way executors finish them (batched updates, so the rollup
//! trigger does its work), then `GET /functions/{id}/stats` over 24 hours,
//! 30 days by hour and 30 days by day, and a retention sweep that removes
//! the oldest third.

use std::time::Instant;

use chrono::Utc;
use plat_api::retention::{self, Retention};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::options::Scale;
use crate::platform::Platform;
use crate::report::Group;
use crate::stats::{per_sec, Samples};

/// Rows finished per statement, as a busy executor's result batches.
const FINISH_BATCH: i64 = 200;
/// Rows per insert statement of the set-up.
const INSERT_BATCH: i64 = 100_000;
const CALLS: usize = 30;

pub async fn run(
    platform: &mut Platform,
    scale: &Scale,
    notes: &mut Vec<String>,
) -> anyhow::Result<Group> {
    let function = platform.echo_function().await?;
    let db = &platform.db;
    sqlx::query("truncate execution_jobs, unsuccessful_executions, execution_attempts, executions, execution_rollups, execution_throughput")
        .execute(db)
        .await?;
    let rows = scale.history_rows;
    insert_queued_over_30_days(db, function, rows).await?;
    sqlx::query("vacuum analyze executions").execute(db).await?;

    // Finish them as executors do: one statement per batch of results.
    let ids: Vec<(Uuid,)> = sqlx::query_as("select id from executions order by id")
        .fetch_all(db)
        .await?;
    let ids: Vec<Uuid> = ids.into_iter().map(|(id,)| id).collect();
    let started = Instant::now();
    for chunk in ids.chunks(FINISH_BATCH as usize) {
        sqlx::query(
            r#"
            update executions e
            set status = r.status,
                error_type = case when r.status = 'FAILED' then 'HANDLER_ERROR' end,
                error_message = case when r.status = 'FAILED' then 'bench' end,
                duration_ms = r.duration_ms,
                started_at = e.created_at + interval '2 ms', finished_at = e.created_at + interval '5 ms',
                worker_id = 'bench', attempts = 1
            from (select id, (random() * 20)::int as duration_ms,
                         case when random() < 0.05 then 'FAILED' else 'SUCCEEDED' end::execution_status as status
                  from unnest($1::uuid[]) as id) r
            where e.id = r.id
            "#,
        )
        .bind(chunk)
        .execute(db)
        .await?;
    }
    let finishing = started.elapsed();
    let (rollup_rows,): (i64,) = sqlx::query_as("select count(*) from execution_rollups")
        .fetch_one(db)
        .await?;

    let month_ago = (Utc::now() - chrono::Duration::days(30)).to_rfc3339();
    let queries = [
        ("last_24h_by_hour", format!("/functions/{function}/stats")),
        (
            "30_days_by_hour",
            format!(
                "/functions/{function}/stats?bucket=hour&from={}",
                urlencode(&month_ago)
            ),
        ),
        (
            "30_days_by_day",
            format!(
                "/functions/{function}/stats?bucket=day&from={}",
                urlencode(&month_ago)
            ),
        ),
    ];
    let mut group = Group::new("stats");
    let mut total_seen = 0;
    for (name, path) in &queries {
        let mut samples = Vec::with_capacity(CALLS);
        for _ in 0..CALLS + 3 {
            let started = Instant::now();
            let body = platform.api.get_ok(path).await?;
            samples.push(started.elapsed());
            total_seen = total_seen.max(body["total"].as_i64().unwrap_or(0));
        }
        let samples = Samples::new(samples.split_off(3));
        group.push(
            format!("stats_{name}_p50_ms"),
            format!("GET …/stats, {name}: p50 ms"),
            samples.ms(50.0),
        );
        group.push(
            format!("stats_{name}_p99_ms"),
            format!("GET …/stats, {name}: p99 ms"),
            samples.ms(99.0),
        );
    }
    anyhow::ensure!(total_seen > 0, "the stats saw no executions");

    let started = Instant::now();
    let swept = retention::sweep(
        db,
        Retention {
            execution_days: 20,
            stats_days: 0,
        },
        Utc::now(),
        &CancellationToken::new(),
    )
    .await?;
    let sweeping = started.elapsed();
    group.push(
        "finish_with_rollups_per_sec",
        format!(
            "finishing {rows} executions in batches of {FINISH_BATCH} (rollup trigger on): rows/s"
        ),
        per_sec(rows as usize, finishing),
    );
    group.push(
        "retention_deleted_per_sec",
        format!(
            "retention: deleting {} executions older than 20 days: rows/s",
            swept.executions
        ),
        per_sec(swept.executions as usize, sweeping),
    );
    notes.push(format!(
        "stats: {rows} executions of one function, created evenly over the last 30 days \
         (UUIDv7 ids), finished by `update … where id = any($1)` in batches of \
         {FINISH_BATCH} ({:.1} s), leaving {rollup_rows} rollup rows; each stats call \
         {CALLS} times after 3 warm-ups, through the API with an admin key. Retention: \
         plat_api::retention::sweep with a 20-day window, batches of 5000.",
        finishing.as_secs_f64()
    ));
    sqlx::query("truncate execution_jobs, unsuccessful_executions, execution_attempts, executions")
        .execute(db)
        .await?;
    Ok(group)
}

/// `count` QUEUED executions (no jobs) with UUIDv7 ids, created evenly over
/// the last 30 days.
async fn insert_queued_over_30_days(db: &PgPool, function: Uuid, count: i64) -> anyhow::Result<()> {
    let mut first = 0;
    while first < count {
        let last = (first + INSERT_BATCH).min(count);
        sqlx::query(
            r#"
            insert into executions (id, function_id, function_version, input, created_at)
            select (lpad(to_hex((extract(epoch from t) * 1000)::bigint), 12, '0') || '7'
                    || substr(md5(g::text), 1, 3) || '8' || substr(md5(g::text), 4, 15))::uuid,
                   $1, 1, jsonb_build_object('n', g), t
            from (select g, now() - make_interval(secs => (($4 - g) * (30 * 86400.0 / $4))::float8) as t
                  from generate_series($2, $3 - 1) g) as s
            "#,
        )
        .bind(function)
        .bind(first)
        .bind(last)
        .bind(count)
        .execute(db)
        .await?;
        first = last;
    }
    Ok(())
}

fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}
