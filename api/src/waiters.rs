//! Wakes `POST /functions/{id}/execute?wait=N` callers when their execution
//! finishes, through one `LISTEN plat_execution_finished` connection per API
//! process (which also hints the live streams, `crate::events`).
//!
//! A notification is only a hint: the woken caller re-reads the execution.
//! Whenever the listening connection is (re)established every waiter is
//! woken, because notifications sent while it was down are lost; so a lost
//! notification can never leave a caller waiting for a result that exists.

use parking_lot::Mutex;
use plat_common::notify::{self, Heard};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::events::Hub;

/// Callers waiting per execution. Several may wait on one execution (the
/// same `Idempotency-Key` sent twice, a cancel next to an execute), each with
/// its own `Notify`, so each gets its own wake-up.
#[derive(Debug, Default)]
pub struct Waiters {
    by_execution: Mutex<HashMap<Uuid, Vec<Arc<Notify>>>>,
}

/// A registration; dropping it unregisters.
pub struct Waiter<'a> {
    waiters: &'a Waiters,
    id: Uuid,
    notify: Arc<Notify>,
}

impl Waiters {
    /// Registers interest in `id`. Register before the execution can finish
    /// (before committing its job): `Notify` keeps a wake-up that arrives
    /// before the caller starts waiting.
    pub fn register(&self, id: Uuid) -> Waiter<'_> {
        let notify = Arc::new(Notify::new());
        self.by_execution
            .lock()
            .entry(id)
            .or_default()
            .push(notify.clone());
        Waiter {
            waiters: self,
            id,
            notify,
        }
    }

    /// Whether no caller waits for any execution.
    pub fn is_empty(&self) -> bool {
        self.by_execution.lock().is_empty()
    }

    fn wake(&self, ids: impl IntoIterator<Item = Uuid>) {
        let by_execution = self.by_execution.lock();
        for id in ids {
            for notify in by_execution.get(&id).into_iter().flatten() {
                notify.notify_one();
            }
        }
    }

    fn wake_all(&self) {
        for notify in self.by_execution.lock().values().flatten() {
            notify.notify_one();
        }
    }
}

impl Waiter<'_> {
    /// Resolves at the next wake-up (or at once if one arrived already).
    pub async fn woken(&self) {
        self.notify.notified().await;
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut by_execution = self.waiters.by_execution.lock();
        if let Some(list) = by_execution.get_mut(&self.id) {
            list.retain(|notify| !Arc::ptr_eq(notify, &self.notify));
            if list.is_empty() {
                by_execution.remove(&self.id);
            }
        }
    }
}

/// Listens until `shutdown`; after any gap in listening, every waiter re-checks.
/// The same connection hints the live streams (`events`) that executions
/// finished or builds ended: one LISTEN connection per process, whatever
/// the number of streams.
pub async fn listen(
    pool: PgPool,
    waiters: Arc<Waiters>,
    events: Arc<Hub>,
    shutdown: CancellationToken,
) {
    notify::listen_all(
        pool,
        &[notify::EXECUTION_FINISHED, notify::FUNCTION_VERSION_BUILT],
        shutdown,
        |channel, heard| match heard {
            Heard::Notification(payload) if channel == notify::EXECUTION_FINISHED => {
                // One notification names a whole batch of finished executions.
                waiters.wake(payload.split(',').filter_map(|id| id.parse().ok()));
                events.hint();
            }
            Heard::Notification(_) => events.hint(),
            Heard::MaybeMissed => {
                waiters.wake_all();
                events.hint();
            }
        },
    )
    .await;
}
