//! One-time password reset tokens. An account without a password (API keys
//! only) must not get one from whoever holds one of its keys: a stolen key
//! would become a lasting dashboard login. So a password is set only by an
//! admin, by its owner proving the current one, or with a reset token: an
//! admin issues it (`POST /users/{id}/password-reset`) and hands it to the
//! user over a channel they trust; the user sets a password with it
//! (`POST /auth/password-reset`), once, before it expires. Only the token's
//! SHA-256 is stored; issuing a new one, using one, or setting the password
//! another way voids the others.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::audit::{self, Anonymous};
use crate::auth::{self, passwords, tokens, Caller};
use crate::client_addr::ClientIp;
use crate::error::{Error, Result};
use crate::extract::{Json, Path};
use crate::policy;
use crate::AppState;

/// The admin's half: issuing a token.
pub fn router() -> crate::openapi::ApiRouter {
    OpenApiRouter::new().routes(routes!(issue))
}

/// The user's half, without credentials: spending it.
pub fn public_router() -> crate::openapi::ApiRouter {
    OpenApiRouter::new().routes(routes!(reset))
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct IssuedReset {
    id: Uuid,
    user_id: Uuid,
    /// Shown once: give it to the user, who sends it to
    /// `POST /auth/password-reset` with their new password.
    token: String,
    expires_at: DateTime<Utc>,
}

/// Issues a one-time password reset token for a user (admins). It works
/// once, until `expiresAt` (`PLAT_PASSWORD_RESET_HOURS`), and voids any
/// earlier one of the same user.
#[utoipa::path(
    post,
    path = "/users/{id}/password-reset",
    tag = "users",
    operation_id = "issuePasswordReset",
    params(("id" = uuid::Uuid, Path, description = "The user's id")),
    responses(
        (status = 201, description = "The token (shown only now)", body = IssuedReset),
        (status = 400, description = "The id is not a UUID"),
        (status = 403, description = "The caller is not an admin"),
        (status = 404, description = "No such user"),
    ),
)]
async fn issue(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<Uuid>,
) -> Result<(StatusCode, Json<IssuedReset>)> {
    policy::may_issue_password_resets(&caller)?;
    let token = tokens::new_reset_token();
    let expires_at = Utc::now() + Duration::hours(i64::from(state.config.password_reset_hours));
    let id = Uuid::now_v7();
    let mut tx = state.db.begin().await?;
    let user = sqlx::query_scalar!("select id from users where id = $1 for update", user_id)
        .fetch_optional(&mut *tx)
        .await?;
    if user.is_none() {
        return Err(Error::NotFound(format!("no user with id {user_id}")));
    }
    void_tokens_of(&mut tx, user_id).await?;
    let token_hash = tokens::hash(&token);
    sqlx::query!(
        r#"
        insert into password_resets (id, user_id, token_hash, created_by, expires_at)
        values ($1, $2, $3, $4, $5)
        "#,
        id,
        user_id,
        token_hash.as_slice(),
        caller.user_id,
        expires_at,
    )
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        &caller,
        "user.password_reset_issued",
        ("user", user_id.to_string()),
        json!({ "resetId": id, "expiresAt": expires_at }),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedReset {
            id,
            user_id,
            token,
            expires_at,
        }),
    ))
}

/// Makes every unspent reset token of `user_id` unusable: a password was
/// just set, or a newer token issued.
pub async fn void_tokens_of(tx: &mut PgConnection, user_id: Uuid) -> Result<()> {
    sqlx::query!(
        "update password_resets set used_at = now(), updated_at = now() where user_id = $1 and used_at is null",
        user_id
    )
    .execute(tx)
    .await?;
    Ok(())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Reset {
    /// The token an admin issued (`platreset_...`).
    token: String,
    /// The new password, at least 12 characters.
    password: String,
}

const INVALID: &str =
    "the reset token is unknown, already used or expired (or the user is disabled); ask an admin for a new one";

/// Sets a password with a reset token from an admin: no credentials needed,
/// the token is the proof. The token is spent, every session of the user
/// ends, and their other reset tokens are void.
#[utoipa::path(
    post,
    path = "/auth/password-reset",
    tag = "auth",
    operation_id = "resetPassword",
    request_body = Reset,
    responses(
        (status = 204, description = "The password is set"),
        (status = 400, description = "A malformed body, a too short password, or a token that is unknown, used or expired"),
        (status = 415, description = "The body is not `application/json`"),
        (status = 429, description = "Too many attempts from this address; see `Retry-After`"),
    ),
)]
async fn reset(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    Json(body): Json<Reset>,
) -> Result<StatusCode> {
    passwords::check(&body.password)?;
    // A guess at a token costs a login attempt of the address.
    state.throttle.login_attempt(client, None)?;
    let token_hash = tokens::hash(&body.token);
    // Looked up before hashing, so a wrong token costs no argon2.
    // The unspent, unexpired token whose hash this is, of an enabled user.
    let live = sqlx::query_scalar!(
        r#"
        select r.id from password_resets r join users u on u.id = r.user_id
        where r.token_hash = $1 and r.used_at is null and r.expires_at > now() and not u.disabled
        "#,
        token_hash.as_slice()
    )
    .fetch_optional(&state.db)
    .await?;
    if live.is_none() {
        return Err(Error::BadRequest(INVALID.to_owned()));
    }
    let password_hash = state.passwords.hash(body.password).await?;

    let mut tx = state.db.begin().await?;
    // Spent by the statement that checks it again: of two racing uses, the
    // second waits for the first's row lock, then finds it used.
    let spent = sqlx::query!(
        r#"
        update password_resets r set used_at = now(), updated_at = now()
        from users u
        where u.id = r.user_id and r.token_hash = $1
          and r.used_at is null and r.expires_at > now() and not u.disabled
        returning r.id, r.user_id, u.email
        "#,
        token_hash.as_slice()
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(spent) = spent else {
        return Err(Error::BadRequest(INVALID.to_owned()));
    };
    let (reset_id, user_id, email) = (spent.id, spent.user_id, spent.email);
    sqlx::query!(
        "update users set password_hash = $2, updated_at = now() where id = $1",
        user_id,
        password_hash
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "update sessions set revoked_at = now() where user_id = $1 and revoked_at is null",
        user_id
    )
    .execute(&mut *tx)
    .await?;
    void_tokens_of(&mut tx, user_id).await?;
    auth::changed(&mut tx, auth::Affected::User(user_id)).await?;
    let source = client.map(|ip| ip.to_string());
    audit::record_anonymous(
        &mut tx,
        Anonymous {
            email: Some(&email),
            source_address: source.as_deref(),
        },
        "auth.password_reset",
        Some(("user", user_id.to_string())),
        json!({ "resetId": reset_id }),
    )
    .await?;
    tx.commit().await?;
    state.auth.forget(auth::Affected::User(user_id));
    Ok(StatusCode::NO_CONTENT)
}
