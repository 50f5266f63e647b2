//! Connecting to PostgreSQL and applying the schema.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};

/// The migrations in `migrations/`, embedded in every binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// How long a caller waits for a connection before giving up.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// Opens a pool with [`pool_options`].
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    pool_options(max_connections)
        .connect_with(options.application_name("plat"))
        .await
}

/// A connection idle for at least this long is pinged before it is handed
/// out; one used more recently is handed out as it is.
pub const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// How every component's pool behaves. [`ACQUIRE_TIMEOUT`] is short on
/// purpose: when the database is down, callers fail fast (the API answers
/// 503, a worker backs off and retries its claim) rather than hang.
///
/// sqlx's own check before handing out a connection pings it every time: a
/// round trip to PostgreSQL in front of every query, three on a waiting
/// execute's path and one before every claim and result statement. Only a
/// connection that sat idle is likely to have been cut (a restart, a
/// timeout, the network), so only those are pinged ([`PING_IF_IDLE_FOR`]).
/// A busy connection that breaks fails its next query, as it would between
/// a ping and the query anyway, and sqlx discards it when it comes back
/// (it pings every connection returned to the pool, off the caller's path).
///
/// Every connection turns PostgreSQL's JIT compilation off. It compiles a
/// statement with LLVM whenever the planner's *estimate* of its cost passes
/// `jit_above_cost`, and the estimates of Plat's short statements can: the
/// enqueue's CTEs over a table not yet analyzed were estimated at 200,000,
/// and a 0.7 ms enqueue spent 49 ms compiling, on every call (seen in
/// `plat-bench`'s fairness scenario). None of Plat's statements runs long
/// enough to win that back.
pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                // Not `query!`: a setting has no parameters or columns to
                // check, and sent as a simple query it is not also prepared
                // on every new connection.
                sqlx::Executor::execute(&mut *conn, "set jit = off").await?;
                Ok(())
            })
        })
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    // An error discards the connection and tries another.
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// Applies pending migrations. sqlx takes an advisory lock, so many processes
/// starting at once against one database are safe.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Whether PostgreSQL refused a value itself, as opposed to the query or the
/// connection failing: SQLSTATE class 22, "data exception" (a `\u0000`
/// escape or an out-of-range number in jsonb, a NUL in text), or class 54,
/// "program limit exceeded" (a jsonb value nested so deep that its parser
/// runs out of stack: 54001). Such an error is about the data, so retrying
/// cannot help; the server's message for it names the value's problem,
/// never anything about the host.
pub fn data_exception(error: &sqlx::Error) -> Option<&str> {
    let db = error.as_database_error()?;
    db.code()
        .is_some_and(|code| code.starts_with("22") || code.starts_with("54"))
        .then(|| db.message())
}
