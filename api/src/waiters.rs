//! Wakes `POST /functions/{id}/execute?wait=N` callers when their execution
//! finishes, through one `LISTEN plat_execution_finished` connection per API
//! process.
//!
//! A notification is only a hint: the woken caller re-reads the execution.
//! Whenever the listening connection is (re)established every waiter is
//! woken, because notifications sent while it was down are lost; so a lost
//! notification can never leave a caller waiting for a result that exists.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use plat_common::notify;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Debug, Default)]
pub struct Waiters {
    by_execution: Mutex<HashMap<Uuid, Arc<Notify>>>,
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
        let notify = self.lock().entry(id).or_default().clone();
        Waiter { waiters: self, id, notify }
    }

    fn wake(&self, id: Uuid) {
        if let Some(notify) = self.lock().get(&id) {
            notify.notify_one();
        }
    }

    fn wake_all(&self) {
        for notify in self.lock().values() {
            notify.notify_one();
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, Arc<Notify>>> {
        // Plain inserts and removals: a panic cannot leave the map inconsistent.
        self.by_execution.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
        self.waiters.lock().remove(&self.id);
    }
}

/// Listens until `shutdown`, reconnecting with backoff when the connection drops.
pub async fn listen(pool: PgPool, waiters: Arc<Waiters>, shutdown: CancellationToken) {
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let connected = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(notify::EXECUTION_FINISHED).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            _ = shutdown.cancelled() => return,
            connected = connected => match connected {
                Ok(listener) => listener,
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(%error, "LISTEN for finished executions failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(failures.min(5)))).await;
                    continue;
                }
            },
        };
        failures = 0;
        waiters.wake_all();
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => return,
                received = listener.try_recv() => received,
            };
            match received {
                Ok(Some(notification)) => {
                    if let Ok(id) = notification.payload().parse() {
                        waiters.wake(id);
                    }
                }
                // The connection was lost; the next `try_recv` reconnects, and
                // anything sent meanwhile is gone: let every waiter re-check.
                Ok(None) => waiters.wake_all(),
                Err(error) => {
                    tracing::warn!(%error, "LISTEN connection broke; reconnecting");
                    waiters.wake_all();
                    break;
                }
            }
        }
    }
}
