//! `LISTEN`/`NOTIFY` channel names, and the one listening loop every
//! component uses. A notification is only ever a hint that something
//! changed; the listener re-reads the tables (payloads are advisory), so a
//! lost notification costs latency, never correctness.

use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// A compile job became claimable.
pub const COMPILE_JOBS: &str = "plat_compile_jobs";
/// An execution job became claimable.
pub const EXECUTION_JOBS: &str = "plat_execution_jobs";
/// The payload of an [`EXECUTION_JOBS`] notification for runs that came
/// back to the queue with their old fairness stamps (admitted after waiting
/// for a concurrency slot, given back at shutdown, rescued): they may be
/// behind where executors start their scans, so the next claim starts from
/// the beginning (`plat_worker_executor`'s `ScanStart`).
pub const OLD_STAMPS: &str = "old-stamps";
/// Executions reached a terminal state; the payload is their ids, comma
/// separated (results are written in batches, one notification per batch).
pub const EXECUTION_FINISHED: &str = "plat_execution_finished";
/// A function version finished building (READY or FAILED); the payload is
/// the function id.
pub const FUNCTION_VERSION_BUILT: &str = "plat_function_version_built";
/// A running execution was asked to stop; the payload is its id.
pub const EXECUTION_CANCEL: &str = "plat_execution_cancel";
/// Access changed (a key or session ended, a user or group changed): API
/// processes drop their cached credentials.
pub const AUTH_CHANGED: &str = "plat_auth_changed";

/// What the listening loop reports.
#[derive(Debug, Clone, Copy)]
pub enum Heard<'a> {
    /// A notification, with its payload.
    Notification(&'a str),
    /// The connection was (re)established after a gap in which notifications
    /// may have been lost: whoever relies on them should re-check the tables.
    MaybeMissed,
}

/// Listens on `channel` until `shutdown`, calling `on_heard` for each
/// notification and after every (re)connection. Reconnects with backoff
/// when the database goes away, never giving up.
pub async fn listen(
    pool: PgPool,
    channel: &'static str,
    shutdown: CancellationToken,
    mut on_heard: impl FnMut(Heard<'_>),
) {
    listen_all(pool, &[channel], shutdown, |_, heard| on_heard(heard)).await;
}

/// [`listen`] on several channels through one connection: `on_heard` gets
/// the channel of each notification (and `""` with [`Heard::MaybeMissed`],
/// which concerns them all).
pub async fn listen_all(
    pool: PgPool,
    channels: &[&'static str],
    shutdown: CancellationToken,
    mut on_heard: impl FnMut(&str, Heard<'_>),
) {
    let mut failures = 0u32;
    let channel = channels.join(",");
    while !shutdown.is_cancelled() {
        let connected = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen_all(channels.iter().copied()).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            _ = shutdown.cancelled() => return,
            connected = connected => match connected {
                Ok(listener) => listener,
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(%error, channel = %channel, "LISTEN failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(failures.min(5)))) => continue,
                    }
                }
            },
        };
        failures = 0;
        on_heard("", Heard::MaybeMissed);
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => return,
                received = listener.try_recv() => received,
            };
            match received {
                Ok(Some(notification)) => on_heard(
                    notification.channel(),
                    Heard::Notification(notification.payload()),
                ),
                // The connection dropped; the next `try_recv` reconnects, and
                // whatever was sent meanwhile is gone.
                Ok(None) => on_heard("", Heard::MaybeMissed),
                Err(error) => {
                    tracing::warn!(%error, channel = %channel, "LISTEN connection broke; reconnecting");
                    on_heard("", Heard::MaybeMissed);
                    break;
                }
            }
        }
    }
}

/// Sends `NOTIFY channel` (no payload) on behalf of many callers, after
/// their commit and in a statement of its own: a burst of calls becomes one
/// or two notifications.
///
/// Why not `pg_notify` in the writing transaction: PostgreSQL serialises
/// every committing transaction that notified (a database-wide lock, held
/// through the commit's WAL flush), so enqueues through many connections at
/// once would wait for each other's disk flush. A notification without
/// writes has no WAL to flush and holds that lock for microseconds.
#[derive(Debug, Clone)]
pub struct Hint {
    pending: tokio::sync::mpsc::Sender<()>,
}

impl Hint {
    /// Starts the sending task; it ends when every clone is dropped.
    pub fn start(pool: PgPool, channel: &'static str) -> Self {
        // One slot: a call while a notification is pending or being sent
        // only needs one more after it, not one each.
        let (pending, mut calls) = tokio::sync::mpsc::channel::<()>(1);
        tokio::spawn(async move {
            while calls.recv().await.is_some() {
                if let Err(error) = sqlx::query!("select pg_notify($1, '')", channel)
                    .execute(&pool)
                    .await
                {
                    // Listeners also poll, so a lost hint only delays.
                    tracing::warn!(%error, channel, "could not notify");
                }
            }
        });
        Self { pending }
    }

    /// Asks for a notification soon (never waits).
    pub fn send(&self) {
        let _ = self.pending.try_send(());
    }
}
