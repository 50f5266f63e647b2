//! The first admin. When the database has no users and the operator set
//! `PLAT_BOOTSTRAP_ADMIN_KEY`, the API creates an ADMIN (without a password)
//! whose API key is that value; with it the operator creates real users and
//! keys, and may then revoke the bootstrap key. With
//! `PLAT_BOOTSTRAP_ADMIN_PASSWORD` that admin can also sign in to the
//! dashboard. `plat up` does this for local use with a generated key and
//! password it prints.

use anyhow::Context as _;
use secrecy::ExposeSecret as _;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::audit::{self, Anonymous};
use crate::auth::{passwords, tokens};
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
        .map(|key| key.expose_secret())
        .filter(|key| !key.is_empty())
    else {
        return Ok(());
    };
    anyhow::ensure!(
        key.chars().count() >= MIN_KEY_CHARS,
        "PLAT_BOOTSTRAP_ADMIN_KEY must be at least {MIN_KEY_CHARS} characters (for example the output of `openssl rand -base64 32`)"
    );
    let password_hash = match config
        .bootstrap_admin_password
        .as_ref()
        .map(|p| p.expose_secret())
    {
        Some(password) if !password.is_empty() => {
            passwords::check(password)
                .map_err(|e| anyhow::anyhow!("PLAT_BOOTSTRAP_ADMIN_PASSWORD: {e}"))?;
            Some(
                // At startup, before any login competes for the cores.
                passwords::Hasher::new(1)
                    .hash(password.to_owned())
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
            )
        }
        _ => None,
    };
    let mut tx = pool.begin().await?;
    // One bootstrap at a time; the loser then sees the winner's user.
    sqlx::query!("select pg_advisory_xact_lock(hashtext('plat_bootstrap_admin'))")
        .execute(&mut *tx)
        .await?;
    let has_users = sqlx::query_scalar!(r#"select exists (select 1 from users) as "exists!""#)
        .fetch_one(&mut *tx)
        .await?;
    if has_users {
        tracing::debug!("users exist; PLAT_BOOTSTRAP_ADMIN_KEY is not needed");
        // A platform started before the password was configured (an older
        // `plat up` data folder): the admin gets it, but a password someone
        // chose is never replaced.
        if let Some(hash) = &password_hash {
            let given = sqlx::query!(
                "update users set password_hash = $1 where lower(email) = lower($2) and role = 'ADMIN' and password_hash is null",
                hash,
                config.bootstrap_admin_email,
            )
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            if given.rows_affected() > 0 {
                tracing::info!(email = %config.bootstrap_admin_email, "bootstrap admin given PLAT_BOOTSTRAP_ADMIN_PASSWORD");
            }
        }
        return Ok(());
    }
    let (user_id, key_id) = (Uuid::now_v7(), Uuid::now_v7());
    sqlx::query!(
        "insert into users (id, email, display_name, role, password_hash) values ($1, $2, 'Bootstrap admin', 'ADMIN', $3)",
        user_id,
        config.bootstrap_admin_email,
        password_hash,
    )
    .execute(&mut *tx)
    .await
    .context("creating the bootstrap admin")?;
    let key_hash = tokens::hash(key);
    sqlx::query!(
        "insert into api_keys (id, user_id, name, prefix, key_hash) values ($1, $2, 'bootstrap', $3, $4)",
        key_id,
        user_id,
        tokens::shown_prefix(key),
        key_hash.as_slice(),
    )
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
