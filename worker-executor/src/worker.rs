//! The execution queue as the generic worker loop sees it: claim a job, run
//! its module in wasmtime, write the terminal record under the lease.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use plat_common::queue::execute::{self, ExecutionJob, Finished};
use plat_common::worker::{JobOutcome, Queue};
use plat_common::{notify, telemetry, ErrorKind, ExecutionStatus, RunFailure};
use sqlx::PgPool;
use tokio::sync::oneshot;
use tracing::{debug, info, info_span, warn, Span};
use uuid::Uuid;

use crate::completions::Completions;
use crate::environments::{self, EnvironmentError, Environments};
use crate::modules::{LoadError, ModuleCache};
use crate::prefetch::Prefetch;
use crate::runtime::{CancelFlag, RunLimits, RunThreads, Runtime};
use crate::scan_start::ScanStart;

pub(crate) struct ExecuteQueue {
    pub(crate) pool: PgPool,
    pub(crate) runtime: Arc<Runtime>,
    /// One per run this worker runs at once.
    pub(crate) run_threads: RunThreads,
    /// How many jobs to claim ahead of the run threads.
    pub(crate) prefetch: Prefetch,
    /// Where claims start their scan of the claim index.
    pub(crate) scan_start: ScanStart,
    pub(crate) modules: ModuleCache,
    pub(crate) environments: Environments,
    /// Where finished runs are recorded, in batches.
    pub(crate) completions: Completions,
    pub(crate) worker_id: String,
    pub(crate) lease: Duration,
    /// The runs in flight, by execution id: their lease token and the flag
    /// that stops them.
    pub(crate) running: Mutex<HashMap<Uuid, (Uuid, CancelFlag)>>,
}

/// What became of one attempt.
enum Attempt {
    /// A terminal result, the function's own (success, handler error, limit hit).
    Finished(Finished),
    /// The function failed, and its version's retry policy runs it again
    /// after this long.
    RunAgain(Finished, Duration),
    /// Our infrastructure failed: the job goes back to the queue.
    Retry(RetryCause),
}

/// What failed on our side of an attempt, with its cause.
#[derive(Debug, thiserror::Error)]
enum RetryCause {
    /// The module could not be read from the database.
    #[error(transparent)]
    Module(LoadError),
    /// The environment could not be read, or changed while being read.
    #[error(transparent)]
    Environment(EnvironmentError),
    /// The host panicked mid-run (never the guest's doing).
    #[error("the run's thread ended without a result")]
    RunThreadLost,
}

impl ExecuteQueue {
    /// Stops the run of `execution_id` if this worker has it.
    pub(crate) fn cancel_execution(&self, execution_id: Uuid) {
        if let Some((_, flag)) = self.running.lock().get(&execution_id) {
            info!(%execution_id, "cancelling the running execution");
            flag.cancel();
        }
    }

    async fn attempt(&self, job: &ExecutionJob) -> Attempt {
        let cancel = CancelFlag::new();
        self.running
            .lock()
            .insert(job.id, (job.lease_token, cancel.clone()));
        let attempt = self.attempt_with(job, cancel).await;
        self.running.lock().remove(&job.id);
        attempt
    }

    async fn attempt_with(&self, job: &ExecutionJob, cancel: CancelFlag) -> Attempt {
        if job.version_retired {
            return Attempt::Finished(Finished::failed(
                ErrorKind::Cancelled,
                format!(
                    "version {} was retired before this execution ran; retired versions never run",
                    job.version
                ),
            ));
        }
        let cached = match self
            .modules
            .get(&self.pool, job.function_id, job.version)
            .await
        {
            Ok(cached) => cached,
            Err(error @ (LoadError::Missing { .. } | LoadError::Invalid(_))) => {
                return Attempt::Finished(Finished::failed(
                    ErrorKind::ModuleError,
                    error.to_string(),
                ))
            }
            Err(error @ (LoadError::Database(_) | LoadError::Join(_))) => {
                return Attempt::Retry(RetryCause::Module(error))
            }
        };
        // The function's environment, if it has one, joins its variables.
        let mut limits = match (job.environment_id, job.environment_revision) {
            (Some(id), Some(revision)) => {
                match self.environments.get(&self.pool, id, revision).await {
                    Ok(variables) => Some(RunLimits {
                        env: environments::merge(&variables, &cached.limits.env),
                        ..cached.limits.clone()
                    }),
                    Err(error @ (EnvironmentError::NoKey | EnvironmentError::Secrets(_))) => {
                        return Attempt::Finished(Finished::failed(
                            ErrorKind::EnvironmentError,
                            error.to_string(),
                        ))
                    }
                    Err(error @ (EnvironmentError::Database(_) | EnvironmentError::Changed(_))) => {
                        return Attempt::Retry(RetryCause::Environment(error))
                    }
                }
            }
            _ => None,
        };
        // Only a version with a retry policy is told its attempt: without
        // one every run is the first, and its environment stays the shared
        // one of the cached module (no copy per run).
        let attempt = job.retries.saturating_add(1);
        if cached.retry.is_some() {
            let limits = limits.get_or_insert_with(|| cached.limits.clone());
            limits
                .env
                .push((ATTEMPT_VARIABLE.to_owned(), attempt.to_string()));
        }
        let runtime = self.runtime.clone();
        let input = job.input.clone().into_bytes();
        let span = tracing::Span::current();
        let retry = cached.retry;
        // Running wasm blocks its thread until the module exits or its
        // deadline passes; keep it off the async workers, on a thread whose
        // stack holds the guest's.
        let (done, outcome) = oneshot::channel();
        self.run_threads.execute(job.owner_id, move || {
            let outcome = span.in_scope(|| {
                let limits = limits.as_ref().unwrap_or(&cached.limits);
                runtime.run_cancellable(&cached.module, &input, limits, &cancel)
            });
            let _ = done.send(outcome);
        });
        match outcome.await {
            Ok(outcome) => {
                self.prefetch.record(outcome.duration);
                let finished = Finished {
                    result: outcome.result.map_err(|failure| RunFailure {
                        message: storable_text(failure.message),
                        ..failure
                    }),
                    logs: storable_text(outcome.logs),
                    logs_truncated: outcome.logs_truncated,
                    duration_ms: i32::try_from(outcome.duration.as_millis()).unwrap_or(i32::MAX),
                };
                let attempt = u32::try_from(attempt).unwrap_or(u32::MAX);
                match (&finished.result, retry) {
                    (Err(failure), Some(retry)) if retry.retries(failure.kind, attempt) => {
                        Attempt::RunAgain(finished, retry.backoff(attempt))
                    }
                    _ => Attempt::Finished(finished),
                }
            }
            Err(_) => Attempt::Retry(RetryCause::RunThreadLost),
        }
    }
}

/// The environment variable that tells a run of a version with a retry
/// policy which attempt it is (1, 2, …).
const ATTEMPT_VARIABLE: &str = "PLAT_EXECUTION_ATTEMPT";

/// PostgreSQL text cannot hold NUL; a function that prints one still gets
/// its logs and message recorded, with U+FFFD in its place.
fn storable_text(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

impl ExecuteQueue {
    /// Puts the job of a failed run back in the queue for its next attempt,
    /// and announces it to the executors when its backoff ends. A job this
    /// worker cannot put back (asked to stop, or its lease lost) has its
    /// failure recorded as a result instead, as without a retry policy.
    async fn run_again(
        &self,
        job: ExecutionJob,
        finished: Finished,
        backoff: Duration,
    ) -> (JobOutcome, Result<bool, Arc<sqlx::Error>>) {
        let retried = match execute::retry_run(&self.pool, &job, &finished, backoff).await {
            Ok(true) => {
                info!(
                    next_attempt = job.retries + 2,
                    backoff_ms = backoff.as_millis() as u64,
                    "execution failed; it runs again after its backoff"
                );
                let pool = self.pool.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(backoff).await;
                    if let Err(error) = execute::announce_due_retry(&pool).await {
                        debug!(%error, "could not announce a due retry; the polls will find it");
                    }
                });
                Ok(true)
            }
            Ok(false) => {
                let written = self.completions.record(job, finished).await;
                return (JobOutcome::Failed, written);
            }
            Err(error) => Err(Arc::new(error)),
        };
        (JobOutcome::Retried, retried)
    }
}

impl Queue for ExecuteQueue {
    type Job = ExecutionJob;

    fn kind(&self) -> &'static str {
        "execute"
    }

    fn worker_id(&self) -> &str {
        &self.worker_id
    }

    fn channel(&self) -> &'static str {
        notify::EXECUTION_JOBS
    }

    fn heard(&self, payload: &str) {
        if payload == notify::OLD_STAMPS {
            self.scan_start.sweep_next();
        }
    }

    async fn claim(&self, limit: usize) -> Result<Vec<ExecutionJob>, sqlx::Error> {
        let from = self.scan_start.next(Instant::now());
        let jobs = execute::claim_from(&self.pool, &self.worker_id, self.lease, limit as i64, from)
            .await?;
        self.scan_start
            .claimed(limit, jobs.iter().map(|job| job.vt));
        Ok(jobs)
    }

    fn lease_token(job: &ExecutionJob) -> Uuid {
        job.lease_token
    }

    fn wanted(&self, _concurrency: usize) -> usize {
        let threads = self.run_threads.count();
        threads + self.prefetch.jobs(threads)
    }

    fn ready_for_more(&self) -> bool {
        self.run_threads.idle() > 0
    }

    fn span(job: &Self::Job) -> Span {
        let span = info_span!("job", request_id = job.request_id.as_deref().unwrap_or(""), job_id = %job.id, function_id = %job.function_id, version = job.version, attempt = job.attempt);
        telemetry::join_request(&span, job.request_id.as_deref());
        span
    }

    async fn process(self: Arc<Self>, job: ExecutionJob) -> JobOutcome {
        let mut outcome = JobOutcome::Retried;
        let written = match self.attempt(&job).await {
            Attempt::Finished(finished) => {
                let status = match &finished.result {
                    Ok(_) => ExecutionStatus::Succeeded.as_str(),
                    Err(failure) => failure.kind.as_str(),
                };
                outcome = match &finished.result {
                    Ok(_) => JobOutcome::Succeeded,
                    Err(RunFailure {
                        kind: ErrorKind::Cancelled,
                        ..
                    }) => JobOutcome::Cancelled,
                    Err(_) => JobOutcome::Failed,
                };
                let duration_ms = finished.duration_ms;
                let written = self.completions.record(job, finished).await;
                if matches!(written, Ok(true)) {
                    debug!(status, duration_ms, "execution finished");
                }
                written
            }
            Attempt::RunAgain(finished, backoff) => {
                let written;
                (outcome, written) = self.run_again(job, finished, backoff).await;
                written
            }
            Attempt::Retry(error) => {
                warn!(%error, "execution attempt failed; retrying");
                execute::retry_or_fail(&self.pool, &job, &error.to_string())
                    .await
                    .map_err(Arc::new)
            }
        };
        match written {
            Ok(true) => outcome,
            Ok(false) => {
                warn!("lease lost before the result was written; another attempt owns the job");
                JobOutcome::LeaseLost
            }
            // The lease expires and the rescuer re-queues the job.
            Err(error) => {
                warn!(%error, "could not record the execution result");
                JobOutcome::Unrecorded
            }
        }
    }

    async fn heartbeat(&self, tokens: &[Uuid]) -> Result<u64, sqlx::Error> {
        let cancelled = execute::heartbeat(&self.pool, tokens, self.lease).await?;
        // The backstop for a cancel notification this worker missed.
        for (_, (token, flag)) in self.running.lock().iter() {
            if cancelled.contains(token) {
                flag.cancel();
            }
        }
        Ok(tokens.len() as u64)
    }

    /// Gives the job back, then stops its run: the worker is shutting down
    /// and this attempt's result will not be recorded, so the run should not
    /// keep a core busy until the function's own timeout. The order matters:
    /// once released, the lease is gone and the stopped run's CANCELLED
    /// outcome cannot be written; stopped first, it would be.
    async fn release(&self, token: Uuid) -> Result<(), sqlx::Error> {
        execute::release(&self.pool, token).await?;
        for (_, (lease_token, flag)) in self.running.lock().iter() {
            if *lease_token == token {
                flag.cancel();
            }
        }
        Ok(())
    }

    async fn rescue(&self) -> Result<u64, sqlx::Error> {
        execute::rescue_expired(&self.pool).await
    }
}
