//! Sealing at rest, in the background of every API process (one at a time
//! across processes, by advisory lock; it never delays startup nor
//! requests):
//!
//! 1. every function version from before sealed sources still holds its
//!    source in plaintext (`function_versions.source`): it is sealed into
//!    `source_sealed` and the plaintext cleared, found by the partial index
//!    `function_versions_unsealed`;
//! 2. during a key rotation (`PLAT_SECRETS_PREVIOUS_KEYS` set), every sealed
//!    value not sealed with the current key is re-sealed with it:
//!    environments' variables, webhook signing secrets, sources and
//!    lockfiles. When none is left the log says so: the previous keys can
//!    then be removed (docs/security.md, "Key rotation").
//!
//! Work goes in batches, each written in its own short transaction, and each
//! update only applies if the value is still the one read (a user may save
//! an environment, a compiler a lockfile, meanwhile): a lost race leaves
//! the newer value, sealed with the current key by whoever wrote it.

use std::time::Duration;

use plat_common::secrets::{SecretsKey, VersionPart, FORMAT_V2, KEY_ID_BYTES};
use sqlx::{Connection as _, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Rows read and written per transaction.
const BATCH: i64 = 200;
/// Session advisory lock key: one sealer at a time.
const LOCK_KEY: i64 = 0x706c_6174_7365_616c; // "platseal"
/// How often a process waiting for another one's lock tries again.
const LOCK_RETRY: Duration = Duration::from_secs(10);
/// How often a pass runs again while previous keys are configured: during a
/// rolling deployment, processes still on the old configuration may seal
/// with the old key after this process's first pass.
const ROTATION_PASS_EVERY: Duration = Duration::from_secs(600);

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Plaintext sources sealed.
    pub sources_sealed: u64,
    /// Values re-sealed with the current key.
    pub resealed: u64,
    /// Values no configured key opens (sealed with a key that was dropped
    /// too early, or altered); left as they are.
    pub unopenable: u64,
}

/// Seals plaintext sources and, while previous keys are configured,
/// re-seals what they sealed; until `shutdown`.
pub async fn run(pool: PgPool, key: SecretsKey, shutdown: CancellationToken) {
    loop {
        let pass = tokio::select! {
            _ = shutdown.cancelled() => return,
            pass = locked_pass(&pool, &key) => pass,
        };
        let done = match pass {
            Ok(pass) => {
                report(&key, pass);
                // Without a rotation, one pass at start is all there is to do.
                !key.has_previous()
            }
            Err(error) => {
                tracing::warn!(%error, "sealing values at rest failed; trying again later");
                false
            }
        };
        if done {
            return;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(ROTATION_PASS_EVERY) => {}
        }
    }
}

fn report(key: &SecretsKey, pass: Pass) {
    ::metrics::gauge!("plat_sealing_unopenable_values").set(pass.unopenable as f64);
    if pass.sources_sealed > 0 {
        tracing::info!(
            sources = pass.sources_sealed,
            "sealed the plaintext sources of older function versions"
        );
    }
    if !key.has_previous() {
        return;
    }
    let complete = pass.unopenable == 0;
    ::metrics::gauge!("plat_sealing_rotation_complete").set(if complete { 1.0 } else { 0.0 });
    if complete {
        tracing::info!(
            resealed = pass.resealed,
            "key rotation complete: every value at rest is sealed with PLAT_SECRETS_KEY; once every \
             process runs with this key, PLAT_SECRETS_PREVIOUS_KEYS can be removed"
        );
    } else {
        tracing::error!(
            resealed = pass.resealed,
            unopenable = pass.unopenable,
            "key rotation incomplete: some values open with none of the configured keys (logged \
             above); keep PLAT_SECRETS_PREVIOUS_KEYS until they are dealt with"
        );
    }
}

/// One pass under the advisory lock, waiting for it while another process
/// holds it. The lock lives on a connection of its own, closed at the end,
/// so a pass cut short can never leave it held.
async fn locked_pass(pool: &PgPool, key: &SecretsKey) -> Result<Pass, sqlx::Error> {
    let mut conn = pool.acquire().await?.detach();
    loop {
        let mine: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
            .bind(LOCK_KEY)
            .fetch_one(&mut conn)
            .await?;
        if mine {
            break;
        }
        tracing::debug!("another API process is sealing values at rest; waiting");
        tokio::time::sleep(LOCK_RETRY).await;
    }
    let pass = self::pass(&mut conn, key).await;
    // Closing the connection releases the lock whatever happened.
    let _ = conn.close().await;
    pass
}

/// Seals the plaintext sources, then (previous keys configured) re-seals
/// what the current key did not seal.
pub async fn pass(conn: &mut PgConnection, key: &SecretsKey) -> Result<Pass, sqlx::Error> {
    let mut pass = Pass {
        sources_sealed: seal_plaintext_sources(conn, key).await?,
        ..Pass::default()
    };
    if key.has_previous() {
        for column in [Column::Environments, Column::WebhookSecrets] {
            reseal_by_id(conn, key, column, &mut pass).await?;
        }
        for part in [VersionPart::Source, VersionPart::Lockfile] {
            reseal_versions(conn, key, part, &mut pass).await?;
        }
    }
    Ok(pass)
}

/// Seals every plaintext `source` left by rows from before sealed sources.
async fn seal_plaintext_sources(
    conn: &mut PgConnection,
    key: &SecretsKey,
) -> Result<u64, sqlx::Error> {
    let (mut sealed, mut after) = (0, (Uuid::nil(), i32::MIN));
    loop {
        let rows = sqlx::query!(
            r#"
            select function_id, version, source as "source!"
            from function_versions
            where source is not null and (function_id, version) > ($1, $2)
            order by function_id, version
            limit $3
            "#,
            after.0,
            after.1,
            BATCH,
        )
        .fetch_all(&mut *conn)
        .await?;
        let Some(last) = rows.last() else {
            return Ok(sealed);
        };
        after = (last.function_id, last.version);
        let (mut tx, mut in_batch) = (conn.begin().await?, 0);
        for row in rows {
            let owner = VersionPart::Source.owner(row.function_id, row.version);
            let sealed_source = key.seal_bytes(owner, row.source.as_bytes());
            let updated = sqlx::query!(
                "update function_versions set source_sealed = $3, source = null
                 where function_id = $1 and version = $2 and source is not null",
                row.function_id,
                row.version,
                sealed_source,
            )
            .execute(&mut *tx)
            .await?;
            in_batch += updated.rows_affected();
        }
        tx.commit().await?;
        sealed += in_batch;
        ::metrics::counter!("plat_sealing_values_total", "value" => "plaintext_source")
            .increment(in_batch);
    }
}

/// A sealed column of a table keyed by `id`, which is also the associated
/// data it is sealed with.
#[derive(Debug, Clone, Copy)]
enum Column {
    Environments,
    WebhookSecrets,
}

impl Column {
    /// (table, column, metric label).
    fn names(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Environments => ("environments", "variables", "environment"),
            Self::WebhookSecrets => ("functions", "webhook_secret", "webhook_secret"),
        }
    }
}

/// The condition "`column` is set and not sealed with the key whose id is
/// `$key_id`" (format 1 has no key id, so it is re-sealed too). Only in SQL
/// built from the constant names above: one statement over several columns
/// cannot be a checked query.
fn not_current(column: &str, key_id: &str) -> String {
    format!(
        "{column} is not null and (get_byte({column}, 0) <> {FORMAT_V2} \
         or substring({column} from 2 for {KEY_ID_BYTES}) <> {key_id})"
    )
}

async fn reseal_by_id(
    conn: &mut PgConnection,
    key: &SecretsKey,
    column: Column,
    pass: &mut Pass,
) -> Result<(), sqlx::Error> {
    let (table, name, label) = column.names();
    let select = format!(
        "select id, {name} from {table} where {} and id > $2 order by id limit $3",
        not_current(name, "$1"),
    );
    let update = format!("update {table} set {name} = $2 where id = $1 and {name} = $3");
    let mut after = Uuid::nil();
    loop {
        let rows: Vec<(Uuid, Vec<u8>)> = sqlx::query_as(&select)
            .bind(&key.current_id()[..])
            .bind(after)
            .bind(BATCH)
            .fetch_all(&mut *conn)
            .await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = last.0;
        let mut tx = conn.begin().await?;
        for (id, stored) in rows {
            let Ok(resealed) = key.reseal_bytes(id, &stored) else {
                tracing::warn!(table, column = name, %id, "no configured secrets key opens this value");
                pass.unopenable += 1;
                continue;
            };
            let updated = sqlx::query(&update)
                .bind(id)
                .bind(resealed)
                .bind(stored)
                .execute(&mut *tx)
                .await?;
            pass.resealed += updated.rows_affected();
            ::metrics::counter!("plat_sealing_values_total", "value" => label)
                .increment(updated.rows_affected());
        }
        tx.commit().await?;
    }
}

async fn reseal_versions(
    conn: &mut PgConnection,
    key: &SecretsKey,
    part: VersionPart,
    pass: &mut Pass,
) -> Result<(), sqlx::Error> {
    let (name, label) = match part {
        VersionPart::Source => ("source_sealed", "source"),
        VersionPart::Lockfile => ("lockfile_sealed", "lockfile"),
    };
    let select = format!(
        "select function_id, version, {name} from function_versions
         where {} and (function_id, version) > ($2, $3)
         order by function_id, version limit $4",
        not_current(name, "$1"),
    );
    let update = format!(
        "update function_versions set {name} = $3
         where function_id = $1 and version = $2 and {name} = $4"
    );
    let mut after = (Uuid::nil(), i32::MIN);
    loop {
        let rows: Vec<(Uuid, i32, Vec<u8>)> = sqlx::query_as(&select)
            .bind(&key.current_id()[..])
            .bind(after.0)
            .bind(after.1)
            .bind(BATCH)
            .fetch_all(&mut *conn)
            .await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = (last.0, last.1);
        let mut tx = conn.begin().await?;
        for (function_id, version, stored) in rows {
            let owner = part.owner(function_id, version);
            let Ok(resealed) = key.reseal_bytes(owner, &stored) else {
                tracing::warn!(%function_id, version, column = name, "no configured secrets key opens this value");
                pass.unopenable += 1;
                continue;
            };
            let updated = sqlx::query(&update)
                .bind(function_id)
                .bind(version)
                .bind(resealed)
                .bind(stored)
                .execute(&mut *tx)
                .await?;
            pass.resealed += updated.rows_affected();
            ::metrics::counter!("plat_sealing_values_total", "value" => label)
                .increment(updated.rows_affected());
        }
        tx.commit().await?;
    }
}
