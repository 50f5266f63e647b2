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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use plat_common::db::MIGRATOR;
    use uuid::Uuid;

    use super::*;

    /// Queues `n` executions of a new function and claims them all.
    async fn claimed(pool: &PgPool, n: usize) -> Vec<ExecutionJob> {
        let function = Uuid::new_v4();
        sqlx::query("insert into functions (id, name, language) values ($1, 'deep', 'rust')")
            .bind(function)
            .execute(pool)
            .await
            .unwrap();
        sqlx::query(
            "insert into function_versions (function_id, version, semver, source, execution_config) values ($1, 1, '0.0.1', '', '{}')",
        )
        .bind(function)
        .execute(pool)
        .await
        .unwrap();
        let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
        let inputs = vec!["null"; n];
        let batch = execute::NewBatch {
            function_id: function,
            version: 1,
            ids: &ids,
            inputs: &inputs,
            created_by: None,
            request_id: None,
            max_in_flight: None,
        };
        execute::enqueue_batch(pool, batch).await.unwrap();
        let jobs = execute::claim(pool, "writer-test", Duration::from_secs(60), n as i64)
            .await
            .unwrap();
        assert_eq!(jobs.len(), n);
        jobs
    }

    /// Valid JSON that PostgreSQL's recursive jsonb parser cannot parse.
    fn nested_200_000_deep() -> String {
        format!("{}{}", "[".repeat(200_000), "]".repeat(200_000))
    }

    #[sqlx::test(migrator = "MIGRATOR")]
    async fn an_output_nested_too_deep_for_jsonb_fails_the_whole_batch_with_class_54(pool: PgPool) {
        let jobs = claimed(&pool, 2).await;
        let (fine, deep) = (
            Finished::succeeded("1", 1),
            Finished::succeeded(nested_200_000_deep(), 1),
        );

        let error = execute::complete_batch(&pool, &[(&jobs[0], &fine), (&jobs[1], &deep)])
            .await
            .unwrap_err();

        let code = error.as_database_error().and_then(|e| e.code()).unwrap();
        assert_eq!(code, "54001", "{error}");
        assert_eq!(
            plat_common::db::data_exception(&error),
            Some("stack depth limit exceeded")
        );
    }

    #[sqlx::test(migrator = "MIGRATOR")]
    async fn a_batch_with_a_row_postgresql_refuses_records_every_other_row(pool: PgPool) {
        let jobs = claimed(&pool, 5).await;
        let mut receivers = Vec::new();
        let batch: Vec<Pending> = jobs
            .iter()
            .enumerate()
            .map(|(i, job)| {
                let (written, receiver) = oneshot::channel();
                receivers.push(receiver);
                let output = if i == 2 {
                    nested_200_000_deep()
                } else {
                    i.to_string()
                };
                Pending {
                    job: job.clone(),
                    finished: Finished::succeeded(output, 1),
                    written,
                }
            })
            .collect();

        write(&pool, batch).await;

        for receiver in receivers {
            assert!(matches!(receiver.await, Ok(Ok(true))));
        }
        let recorded: Vec<(Uuid, String, Option<String>, Option<String>)> = sqlx::query_as(
            "select id, status::text, error_type, error_message from executions order by id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let statuses: Vec<_> = recorded
            .iter()
            .map(|(id, status, kind, _)| (*id, status.as_str(), kind.as_deref()))
            .collect();
        let mut expected: Vec<_> = jobs
            .iter()
            .enumerate()
            .map(|(i, job)| match i {
                2 => (job.id, "FAILED", Some("INVALID_OUTPUT")),
                _ => (job.id, "SUCCEEDED", None),
            })
            .collect();
        expected.sort_unstable_by_key(|(id, _, _)| *id);
        assert_eq!(statuses, expected);
        let deep = recorded.iter().find(|(id, ..)| *id == jobs[2].id).unwrap();
        assert_eq!(
            deep.3.as_deref(),
            Some("the output is valid JSON but cannot be stored: stack depth limit exceeded")
        );
        let left: i64 = sqlx::query_scalar("select count(*) from execution_jobs")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(left, 0, "no job is left to run again");
    }
}
