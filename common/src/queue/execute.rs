//! The execution queue: one job per execution still to run. The job's id is
//! the execution's id; the execution row in `executions` is the history
//! record and outlives the job.

use std::time::Duration;

use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use super::{retry_backoff, secs};
use crate::{notify, ErrorKind, ExecutionStatus, RunFailure, Trigger};

/// A claimed execution job.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExecutionJob {
    /// The execution id (also the queue row id).
    pub id: Uuid,
    /// The function to run.
    pub function_id: Uuid,
    /// The user who queued it ([`NO_OWNER`] for none): its runs take turns
    /// with other owners' on the executor's run threads too.
    pub owner_id: Uuid,
    /// Its fairness stamp (see [`enqueue`]).
    pub vt: f64,
    /// The version to run (the active version when it was enqueued).
    pub version: i32,
    /// 1 for the first attempt.
    pub attempt: i32,
    /// After this many lost attempts the execution fails as WORKER_LOST.
    pub max_attempts: i32,
    /// Runs of it that failed and were retried under its version's retry
    /// policy: this run is attempt `retries + 1` ([`retry_run`]).
    pub retries: i32,
    /// The lease token this worker holds.
    pub lease_token: Uuid,
    /// The input JSON, as text.
    pub input: String,
    /// The environment the function references, if any: its values become
    /// environment variables of the run.
    pub environment_id: Option<Uuid>,
    /// That environment's revision now, so cached values can be checked.
    pub environment_revision: Option<i64>,
    /// The `X-Request-Id` of the call that queued it, for the run's logs.
    pub request_id: Option<String>,
    /// The version was retired after this job was queued: it must not run
    /// (the executor ends it CANCELLED). Retiring cancels the queued jobs it
    /// sees; this catches one queued in the same instant, or one given back
    /// to the queue by a lost worker.
    pub version_retired: bool,
}

/// The terminal result of one execution.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The output JSON text, or why there is none.
    pub result: Result<String, RunFailure>,
    /// What the function wrote to stderr (capped).
    pub logs: String,
    /// Whether the logs were cut at the cap.
    pub logs_truncated: bool,
    /// Instantiate + run time.
    pub duration_ms: i32,
}

impl Finished {
    /// A successful run with `output` (JSON text) and no logs.
    pub fn succeeded(output: impl Into<String>, duration_ms: i32) -> Self {
        Self {
            result: Ok(output.into()),
            logs: String::new(),
            logs_truncated: false,
            duration_ms,
        }
    }

    /// An execution that failed with `kind` before or without running, so
    /// with no logs and no duration.
    pub fn failed(kind: ErrorKind, message: String) -> Self {
        Self {
            result: Err(RunFailure { kind, message }),
            logs: String::new(),
            logs_truncated: false,
            duration_ms: 0,
        }
    }
}

/// What [`enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// A new execution and its job were created.
    New,
    /// The idempotency key was used before: nothing was created. Carries the
    /// earlier execution, and whether its input equals this request's.
    Existing {
        /// The execution the key already names.
        id: Uuid,
        /// Whether the earlier request had the same input.
        same_input: bool,
    },
    /// Nothing was created: the owner already has `max_in_flight`
    /// executions queued or running.
    OverQuota,
}

/// What to enqueue: one run of a function version.
#[derive(Debug, Clone, Copy)]
pub struct NewExecution<'a> {
    /// The id the execution (and its job) gets.
    pub id: Uuid,
    /// The function to run.
    pub function_id: Uuid,
    /// The version to run.
    pub version: i32,
    /// The input, as JSON text.
    pub input_json: &'a str,
    /// The client's `Idempotency-Key`, unique per function and caller.
    pub idempotency_key: Option<&'a str>,
    /// The user who asked for the run.
    pub created_by: Option<Uuid>,
    /// The `X-Request-Id` of the call.
    pub request_id: Option<&'a str>,
    /// Whether the statement wakes the executors itself, at its commit.
    /// For a caller that waits for the result this saves the round trip of
    /// a separate notification on the way to the run. Callers that do not
    /// wait leave it to a [`notify::Hint`], which sends one notification
    /// for many enqueues and keeps their commits off PostgreSQL's notify
    /// lock, which serialises every committing transaction that notifies.
    pub wake_executors: bool,
    /// The most executions the owner (`created_by`) may have queued or
    /// running, this one included; `None` for no limit (admins).
    pub max_in_flight: Option<i64>,
    /// What started it: [`Trigger::Api`] for a call of the API.
    pub trigger: &'a Trigger,
    /// Where to POST the finished execution (the function's `webhookUrl`,
    /// the call's `callbackUrl`); `None` for none, which costs its result
    /// nothing (migration 20261207000004).
    pub webhook_urls: Option<&'a [String]>,
}

/// Runs queued without a user share this owner in the queue's fairness and
/// counts.
pub const NO_OWNER: Uuid = Uuid::nil();

/// The start of both enqueue statements: stamps `$3` new runs of function
/// `$2` for owner `$1` and counts them against the owner's quota `$4` (null:
/// none). It ends with a CTE `flow (start, step)`, one row when the runs are
/// admitted and none when they would take the owner over `$4`; the i-th run
/// (from 0) gets the stamp `start + i * step`. Then `admit (limited, n)`:
/// the first `n` runs are admitted (under the concurrency limit of version
/// `$5` if `limited`), the others parked. A macro that writes the whole
/// `sqlx::$query!(..)` call, with this text and then the statement's own
/// `parts` joined by `+`: `query!` checks only a literal, or literals joined
/// by `+`, so the common text cannot be a constant or a nested macro call.
///
/// Start-time fair queueing, done at enqueue so that the claim stays one
/// index scan (docs/architecture.md, "Fairness and quotas"). No row here is
/// one that every enqueue of an owner takes (migration 20261206000010):
/// - `clock`: the queue's virtual time, the smallest stamp still waiting to
///   be claimed, looked for from `queue_clock` (where the latest claim
///   began) rather than from the start of the index, which holds an entry
///   for every run claimed since the last vacuum; `queue_clock` itself
///   when nothing waits after it.
/// - `counts`, `counted`: the owner's QUEUED + RUNNING runs are the sum of
///   their rows in `queue_owner_counts`. Without a quota the runs are added
///   to this connection's shard. Under a quota they are added to shard 0
///   only if the sum stays within `$4`, under that row's lock, so API
///   processes cannot race past the quota (the other shards only shrink
///   meanwhile: results take off there).
/// - `lanes`, `busy`, `step`: what one run costs the flow (owner, function):
///   the owner's busy functions over the owner's weight, so that an owner's
///   functions share one owner's part; times the flow's busy lanes, as each
///   connection stamps the flow's runs on a lane (clock) of its own, so
///   that concurrent enqueues of one flow do not take turns on one row. A
///   clock ahead of the virtual time is busy only as far as the owner has
///   runs in flight: one that ran ahead for runs since finished or
///   cancelled is not.
/// - `flow`: the lane's clock. A lane with runs ahead of the queue's virtual
///   time goes on from its clock; an idle lane starts behind the flow's
///   busy lanes, or at the virtual time (no banked credit for the idle).
///   Neither is ever further ahead of the virtual time than the owner's
///   runs in flight justify (no debt once a backlog has drained).
/// - `cap`, `slots`, `admit`: `executionConfig.maxConcurrency` of the version
///   run. Only functions with a limit (now or before) touch their slot row,
///   in `plat_take_function_slots` (migration 20261206000001).
macro_rules! stamped {
    ($query:ident!($($part:literal)+, $($arg:expr),+ $(,)?)) => {
        sqlx::$query!(r#"
        with clock as (
            select coalesce((select vt from execution_jobs
                             where state = 'available' and not parked and run_at <= now()
                               and vt >= c.vt
                             order by vt, id limit 1), c.vt) as vt
            from queue_clock c
        ), counts as (
            select coalesce(sum(n) filter (where shard <> 0), 0)::bigint as others,
                   coalesce(sum(n), 0)::bigint as total
            from queue_owner_counts where owner_id = $1::uuid
        ), counted as (
            insert into queue_owner_counts as c (owner_id, shard, n)
            select $1::uuid, case when $4::bigint is null then plat_count_shard() else 0 end, $3::bigint
            from counts where $4::bigint is null or counts.others + $3::bigint <= $4::bigint
            on conflict (owner_id, shard) do update
                set n = c.n + excluded.n, updated_at = now()
                where $4::bigint is null or c.n + excluded.n + (select others from counts) <= $4::bigint
            returning 1
        ), lanes as (
            select count(*) as busy, max(f.next_vt) as front
            from queue_flows f, clock
            where f.owner_id = $1::uuid and f.function_id = $2::uuid
              and f.lane <> plat_count_shard() and f.next_vt > clock.vt
        ), busy as (
            select clock.vt as floor, counts.total as before,
                   least((select count(distinct f.function_id) from queue_flows f
                          where f.owner_id = $1::uuid and f.function_id <> $2::uuid
                            and f.next_vt > clock.vt), counts.total) as functions,
                   least(lanes.busy, counts.total) as lanes,
                   lanes.front
            from clock, counts, lanes
        ), step as (
            select floor, before, front,
                   (1 + functions) * (1 + lanes)
                   / coalesce((select weight from queue_owners where owner_id = $1::uuid), 1) as step
            from busy
            where exists (select from counted)
        ), flow as (
            insert into queue_flows as f (owner_id, function_id, lane, next_vt)
            select $1::uuid, $2::uuid, plat_count_shard(),
                   greatest(step.floor, least(coalesce(step.front, step.floor),
                                            step.floor + step.before * step.step))
                   + $3::bigint * step.step
            from step
            on conflict (owner_id, function_id, lane) do update
                set next_vt = (select greatest(step.floor,
                                               least(case when f.next_vt > step.floor
                                                          then f.next_vt
                                                          else coalesce(step.front, step.floor) end,
                                                     step.floor + step.before * step.step))
                                      + $3::bigint * step.step from step),
                    updated_at = now()
            returning f.next_vt - $3::bigint * (select step from step) as start,
                      (select step from step) as step
        ), cap as (
            select (v.execution_config ->> 'maxConcurrency')::int as max_running
            from function_versions v where v.function_id = $2::uuid and v.version = $5::int
        ), slots as (
            select plat_take_function_slots($2::uuid, (select max_running from cap), $3::bigint) as n
            from flow
            where (select max_running from cap) is not null
               or exists (select from function_slots s
                          where s.function_id = $2::uuid and s.max_running is not null)
        ), admit as (
            select (select max_running from cap) is not null and exists (select from slots) as limited,
                   coalesce((select n from slots), $3::bigint) as n
        )"# $(+ $part)+, $($arg),+)
    };
}

/// Both single-run enqueue statements: [`stamped`], then `e`, a CTE `e (id)`
/// naming the execution to queue, then its job (parked when `admit` gave it
/// no slot), and the executors woken on channel `$8` when `$7`. Answers the
/// job's id, null when the owner is over the quota. Parameters from `$9` on
/// are `e`'s own.
macro_rules! queue_one {
    ($e:literal, $($arg:expr),+ $(,)?) => {
        stamped!(query_scalar!($e r#", j as (
            insert into execution_jobs (id, function_id, version, owner_id, vt, parked, holds_slot)
            select e.id, $2, $5, $1, flow.start, admit.n < 1, admit.limited and admit.n >= 1
            from e, flow, admit
            returning id
        ), wake as (
            select pg_notify($8, '') from j where $7
        )
        select (select id from j) as "id?" from (select count(*) from wake) as woken
        "#, $($arg),+))
    };
}

/// Creates the execution record (QUEUED) and its job in one statement (one
/// round trip, atomic without an explicit transaction), and with
/// `wake_executors` notifies [`notify::EXECUTION_JOBS`]; otherwise the
/// caller then wakes the executors with a [`notify::Hint`]. With an
/// idempotency key already used for this function, creates nothing and
/// names the earlier execution.
pub async fn enqueue(
    conn: &mut sqlx::PgConnection,
    new: NewExecution<'_>,
) -> Result<Enqueued, sqlx::Error> {
    if new.idempotency_key.is_some() {
        return enqueue_with_key(conn, new).await;
    }
    let created = queue_one!(
        r#", e as (
            insert into executions (id, function_id, function_version, input, idempotency_key, created_by,
                                    request_id, trigger, webhook_urls)
            select $6, $2, $5, $9::text::jsonb, $10, $11, $12, $13::text::jsonb, $14::text[] from flow
            returning id
        )"#,
        new.created_by.unwrap_or(NO_OWNER),
        new.function_id,
        1_i64,
        new.max_in_flight,
        new.version,
        new.id,
        new.wake_executors,
        notify::EXECUTION_JOBS,
        new.input_json,
        new.idempotency_key,
        new.created_by,
        new.request_id,
        new.trigger.to_stored(),
        new.webhook_urls,
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(match created {
        Some(_) => Enqueued::New,
        None => Enqueued::OverQuota,
    })
}

/// [`enqueue`] with an idempotency key: the execution row first, then its
/// place in the queue, in one transaction.
///
/// The order matters. Inserting a key another execution already has waits
/// for any transaction updating that execution, such as an executor writing
/// its result, whose statement then takes the owner's count row of its
/// shard in `queue_owner_counts` (and the function's in `function_slots`)
/// to count the run out. Taking those rows before the insert, as the
/// one-statement form does, deadlocked such a request with the result
/// writer (seen in `concurrent_requests_with_one_key_create_one_execution`).
/// Here nothing of the queue is locked while the insert may wait.
async fn enqueue_with_key(
    conn: &mut sqlx::PgConnection,
    new: NewExecution<'_>,
) -> Result<Enqueued, sqlx::Error> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let inserted = sqlx::query_scalar!(
        r#"
        insert into executions (id, function_id, function_version, input, idempotency_key, created_by,
                                request_id, trigger, webhook_urls)
        values ($1, $2, $3, $4::text::jsonb, $5, $6, $7, $8::text::jsonb, $9::text[])
        on conflict (function_id, created_by, idempotency_key) where idempotency_key is not null do nothing
        returning id
        "#,
        new.id,
        new.function_id,
        new.version,
        new.input_json,
        new.idempotency_key,
        new.created_by,
        new.request_id,
        new.trigger.to_stored(),
        new.webhook_urls,
    )
    .fetch_optional(&mut *tx)
    .await?;
    if inserted.is_none() {
        // The insert waited for a concurrent request with the same key to
        // commit, so its execution is visible to this next statement.
        let existing = sqlx::query!(
            r#"
            select id, input = $3::text::jsonb as "same_input!" from executions
            where function_id = $1 and idempotency_key = $2 and created_by is not distinct from $4
            "#,
            new.function_id,
            new.idempotency_key,
            new.input_json,
            new.created_by,
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.rollback().await?;
        return Ok(Enqueued::Existing {
            id: existing.id,
            same_input: existing.same_input,
        });
    }
    // The execution's own parameters ($9 on) are not needed: it is inserted.
    let queued = queue_one!(
        r#", e as (
            select $6::uuid as id from flow
        )"#,
        new.created_by.unwrap_or(NO_OWNER),
        new.function_id,
        1_i64,
        new.max_in_flight,
        new.version,
        new.id,
        new.wake_executors,
        notify::EXECUTION_JOBS,
    )
    .fetch_one(&mut *tx)
    .await?;
    if queued.is_none() {
        // Over the quota: the execution row goes with the transaction.
        tx.rollback().await?;
        return Ok(Enqueued::OverQuota);
    }
    tx.commit().await?;
    Ok(Enqueued::New)
}

/// What to enqueue as a batch: one run of a function version per input.
#[derive(Debug, Clone, Copy)]
pub struct NewBatch<'a> {
    /// The function to run.
    pub function_id: Uuid,
    /// The version to run.
    pub version: i32,
    /// The ids the executions get, one per input.
    pub ids: &'a [Uuid],
    /// The inputs, as JSON texts.
    pub inputs: &'a [&'a str],
    /// The user who asked for the runs.
    pub created_by: Option<Uuid>,
    /// The `X-Request-Id` of the call.
    pub request_id: Option<&'a str>,
    /// As in [`NewExecution`]: the batch is refused whole if it would take
    /// the owner over this many executions queued or running.
    pub max_in_flight: Option<i64>,
    /// As in [`NewExecution`], for every run of the batch.
    pub webhook_urls: Option<&'a [String]>,
}

/// What [`enqueue_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchEnqueued {
    /// Every run was queued.
    Queued,
    /// None was: the batch would take the owner over its quota.
    OverQuota,
}

/// Queues one execution per input, in one statement; the caller wakes the
/// executors as after [`enqueue`]. All or nothing: an input PostgreSQL
/// refuses fails the whole batch, and a batch over the owner's quota is
/// refused whole. The runs get consecutive stamps of their flow, so they
/// share the owner's part of the executors with its other runs.
pub async fn enqueue_batch(
    db: impl PgExecutor<'_>,
    batch: NewBatch<'_>,
) -> Result<BatchEnqueued, sqlx::Error> {
    let admitted = stamped!(query_scalar!(
        r#", e as (
            insert into executions (id, function_id, function_version, input, created_by, request_id,
                                    webhook_urls)
            select t.id, $2, $5, t.input::jsonb, $8, $9, $10::text[]
            from flow, unnest($6::uuid[], $7::text[]) as t (id, input)
            returning id
        ), j as (
            insert into execution_jobs (id, function_id, version, owner_id, vt, parked, holds_slot)
            select e.id, $2, $5, $1, flow.start + (t.n - 1) * flow.step,
                   t.n > admit.n, admit.limited and t.n <= admit.n
            from e join unnest($6::uuid[]) with ordinality as t (id, n) on t.id = e.id, flow, admit
            returning 1
        )
        select exists (select from flow) as "admitted!"
        "#,
        batch.created_by.unwrap_or(NO_OWNER),
        batch.function_id,
        batch.ids.len() as i64,
        batch.max_in_flight,
        batch.version,
        batch.ids,
        batch.inputs as &[&str],
        batch.created_by,
        batch.request_id,
        batch.webhook_urls,
    ))
    .fetch_one(db)
    .await?;
    Ok(if admitted {
        BatchEnqueued::Queued
    } else {
        BatchEnqueued::OverQuota
    })
}

/// Claims up to `limit` ready jobs, in one statement, in the order of their
/// fairness stamps (see [`enqueue`]): the claim itself does no fairness
/// work, it walks the `(vt, id)` index like a FIFO would. Only the job row is
/// written: while it is claimed its execution reads as RUNNING, with the
/// job's start time, attempt and worker (see [`crate::queue`]); the result
/// copies them onto the execution. The claim also moves `queue_clock` up to
/// its smallest stamp, where enqueues look for the queue's front.
///
/// The claim's commit does not wait for its WAL flush
/// (`synchronous_commit` off for this transaction only): a flush costs
/// 0.1–0.2 ms on the machine in docs/benchmarks.md, a quarter of a waiting
/// execute's database time. Nothing accepted can be lost by it. The result
/// that ends the attempt is a durable commit, and WAL is flushed in order,
/// so it also makes this claim durable. A crash before that loses only the
/// lease: the job is available again, as if its worker had died, and the
/// worker's result is refused by its lease check. Enqueues and results stay
/// durable.
pub async fn claim(
    db: impl PgExecutor<'_>,
    worker_id: &str,
    lease: Duration,
    limit: i64,
) -> Result<Vec<ExecutionJob>, sqlx::Error> {
    claim_from(db, worker_id, lease, limit, None).await
}

/// [`claim`], with the index scan starting at stamp `from` (`None`: at the
/// beginning). The start of the index holds an entry for every run claimed
/// since the last vacuum, which a scan from the beginning visits one by one:
/// 1-6 ms per claim in the middle of a 200,000-run drain. Runs stamped
/// before `from` are not claimed: the caller claims from the beginning now
/// and then to pick those up (docs/architecture.md, "Where a scan starts").
pub async fn claim_from(
    db: impl PgExecutor<'_>,
    worker_id: &str,
    lease: Duration,
    limit: i64,
    from: Option<f64>,
) -> Result<Vec<ExecutionJob>, sqlx::Error> {
    sqlx::query_as!(
        ExecutionJob,
        r#"
        with durability as (
            select set_config('synchronous_commit', 'off', true)
        ), next as (
            select id from execution_jobs
            where state = 'available' and not parked and run_at <= now()
              and vt >= coalesce($4, '-infinity'::float8)
            order by vt, id
            limit $1
            for update skip locked
        ), claimed as (
            update execution_jobs j
            set state = 'running', attempt = j.attempt + 1, lease_token = gen_random_uuid(),
                lease_expires_at = now() + make_interval(secs => $2), worker_id = $3,
                started_at = now()
            from next where j.id = next.id
            returning j.id, j.function_id, j.owner_id, j.vt, j.version, j.attempt, j.max_attempts,
                      j.retries, j.lease_token
        ), tick as (
            update queue_clock c set vt = m.vt, updated_at = now()
            from (select min(vt) as vt from claimed) m
            where m.vt > c.vt
        )
        select c.id as "id!", c.function_id as "function_id!", c.owner_id as "owner_id!",
               c.vt as "vt!", c.version as "version!", c.attempt as "attempt!",
               c.max_attempts as "max_attempts!", c.retries as "retries!",
               c.lease_token as "lease_token!",
               e.input::text as "input!", f.environment_id as "environment_id?",
               env.revision as "environment_revision?", e.request_id,
               v.retired_at is not null as "version_retired!"
        from claimed c join executions e on e.id = c.id
        left join functions f on f.id = c.function_id
        left join environments env on env.id = f.environment_id
        left join function_versions v on v.function_id = c.function_id and v.version = c.version
        cross join durability
        "#,
        limit,
        secs(lease),
        worker_id,
        from,
    )
    .fetch_all(db)
    .await
}

/// Most results [`complete_batch`] writes at once: the one notification it
/// sends lists their ids, and a payload holds at most 7,999 bytes (37 per id).
pub const MAX_COMPLETION_BATCH: usize = 200;

/// Writes the terminal record and removes the job, if this worker still holds
/// the lease; then wakes whoever waits for the result. Returns `false` when
/// the lease was lost (nothing was written).
pub async fn complete(
    db: impl PgExecutor<'_>,
    job: &ExecutionJob,
    finished: &Finished,
) -> Result<bool, sqlx::Error> {
    Ok(!complete_batch(db, &[(job, finished)]).await?.is_empty())
}

/// [`complete`] for up to [`MAX_COMPLETION_BATCH`] jobs in one statement and
/// one transaction, with one notification naming all of them (comma
/// separated). Each record is written only if its lease is still held;
/// returns the ids that were written. One value PostgreSQL refuses (see
/// [`crate::db::data_exception`]) fails the whole batch.
///
/// Unlike an enqueue's, this notification is in the writing transaction: an
/// executor has one result writer, so few such commits contend for
/// PostgreSQL's notify lock, and a waiting call learns of the result at the
/// commit rather than a round trip later.
pub async fn complete_batch(
    db: impl PgExecutor<'_>,
    results: &[(&ExecutionJob, &Finished)],
) -> Result<Vec<Uuid>, sqlx::Error> {
    assert!(
        results.len() <= MAX_COMPLETION_BATCH,
        "at most {MAX_COMPLETION_BATCH} results per batch"
    );
    let n = results.len();
    let (mut ids, mut tokens, mut statuses) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut outputs, mut error_types, mut error_messages) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut logs, mut truncated, mut durations) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (job, finished) in results {
        let (status, output, error_type, error_message) = match &finished.result {
            Ok(output) => (
                ExecutionStatus::Succeeded,
                Some(output.as_str()),
                None,
                None,
            ),
            Err(RunFailure { kind, message }) => (
                match kind {
                    ErrorKind::Cancelled => ExecutionStatus::Cancelled,
                    _ => ExecutionStatus::Failed,
                },
                None,
                Some(kind.as_str()),
                Some(message.as_str()),
            ),
        };
        ids.push(job.id);
        tokens.push(job.lease_token);
        statuses.push(status.as_str());
        outputs.push(output);
        error_types.push(error_type);
        error_messages.push(error_message);
        logs.push(finished.logs.as_str());
        truncated.push(finished.logs_truncated);
        durations.push(finished.duration_ms);
    }
    let written = sqlx::query!(
        r#"
        with r as (
            select * from unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[],
                                 $5::text[], $6::text[], $7::text[], $8::bool[], $9::int[])
                as r (id, lease_token, status, output, error_type, error_message, logs,
                      logs_truncated, duration_ms)
        ), done as (
            delete from execution_jobs j using r
            where j.id = r.id and j.lease_token = r.lease_token
            returning j.id, j.attempt, j.worker_id, j.started_at
        ), fin as (
            update executions e
            set status = r.status::execution_status, output = r.output::jsonb, error_type = r.error_type,
                error_message = r.error_message, logs = r.logs, logs_truncated = r.logs_truncated,
                duration_ms = r.duration_ms, finished_at = now(), attempts = done.attempt,
                worker_id = done.worker_id, started_at = done.started_at
            from r join done on done.id = r.id
            where e.id = r.id
            returning e.id
        )
        select array_agg(id) as "ids!", pg_notify($10, string_agg(id::text, ',')) from fin
        having count(*) > 0
        "#,
        &ids,
        &tokens,
        // As text, cast in the statement: bound as an array of the enum
        // type, the one-result write measured about 0.1 ms slower in
        // plat-bench's latency floor (docs/benchmarks.md).
        &statuses as &[&str],
        &outputs as &[Option<&str>],
        &error_types as &[Option<&str>],
        &error_messages as &[Option<&str>],
        &logs as &[&str],
        &truncated,
        &durations,
        notify::EXECUTION_FINISHED,
    )
    .fetch_optional(db)
    .await?;
    Ok(written.map(|row| row.ids).unwrap_or_default())
}

/// Gives a job whose run failed back to the queue to run again after
/// `backoff`, under its version's retry policy, and keeps the failed run in
/// `execution_attempts`; if this worker still holds the lease and the job
/// was not asked to stop. Returns whether it did: when not, the caller
/// records the failure with [`complete`] instead (which then ends it, or
/// finds the lease lost).
///
/// A statement of its own, off the hot path: only a result that is retried
/// takes it; every other result is written by [`complete_batch`] as before.
/// The job stays in the queue, so what counts it in flight stays as it is:
/// its owner's count in `queue_owner_counts` (the execution is QUEUED
/// again), its stamp (it goes back near the front, like a retry after an
/// infrastructure error) and any `maxConcurrency` slot it holds (a run
/// waiting to be retried still counts as one of the function's). The run
/// gives back the claim it used of the lost-worker budget (`max_attempts`):
/// that budget counts claims lost with their worker, and this run was not
/// lost. `attempt` keeps counting claims, so the execution's `attempts`
/// ends as the number of claims of all its runs.
pub async fn retry_run(
    db: impl PgExecutor<'_>,
    job: &ExecutionJob,
    finished: &Finished,
    backoff: Duration,
) -> Result<bool, sqlx::Error> {
    let Err(RunFailure { kind, message }) = &finished.result else {
        return Ok(false);
    };
    let retried = sqlx::query_scalar!(
        r#"
        with j as (
            update execution_jobs
            set state = 'available', lease_token = null, lease_expires_at = null,
                run_at = now() + make_interval(secs => $3), retries = retries + 1,
                max_attempts = max_attempts + 1, last_error = $5
            where id = $1 and lease_token = $2 and not cancel_requested
            returning id, retries, worker_id, started_at, run_at
        ), kept as (
            insert into execution_attempts (execution_id, attempt, error_type, error_message, logs,
                                            logs_truncated, duration_ms, worker_id, started_at,
                                            finished_at, retry_at)
            select j.id, j.retries, $4, $5, $6, $7, $8, j.worker_id, j.started_at, now(), j.run_at
            from j
        )
        select count(*) as "n!" from j
        "#,
        job.id,
        job.lease_token,
        secs(backoff),
        kind.as_str(),
        message,
        finished.logs,
        finished.logs_truncated,
        finished.duration_ms,
    )
    .fetch_one(db)
    .await?;
    Ok(retried > 0)
}

/// Tells the executors that a run with an old stamp is due now: what the
/// executor that retried a run sends when its backoff ends, so that the run
/// is claimed then rather than at the next poll. A hint only: if it is never
/// sent (that executor stopped), the polls find the run.
pub async fn announce_due_retry(db: impl PgExecutor<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "select pg_notify($1, $2)",
        notify::EXECUTION_JOBS,
        notify::OLD_STAMPS
    )
    .execute(db)
    .await?;
    Ok(())
}

// The execution queue's lease lifecycle (see `super::lease`). The job's
// execution row reads as QUEUED again by itself once its job is back in the
// queue, so going back needs no side effect; the workers are told that a run
// with an old stamp waits ([`notify::OLD_STAMPS`]). A job lost for good, or
// lost after it was asked to stop, ends its execution (FAILED as
// WORKER_LOST, or CANCELLED) and wakes whoever waits for it.
mod lease {
    crate::queue::lease::lifecycle! {
        table: "execution_jobs",
        id: uuid::Uuid,
        jobs_channel: crate::notify::EXECUTION_JOBS,
        requeue_hint: crate::notify::OLD_STAMPS,
        requeued: "",
        ended_channel: crate::notify::EXECUTION_FINISHED,
        ended: r#", ended as (
            update executions e
            set status = case when j.cancel_requested then 'CANCELLED' else 'FAILED' end::execution_status,
                error_type = case when j.cancel_requested then 'CANCELLED' else 'WORKER_LOST' end,
                finished_at = now(), attempts = j.attempt, worker_id = j.worker_id,
                started_at = j.started_at,
                error_message = case when j.cancel_requested then 'cancelled while running'
                                     else 'the execution was lost with its worker on all ' || j.attempt || ' attempts' end
            from j where e.id = j.id
            returning e.id as key
        )"#,
    }
}

/// Gives the job back after an infrastructure failure (retried with backoff),
/// or fails the execution as WORKER_LOST once all attempts are used.
pub async fn retry_or_fail(
    db: &PgPool,
    job: &ExecutionJob,
    error: &str,
) -> Result<bool, sqlx::Error> {
    if end_if_cancel_requested(db, job.lease_token).await? {
        return Ok(true);
    }
    if job.attempt >= job.max_attempts {
        let finished = Finished::failed(
            ErrorKind::WorkerLost,
            format!("gave up after {} attempts: {error}", job.attempt),
        );
        return complete(db, job, &finished).await;
    }
    let backoff = retry_backoff(job.attempt);
    lease::retry_later(db, job.id, job.lease_token, backoff, error).await
}

/// Hands a job this worker will not finish (shutdown) straight back to the
/// queue; the attempt does not count.
pub async fn release(db: &PgPool, lease_token: Uuid) -> Result<(), sqlx::Error> {
    if end_if_cancel_requested(db, lease_token).await? {
        return Ok(());
    }
    lease::release(db, lease_token).await
}

/// Extends the leases of the jobs this worker is still running, and returns
/// the lease tokens of those asked to stop: the backstop for a cancel
/// notification this worker missed.
///
/// Jobs another transaction has locked are skipped: that is the result
/// writer finishing them (or a cancel), and waiting would deadlock. The
/// writer deletes its batch's rows in its own order while this statement
/// locks them in another; PostgreSQL then aborted one of the two, and a
/// lost result batch waited for its leases to expire (seen once in
/// plat-bench). A skipped job is either gone at once or extended next round,
/// well inside its lease.
pub async fn heartbeat(
    db: impl PgExecutor<'_>,
    lease_tokens: &[Uuid],
    lease: Duration,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let jobs = lease::heartbeat(db, lease_tokens, lease).await?;
    Ok(jobs
        .into_iter()
        .filter(|(_, cancel)| *cancel)
        .map(|(token, _)| token)
        .collect())
}

/// Ends a job that was asked to stop as CANCELLED instead of giving it back
/// to the queue. Returns whether it did.
async fn end_if_cancel_requested(db: &PgPool, lease_token: Uuid) -> Result<bool, sqlx::Error> {
    end_cancelled(db, Cancelled::Running(lease_token)).await
}

/// Which job [`end_cancelled`] ends.
#[derive(Debug, Clone, Copy)]
enum Cancelled {
    /// The job held with this lease token, if it was asked to stop.
    Running(Uuid),
    /// This execution's job, if it is still queued.
    Queued(Uuid),
}

/// Deletes the job `which` names and records its execution CANCELLED,
/// waking whoever waits for it. Returns whether there was such a job.
///
/// Two checked statements rather than one built at run time: the job is
/// found in one of two fixed ways, and only the `where` differs (the macro
/// pastes it into the shared text). One statement with a parameter choosing
/// the condition would hide from the planner which of the two it runs, and
/// a query builder would give up the compile-time check for no gain.
async fn end_cancelled(db: &PgPool, which: Cancelled) -> Result<bool, sqlx::Error> {
    macro_rules! end_where {
        ($condition:literal, $key:expr, $message:literal) => {
            sqlx::query!(
                "with j as (delete from execution_jobs where "
                    + $condition
                    + r#"
                    returning id, attempt, worker_id, started_at
                ), fin as (
                    update executions e
                    set status = 'CANCELLED', error_type = 'CANCELLED', error_message = $2,
                        finished_at = now(), attempts = j.attempt, worker_id = j.worker_id,
                        started_at = j.started_at
                    from j where e.id = j.id
                    returning e.id
                )
                select pg_notify($3, fin.id::text) from fin"#,
                $key,
                $message,
                notify::EXECUTION_FINISHED,
            )
            .execute(db)
            .await?
        };
    }
    let ended = match which {
        Cancelled::Running(lease_token) => end_where!(
            "lease_token = $1 and cancel_requested",
            lease_token,
            "cancelled while running"
        ),
        Cancelled::Queued(execution_id) => end_where!(
            "id = $1 and state = 'available'",
            execution_id,
            "cancelled before it ran"
        ),
    };
    Ok(ended.rows_affected() > 0)
}

/// What [`cancel`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was still queued: it is now CANCELLED and will never run.
    Cancelled,
    /// It is running: its executor was asked to stop it.
    Requested,
    /// It had already finished (or is unknown): nothing changed.
    NotCancellable,
}

/// Cancels an execution: a queued one at once, a running one by flagging its
/// job and telling the executors (the one holding it stops the run).
pub async fn cancel(db: &PgPool, execution_id: Uuid) -> Result<CancelOutcome, sqlx::Error> {
    if end_cancelled(db, Cancelled::Queued(execution_id)).await? {
        return Ok(CancelOutcome::Cancelled);
    }
    let running = sqlx::query!(
        r#"
        with j as (
            update execution_jobs set cancel_requested = true
            where id = $1 and state = 'running'
            returning id
        )
        select pg_notify($2, j.id::text) from j
        "#,
        execution_id,
        notify::EXECUTION_CANCEL,
    )
    .execute(db)
    .await?;
    Ok(if running.rows_affected() > 0 {
        CancelOutcome::Requested
    } else {
        CancelOutcome::NotCancellable
    })
}

/// Returns jobs whose lease expired (their worker died or stalled) to the
/// queue, or fails them as WORKER_LOST when they have used all their
/// attempts (CANCELLED when they were asked to stop). Returns how many jobs
/// were rescued. Like [`heartbeat`], skips jobs another transaction holds
/// (a late result being written): the next round sees them again if they
/// are still there.
pub async fn rescue_expired(db: &PgPool) -> Result<u64, sqlx::Error> {
    lease::rescue_expired(db).await
}

/// Cancels every queued (not yet running) execution of a function. Used when
/// the function is deleted. Returns how many were cancelled.
pub async fn cancel_queued_of_function(
    conn: &mut sqlx::PgConnection,
    function_id: Uuid,
) -> Result<u64, sqlx::Error> {
    cancel_queued(
        conn,
        function_id,
        None,
        "the function was deleted before this execution ran",
    )
    .await
}

/// Cancels the queued executions of one version of a function, with
/// `message` as their error: what retiring a version does to the runs
/// still waiting for it. Running ones finish.
pub async fn cancel_queued_of_version(
    conn: &mut sqlx::PgConnection,
    function_id: Uuid,
    version: i32,
    message: &str,
) -> Result<u64, sqlx::Error> {
    cancel_queued(conn, function_id, Some(version), message).await
}

/// Ends the queued runs of a function (of one version, or all) CANCELLED
/// with `message`, waking whoever waits for them.
async fn cancel_queued(
    conn: &mut sqlx::PgConnection,
    function_id: Uuid,
    version: Option<i32>,
    message: &str,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        r#"
        with j as (
            delete from execution_jobs
            where function_id = $1 and ($2::int is null or version = $2) and state = 'available'
            returning id, attempt, worker_id, started_at
        ), fin as (
            update executions e
            set status = 'CANCELLED', finished_at = now(), error_type = 'CANCELLED',
                error_message = $3,
                attempts = j.attempt, worker_id = j.worker_id, started_at = j.started_at
            from j where e.id = j.id
            returning e.id
        )
        select pg_notify($4, fin.id::text) from fin
        "#,
        function_id,
        version,
        message,
        notify::EXECUTION_FINISHED,
    )
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}
