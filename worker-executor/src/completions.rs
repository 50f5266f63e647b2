//! Records finished executions in batches: one statement, one transaction
//! and one notification per batch instead of per execution, which is what
//! lets a worker keep up with functions that run in microseconds.
//!
//! Runs hand their results to one writer task. It takes whatever has
//! arrived (up to [`MAX_COMPLETION_BATCH`]) and writes it; results that
//! arrive during a write form the next batch. So a lone result is written at
//! once, and under load batches grow by themselves: no timer, no added delay.

use std::sync::Arc;

use plat_common::queue::execute::{self, ExecutionJob, Finished, MAX_COMPLETION_BATCH};
use plat_common::ErrorKind;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

/// Whether the result was recorded: `Ok(false)` when the lease was lost
/// first (another attempt owns the job).
pub(crate) type Written = Result<bool, Arc<sqlx::Error>>;

struct Pending {
    job: ExecutionJob,
    finished: Finished,
    written: oneshot::Sender<Written>,
}

/// The handle runs use; the writer stops when every handle is dropped,
/// after writing what it holds.
pub(crate) struct Completions {
    pending: mpsc::UnboundedSender<Pending>,
}

impl Completions {
    pub(crate) fn start(pool: PgPool) -> Self {
        let (pending, queue) = mpsc::unbounded_channel();
        tokio::spawn(write_batches(pool, queue));
        Self { pending }
    }

    /// Records `finished` under the job's lease, with the next batch.
    pub(crate) async fn record(&self, job: ExecutionJob, finished: Finished) -> Written {
        let (written, result) = oneshot::channel();
        let pending = Pending {
            job,
            finished,
            written,
        };
        if self.pending.send(pending).is_err() {
            return Err(Arc::new(sqlx::Error::PoolClosed));
        }
        result
            .await
            .unwrap_or_else(|_| Err(Arc::new(sqlx::Error::PoolClosed)))
    }
}

async fn write_batches(pool: PgPool, mut queue: mpsc::UnboundedReceiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_COMPLETION_BATCH);
    while queue.recv_many(&mut batch, MAX_COMPLETION_BATCH).await > 0 {
        write(&pool, std::mem::take(&mut batch)).await;
    }
}

async fn write(pool: &PgPool, batch: Vec<Pending>) {
    let results: Vec<_> = batch.iter().map(|p| (&p.job, &p.finished)).collect();
    match execute::complete_batch(pool, &results).await {
        Ok(written) => {
            for pending in batch {
                let _ = pending.written.send(Ok(written.contains(&pending.job.id)));
            }
        }
        // A value PostgreSQL refuses fails the whole batch: find it by
        // writing each result on its own.
        Err(error) if plat_common::db::data_exception(&error).is_some() => {
            for pending in batch {
                let written = write_one(pool, &pending.job, pending.finished).await;
                let _ = pending.written.send(written);
            }
        }
        Err(error) => {
            let error = Arc::new(error);
            for pending in batch {
                let _ = pending.written.send(Err(error.clone()));
            }
        }
    }
}

/// Writes one result; valid JSON output that jsonb cannot hold (a `\u0000`
/// escape, a number out of its range) is the function's result, recorded
/// as INVALID_OUTPUT rather than retried.
async fn write_one(pool: &PgPool, job: &ExecutionJob, finished: Finished) -> Written {
    let error = match execute::complete(pool, job, &finished).await {
        Ok(written) => return Ok(written),
        Err(error) => error,
    };
    match (plat_common::db::data_exception(&error), &finished.result) {
        (Some(reason), Ok(_)) => {
            let unstorable = Finished {
                result: Err((
                    ErrorKind::InvalidOutput,
                    format!("the output is valid JSON but cannot be stored: {reason}"),
                )),
                ..finished
            };
            execute::complete(pool, job, &unstorable)
                .await
                .map_err(Arc::new)
        }
        _ => Err(Arc::new(error)),
    }
}
