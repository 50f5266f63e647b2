//! `/users` (admins manage everyone; a user reads and edits themselves) and
//! `/me`. Passwords are stored as argon2id hashes only.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgExecutor;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::access::{self, List};
use crate::audit;
use crate::auth::{self, passwords, Caller, Credential, Role};
use crate::error::{self, Error, Result};
use crate::extract::{Json, Path, Query};
use crate::pagination::{Page, PageParams, Position};
use crate::policy;
use crate::AppState;

pub(crate) const MAX_EMAIL_CHARS: usize = 254;
const MAX_DISPLAY_NAME_CHARS: usize = 128;

pub fn router() -> crate::openapi::ApiRouter {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(list, create))
        .routes(routes!(read, update, remove))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    id: Uuid,
    email: String,
    display_name: Option<String>,
    role: Role,
    disabled: bool,
    /// Whether the user can log in with a password (the bootstrap admin cannot).
    has_password: bool,
    groups: Vec<Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// `query_as!` of [`UserView`]s of the users `u`, then `$tail` (a string
/// literal: `where`, `order by`, `limit`) with its arguments. A macro
/// because a checked statement must be one literal.
macro_rules! select_users {
    ($tail:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            UserView,
            r#"
            select u.id, u.email, u.display_name, u.role as "role: Role", u.disabled,
                   u.password_hash is not null as "has_password!",
                   array(select m.group_id from group_members m where m.user_id = u.id order by m.group_id) as "groups!",
                   u.created_at, u.updated_at
            from users u
            "# + $tail
            $(, $arg)*
        )
    };
}

async fn view(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<UserView>> {
    Ok(select_users!("where u.id = $1", id)
        .fetch_optional(db)
        .await?)
}

fn not_found(id: Uuid) -> Error {
    Error::NotFound(format!("no user with id {id}"))
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Me {
    #[serde(flatten)]
    user: UserView,
    /// `apiKey` or `session`.
    authenticated_by: &'static str,
    /// For a session: the token to send as `X-CSRF-Token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf_token: Option<String>,
}

/// The caller, and how they authenticated (with a session: its CSRF token).
#[utoipa::path(
    get,
    path = "/me",
    tag = "users",
    operation_id = "getMe",
    responses((status = 200, description = "The caller", body = Me)),
)]
async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<Me>> {
    let user = view(&state.db, caller.user_id)
        .await?
        .ok_or_else(|| not_found(caller.user_id))?;
    let (authenticated_by, csrf_token) = match caller.credential {
        Credential::ApiKey { .. } => ("apiKey", None),
        Credential::Session { csrf_token, .. } => ("session", Some(csrf_token)),
        // Public routes run functions, never this handler.
        Credential::PublicRoute { .. } => ("publicRoute", None),
    };
    Ok(Json(Me {
        user,
        authenticated_by,
        csrf_token,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct UserList {
    items: Vec<UserView>,
    next_cursor: Option<String>,
}

/// Every user, newest first (admins).
#[utoipa::path(
    get,
    path = "/users",
    tag = "users",
    operation_id = "listUsers",
    params(PageParams),
    responses(
        (status = 200, description = "A page of users; `nextCursor` is null on the last page", body = UserList),
        (status = 400, description = "An invalid parameter or cursor"),
    ),
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<PageParams>,
) -> Result<Json<UserList>> {
    policy::may_list_users(&caller)?;
    let page = Page::parse(params.limit, params.cursor.as_deref())?;
    let rows = select_users!(
        r#"
        where $1::timestamptz is null or (u.created_at, u.id) < ($1, $2)
        order by u.created_at desc, u.id desc
        limit $3
        "#,
        page.after_created_at(),
        page.after_id(),
        page.fetch_limit(),
    )
    .fetch_all(&state.db)
    .await?;
    let (items, next_cursor) = page.finish(rows, |u| Position {
        created_at: u.created_at,
        id: u.id,
    });
    Ok(Json(UserList { items, next_cursor }))
}

/// A user reads themselves; an admin reads anyone. Others get 404.
#[utoipa::path(
    get,
    path = "/users/{id}",
    tag = "users",
    operation_id = "getUser",
    params(("id" = uuid::Uuid, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 400, description = "The id is not a UUID"),
        (status = 404, description = "No such user, or (for a non-admin) someone else"),
    ),
)]
async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<UserView>> {
    if !policy::can_see_user(&caller, id) {
        return Err(not_found(id));
    }
    Ok(Json(
        view(&state.db, id).await?.ok_or_else(|| not_found(id))?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateUser {
    email: String,
    password: Option<String>,
    role: Role,
    display_name: Option<String>,
}

fn check_email(email: &str) -> Result<String> {
    let email = email.trim();
    let valid = email.chars().count() <= MAX_EMAIL_CHARS
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(email.to_owned())
    } else {
        Err(Error::BadRequest(format!(
            "`email` must be an address like name@example.com (at most {MAX_EMAIL_CHARS} characters); got {email:?}"
        )))
    }
}

fn check_display_name(name: Option<&str>) -> Result<()> {
    match name {
        Some(name) if name.chars().count() > MAX_DISPLAY_NAME_CHARS || name.contains('\0') => {
            Err(Error::BadRequest(format!(
                "`displayName` must be at most {MAX_DISPLAY_NAME_CHARS} characters, without NUL"
            )))
        }
        _ => Ok(()),
    }
}

/// `POST /users`, admins only. A user without a password signs in with API
/// keys only.
/// Creates a user (admins).
#[utoipa::path(
    post,
    path = "/users",
    tag = "users",
    operation_id = "createUser",
    request_body = CreateUser,
    responses(
        (status = 201, description = "The user", body = UserView),
        (status = 400, description = "An invalid field"),
        (status = 409, description = "The email is taken"),
        (status = 415, description = "The body is not `application/json`"),
    ),
)]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateUser>,
) -> Result<(StatusCode, Json<UserView>)> {
    policy::may_create_users(&caller)?;
    let email = check_email(&body.email)?;
    check_display_name(body.display_name.as_deref())?;
    let password_hash = match body.password {
        Some(password) => {
            passwords::check(&password)?;
            Some(state.passwords.hash(password).await?)
        }
        None => None,
    };
    let id = Uuid::now_v7();
    let mut tx = state.db.begin().await?;
    sqlx::query!(
        "insert into users (id, email, display_name, role, password_hash) values ($1, $2, $3, $4, $5)",
        id,
        email,
        body.display_name,
        body.role as Role,
        password_hash,
    )
    .execute(&mut *tx)
    .await
    .map_err(error::unique("users_email_key", || {
        format!("a user with email {email:?} already exists")
    }))?;
    audit::record(
        &mut tx,
        &caller,
        "user.create",
        ("user", id.to_string()),
        json!({ "email": email, "role": body.role }),
    )
    .await?;
    let user = view(&mut *tx, id).await?.ok_or_else(|| not_found(id))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(user)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateUser {
    email: Option<String>,
    display_name: Option<String>,
    role: Option<Role>,
    disabled: Option<bool>,
    password: Option<String>,
    /// Required when a user changes their own password.
    current_password: Option<String>,
}

impl UpdateUser {
    /// Whether it changes what only admins may change.
    fn needs_an_admin(&self) -> bool {
        self.email.is_some() || self.role.is_some() || self.disabled.is_some()
    }

    /// The fields it changes, by their API names, for the audit log.
    fn changed(&self) -> Vec<&'static str> {
        crate::audit::sent_fields([
            ("email", self.email.is_some()),
            ("displayName", self.display_name.is_some()),
            ("role", self.role.is_some()),
            ("disabled", self.disabled.is_some()),
            ("password", self.password.is_some()),
        ])
    }
}

/// `PUT /users/{id}`: an admin changes anything; a user changes their own
/// display name and password (giving the current one).
/// Changes a user: admins any field of anyone; a user their own display
/// name and password (with `currentPassword`). A user without a password
/// cannot give themselves one: an admin sets it, or issues a reset token.
#[utoipa::path(
    put,
    path = "/users/{id}",
    tag = "users",
    operation_id = "updateUser",
    params(("id" = uuid::Uuid, Path, description = "The user's id")),
    request_body = UpdateUser,
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 400, description = "An invalid field"),
        (status = 403, description = "A wrong current password, a field only admins change, or a first password set without an admin"),
        (status = 404, description = "No such user"),
        (status = 409, description = "The email is taken, or no enabled admin would remain"),
        (status = 415, description = "The body is not `application/json`"),
    ),
)]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<UpdateUser>,
) -> Result<Json<UserView>> {
    if !policy::can_change_user(&caller, id) {
        return Err(not_found(id));
    }
    if body.needs_an_admin() {
        policy::may_change_email_role_or_disabled(&caller)?;
    }
    let email = body.email.as_deref().map(check_email).transpose()?;
    check_display_name(body.display_name.as_deref())?;
    if let Some(password) = &body.password {
        passwords::check(password)?;
        if id == caller.user_id {
            check_own_password_change(&state, &caller, body.current_password.clone()).await?;
        }
    }
    let changed = body.changed();
    let password_hash = match body.password {
        Some(password) => Some(state.passwords.hash(password).await?),
        None => None,
    };

    let mut tx = state.db.begin().await?;
    let updated = sqlx::query!(
        r#"
        update users
        set email = coalesce($2, email), display_name = coalesce($3, display_name),
            role = coalesce($4, role), disabled = coalesce($5, disabled),
            password_hash = coalesce($6, password_hash), updated_at = now()
        where id = $1
        "#,
        id,
        email,
        body.display_name,
        body.role as Option<Role>,
        body.disabled,
        password_hash,
    )
    .execute(&mut *tx)
    .await
    .map_err(error::unique("users_email_key", || {
        format!(
            "a user with email {:?} already exists",
            email.as_deref().unwrap_or_default()
        )
    }))?;
    if updated.rows_affected() == 0 {
        return Err(not_found(id));
    }
    ensure_an_admin_remains(&mut tx).await?;
    // A disabled user, a changed role or a new password must not keep old
    // credentials working from a cache; a new password also ends sessions.
    if password_hash.is_some() {
        end_sessions_and_resets(&mut tx, id).await?;
    }
    auth::changed(&mut tx, auth::Affected::User(id)).await?;
    let details = json!({ "changed": changed, "role": body.role, "disabled": body.disabled });
    audit::record(
        &mut tx,
        &caller,
        "user.update",
        ("user", id.to_string()),
        details,
    )
    .await?;
    let user = view(&mut *tx, id).await?.ok_or_else(|| not_found(id))?;
    tx.commit().await?;
    state.auth.forget(auth::Affected::User(id));
    Ok(Json(user))
}

/// A user changing their own password proves they know the current one.
/// An account without one cannot give itself one: whoever holds one of its
/// API keys would turn it into a lasting dashboard login. An admin, or a
/// reset token, decides.
async fn check_own_password_change(
    state: &AppState,
    caller: &Caller,
    current: Option<String>,
) -> Result<()> {
    let stored = sqlx::query_scalar!(
        "select password_hash from users where id = $1",
        caller.user_id
    )
    .fetch_optional(&state.db)
    .await?;
    match stored.flatten() {
        Some(stored) => {
            let current = current.unwrap_or_default();
            if state.passwords.verify(current, Some(stored)).await? {
                Ok(())
            } else {
                Err(Error::Forbidden(
                    "to change your own password, send the current one as `currentPassword`"
                        .to_owned(),
                ))
            }
        }
        None if policy::can_set_own_first_password(caller) => Ok(()),
        None => Err(Error::Forbidden(
            "an account without a password gets its first one from an admin: ask one to set it (PUT /users/{id}) or to issue a reset token (POST /users/{id}/password-reset) for POST /auth/password-reset".to_owned(),
        )),
    }
}

/// A new password ends the user's sessions and voids their reset tokens.
async fn end_sessions_and_resets(tx: &mut sqlx::PgConnection, id: Uuid) -> Result<()> {
    sqlx::query!(
        "update sessions set revoked_at = now() where user_id = $1 and revoked_at is null",
        id
    )
    .execute(&mut *tx)
    .await?;
    crate::password_resets::void_tokens_of(tx, id).await?;
    Ok(())
}

/// Refuses a change that would leave no enabled admin: nobody could manage
/// the platform any more.
async fn ensure_an_admin_remains(tx: &mut sqlx::PgConnection) -> Result<()> {
    let admins = sqlx::query_scalar!(
        r#"select count(*) as "admins!" from users where role = 'ADMIN' and not disabled"#
    )
    .fetch_one(&mut *tx)
    .await?;
    if admins == 0 {
        return Err(Error::Conflict(
            "at least one enabled ADMIN must remain".to_owned(),
        ));
    }
    Ok(())
}

/// `DELETE /users/{id}`, admins only. Refused while the user is named in an
/// access list: removing them there could make a restricted function public.
#[utoipa::path(
    delete,
    path = "/users/{id}",
    tag = "users",
    operation_id = "deleteUser",
    params(("id" = uuid::Uuid, Path, description = "The user's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The id is not a UUID"),
        (status = 404, description = "No such user"),
        (status = 409, description = "An access list names the user, or no enabled admin would remain"),
    ),
)]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    policy::may_delete_users(&caller)?;
    let mut tx = state.db.begin().await?;
    let named = access::naming(&mut tx, List::Users, id).await?;
    if !named.is_empty() {
        return Err(Error::Conflict(format!(
            "user {id} is named in the access lists of {}; remove them there first, or disable the user instead",
            named.join(", ")
        )));
    }
    let deleted = sqlx::query!("delete from users where id = $1", id)
        .execute(&mut *tx)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(not_found(id));
    }
    ensure_an_admin_remains(&mut tx).await?;
    auth::changed(&mut tx, auth::Affected::User(id)).await?;
    audit::record(
        &mut tx,
        &caller,
        "user.delete",
        ("user", id.to_string()),
        json!({}),
    )
    .await?;
    tx.commit().await?;
    state.auth.forget(auth::Affected::User(id));
    Ok(StatusCode::NO_CONTENT)
}
