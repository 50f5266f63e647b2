//! Who is calling: every request except `/healthz`, `/readyz` and login
//! carries an API key (`Authorization: Bearer plat_...`) or a session cookie
//! from `POST /auth/login`. The middleware here resolves it to a [`Caller`],
//! applies the user's rate limit and, for cookie-authenticated requests
//! that change state, the CSRF check; handlers then take the `Caller` and
//! ask [`crate::policy`] what it may do.
//!
//! Credentials are opaque and looked up in the database, so revoking one
//! takes effect at once. Lookups are cached per process for a few seconds;
//! every change that can revoke access (`auth::changed`) tells all API
//! processes, through `NOTIFY plat_auth_changed`, which key, session or
//! user it concerns, and each drops only those cached credentials.

pub mod passwords;
pub mod rate_limit;
pub mod throttle;
pub mod tokens;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use moka::sync::Cache;
use plat_common::notify::{self, Heard};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use self::rate_limit::{Rate, RateLimiter};
use crate::client_addr;
use crate::error::{Error, Result};
use crate::AppState;

/// The header cookie-authenticated requests that change state must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// At most this many credentials are cached per process; past it, moka
/// evicts those least likely to be used again (TinyLFU).
const MAX_CACHED: u64 = 10_000;
/// `api_keys.last_used_at` is written at most this often per key: it is
/// for people ("used today?"), and a write per lookup would make every
/// cache miss, in every API process, a row update.
const LAST_USED_EVERY_SECS: f64 = 60.0;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[sqlx(type_name = "user_role", rename_all = "UPPERCASE")]
#[serde(rename_all = "UPPERCASE")]
pub enum Role {
    Admin,
    Dev,
}

/// How the caller proved who they are.
#[derive(Debug, Clone)]
pub enum Credential {
    ApiKey {
        id: Uuid,
    },
    /// A browser session, with the CSRF token that goes with it.
    Session {
        id: Uuid,
        csrf_token: String,
    },
    /// None: a request to a public HTTP route, which runs as the user who
    /// configured the route (`http_routes`).
    PublicRoute {
        function_id: Uuid,
    },
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: Uuid,
    pub email: String,
    pub role: Role,
    /// The groups the user belongs to.
    pub groups: Arc<Vec<Uuid>>,
    pub credential: Credential,
    /// The peer's address, for the audit log.
    pub source_address: Option<String>,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            Error::Internal(anyhow::anyhow!(
                "a handler that needs a caller is outside the authenticated routes"
            ))
        })
    }
}

/// Resolves credentials, with a short-lived cache, and holds the rate limits.
pub struct Authenticator {
    /// Resolved credentials by the hash of their token. An entry lives
    /// `PLAT_AUTH_CACHE_TTL_SECS` (the backstop should a
    /// `plat_auth_changed` notification be missed), or less if the
    /// credential ends sooner.
    cache: Cache<[u8; 32], Cached>,
    /// 0 turns the cache off.
    cache_ttl: Duration,
    /// Requests per user (shared by all their keys and sessions), by role.
    admin_rate: RateLimiter<Uuid>,
    dev_rate: RateLimiter<Uuid>,
    session_idle_minutes: i32,
}

#[derive(Clone)]
struct Cached {
    caller: Caller,
    /// When the credential itself ends, if it does.
    expires_at: Option<DateTime<Utc>>,
}

/// A cached credential expires when the credential does, if that comes
/// before the cache's TTL (moka takes the earlier of the two).
struct UntilCredentialEnds;

impl moka::Expiry<[u8; 32], Cached> for UntilCredentialEnds {
    fn expire_after_create(
        &self,
        _hash: &[u8; 32],
        cached: &Cached,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        let left = |at: DateTime<Utc>| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        cached.expires_at.map(left)
    }
}

/// The lookup of a credential: `$credential`, a literal `with credential as
/// (...)` that finds the live credential (`id`, `user_id`, `expires_at`),
/// then the enabled user behind it, as a [`Found`]. A macro so that each
/// statement is one literal that sqlx checks at build time.
macro_rules! find_credential {
    ($credential:literal, $($arg:expr),+ $(,)?) => {
        sqlx::query_as!(
            Found,
            $credential
                + r#"
                select c.id as "credential_id!", c.expires_at as "expires_at?",
                       u.id as "user_id!", u.email as "email!", u.role as "role!: Role",
                       array(select m.group_id from group_members m where m.user_id = u.id) as "groups!"
                from credential c join users u on u.id = c.user_id
                where not u.disabled
                "#,
            $($arg),+
        )
    };
}

/// A credential as the database knows it.
struct Found {
    credential_id: Uuid,
    expires_at: Option<DateTime<Utc>>,
    user_id: Uuid,
    email: String,
    role: Role,
    groups: Vec<Uuid>,
}

impl Authenticator {
    pub fn new(config: &crate::ApiConfig) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(MAX_CACHED)
                .time_to_live(Duration::from_secs(config.auth_cache_ttl_secs))
                .expire_after(UntilCredentialEnds)
                .support_invalidation_closures()
                .build(),
            cache_ttl: Duration::from_secs(config.auth_cache_ttl_secs),
            admin_rate: RateLimiter::new(Rate {
                per_sec: config.rate_limit_admin_per_sec,
                burst: config.rate_limit_admin_burst,
            }),
            dev_rate: RateLimiter::new(Rate {
                per_sec: config.rate_limit_dev_per_sec,
                burst: config.rate_limit_dev_burst,
            }),
            session_idle_minutes: i32::try_from(config.session_idle_minutes).unwrap_or(i32::MAX),
        }
    }

    /// Forgets the cached credentials a change of access concerns: called
    /// after committing the change here, and (through the notification) in
    /// every other API process. Other users' credentials stay cached, so no
    /// one can turn the cache off for everyone by revoking their own keys.
    pub fn forget(&self, affected: Affected) {
        if affected == Affected::All {
            self.cache.invalidate_all();
            return;
        }
        // From now on lookups skip every entry cached before this call that
        // the predicate matches, and moka's housekeeping removes them: a
        // predicate, not an index from ids to hashes, because changes of
        // access are rare next to lookups. Only a cache built without
        // invalidation closures refuses it; forgetting everything is then
        // the safe side.
        let forgotten = self
            .cache
            .invalidate_entries_if(move |_, cached| affected.concerns(&cached.caller));
        if forgotten.is_err() {
            self.cache.invalidate_all();
        }
    }

    /// The caller's rate limit and the settings that set it, for messages.
    fn rate_of(&self, caller: &Caller) -> (&RateLimiter<Uuid>, &'static str) {
        match caller.role {
            Role::Admin => (
                &self.admin_rate,
                "PLAT_RATE_LIMIT_ADMIN_PER_SEC, PLAT_RATE_LIMIT_ADMIN_BURST",
            ),
            Role::Dev => (
                &self.dev_rate,
                "PLAT_RATE_LIMIT_DEV_PER_SEC, PLAT_RATE_LIMIT_DEV_BURST",
            ),
        }
    }

    /// Spends one request of the caller's user: one bucket per user, shared
    /// by all their keys and sessions, so more keys do not buy more rate.
    fn take_request(&self, caller: &Caller) -> Result<()> {
        let (limiter, settings) = self.rate_of(caller);
        let rate = limiter.rate();
        limiter
            .take(&caller.user_id)
            .map_err(|wait| Error::RateLimited {
                detail: format!(
                    "too many requests: the rate limit of this user ({} per second, bursts of {}, shared by all their API keys and sessions; {settings}) is spent; retry after {} s",
                    rate.per_sec,
                    rate.burst(),
                    retry_after_secs(wait)
                ),
                retry_after_secs: retry_after_secs(wait),
            })
    }

    /// Charges a batch of `inputs` runs to the caller's rate limit: it
    /// costs `inputs` requests in all, the one the request itself already
    /// paid included. Refuses, spending nothing more, when the bucket cannot
    /// pay now (429, retry later) or ever (400: the batch is over the burst,
    /// so waiting would never help).
    pub fn take_batch(&self, caller: &Caller, inputs: usize) -> Result<()> {
        let (limiter, settings) = self.rate_of(caller);
        let rate = limiter.rate();
        if !rate.limits() {
            return Ok(());
        }
        let burst = rate.burst();
        let cost = u32::try_from(inputs).unwrap_or(u32::MAX);
        if cost > burst {
            return Err(Error::BadRequest(format!(
                "a batch of {inputs} inputs costs {inputs} requests, more than this user's rate limit allows at once (bursts of {burst}; {settings}): split it into batches of at most {burst} inputs"
            )));
        }
        limiter
            .take_many(&caller.user_id, cost.saturating_sub(1))
            .map_err(|wait| Error::RateLimited {
                detail: format!(
                    "too many requests: a batch of {inputs} inputs costs {inputs} requests, more than is left of this user's rate limit ({} per second, bursts of {burst}, shared by all their API keys and sessions; {settings}); retry after {} s or send a smaller batch",
                    rate.per_sec,
                    retry_after_secs(wait)
                ),
                retry_after_secs: retry_after_secs(wait),
            })
    }

    async fn by_api_key(&self, db: &PgPool, key: &str) -> Result<Option<Caller>> {
        let hash = tokens::hash(key);
        if let Some(caller) = self.cached(&hash) {
            return Ok(Some(caller));
        }
        // One statement: the lookup, and the last_used_at stamp when the
        // last one is older than a minute (a data-modifying CTE runs
        // whether or not the outer query reads it).
        let found = find_credential!(
            r#"
            with credential as (
                select id, user_id, expires_at, last_used_at from api_keys
                where key_hash = $1 and revoked_at is null
                  and (expires_at is null or expires_at > now())
            ), stamped as (
                update api_keys k set last_used_at = now()
                from credential c
                where k.id = c.id
                  and (c.last_used_at is null
                       or c.last_used_at < now() - make_interval(secs => $2))
            )
            "#,
            hash.as_slice(),
            LAST_USED_EVERY_SECS,
        )
        .fetch_optional(db)
        .await?;
        Ok(found.map(|found| self.remember(hash, found, |id| Credential::ApiKey { id })))
    }

    async fn by_session(&self, db: &PgPool, token: &str) -> Result<Option<Caller>> {
        let hash = tokens::hash(token);
        if let Some(caller) = self.cached(&hash) {
            return Ok(Some(caller));
        }
        // Slides the expiry forward on each cache miss, never past the
        // session's absolute end.
        let found = find_credential!(
            r#"
            with credential as (
                update sessions
                set last_seen_at = now(),
                    expires_at = least(now() + make_interval(mins => $2), absolute_expires_at)
                where token_hash = $1 and revoked_at is null and expires_at > now()
                returning id, user_id, expires_at
            )
            "#,
            hash.as_slice(),
            self.session_idle_minutes,
        )
        .fetch_optional(db)
        .await?;
        let csrf_token = tokens::csrf_token(token);
        Ok(found
            .map(|found| self.remember(hash, found, |id| Credential::Session { id, csrf_token })))
    }

    fn cached(&self, hash: &[u8; 32]) -> Option<Caller> {
        let found = self.cache.get(hash).map(|cached| cached.caller);
        // Misses are database lookups: their rate shows whether the cache works.
        let result = if found.is_some() { "hit" } else { "miss" };
        ::metrics::counter!("plat_auth_cache_lookups_total", "result" => result).increment(1);
        found
    }

    fn remember(
        &self,
        hash: [u8; 32],
        found: Found,
        credential: impl FnOnce(Uuid) -> Credential,
    ) -> Caller {
        let caller = Caller {
            user_id: found.user_id,
            email: found.email,
            role: found.role,
            groups: Arc::new(found.groups),
            credential: credential(found.credential_id),
            source_address: None,
        };
        if !self.cache_ttl.is_zero() {
            let cached = Cached {
                caller: caller.clone(),
                expires_at: found.expires_at,
            };
            self.cache.insert(hash, cached);
        }
        caller
    }
}

/// `Retry-After` is in whole seconds: round up, and never say 0.
fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// The middleware in front of every authenticated route.
pub async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // Only the parts, not the request, are held across the lookup: a body
    // is not `Sync`, and the future must be `Send`.
    let (parts, body) = request.into_parts();
    let client = client_addr::client_ip(
        &parts.extensions,
        &parts.headers,
        &state.config.trusted_proxies,
    );
    let found = caller(&state, &parts.method, &parts.headers, client).await;
    let mut request = Request::from_parts(parts, body);
    match found {
        Ok(mut caller) => {
            caller.source_address = client.map(|ip| ip.to_string());
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

/// The caller behind a request's credentials, with their rate limit
/// spent: what [`authenticate`] does, for the HTTP routes that need
/// credentials but live outside the authenticated router.
pub(crate) async fn caller(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    client: Option<IpAddr>,
) -> Result<Caller> {
    let caller = if let Some(value) = headers.get(header::AUTHORIZATION) {
        let key = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .ok_or_else(|| {
                Error::Unauthorized(
                    "the Authorization header must be `Bearer <API key>`".to_owned(),
                )
            })?;
        state.auth.by_api_key(&state.db, key).await?.ok_or_else(|| {
            state.throttle.invalid_credential(client, "the API key is not valid: unknown, expired or revoked, or its user is disabled")
        })?
    } else if let Some(token) = state.session_cookie.token(headers) {
        let caller = state
            .auth
            .by_session(&state.db, token)
            .await?
            .ok_or_else(|| {
                state.throttle.invalid_credential(
                    client,
                    "the session has expired or was ended; log in again with POST /auth/login",
                )
            })?;
        check_csrf(method, headers, token)?;
        caller
    } else {
        return Err(Error::Unauthorized(
            "authentication required: send `Authorization: Bearer <API key>`, or log in with POST /auth/login".to_owned(),
        ));
    };
    state.auth.take_request(&caller)?;
    Ok(caller)
}

/// A browser request that changes state must prove it comes from Plat's own
/// page: the `X-CSRF-Token` header, which another site cannot read or set.
fn check_csrf(method: &Method, headers: &HeaderMap, session_token: &str) -> Result<()> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    match sent {
        Some(sent) if tokens::csrf_matches(sent, session_token) => Ok(()),
        _ => Err(Error::Forbidden(
            "a request that changes something with a session cookie must carry the X-CSRF-Token header with the csrfToken from POST /auth/login (or GET /me)".to_owned(),
        )),
    }
}

/// Whose cached credentials a change of access concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affected {
    /// One API key (revoked).
    Key(Uuid),
    /// One browser session (ended).
    Session(Uuid),
    /// Every key and session of one user: disabled, deleted, or their
    /// role, groups or password changed.
    User(Uuid),
    /// Every cached credential (a group deleted: rare, and admins only).
    All,
}

impl Affected {
    fn concerns(self, caller: &Caller) -> bool {
        match (self, &caller.credential) {
            (Affected::All, _) => true,
            (Affected::User(user), _) => caller.user_id == user,
            (Affected::Key(key), Credential::ApiKey { id }) => *id == key,
            (Affected::Session(session), Credential::Session { id, .. }) => *id == session,
            _ => false,
        }
    }

    /// The notification's payload: `key:<id>`, `session:<id>`, `user:<id>`,
    /// or empty for everything.
    fn payload(self) -> String {
        match self {
            Affected::Key(id) => format!("key:{id}"),
            Affected::Session(id) => format!("session:{id}"),
            Affected::User(id) => format!("user:{id}"),
            Affected::All => String::new(),
        }
    }

    /// Reads a payload back; anything it does not understand (an older or
    /// newer sender) means everything, the safe side.
    fn from_payload(payload: &str) -> Self {
        let parsed = payload.split_once(':').and_then(|(kind, id)| {
            let id = Uuid::parse_str(id).ok()?;
            match kind {
                "key" => Some(Affected::Key(id)),
                "session" => Some(Affected::Session(id)),
                "user" => Some(Affected::User(id)),
                _ => None,
            }
        });
        parsed.unwrap_or(Affected::All)
    }
}

/// Marks, in the caller's transaction, that access may have been revoked
/// for `affected` (a key or session ended, a user disabled or changed, a
/// group changed): every API process drops those cached credentials at the
/// commit. The caller also calls [`Authenticator::forget`] after
/// committing, so its own process does not wait for the notification.
pub async fn changed(tx: &mut PgConnection, affected: Affected) -> Result<()> {
    sqlx::query!(
        "select pg_notify($1, $2)",
        notify::AUTH_CHANGED,
        affected.payload()
    )
    .execute(tx)
    .await?;
    Ok(())
}

/// Drops the cached credentials another process's change concerns, and
/// every one after any gap in listening (what was missed is unknown).
pub async fn listen(pool: PgPool, auth: Arc<Authenticator>, shutdown: CancellationToken) {
    notify::listen(pool, notify::AUTH_CHANGED, shutdown, |heard| match heard {
        Heard::Notification(payload) => auth.forget(Affected::from_payload(payload)),
        Heard::MaybeMissed => auth.forget(Affected::All),
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_payload_reads_back_as_what_was_sent() {
        let id = Uuid::now_v7();
        for affected in [
            Affected::Key(id),
            Affected::Session(id),
            Affected::User(id),
            Affected::All,
        ] {
            assert_eq!(Affected::from_payload(&affected.payload()), affected);
        }
        assert_eq!(Affected::from_payload("group:x"), Affected::All);
        assert_eq!(Affected::from_payload("key:not-a-uuid"), Affected::All);
    }
}
