//! Connecting to PostgreSQL and applying the schema.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

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

/// How every component's pool behaves. [`ACQUIRE_TIMEOUT`] is short on
/// purpose: when the database is down, callers fail fast (the API answers
/// 503, a worker backs off and retries its claim) rather than hang.
pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
}

/// Applies pending migrations. sqlx takes an advisory lock, so many processes
/// starting at once against one database are safe.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Whether PostgreSQL refused a value itself (SQLSTATE class 22, "data
/// exception": a `\u0000` escape or an out-of-range number in jsonb, a NUL
/// in text), as opposed to the query or the connection failing. Such an error
/// is about the data, so retrying cannot help; the server's message for it
/// names the value's problem, never anything about the host.
pub fn data_exception(error: &sqlx::Error) -> Option<&str> {
    let db = error.as_database_error()?;
    db.code()
        .is_some_and(|code| code.starts_with("22"))
        .then(|| db.message())
}
