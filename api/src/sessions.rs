//! Browser sign-in: `POST /auth/login` starts a session (a `Secure`,
//! `HttpOnly`, `SameSite=Strict` cookie holding an opaque token, see
//! `session_cookie`), `POST /auth/logout`
//! ends it; `/sessions` lists and ends a user's sessions. Sessions slide
//! forward with use (`PLAT_SESSION_IDLE_MINUTES`) up to an absolute end
//! (`PLAT_SESSION_MAX_HOURS`).

use axum::extract::{FromRequest as _, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::audit::{self, Anonymous};
use crate::auth::{self, passwords, tokens, Caller, Credential, Role};
use crate::client_addr;
use crate::error::{Error, Result};
use crate::extract::{Json, Path, Query};
use crate::policy;
use crate::AppState;

/// Routes that need no credentials.
pub fn public_router() -> crate::openapi::ApiRouter {
    OpenApiRouter::new().routes(routes!(login))
}

pub fn router() -> crate::openapi::ApiRouter {
    OpenApiRouter::new()
        .routes(routes!(logout))
        .routes(routes!(list))
        .routes(routes!(end))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Login {
    email: String,
    password: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct LoggedIn {
    user_id: Uuid,
    email: String,
    role: Role,
    /// Send this back as `X-CSRF-Token` on every request that changes state.
    csrf_token: String,
    expires_at: DateTime<Utc>,
}

impl Login {
    /// No address is longer than 254 characters (RFC 5321), nor any
    /// password we accept than 1024 bytes: refusing them here keeps
    /// megabytes of "email" out of the lookup, the buckets and the audit
    /// log, and of "password" out of argon2.
    fn check_sizes(&self) -> Result<()> {
        let max_email = crate::users::MAX_EMAIL_CHARS;
        if self.email.trim().chars().count() > max_email
            || self.password.len() > passwords::MAX_BYTES
        {
            return Err(Error::BadRequest(format!(
                "`email` must be at most {max_email} characters and `password` at most {} bytes",
                passwords::MAX_BYTES
            )));
        }
        Ok(())
    }
}

const WRONG: &str = "the email or password is wrong (or the account is disabled)";

/// Starts a browser session: sets the `__Host-plat_session` cookie
/// (`Secure`, `HttpOnly`, `SameSite=Strict`; `plat_session` without
/// `Secure` where the operator serves plain HTTP) and answers the CSRF token
/// that requests changing something must send as `X-CSRF-Token`.
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "auth",
    operation_id = "login",
    request_body = Login,
    responses(
        (status = 200, description = "Logged in", body = LoggedIn,
            headers(("Set-Cookie" = String, description = "`__Host-plat_session=...; HttpOnly; SameSite=Strict; Secure; Path=/; Max-Age=...`"))),
        (status = 400, description = "A malformed body, or an email over 254 characters"),
        (status = 401, description = "Wrong email or password, or a disabled user"),
        (status = 413, description = "The body is too large"),
        (status = 415, description = "The body is not `application/json`"),
        (status = 429, description = "Too many attempts from this address or on this account; see `Retry-After`"),
        (status = 500, description = "An unexpected error"),
        (status = 503, description = "The database is unavailable"),
    ),
)]
async fn login(State(state): State<AppState>, request: Request) -> Result<Response> {
    let client = client_addr::client_ip(
        request.extensions(),
        request.headers(),
        &state.config.trusted_proxies,
    );
    let source = client.map(|ip| ip.to_string());
    let user_agent = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(256).collect::<String>());
    let Json(body) = Json::<Login>::from_request(request, &state).await?;
    body.check_sizes()?;
    state
        .throttle
        .login_attempt(client, Some(body.email.trim()))?;
    let user = authenticate(&state, body, source.as_deref()).await?;
    let session = start_session(&state, &user, source, user_agent).await?;

    let cookie = state.session_cookie.set(
        &session.token,
        (session.absolute_expires_at - session.started_at).num_seconds(),
    );
    let body = LoggedIn {
        user_id: user.id,
        email: user.email,
        role: user.role,
        csrf_token: tokens::csrf_token(&session.token),
        expires_at: session.expires_at,
    };
    let mut response = Json(body).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// Who signed in.
struct SignedIn {
    id: Uuid,
    email: String,
    role: Role,
}

/// The enabled user with `login`'s email and password; a failure is
/// audited (with the client's address) and gets the one message that does
/// not say which part was wrong. The password is verified even for an
/// unknown email, so the answer takes as long either way.
async fn authenticate(state: &AppState, login: Login, source: Option<&str>) -> Result<SignedIn> {
    let email = login.email.trim();
    let user = sqlx::query!(
        r#"
        select id, email, role as "role: Role", password_hash, disabled
        from users
        where lower(email) = lower($1)
        "#,
        email
    )
    .fetch_optional(&state.db)
    .await?;
    let stored_hash = user.as_ref().and_then(|user| user.password_hash.clone());
    let password_ok = state.passwords.verify(login.password, stored_hash).await?;
    match user.filter(|user| password_ok && !user.disabled) {
        Some(user) => Ok(SignedIn {
            id: user.id,
            email: user.email,
            role: user.role,
        }),
        None => {
            let mut conn = state.db.acquire().await?;
            let who = Anonymous {
                email: Some(email),
                source_address: source,
            };
            let details = json!({ "email": email });
            audit::record_anonymous(&mut conn, who, "auth.login_failed", None, details).await?;
            tracing::info!(source = ?source, "failed login");
            Err(Error::Unauthorized(WRONG.to_owned()))
        }
    }
}

/// A session just started.
struct NewSession {
    token: String,
    started_at: DateTime<Utc>,
    /// When it ends unless used (it slides forward with use).
    expires_at: DateTime<Utc>,
    /// When it ends whatever happens.
    absolute_expires_at: DateTime<Utc>,
}

/// Stores a new session of `user` and audits the sign-in.
async fn start_session(
    state: &AppState,
    user: &SignedIn,
    source: Option<String>,
    user_agent: Option<String>,
) -> Result<NewSession> {
    let token = tokens::new_session_token();
    let now = Utc::now();
    let idle = Duration::minutes(i64::from(state.config.session_idle_minutes));
    let absolute = now + Duration::hours(i64::from(state.config.session_max_hours));
    let expires_at = (now + idle).min(absolute);
    let session_id = Uuid::now_v7();
    let token_hash = tokens::hash(&token);
    let mut tx = state.db.begin().await?;
    sqlx::query!(
        r#"
        insert into sessions (id, user_id, token_hash, expires_at, absolute_expires_at, source_address, user_agent)
        values ($1, $2, $3, $4, $5, $6, $7)
        "#,
        session_id,
        user.id,
        token_hash.as_slice(),
        expires_at,
        absolute,
        source,
        user_agent,
    )
    .execute(&mut *tx)
    .await?;
    let caller = Caller {
        user_id: user.id,
        email: user.email.clone(),
        role: user.role,
        groups: Default::default(),
        credential: Credential::Session {
            id: session_id,
            csrf_token: String::new(),
        },
        source_address: source,
    };
    let target = ("session", session_id.to_string());
    audit::record(&mut tx, &caller, "auth.login", target, json!({})).await?;
    tx.commit().await?;
    Ok(NewSession {
        token,
        started_at: now,
        expires_at,
        absolute_expires_at: absolute,
    })
}

/// Ends the caller's session (for an API key, there is none to end: 400)
/// and clears the cookie.
#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "auth",
    operation_id = "logout",
    responses(
        (status = 204, description = "The session ended; the cookie is cleared",
            headers(("Set-Cookie" = String, description = "`__Host-plat_session=; Max-Age=0`"))),
        (status = 400, description = "The caller used an API key, not a session"),
    ),
)]
async fn logout(State(state): State<AppState>, caller: Caller) -> Result<Response> {
    let Credential::Session { id, .. } = caller.credential else {
        return Err(Error::BadRequest(
            "logout ends a browser session; to stop using an API key, revoke it with DELETE /api-keys/{id}".to_owned(),
        ));
    };
    end_session(&state, &caller, id).await?;
    let mut headers = HeaderMap::new();
    headers.insert(header::SET_COOKIE, state.session_cookie.clear());
    Ok((StatusCode::NO_CONTENT, headers).into_response())
}

async fn end_session(state: &AppState, caller: &Caller, id: Uuid) -> Result<()> {
    let mut tx = state.db.begin().await?;
    sqlx::query!(
        "update sessions set revoked_at = now() where id = $1 and revoked_at is null",
        id
    )
    .execute(&mut *tx)
    .await?;
    auth::changed(&mut tx, auth::Affected::Session(id)).await?;
    audit::record(
        &mut tx,
        caller,
        "auth.logout",
        ("session", id.to_string()),
        json!({}),
    )
    .await?;
    tx.commit().await?;
    state.auth.forget(auth::Affected::Session(id));
    Ok(())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct SessionView {
    id: Uuid,
    user_id: Uuid,
    created_at: DateTime<Utc>,
    last_seen_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    source_address: Option<String>,
    user_agent: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// Whose sessions (admins only); the caller's if not sent.
    user_id: Option<Uuid>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct SessionList {
    items: Vec<SessionView>,
}

/// The caller's live sessions; an admin may ask for any user's with `?userId=`.
#[utoipa::path(
    get,
    path = "/sessions",
    tag = "auth",
    operation_id = "listSessions",
    params(ListParams),
    responses(
        (status = 200, description = "The live sessions, newest first", body = SessionList),
        (status = 400, description = "An invalid parameter"),
    ),
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> Result<Json<SessionList>> {
    let user_id = policy::whose_sessions(&caller, params.user_id)?;
    let items = sqlx::query_as!(
        SessionView,
        r#"
        select id, user_id, created_at, last_seen_at, expires_at, revoked_at, source_address, user_agent
        from sessions
        where user_id = $1 and revoked_at is null and expires_at > now()
        order by created_at desc, id desc
        "#,
        user_id
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(SessionList { items }))
}

/// Ends a session: the caller's own, or any as an admin.
#[utoipa::path(
    delete,
    path = "/sessions/{id}",
    tag = "auth",
    operation_id = "endSession",
    params(("id" = uuid::Uuid, Path, description = "The session's id")),
    responses(
        (status = 204, description = "Ended"),
        (status = 400, description = "The id is not a UUID"),
        (status = 404, description = "No such session, or not the caller's"),
    ),
)]
async fn end(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    let owner = sqlx::query_scalar!("select user_id from sessions where id = $1", id)
        .fetch_optional(&state.db)
        .await?;
    match owner {
        Some(owner) if policy::can_end_session(&caller, owner) => {
            end_session(&state, &caller, id).await?;
            Ok(StatusCode::NO_CONTENT)
        }
        _ => Err(Error::NotFound(format!("no session with id {id}"))),
    }
}
