//! Records finished executions in batches: one statement, one transaction
//! and one notification per batch instead of per execution, which is what
//! lets a worker keep up with functions that run in microseconds.
//!
//! Runs hand their results to a writer task. It takes whatever has arrived
//! (up to [`MAX_COMPLETION_BATCH`]) and writes it; results that arrive
//! during a write form the next batch. So a lone result is written at once,
//! and under load batches grow by themselves: no timer, no added delay.
//!
//! There are two writers, so that results take turns by owner as runs do
//! (docs/architecture.md, "Claimed runs take turns too"). A result whose
//! owner has no other result waiting to be written, while another owner
//! has, goes to the *express* writer; the rest go to the *bulk* writer.
//! While one owner's backlog drains, its results fill the bulk writer's
//! batches, and another owner's occasional run is written beside them, on a
//! connection of its own, instead of waiting for the batch being written and
//! then riding in the next one. A single owner's results all take the bulk
//! writer, as they did before there were two.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use plat_common::queue::execute::{self, ExecutionJob, Finished, MAX_COMPLETION_BATCH};
use plat_common::{ErrorKind, RunFailure};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Whether the result was recorded: `Ok(false)` when the lease was lost
/// first (another attempt owns the job).
pub(crate) type Written = Result<bool, Arc<sqlx::Error>>;

struct Pending {
    job: ExecutionJob,
    finished: Finished,
    written: oneshot::Sender<Written>,
}

/// The handle runs use; the writers stop when every handle is dropped,
/// after writing what they hold.
pub(crate) struct Completions {
    bulk: mpsc::UnboundedSender<Pending>,
    express: mpsc::UnboundedSender<Pending>,
    /// Results handed over and not yet written, by owner.
    unwritten: Mutex<HashMap<Uuid, usize>>,
}

impl Completions {
    pub(crate) fn start(pool: PgPool) -> Self {
        let (bulk, bulk_queue) = mpsc::unbounded_channel();
        let (express, express_queue) = mpsc::unbounded_channel();
        tokio::spawn(write_batches(pool.clone(), bulk_queue));
        tokio::spawn(write_batches(pool, express_queue));
        Self {
            bulk,
            express,
            unwritten: Mutex::default(),
        }
    }

    /// Records `finished` under the job's lease, with the next batch of
    /// its writer.
    pub(crate) async fn record(&self, job: ExecutionJob, finished: Finished) -> Written {
        let unwritten = Unwritten::count(self, job.owner_id);
        let writer = if unwritten.express {
            &self.express
        } else {
            &self.bulk
        };
        send(writer, job, finished).await
    }
}

/// One result of an owner, counted from its hand-over until it is written
/// (or the recording is dropped).
struct Unwritten<'a> {
    completions: &'a Completions,
    owner: Uuid,
    /// The owner had no other result waiting, and another owner had.
    express: bool,
}

impl<'a> Unwritten<'a> {
    fn count(completions: &'a Completions, owner: Uuid) -> Self {
        let mut unwritten = completions.unwritten.lock();
        let others_waiting = unwritten.len() > usize::from(unwritten.contains_key(&owner));
        let count = unwritten.entry(owner).or_default();
        *count += 1;
        Self {
            completions,
            owner,
            express: *count == 1 && others_waiting,
        }
    }
}

impl Drop for Unwritten<'_> {
    fn drop(&mut self) {
        let mut unwritten = self.completions.unwritten.lock();
        if let Some(count) = unwritten.get_mut(&self.owner) {
            *count -= 1;
            if *count == 0 {
                unwritten.remove(&self.owner);
            }
        }
    }
}

async fn send(
    writer: &mpsc::UnboundedSender<Pending>,
    job: ExecutionJob,
    finished: Finished,
) -> Written {
    let (written, result) = oneshot::channel();
    let pending = Pending {
        job,
        finished,
        written,
    };
    if writer.send(pending).is_err() {
        return Err(Arc::new(sqlx::Error::PoolClosed));
    }
    result
        .await
        .unwrap_or_else(|_| Err(Arc::new(sqlx::Error::PoolClosed)))
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
                result: Err(RunFailure {
                    kind: ErrorKind::InvalidOutput,
                    message: format!("the output is valid JSON but cannot be stored: {reason}"),
                }),
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
            webhook_urls: None,
        };
        execute::enqueue_batch(pool, batch).await.unwrap();
        let jobs = execute::claim(pool, "writer-test", Duration::from_secs(60), n as i64)
            .await
            .unwrap();
        assert_eq!(jobs.len(), n);
        jobs
    }

    async fn status(pool: &PgPool, id: Uuid) -> String {
        sqlx::query_scalar("select status::text from executions where id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap()
    }

    #[sqlx::test(migrator = "MIGRATOR")]
    async fn another_owners_result_is_written_while_a_batch_of_the_first_is_stuck(pool: PgPool) {
        let mut jobs = claimed(&pool, 2).await;
        jobs[1].owner_id = Uuid::new_v4();
        let (stuck, other) = (jobs[0].clone(), jobs[1].clone());
        // Holds the row the first owner's result statement must update.
        let mut lock = pool.begin().await.unwrap();
        sqlx::query("select 1 from execution_jobs where id = $1 for update")
            .bind(stuck.id)
            .execute(&mut *lock)
            .await
            .unwrap();
        let completions = Arc::new(Completions::start(pool.clone()));
        let first_owners = tokio::spawn({
            let completions = completions.clone();
            async move { completions.record(stuck, Finished::succeeded("1", 1)).await }
        });

        // With one writer the other owner's result would wait behind the
        // stuck batch until the lock is gone; the bound only keeps a
        // failure from hanging the suite.
        let written = tokio::time::timeout(Duration::from_secs(60), async {
            while !waiting_for_a_lock(&pool).await {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            completions.record(other, Finished::succeeded("2", 1)).await
        })
        .await
        .expect("the other owner's result waited for the stuck batch");

        assert!(matches!(written, Ok(true)));
        assert_eq!(status(&pool, jobs[1].id).await, "SUCCEEDED");
        assert_ne!(
            status(&pool, jobs[0].id).await,
            "SUCCEEDED",
            "held by the lock"
        );
        lock.commit().await.unwrap();
        assert!(matches!(first_owners.await.unwrap(), Ok(true)));
        assert_eq!(status(&pool, jobs[0].id).await, "SUCCEEDED");
    }

    /// Whether a statement of this test's database waits for a row lock.
    async fn waiting_for_a_lock(pool: &PgPool) -> bool {
        sqlx::query_scalar(
            "select exists (select from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock')",
        )
        .fetch_one(pool)
        .await
        .unwrap()
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
