//! The compile queue: one job per function version to build.

use std::time::Duration;

use sqlx::types::Json;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use super::{retry_backoff, secs};
use crate::dependencies::Dependencies;
use crate::{notify, VersionStatus};

/// A claimed compile job, with what the compiler needs to build it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CompileJob {
    /// Queue row id.
    pub id: i64,
    /// The function being built.
    pub function_id: Uuid,
    /// The version being built.
    pub version: i32,
    /// 1 for the first attempt.
    pub attempt: i32,
    /// After this many attempts an infrastructure failure becomes final.
    pub max_attempts: i32,
    /// The lease token this worker holds.
    pub lease_token: Uuid,
    /// The function's [`crate::Language`], as text: a compiler that does
    /// not know a newer API's language fails that job with a clear message,
    /// instead of failing every claim that meets it.
    pub language: String,
    /// The user's source, sealed with the secrets key
    /// ([`crate::secrets::VersionPart::Source`]); `None` only for a version
    /// written before sources were sealed, which then has [`Self::source`].
    pub source_sealed: Option<Vec<u8>>,
    /// The plaintext source of a version not yet sealed (see above).
    pub source: Option<String>,
    /// What the version declares it depends on.
    pub dependencies: Json<Dependencies>,
    /// The lockfile an earlier build of this version resolved to, sealed:
    /// a rebuild uses it rather than resolving again.
    pub lockfile_sealed: Option<Vec<u8>>,
    /// The `X-Request-Id` of the call that queued the build.
    pub request_id: Option<String>,
}

/// What a finished build produced, and what it resolved and reported on the way.
pub struct CompileOutcome<'a> {
    /// A module, or the error.
    pub result: CompileResult<'a>,
    /// The lockfile the dependencies resolved to, sealed
    /// ([`crate::secrets::VersionPart::Lockfile`]); kept on a failed build
    /// too, so its reader sees what was resolved.
    pub lockfile_sealed: Option<&'a [u8]>,
    /// What the build reported without failing.
    pub warnings: &'a [String],
}

/// A module or a compile error.
pub enum CompileResult<'a> {
    /// A module, and how long building it took.
    Ready {
        /// The WebAssembly module.
        module: &'a [u8],
        /// Its sha256, hex.
        sha256: &'a str,
        /// Wall-clock build time.
        duration_ms: i32,
        /// For a module that links against the JavaScript engine: the
        /// engine build's sha256 (already stored in `js_engines`).
        engine_sha256: Option<&'a str>,
    },
    /// The user's source does not build; the message is for them.
    Failed {
        /// The compile error shown to the user.
        compile_error: &'a str,
    },
}

/// Queues a build of `version`; call it in the transaction that created the
/// version so the job exists exactly when the version does. `request_id`:
/// the `X-Request-Id` of the call, carried by the build's log lines.
pub async fn enqueue(
    conn: &mut sqlx::PgConnection,
    function_id: Uuid,
    version: i32,
    request_id: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"insert into compile_jobs (function_id, version, request_id) values ($1, $2, $3)"#,
        function_id,
        version,
        request_id,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!("select pg_notify($1, '')", notify::COMPILE_JOBS)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Claims up to `limit` ready jobs for `worker_id`, marking their versions
/// COMPILING, in one statement.
pub async fn claim(
    db: impl PgExecutor<'_>,
    worker_id: &str,
    lease: Duration,
    limit: i64,
) -> Result<Vec<CompileJob>, sqlx::Error> {
    sqlx::query_as!(
        CompileJob,
        r#"
        with next as (
            select id from compile_jobs
            where state = 'available' and run_at <= now()
            order by run_at, id
            limit $1
            for update skip locked
        ), claimed as (
            update compile_jobs j
            set state = 'running', attempt = j.attempt + 1, lease_token = gen_random_uuid(),
                lease_expires_at = now() + make_interval(secs => $2), worker_id = $3
            from next where j.id = next.id
            returning j.id, j.function_id, j.version, j.attempt, j.max_attempts, j.lease_token,
                      j.request_id
        ), marked as (
            update function_versions v set status = 'COMPILING', updated_at = now()
            from claimed c where v.function_id = c.function_id and v.version = c.version
            returning v.function_id, v.version, v.source, v.source_sealed, v.dependencies,
                      v.lockfile_sealed
        )
        select c.id as "id!", c.function_id as "function_id!", c.version as "version!",
               c.attempt as "attempt!", c.max_attempts as "max_attempts!",
               c.lease_token as "lease_token!", f.language::text as "language!",
               m.source_sealed, m.source,
               m.dependencies as "dependencies!: Json<Dependencies>",
               m.lockfile_sealed, c.request_id
        from claimed c
        join marked m on m.function_id = c.function_id and m.version = c.version
        join functions f on f.id = c.function_id
        "#,
        limit,
        secs(lease),
        worker_id,
    )
    .fetch_all(db)
    .await
}

/// Records the result of a build and removes the job. Returns `false` when
/// this worker no longer holds the lease (nothing was written).
pub async fn complete(
    db: impl PgExecutor<'_>,
    job: &CompileJob,
    outcome: CompileOutcome<'_>,
) -> Result<bool, sqlx::Error> {
    let CompileOutcome {
        result,
        lockfile_sealed,
        warnings,
    } = outcome;
    let (status, module, sha256, duration_ms, engine_sha256, compile_error) = match result {
        CompileResult::Ready {
            module,
            sha256,
            duration_ms,
            engine_sha256,
        } => (
            VersionStatus::Ready,
            Some(module),
            Some(sha256),
            Some(duration_ms),
            engine_sha256,
            None,
        ),
        CompileResult::Failed { compile_error } => (
            VersionStatus::Failed,
            None,
            None,
            None,
            None,
            Some(compile_error),
        ),
    };
    // The version becomes active only if it is newer than the active one, so
    // builds finishing out of order never roll a function back.
    let row = sqlx::query_scalar!(
        r#"
        with done as (
            delete from compile_jobs where id = $1 and lease_token = $2
            returning function_id, version
        ), v as (
            update function_versions fv
            set status = $3, module = $4, module_sha256 = $5,
                compile_duration_ms = $6, compile_error = $7, engine_sha256 = $9,
                lockfile_sealed = coalesce($10, fv.lockfile_sealed), build_warnings = $11,
                compiled_at = now(), updated_at = now()
            from done where fv.function_id = done.function_id and fv.version = done.version
            returning fv.function_id, fv.version, fv.status
        )
        , f as (
            update functions f
            set active_version = case when v.status = 'READY'
                                      then greatest(coalesce(f.active_version, 0), v.version)
                                      else f.active_version end,
                updated_at = now()
            from v where f.id = v.function_id
            returning f.id
        )
        select f.id from f, lateral (select pg_notify($8, f.id::text)) as n
        "#,
        job.id,
        job.lease_token,
        status as VersionStatus,
        module,
        sha256,
        duration_ms,
        compile_error,
        notify::FUNCTION_VERSION_BUILT,
        engine_sha256,
        lockfile_sealed,
        warnings,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.is_some())
}

// The compile queue's lease lifecycle (see `super::lease`). A job going back
// to the queue puts its version back to PENDING (the claim made it
// COMPILING); a job lost for good fails its version, and the API's waiters
// hear of it as of any finished build.
mod lease {
    crate::queue::lease::lifecycle! {
        table: "compile_jobs",
        id: i64,
        jobs_channel: crate::notify::COMPILE_JOBS,
        requeue_hint: "",
        requeued: r#", v as (
            update function_versions fv set status = 'PENDING', updated_at = now()
            from j where fv.function_id = j.function_id and fv.version = j.version
        )"#,
        ended_channel: crate::notify::FUNCTION_VERSION_BUILT,
        ended: r#", ended as (
            update function_versions fv
            set status = 'FAILED', updated_at = now(), compiled_at = now(),
                compile_error = 'the build was lost with its worker ' || j.attempt
                                || ' times; update the function to try again'
            from j where fv.function_id = j.function_id and fv.version = j.version
            returning fv.function_id as key
        )"#,
    }
}

/// Gives the job back after an infrastructure failure: retried later with
/// backoff, or failed for good once it has used all its attempts.
pub async fn retry_or_fail(
    db: &PgPool,
    job: &CompileJob,
    error: &str,
) -> Result<bool, sqlx::Error> {
    if job.attempt >= job.max_attempts {
        let message = format!(
            "the build could not be completed after {} attempts (last error: {error}); update the function to try again",
            job.attempt
        );
        let outcome = CompileOutcome {
            result: CompileResult::Failed {
                compile_error: &message,
            },
            lockfile_sealed: None,
            warnings: &[],
        };
        return complete(db, job, outcome).await;
    }
    let backoff = retry_backoff(job.attempt);
    lease::retry_later(db, job.id, job.lease_token, backoff, error).await
}

/// Hands a job this worker will not finish (shutdown) straight back to the
/// queue; the attempt does not count.
pub async fn release(db: impl PgExecutor<'_>, lease_token: Uuid) -> Result<(), sqlx::Error> {
    lease::release(db, lease_token).await
}

/// Extends the leases of the jobs this worker is still building, skipping
/// any another transaction holds, as [`super::execute::heartbeat`] does.
/// Returns how many it extended.
pub async fn heartbeat(
    db: impl PgExecutor<'_>,
    lease_tokens: &[Uuid],
    lease: Duration,
) -> Result<u64, sqlx::Error> {
    Ok(lease::heartbeat(db, lease_tokens, lease).await?.len() as u64)
}

/// Returns jobs whose lease expired (their worker died or stalled) to the
/// queue, or fails them for good when they have used all their attempts.
/// Returns how many jobs were rescued. Skips jobs another transaction holds
/// (a late result being written); the next round sees them if still there.
pub async fn rescue_expired(db: &PgPool) -> Result<u64, sqlx::Error> {
    lease::rescue_expired(db).await
}
