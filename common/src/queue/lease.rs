//! The lease lifecycle, written once for every job kind, as River keeps one
//! for all of its jobs.
//!
//! A claimed job is `running` under a lease (a token and an expiry). From
//! there it goes one of four ways, every write conditional on the lease:
//! - the worker extends the lease (`heartbeat`);
//! - the worker gives it back after an infrastructure failure, to run again
//!   after a backoff (`retry_later`), or at once when it shuts down
//!   (`release`, which does not count the attempt);
//! - its lease expires (the worker died or stalled) and the rescuer gives it
//!   back to the queue, or ends it for good when it has used all its
//!   attempts or was asked to stop (`rescue_expired`);
//! - the worker finishes it: that write is each kind's own (`complete`), as
//!   it carries the kind's result.
//!
//! A job asked to stop (`cancel_requested`) is never given back to the
//! queue. Heartbeat and rescue skip rows another transaction has locked: see
//! [`super::execute::heartbeat`] for the deadlock that taught this.
//!
//! Why a macro that stamps the statements per table, and not the
//! alternatives. SQL checked at compile time (`query!`) cannot take a table
//! name as a parameter, so the text must exist once per table; the macro
//! writes it once and pastes the table name in with `"..." + $table + "..."`
//! literal concatenation, which `query!` accepts. Each kind adds its side
//! effects as two SQL fragments, CTEs over the jobs `j` a statement touched:
//! what follows a job going back to the queue (`requeued`), and what ends a
//! lost one (`ended`, a CTE `ended (key)` whose keys are announced on the
//! kind's channel). So a reader sees each kind's differences in one place,
//! its call of [`lifecycle`], and the lifecycle itself in one place, here.
//! Triggers could have made the statements identical too, but they would
//! hide the side effects from the code and fire on the execute hot path
//! (claim and complete write the same table); a Rust hook per kind would
//! cost a round trip per side effect, where a CTE costs none.
//!
//! The claim, the enqueue and the completion stay in each kind's module:
//! they carry the kind's data, and the execute queue's are its hot path.

/// Stamps the lease lifecycle statements for the job table `table` (whose
/// `id` is of type `id`) as `pub(crate)` functions `heartbeat`,
/// `retry_later`, `release` and `rescue_expired`.
///
/// - `jobs_channel`, `requeue_hint`: the notification that wakes the kind's
///   workers when a job goes back to the queue, and its payload.
/// - `requeued`: CTEs (each starting with `, name as (`) run on the jobs `j`
///   just given back to the queue; `""` for none.
/// - `ended_channel`, `ended`: CTEs that record the end of the lost jobs `j`
///   (deleted, with all their columns), the last named `ended` with a column
///   `key` that is announced on `ended_channel`, one notification per job.
macro_rules! lifecycle {
    (
        table: $table:literal,
        id: $id:ty,
        jobs_channel: $jobs_channel:expr,
        requeue_hint: $requeue_hint:expr,
        requeued: $requeued:literal,
        ended_channel: $ended_channel:expr,
        ended: $ended:literal $(,)?
    ) => {
        /// Extends the leases of the jobs held with `lease_tokens`, and
        /// answers each extended job's token and whether it was asked to
        /// stop. Rows another transaction holds are skipped (see the
        /// module's notes).
        pub(crate) async fn heartbeat(
            db: impl sqlx::PgExecutor<'_>,
            lease_tokens: &[uuid::Uuid],
            lease: std::time::Duration,
        ) -> Result<Vec<(uuid::Uuid, bool)>, sqlx::Error> {
            let jobs = sqlx::query!(
                "update "
                    + $table
                    + r#" set lease_expires_at = now() + make_interval(secs => $2)
                where id in (
                    select id from "#
                    + $table
                    + r#"
                    where state = 'running' and lease_token = any($1)
                    for update skip locked
                )
                returning lease_token as "lease_token!", cancel_requested"#,
                lease_tokens,
                $crate::queue::secs(lease),
            )
            .fetch_all(db)
            .await?;
            Ok(jobs
                .into_iter()
                .map(|job| (job.lease_token, job.cancel_requested))
                .collect())
        }

        /// Gives job `id` back to the queue to run again after `backoff`,
        /// recording `error`, if `lease_token` still holds it and it was not
        /// asked to stop. Returns whether it did.
        pub(crate) async fn retry_later(
            db: impl sqlx::PgExecutor<'_>,
            id: $id,
            lease_token: uuid::Uuid,
            backoff: std::time::Duration,
            error: &str,
        ) -> Result<bool, sqlx::Error> {
            let requeued = sqlx::query_scalar!(
                "with j as (update "
                    + $table
                    + r#"
                    set state = 'available', lease_token = null, lease_expires_at = null,
                        run_at = now() + make_interval(secs => $3), last_error = $4
                    where id = $1 and lease_token = $2 and not cancel_requested
                    returning *
                )"#
                    + $requeued
                    + r#"
                select count(*) as "n!" from j"#,
                id,
                lease_token,
                $crate::queue::secs(backoff),
                error,
            )
            .fetch_one(db)
            .await?;
            Ok(requeued > 0)
        }

        /// Gives the job held with `lease_token` straight back to the queue
        /// (its worker shuts down) without counting the attempt, unless it
        /// was asked to stop, and wakes the kind's workers.
        pub(crate) async fn release(
            db: impl sqlx::PgExecutor<'_>,
            lease_token: uuid::Uuid,
        ) -> Result<(), sqlx::Error> {
            sqlx::query!(
                "with j as (update "
                    + $table
                    + r#"
                    set state = 'available', attempt = greatest(attempt - 1, 0),
                        lease_token = null, lease_expires_at = null, run_at = now()
                    where lease_token = $1 and not cancel_requested
                    returning *
                )"#
                    + $requeued
                    + r#"
                select pg_notify($2, $3) from j"#,
                lease_token,
                $jobs_channel,
                $requeue_hint,
            )
            .execute(db)
            .await?;
            Ok(())
        }

        /// Gives jobs whose lease expired (their worker died or stalled)
        /// back to the queue, and ends those that used all their attempts
        /// or were asked to stop. Returns how many jobs it moved. Skips jobs
        /// another transaction holds (a late result being written): the
        /// next round sees them if they are still there.
        pub(crate) async fn rescue_expired(db: &sqlx::PgPool) -> Result<u64, sqlx::Error> {
            let requeued = sqlx::query_scalar!(
                "with j as (update "
                    + $table
                    + r#"
                    set state = 'available', lease_token = null, lease_expires_at = null,
                        run_at = now(), last_error = 'lease expired: the worker was lost'
                    where id in (
                        select id from "#
                    + $table
                    + r#"
                        where state = 'running' and lease_expires_at < now()
                          and attempt < max_attempts and not cancel_requested
                        for update skip locked
                    )
                    returning *
                )"#
                    + $requeued
                    + r#"
                select count(*) as "n!" from j"#
            )
            .fetch_one(db)
            .await?;
            if requeued > 0 {
                sqlx::query!("select pg_notify($1, $2)", $jobs_channel, $requeue_hint)
                    .execute(db)
                    .await?;
            }
            let ended = sqlx::query!(
                "with j as (delete from "
                    + $table
                    + r#"
                    where id in (
                        select id from "#
                    + $table
                    + r#"
                        where state = 'running' and lease_expires_at < now()
                          and (attempt >= max_attempts or cancel_requested)
                        for update skip locked
                    )
                    returning *
                )"#
                    + $ended
                    + r#"
                select pg_notify($1, ended.key::text) from ended"#,
                $ended_channel,
            )
            .execute(db)
            .await?;
            Ok(requeued as u64 + ended.rows_affected())
        }
    };
}

pub(crate) use lifecycle;
