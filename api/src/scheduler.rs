//! The scheduler: a loop in every API process that fires due schedules.
//!
//! There is no leader. Each process claims due schedules one at a time with
//! `for update skip locked` and, in one transaction, records the tick in
//! `schedule_fires` (whose primary key refuses a second fire of a tick),
//! queues the run and moves `next_fire_at` past it. Another process either
//! skips the locked row or, after the commit, no longer finds it due, so a
//! tick fires once however many processes run (docs/triggers.md,
//! "Schedules").
//!
//! The loop sleeps until the next due time (as the database's clock sees
//! it, so the processes' clocks do not matter), until a schedule changes
//! (NOTIFY), or at most [`POLL`], the backstop for a lost notification.

use std::sync::Arc;
use std::time::Duration;

use plat_common::notify::{self, Hint};
use plat_common::queue::execute::{self, Enqueued, NewExecution};
use plat_common::Trigger;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::schedules::timing::{self, MissedTicks, Timing};
use crate::schedules::SCHEDULES_CHANGED;

/// The longest sleep between looks for due schedules.
const POLL: Duration = Duration::from_secs(10);
/// The sleep while a due schedule is held by another process (it is firing
/// it): short, as the schedule is then usually not due any more.
const HELD_ELSEWHERE: Duration = Duration::from_millis(50);
/// The sleep after a database error.
const AFTER_ERROR: Duration = Duration::from_secs(1);
/// How often fires older than the history's retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// What the scheduler needs of the API's state.
pub struct Scheduler {
    pub db: PgPool,
    /// The per-user quota of runs queued or running (none for admins).
    pub max_queued_per_user: u32,
    /// Wakes the executors after runs are queued.
    pub new_jobs: Hint,
    /// Days fires are kept, as executions are (`PLAT_RETENTION_DAYS`); 0
    /// keeps them all.
    pub retention_days: u32,
}

/// Runs until `shutdown`.
pub async fn run(scheduler: Scheduler, shutdown: CancellationToken) {
    let wake = Arc::new(Notify::new());
    // A connection of its own for LISTEN, outside the API's pool: a
    // listener holds its connection for good, and the pool's are for
    // requests.
    let listen_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with((*scheduler.db.connect_options()).clone());
    let listening = tokio::spawn(notify::listen(
        listen_pool,
        SCHEDULES_CHANGED,
        shutdown.clone(),
        {
            let wake = wake.clone();
            move |_| wake.notify_one()
        },
    ));
    let mut pruned_at: Option<tokio::time::Instant> = None;
    while !shutdown.is_cancelled() {
        if pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            pruned_at = Some(tokio::time::Instant::now());
            if let Err(error) = prune(&scheduler).await {
                tracing::warn!(%error, "deleting old schedule fires failed");
            }
        }
        let sleep = match fire_due(&scheduler, &shutdown).await {
            Ok(()) => next_due_in(&scheduler.db).await.unwrap_or_else(|error| {
                tracing::warn!(%error, "reading the next due schedule failed");
                AFTER_ERROR
            }),
            Err(error) => {
                tracing::warn!(%error, "firing schedules failed; retrying");
                AFTER_ERROR
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
    listening.abort();
}

/// Fires every schedule due now that no other process holds.
async fn fire_due(scheduler: &Scheduler, shutdown: &CancellationToken) -> Result<(), sqlx::Error> {
    while !shutdown.is_cancelled() && fire_one(scheduler).await? {}
    Ok(())
}

/// Deletes the fires older than the history's retention: a tick that old
/// can never be due again, so its row guards nothing any more.
async fn prune(scheduler: &Scheduler) -> Result<(), sqlx::Error> {
    if scheduler.retention_days == 0 {
        return Ok(());
    }
    let deleted = sqlx::query!(
        "delete from schedule_fires where created_at < now() - make_interval(days => $1)",
        i32::try_from(scheduler.retention_days).unwrap_or(i32::MAX),
    )
    .execute(&scheduler.db)
    .await?;
    if deleted.rows_affected() > 0 {
        tracing::info!(
            deleted = deleted.rows_affected(),
            "deleted old schedule fires"
        );
    }
    Ok(())
}

/// How long until the next schedule is due, at most [`POLL`].
async fn next_due_in(db: &PgPool) -> Result<Duration, sqlx::Error> {
    let seconds = sqlx::query_scalar!(
        r#"
        select extract(epoch from (min(next_fire_at) - now()))::float8 as seconds
        from schedules where next_fire_at is not null
        "#
    )
    .fetch_one(db)
    .await?;
    Ok(match seconds {
        None => POLL,
        // Due already but not claimable: another process is firing it.
        Some(seconds) if seconds <= 0.0 => HELD_ELSEWHERE,
        Some(seconds) => Duration::from_secs_f64(seconds).min(POLL),
    })
}

/// Why a tick queued nothing, as `schedule_fires.outcome` says.
const QUEUED: &str = "queued";
const OVER_QUOTA: &str = "overQuota";
const NO_READY_VERSION: &str = "noReadyVersion";
const CREATOR_DISABLED: &str = "creatorDisabled";

/// Claims one due schedule and fires it in one transaction. False when
/// none is due (or all due ones are held by other processes).
async fn fire_one(scheduler: &Scheduler) -> Result<bool, sqlx::Error> {
    let mut tx = scheduler.db.begin().await?;
    // The function's active version is what runs, if it is READY and not
    // retired; the creator's role says whether the quota applies.
    let Some(due) = sqlx::query!(
        r#"
        select s.id, s.function_id, s.cron, s.timezone, s.input::text as "input!", s.missed_ticks,
               s.next_fire_at as "next_fire_at!", s.created_by,
               u.role = 'ADMIN' as "creator_is_admin!", u.disabled as creator_disabled,
               v.version as "version?", f.webhook_url, now() as "now!"
        from schedules s
        join users u on u.id = s.created_by
        join functions f on f.id = s.function_id
        left join function_versions v on v.function_id = f.id and v.version = f.active_version
                                      and v.status = 'READY' and v.retired_at is null
        where s.next_fire_at <= now()
        order by s.next_fire_at
        limit 1
        for update of s skip locked
        "#
    )
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(false);
    };
    let timing = match Timing::parse(&due.cron, &due.timezone) {
        Ok(timing) => timing,
        Err(error) => {
            // Checked when stored; only a change of the parser could do
            // this. Pausing keeps the loop from meeting it again.
            tracing::error!(schedule_id = %due.id, %error, "a stored schedule no longer parses; pausing it");
            sqlx::query!(
                "update schedules set enabled = false, next_fire_at = null where id = $1",
                due.id
            )
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(true);
        }
    };
    let policy = MissedTicks::parse(&due.missed_ticks).unwrap_or(MissedTicks::RunLatest);
    let ticks = timing::due(&timing, due.next_fire_at, due.now, policy);
    if ticks.missed {
        tracing::info!(schedule_id = %due.id, since = %due.next_fire_at, fired = ?ticks.fire,
                       policy = policy.as_str(), "schedule missed ticks");
    }
    let mut queued = false;
    if let Some(tick) = ticks.fire {
        let execution_id = Uuid::now_v7();
        let outcome = if due.creator_disabled {
            CREATOR_DISABLED
        } else if let Some(version) = due.version {
            let trigger = Trigger::Schedule {
                schedule_id: due.id,
                scheduled_for: tick,
            };
            let enqueued = execute::enqueue(
                &mut tx,
                NewExecution {
                    id: execution_id,
                    function_id: due.function_id,
                    version,
                    input_json: &due.input,
                    idempotency_key: None,
                    created_by: Some(due.created_by),
                    request_id: None,
                    // One coalesced hint after the commit instead.
                    wake_executors: false,
                    max_in_flight: (!due.creator_is_admin)
                        .then_some(i64::from(scheduler.max_queued_per_user)),
                    trigger: &trigger,
                    // The function's webhook hears of scheduled runs too.
                    webhook_urls: due.webhook_url.as_ref().map(std::slice::from_ref),
                },
            )
            .await?;
            if enqueued == Enqueued::New {
                QUEUED
            } else {
                OVER_QUOTA
            }
        } else {
            NO_READY_VERSION
        };
        queued = outcome == QUEUED;
        let recorded = sqlx::query_scalar!(
            r#"
            insert into schedule_fires (schedule_id, scheduled_for, outcome, execution_id)
            values ($1, $2, $3, $4)
            on conflict (schedule_id, scheduled_for) do nothing
            returning 1 as "one!"
            "#,
            due.id,
            tick,
            outcome,
            queued.then_some(execution_id),
        )
        .fetch_optional(&mut *tx)
        .await?;
        if recorded.is_none() {
            // Fired before: only a clock that went back could do this. The
            // run just queued goes with the transaction.
            tracing::warn!(schedule_id = %due.id, %tick, "tick already fired; not firing it again");
            tx.rollback().await?;
            let mut tx = scheduler.db.begin().await?;
            move_on(&mut tx, due.id, ticks.next).await?;
            tx.commit().await?;
            return Ok(true);
        }
        if outcome != QUEUED {
            tracing::warn!(schedule_id = %due.id, %tick, outcome, "schedule tick queued no run");
        }
    }
    move_on(&mut tx, due.id, ticks.next).await?;
    tx.commit().await?;
    if queued {
        scheduler.new_jobs.send();
    }
    Ok(true)
}

/// Moves the schedule to its next tick (none: it has no tick left).
async fn move_on(
    tx: &mut sqlx::PgConnection,
    id: Uuid,
    next: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update schedules set next_fire_at = $2 where id = $1",
        id,
        next
    )
    .execute(tx)
    .await?;
    Ok(())
}
