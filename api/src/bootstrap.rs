//! The first admin. When the database has no users and the operator set
//! `PLAT_BOOTSTRAP_ADMIN_KEY`, the API creates an ADMIN (without a password)
//! whose API key is that value; with it the operator creates real users and
//! keys, and may then revoke the bootstrap key. `plat up` does this for
//! local use with a generated key it prints.

use anyhow::Context as _;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::audit::{self, Anonymous};
use crate::auth::tokens;
use crate::ApiConfig;

/// A bootstrap key must be at least this long: it is a full admin credential.
const MIN_KEY_CHARS: usize = 32;

/// Creates the bootstrap admin if there are no users yet; safe to run from
/// many API processes at once.
pub async fn run(pool: &PgPool, config: &ApiConfig) -> anyhow::Result<()> {
    // Empty counts as unset (compose passes `${PLAT_BOOTSTRAP_ADMIN_KEY:-}`).
    let Some(key) = config
        .bootstrap_admin_key
        .as_ref()
        .map(|key| key.expose())
        .filter(|key| !key.is_empty())
    else {
        return Ok(());
    };
    anyhow::ensure!(
        key.chars().count() >= MIN_KEY_CHARS,
        "PLAT_BOOTSTRAP_ADMIN_KEY must be at least {MIN_KEY_CHARS} characters (for example the output of `openssl rand -base64 32`)"
    );
    let mut tx = pool.begin().await?;
    // One bootstrap at a time; the loser then sees the winner's user.
    sqlx::query("select pg_advisory_xact_lock(hashtext('plat_bootstrap_admin'))")
        .execute(&mut *tx)
        .await?;
    let (has_users,): (bool,) = sqlx::query_as("select exists (select 1 from users)")
        .fetch_one(&mut *tx)
        .await?;
    if has_users {
        tracing::debug!("users exist; PLAT_BOOTSTRAP_ADMIN_KEY is not needed");
        return Ok(());
    }
    let (user_id, key_id) = (Uuid::now_v7(), Uuid::now_v7());
    sqlx::query("insert into users (id, email, display_name, role) values ($1, $2, 'Bootstrap admin', 'ADMIN')")
        .bind(user_id)
        .bind(&config.bootstrap_admin_email)
        .execute(&mut *tx)
        .await
        .context("creating the bootstrap admin")?;
    sqlx::query(
        "insert into api_keys (id, user_id, name, prefix, key_hash) values ($1, $2, 'bootstrap', $3, $4)",
    )
    .bind(key_id)
    .bind(user_id)
    .bind(tokens::shown_prefix(key))
    .bind(tokens::hash(key).as_slice())
    .execute(&mut *tx)
    .await?;
    audit::record_anonymous(
        &mut tx,
        Anonymous {
            email: Some(&config.bootstrap_admin_email),
            source_address: None,
        },
        "user.bootstrap",
        Some(("user", user_id.to_string())),
        json!({ "apiKeyId": key_id }),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    tx.commit().await?;
    tracing::info!(%user_id, email = %config.bootstrap_admin_email, "bootstrap admin created with PLAT_BOOTSTRAP_ADMIN_KEY");
    Ok(())
}
