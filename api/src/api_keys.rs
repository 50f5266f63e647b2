//! `/api-keys`: keys for programs and CI. A key is shown once, at creation;
//! the database keeps its SHA-256 and a short visible prefix. Users manage
//! their own keys; admins manage everyone's and create keys for any user.
//! A user holds at most `PLAT_MAX_API_KEYS_PER_USER` live keys, whoever
//! creates them.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgExecutor;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::audit;
use crate::auth::{self, tokens, Caller};
use crate::error::{Error, Result};
use crate::extract::{Json, Path, Query};
use crate::policy;
use crate::AppState;

const MAX_NAME_CHARS: usize = 128;

pub fn router() -> crate::openapi::ApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, revoke))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct ApiKeyView {
    id: Uuid,
    user_id: Uuid,
    name: String,
    prefix: String,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

/// `query_as!` of [`ApiKeyView`]s, then `$tail` (a string literal:
/// `where`, `order by`) with its arguments. A macro because a checked
/// statement must be one literal.
macro_rules! select_keys {
    ($tail:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            ApiKeyView,
            "select id, user_id, name, prefix, created_at, expires_at, last_used_at, revoked_at from api_keys "
                + $tail
            $(, $arg)*
        )
    };
}

fn not_found(id: Uuid) -> Error {
    Error::NotFound(format!("no API key with id {id}"))
}

/// The key, if the caller may see it (their own, or any for an admin).
async fn find(db: impl PgExecutor<'_>, caller: &Caller, id: Uuid) -> Result<ApiKeyView> {
    let key = select_keys!("where id = $1", id).fetch_optional(db).await?;
    key.filter(|key| policy::can_see_api_key(caller, key.user_id))
        .ok_or_else(|| not_found(id))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// Whose keys (admins may name anyone); all keys for an admin who names no one, else the caller's.
    user_id: Option<Uuid>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct KeyList {
    items: Vec<ApiKeyView>,
}

/// The caller's keys, revoked ones included (newest first); an admin sees
/// everyone's, or one user's with `?userId=`.
/// API keys: the caller's, or (admins) anyone's.
#[utoipa::path(
    get,
    path = "/api-keys",
    tag = "api-keys",
    operation_id = "listApiKeys",
    params(ListParams),
    responses(
        (status = 200, description = "The keys, newest first", body = KeyList),
        (status = 400, description = "An invalid parameter"),
    ),
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> Result<Json<KeyList>> {
    let user_id = policy::whose_api_keys(&caller, params.user_id)?;
    let items = select_keys!(
        "where $1::uuid is null or user_id = $1 order by created_at desc, id desc",
        user_id
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(KeyList { items }))
}

/// One API key (the caller's own; admins: any).
#[utoipa::path(
    get,
    path = "/api-keys/{id}",
    tag = "api-keys",
    operation_id = "getApiKey",
    params(("id" = uuid::Uuid, Path, description = "The key's id")),
    responses(
        (status = 200, description = "The key (never its secret)", body = ApiKeyView),
        (status = 400, description = "The id is not a UUID"),
        (status = 404, description = "No such key, or not the caller's"),
    ),
)]
async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<ApiKeyView>> {
    Ok(Json(find(&state.db, &caller, id).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateKey {
    name: String,
    /// Whose key: the caller's own by default; another user's for admins.
    user_id: Option<Uuid>,
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct CreatedKey {
    /// The key itself: shown this once, never again.
    key: String,
    #[serde(flatten)]
    view: ApiKeyView,
}

/// Creates an API key, for the caller or (admins) another user.
#[utoipa::path(
    post,
    path = "/api-keys",
    tag = "api-keys",
    operation_id = "createApiKey",
    request_body = CreateKey,
    responses(
        (status = 201, description = "The key, with its secret `key` shown this once", body = CreatedKey),
        (status = 400, description = "An invalid field, an expiry in the past, an unknown user"),
        (status = 409, description = "The user already holds `PLAT_MAX_API_KEYS_PER_USER` live keys"),
        (status = 415, description = "The body is not `application/json`"),
    ),
)]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateKey>,
) -> Result<(StatusCode, Json<CreatedKey>)> {
    let user_id = policy::whose_new_api_key(&caller, body.user_id)?;
    let name = body.name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(Error::BadRequest(format!(
            "`name` must be 1 to {MAX_NAME_CHARS} characters, without control characters"
        )));
    }
    if body.expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(Error::BadRequest(
            "`expiresAt` must be in the future".to_owned(),
        ));
    }
    let key = tokens::new_api_key();
    let id = Uuid::now_v7();
    let mut tx = state.db.begin().await?;
    ensure_room_for_a_key(&mut tx, user_id, state.config.max_api_keys_per_user).await?;
    let key_hash = tokens::hash(&key);
    let view = sqlx::query_as!(
        ApiKeyView,
        r#"
        insert into api_keys (id, user_id, name, prefix, key_hash, expires_at)
        values ($1, $2, $3, $4, $5, $6)
        returning id, user_id, name, prefix, created_at, expires_at, last_used_at, revoked_at
        "#,
        id,
        user_id,
        name,
        tokens::shown_prefix(&key),
        key_hash.as_slice(),
        body.expires_at,
    )
    .fetch_one(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        &caller,
        "api_key.create",
        ("api_key", id.to_string()),
        json!({ "userId": user_id, "name": name, "prefix": view.prefix, "expiresAt": body.expires_at }),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(CreatedKey { key, view })))
}

/// Refuses (409) when `user_id` already holds `max` live keys (neither
/// revoked nor expired), whoever asks: an admin creating keys for someone
/// is held to the same cap. The user's row is locked for the rest of the
/// transaction, so concurrent creations, in any API process, count one
/// after another and cannot together pass the cap (`no key update`: the
/// weakest lock that two creations cannot both hold, and one that does not
/// stop other tables' rows from referencing the user meanwhile).
async fn ensure_room_for_a_key(tx: &mut sqlx::PgConnection, user_id: Uuid, max: u32) -> Result<()> {
    let user = sqlx::query_scalar!(
        "select id from users where id = $1 for no key update",
        user_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    if user.is_none() {
        return Err(Error::BadRequest(format!("no user with id {user_id}")));
    }
    let live = sqlx::query_scalar!(
        r#"
        select count(*) as "live!" from api_keys
        where user_id = $1 and revoked_at is null
          and (expires_at is null or expires_at > now())
        "#,
        user_id
    )
    .fetch_one(&mut *tx)
    .await?;
    if live >= i64::from(max) {
        return Err(Error::Conflict(format!(
            "user {user_id} already holds {live} live API keys, the most allowed (PLAT_MAX_API_KEYS_PER_USER = {max}); revoke one (DELETE /api-keys/{{id}}) before creating another"
        )));
    }
    Ok(())
}

/// Revokes the key at once, in every API process. Revoking a revoked key
/// changes nothing (204 again); the row stays for the record.
/// Revokes an API key at once.
#[utoipa::path(
    delete,
    path = "/api-keys/{id}",
    tag = "api-keys",
    operation_id = "revokeApiKey",
    params(("id" = uuid::Uuid, Path, description = "The key's id")),
    responses(
        (status = 204, description = "Revoked (or already was)"),
        (status = 400, description = "The id is not a UUID"),
        (status = 404, description = "No such key, or not the caller's"),
    ),
)]
async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    let mut tx = state.db.begin().await?;
    let key = find(&mut *tx, &caller, id).await?;
    if key.revoked_at.is_none() {
        sqlx::query!("update api_keys set revoked_at = now() where id = $1", id)
            .execute(&mut *tx)
            .await?;
        auth::changed(&mut tx, auth::Affected::Key(id)).await?;
        audit::record(
            &mut tx,
            &caller,
            "api_key.revoke",
            ("api_key", id.to_string()),
            json!({ "userId": key.user_id, "prefix": key.prefix }),
        )
        .await?;
    }
    tx.commit().await?;
    state.auth.forget(auth::Affected::Key(id));
    Ok(StatusCode::NO_CONTENT)
}
