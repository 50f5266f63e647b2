//! The live streams' fan-out: one watcher per API process reads what the
//! subscribed streams need, and hands each stream its changes through a
//! small bounded buffer.
//!
//! Claims write only the job row and notify nobody, so a run becoming
//! RUNNING, or a function getting a new execution, is seen by re-reading:
//! while (and only while) this process has subscribers, the watcher reads
//! the watched executions, the new executions of the watched functions and
//! their unfinished versions, in three short statements through the pool,
//! a few times per second and at once on a hint (`plat_execution_finished`,
//! `plat_function_version_built`). That costs the same for one subscriber
//! or a thousand, and nothing on the execute path: with no subscriber the
//! watcher sleeps. No stream ever holds a database connection.
//!
//! A stream that reads slower than changes come (a slow client: the
//! response body stops being polled) finds its buffer full; the watcher
//! then drops that stream's changes and marks it lagged, and the stream
//! tells its client to resync instead of growing memory.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use plat_common::{ExecutionStatus, Trigger, VersionStatus};
use serde::{Deserialize, Serialize};
use sqlx::types::Json as SqlJson;
use sqlx::PgPool;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Changes one stream may have waiting before it counts as lagging.
const BUFFER: usize = 64;
/// How often the watcher re-reads while someone subscribes: what a RUNNING
/// status or a new execution waits at most to be seen.
const POLL: Duration = Duration::from_millis(400);
/// The shortest gap between two reads, however many hints arrive.
const MIN_GAP: Duration = Duration::from_millis(100);
/// New executions are those created since the previous read, less this
/// margin: an enqueue commits a little after its `now()`, so a row may
/// become visible after a read that saw younger ones.
const LOOKBACK: Duration = Duration::from_secs(2);
/// The most new executions one read takes; more in one interval and the
/// functions' streams are told to resync.
const NEW_LIMIT: i64 = 1000;
/// The most unfinished executions of watched functions followed (status
/// changes) per process, so the id list of a read stays bounded.
const MAX_FOLLOWED: usize = 5000;

/// An execution without its input, output and logs: the `status` and
/// `execution` events of the streams.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionSummary {
    pub id: Uuid,
    pub function_id: Uuid,
    pub function_version: i32,
    pub status: ExecutionStatus,
    pub attempts: i32,
    pub duration_ms: Option<i32>,
    /// `{type, message}` once it failed, as in the execution record.
    #[schema(value_type = Option<Object>)]
    pub error: Option<SummaryError>,
    pub worker_id: Option<String>,
    /// Who started it.
    pub created_by: Option<Uuid>,
    pub trigger: Trigger,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// How an execution failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryError {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}

/// A version's build state: the `version` event of a function's stream.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionState {
    pub function_id: Uuid,
    pub version: i32,
    pub status: VersionStatus,
    /// Set once the build FAILED.
    pub compile_error: Option<String>,
}

/// What the watcher hands a stream.
#[derive(Debug, Clone)]
pub enum Change {
    /// An execution appeared or changed (status, attempt).
    Execution(Arc<ExecutionSummary>),
    /// A version appeared or its build moved on.
    Version(Arc<VersionState>),
    /// More changed than the watcher followed: re-read what you show.
    Resync,
}

/// What a stream follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Execution(Uuid),
    Function(Uuid),
}

/// The subscribers of this process, and the wake-ups of its watcher.
#[derive(Debug, Default)]
pub struct Hub {
    subscribers: Mutex<Subscribers>,
    /// A hint that something changed: read now rather than at the next poll.
    hint: Notify,
    /// The first subscriber arrived: the idle watcher starts reading.
    arrived: Notify,
    next_id: AtomicU64,
}

#[derive(Debug, Default)]
struct Subscribers {
    executions: HashMap<Uuid, Vec<Subscriber>>,
    functions: HashMap<Uuid, Vec<Subscriber>>,
}

#[derive(Debug)]
struct Subscriber {
    id: u64,
    changes: mpsc::Sender<Change>,
    lagged: Arc<AtomicBool>,
}

/// A stream's registration; dropping it unregisters.
pub struct Subscription {
    hub: Arc<Hub>,
    topic: Topic,
    id: u64,
    changes: mpsc::Receiver<Change>,
    lagged: Arc<AtomicBool>,
}

impl Hub {
    /// Registers a stream. Register before reading the current state, so
    /// that nothing changes unseen between the read and the first change.
    pub fn subscribe(self: &Arc<Self>, topic: Topic) -> Subscription {
        let (sender, changes) = mpsc::channel(BUFFER);
        let lagged = Arc::new(AtomicBool::new(false));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let subscriber = Subscriber {
            id,
            changes: sender,
            lagged: lagged.clone(),
        };
        let mut subscribers = self.subscribers.lock();
        let map = match topic {
            Topic::Execution(key) => subscribers.executions.entry(key),
            Topic::Function(key) => subscribers.functions.entry(key),
        };
        map.or_default().push(subscriber);
        drop(subscribers);
        self.arrived.notify_one();
        Subscription {
            hub: self.clone(),
            topic,
            id,
            changes,
            lagged,
        }
    }

    /// Something may have changed (a notification, or a gap in listening).
    pub fn hint(&self) {
        self.hint.notify_one();
    }

    fn is_idle(&self) -> bool {
        let subscribers = self.subscribers.lock();
        subscribers.executions.is_empty() && subscribers.functions.is_empty()
    }

    /// The executions and functions watched now.
    fn topics(&self) -> (Vec<Uuid>, Vec<Uuid>) {
        let subscribers = self.subscribers.lock();
        (
            subscribers.executions.keys().copied().collect(),
            subscribers.functions.keys().copied().collect(),
        )
    }

    /// Hands `change` to the subscribers of `topic`, never waiting: a full
    /// buffer marks its stream lagged instead.
    fn publish(&self, topic: Topic, change: &Change) {
        let subscribers = self.subscribers.lock();
        let list = match topic {
            Topic::Execution(key) => subscribers.executions.get(&key),
            Topic::Function(key) => subscribers.functions.get(&key),
        };
        for subscriber in list.into_iter().flatten() {
            if subscriber.changes.try_send(change.clone()).is_err() {
                subscriber.lagged.store(true, Ordering::Relaxed);
            }
        }
    }

    fn publish_to_functions(&self, change: &Change) {
        let functions: Vec<Uuid> = self.subscribers.lock().functions.keys().copied().collect();
        for function in functions {
            self.publish(Topic::Function(function), change);
        }
    }
}

impl Subscription {
    /// The next change (`None` only if the hub is gone).
    pub async fn next(&mut self) -> Option<Change> {
        self.changes.recv().await
    }

    /// Whether changes were dropped since the last call because this
    /// stream's buffer was full.
    pub fn take_lagged(&self) -> bool {
        self.lagged.swap(false, Ordering::Relaxed)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subscribers = self.hub.subscribers.lock();
        let (map, key) = match self.topic {
            Topic::Execution(key) => (&mut subscribers.executions, key),
            Topic::Function(key) => (&mut subscribers.functions, key),
        };
        if let Some(list) = map.get_mut(&key) {
            list.retain(|subscriber| subscriber.id != self.id);
            if list.is_empty() {
                map.remove(&key);
            }
        }
    }
}

/// Reads and publishes changes while anyone subscribes, until `shutdown`.
pub async fn watch(pool: PgPool, hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut seen = Seen::default();
    loop {
        if hub.is_idle() {
            // Forget everything: the next subscriber reads the current state
            // itself, and the watcher starts over from the next read.
            seen = Seen::default();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = hub.arrived.notified() => continue,
            }
        }
        if let Err(error) = seen.read(&pool, &hub).await {
            // The next read catches up; the streams wait a little longer.
            tracing::warn!(%error, "reading the live streams' changes failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(MIN_GAP) => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = hub.hint.notified() => {}
            _ = hub.arrived.notified() => {}
            _ = tokio::time::sleep(POLL - MIN_GAP) => {}
        }
    }
}

/// What the watcher last saw, to publish only what changed.
#[derive(Debug, Default)]
struct Seen {
    executions: HashMap<Uuid, SeenExecution>,
    versions: HashMap<(Uuid, i32), (VersionStatus, DateTime<Utc>)>,
    /// The database's clock at the previous read.
    previous_read: Option<DateTime<Utc>>,
}

#[derive(Debug)]
struct SeenExecution {
    function_id: Uuid,
    status: ExecutionStatus,
    attempts: i32,
    created_at: DateTime<Utc>,
}

struct ExecutionRow {
    id: Uuid,
    function_id: Uuid,
    function_version: i32,
    status: ExecutionStatus,
    attempts: i32,
    duration_ms: Option<i32>,
    error_type: Option<String>,
    error_message: Option<String>,
    worker_id: Option<String>,
    created_by: Option<Uuid>,
    trigger: Option<SqlJson<Trigger>>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

impl From<ExecutionRow> for ExecutionSummary {
    fn from(row: ExecutionRow) -> Self {
        ExecutionSummary {
            id: row.id,
            function_id: row.function_id,
            function_version: row.function_version,
            status: row.status,
            attempts: row.attempts,
            duration_ms: row.duration_ms,
            error: row.error_type.map(|kind| SummaryError {
                kind,
                message: row.error_message.unwrap_or_default(),
            }),
            worker_id: row.worker_id,
            created_by: row.created_by,
            // A null trigger is a call of the API (as `GET` shows it).
            trigger: row.trigger.map_or(Trigger::Api, |trigger| trigger.0),
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
        }
    }
}

impl Seen {
    async fn read(&mut self, pool: &PgPool, hub: &Hub) -> sqlx::Result<()> {
        let (watched_executions, watched_functions) = hub.topics();
        let now = sqlx::query_scalar!(r#"select now() as "now!""#)
            .fetch_one(pool)
            .await?;
        let lookback = chrono::Duration::from_std(LOOKBACK).expect("a small duration");
        let since = self.previous_read.unwrap_or(now) - lookback;
        self.read_executions(pool, hub, &watched_executions, &watched_functions, since)
            .await?;
        if !watched_functions.is_empty() {
            self.read_versions(pool, hub, &watched_functions, since)
                .await?;
        }
        self.forget(&watched_executions, &watched_functions, since);
        self.previous_read = Some(now);
        Ok(())
    }

    /// The watched executions, the unfinished ones already seen of watched
    /// functions, and the watched functions' executions created since `since`.
    async fn read_executions(
        &mut self,
        pool: &PgPool,
        hub: &Hub,
        watched_executions: &[Uuid],
        watched_functions: &[Uuid],
        since: DateTime<Utc>,
    ) -> sqlx::Result<()> {
        let mut followed: Vec<Uuid> = watched_executions.to_vec();
        followed.extend(
            self.executions
                .iter()
                .filter(|(_, seen)| !seen.status.is_finished())
                .map(|(id, _)| *id),
        );
        // The running state lives on the job while it is claimed (see
        // `executions::SELECT_EXECUTION`).
        let rows = sqlx::query_as!(
            ExecutionRow,
            r#"
            with picked as (
                select id from executions where id = any($1)
                union
                (select id from executions
                 where function_id = any($2) and created_at >= $3
                 order by created_at, id
                 limit $4)
            )
            select e.id, e.function_id, e.function_version,
                   case when j.state = 'running' then 'RUNNING' else e.status end
                       as "status!: ExecutionStatus",
                   coalesce(j.attempt, e.attempts) as "attempts!",
                   e.duration_ms, e.error_type, e.error_message,
                   coalesce(j.worker_id, e.worker_id) as worker_id,
                   e.created_by, e.trigger as "trigger: SqlJson<Trigger>", e.created_at,
                   coalesce(j.started_at, e.started_at) as started_at, e.finished_at
            from picked p
            join executions e on e.id = p.id
            left join execution_jobs j on j.id = e.id
            order by e.created_at, e.id
            "#,
            &followed,
            watched_functions,
            since,
            NEW_LIMIT,
        )
        .fetch_all(pool)
        .await?;
        let watched_functions: HashSet<Uuid> = watched_functions.iter().copied().collect();
        let mut new_ones = 0;
        for row in rows {
            let summary = ExecutionSummary::from(row);
            let previous = self.executions.get(&summary.id);
            let changed = previous.is_none_or(|seen| {
                (seen.status, seen.attempts) != (summary.status, summary.attempts)
            });
            if previous.is_none() && summary.created_at >= since {
                new_ones += 1;
            }
            let follow = previous.is_some() || self.executions.len() < MAX_FOLLOWED;
            if follow {
                self.executions.insert(
                    summary.id,
                    SeenExecution {
                        function_id: summary.function_id,
                        status: summary.status,
                        attempts: summary.attempts,
                        created_at: summary.created_at,
                    },
                );
            }
            if changed {
                let (id, function_id) = (summary.id, summary.function_id);
                let change = Change::Execution(Arc::new(summary));
                hub.publish(Topic::Execution(id), &change);
                if watched_functions.contains(&function_id) {
                    hub.publish(Topic::Function(function_id), &change);
                }
            }
        }
        if new_ones >= NEW_LIMIT || self.executions.len() >= MAX_FOLLOWED {
            hub.publish_to_functions(&Change::Resync);
        }
        Ok(())
    }

    /// The watched functions' versions still building, and those changed
    /// since `since` (a build that ended, a new version).
    async fn read_versions(
        &mut self,
        pool: &PgPool,
        hub: &Hub,
        watched_functions: &[Uuid],
        since: DateTime<Utc>,
    ) -> sqlx::Result<()> {
        let rows = sqlx::query!(
            r#"
            select function_id, version, status as "status: VersionStatus", compile_error,
                   updated_at
            from function_versions
            where function_id = any($1)
              and (status in ('PENDING', 'COMPILING') or updated_at >= $2)
            order by function_id, version
            "#,
            watched_functions,
            since,
        )
        .fetch_all(pool)
        .await?;
        for row in rows {
            let key = (row.function_id, row.version);
            let previous = self.versions.insert(key, (row.status, row.updated_at));
            if previous.map(|(status, _)| status) != Some(row.status) {
                let version = VersionState {
                    function_id: row.function_id,
                    version: row.version,
                    status: row.status,
                    compile_error: row.compile_error,
                };
                hub.publish(
                    Topic::Function(row.function_id),
                    &Change::Version(Arc::new(version)),
                );
            }
        }
        Ok(())
    }

    /// Drops what no read will return again, or nobody watches.
    fn forget(
        &mut self,
        watched_executions: &[Uuid],
        watched_functions: &[Uuid],
        since: DateTime<Utc>,
    ) {
        let watched_executions: HashSet<&Uuid> = watched_executions.iter().collect();
        let watched_functions: HashSet<&Uuid> = watched_functions.iter().collect();
        self.executions.retain(|id, seen| {
            watched_executions.contains(id)
                || (watched_functions.contains(&seen.function_id)
                    && (!seen.status.is_finished() || seen.created_at >= since))
        });
        // A built version comes back only when updated again; its
        // status is then published again (harmless: the same state).
        self.versions.retain(|(function, _), (status, updated_at)| {
            watched_functions.contains(function) && (!status.is_built() || *updated_at >= since)
        });
    }
}
