//! Plat's HTTP API: registers functions, queues their builds and runs, and
//! serves their history. It only talks to PostgreSQL; the workers do the rest.

mod access;
mod api_keys;
mod audit;
mod auth;
mod batches;
mod bootstrap;
pub mod client_addr;
pub mod config;
mod environments;
mod error;
mod events;
mod executions;
mod extract;
mod functions;
mod groups;
mod health;
mod http_routes;
mod metrics;
mod openapi;
mod pagination;
mod password_resets;
mod policy;
mod queues;
pub mod retention;
mod retries;
mod scheduler;
mod schedules;
mod sealing;
mod session_cookie;
mod sessions;
mod stats;
mod ui;
mod users;
mod waiters;
mod webhooks;
pub use webhooks::WebhookConfig;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::FromRef;
use axum::http::{HeaderName, Request};
use axum::Router;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use auth::tokens::{new_api_key, new_password};
pub use config::ApiConfig;
pub use error::Error;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What every handler can reach.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub db: PgPool,
    pub config: Arc<ApiConfig>,
    waiters: Arc<waiters::Waiters>,
    /// The live streams' subscribers (`GET …/events`).
    events: Arc<events::Hub>,
    /// Wakes the executors after an execution is queued.
    new_jobs: plat_common::notify::Hint,
    /// Cancelled when the server stops: calls waiting for an execution then
    /// answer at once (202) instead of holding the shutdown for `?wait=`.
    stopping: CancellationToken,
    /// Credentials, their cache and the rate limits.
    auth: Arc<auth::Authenticator>,
    /// The session cookie's name and attributes.
    session_cookie: session_cookie::SessionCookie,
    /// Hashes passwords, a bounded number at once.
    passwords: Arc<auth::passwords::Hasher>,
    /// Login attempts and invalid credentials, per client address.
    throttle: Arc<auth::throttle::Throttle>,
}

impl AppState {
    /// Must be called within a tokio runtime (it starts the notifying task).
    pub fn new(db: PgPool, config: ApiConfig) -> Self {
        Self {
            new_jobs: plat_common::notify::Hint::start(
                db.clone(),
                plat_common::notify::EXECUTION_JOBS,
            ),
            db,
            auth: Arc::new(auth::Authenticator::new(&config)),
            // Secure unless the operator explicitly says plain HTTP.
            session_cookie: session_cookie::SessionCookie::new(
                config.cookie_secure.unwrap_or(true),
            ),
            passwords: Arc::new(auth::passwords::Hasher::new(
                config.password_hash_concurrency,
            )),
            throttle: Arc::new(auth::throttle::Throttle::new(&config)),
            config: Arc::new(config),
            waiters: Arc::default(),
            events: Arc::default(),
            stopping: CancellationToken::new(),
        }
    }
}

/// The whole HTTP surface. Requests get an `x-request-id` (kept if the client
/// sent one), echoed in the response and carried by every log line. Every
/// route but the health checks, login, the API's own documentation and the
/// dashboard's files requires credentials (see `auth`), unknown paths
/// included.
///
/// This is the only place routes are assembled, and only from
/// [`openapi::ApiRouter`]s, whose routes are registered by `routes!` from
/// their `#[utoipa::path]` attributes: the router and the OpenAPI document
/// are two halves of the same value (tests/tests/openapi.rs checks that no
/// module routes around this).
pub fn app(state: AppState) -> Router {
    let (secured, secured_doc) = openapi::ApiRouter::new()
        .merge(functions::router(&state))
        .merge(executions::router(&state))
        .merge(batches::router(&state))
        .merge(schedules::router())
        .merge(users::router())
        .merge(password_resets::router())
        .merge(groups::router())
        .merge(api_keys::router())
        .merge(environments::router())
        .merge(sessions::router())
        .merge(audit::router())
        .merge(stats::router())
        .merge(queues::router())
        .merge(retries::router())
        .merge(metrics::router())
        .merge(http_routes::router())
        .merge(events::router())
        .merge(webhooks::router())
        .split_for_parts();
    let (public, public_doc) = openapi::ApiRouter::new()
        .merge(health::router())
        .merge(sessions::public_router())
        .merge(password_resets::public_router())
        .merge(openapi::router())
        .merge(ui::router())
        .split_for_parts();
    // Functions' HTTP routes answer only outside these paths.
    let api_paths = http_routes::ApiPaths::of(&[&secured_doc, &public_doc]);
    let document = openapi::document(secured_doc, public_doc);
    secured
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        // The public routes get the same problem+json 405 as the others.
        .merge(public.method_not_allowed_fallback(method_not_allowed))
        .layer(axum::Extension(document))
        // Around the router's fallback too: requests no API route matched
        // may be for a function's HTTP route (`http_routes`).
        .layer(axum::middleware::from_fn_with_state(
            http_routes::Dispatch::new(state.clone(), api_paths.clone()),
            http_routes::serve,
        ))
        .layer(axum::Extension(api_paths))
        .layer(axum::middleware::from_fn(metrics::track))
        .with_state(state)
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            let raw_id = request.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
            let span = tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = raw_id);
            // The id the jobs store, so that their spans join this trace.
            plat_common::telemetry::join_request(&span, request_id(request.headers()));
            span
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// The request's `x-request-id` (the client's, or the one
/// `SetRequestIdLayer` made), stored with the jobs it queues: up to 128
/// visible ASCII characters; a longer or odd one is logged but not stored.
pub(crate) fn request_id(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
}

async fn not_found(uri: axum::http::Uri) -> Error {
    Error::NotFound(format!("no route for {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Error {
    Error::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}

/// Binds `config.listen` and serves until `shutdown`.
pub async fn serve(
    pool: PgPool,
    config: ApiConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    serve_on(listener, pool, config, shutdown).await
}

/// Serves on an already bound listener (tests bind port 0) until `shutdown`,
/// then lets in-flight requests finish (those waiting for an execution
/// answer with its current state at once).
pub async fn serve_on(
    listener: TcpListener,
    pool: PgPool,
    config: ApiConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.secrets_key.is_some(),
        "PLAT_SECRETS_KEY is not set: function sources and lockfiles are stored encrypted with it \
         (docs/dependencies.md); make one with `openssl rand -base64 32` and give the same key to \
         the compilers and executors"
    );
    // Every key of a rotation opens; the current one seals (common/src/secrets.rs).
    let config = ApiConfig {
        secrets_key: (config.secrets_key.clone())
            .map(|key| key.with_previous(&config.secrets_previous_keys)),
        ..config
    };
    // Before the first request, so its metrics are recorded.
    plat_common::metrics::handle();
    bootstrap::run(&pool, &config).await?;
    let state = AppState {
        stopping: shutdown.clone(),
        ..AppState::new(pool.clone(), config)
    };
    let listen = tokio::spawn(waiters::listen(
        pool.clone(),
        state.waiters.clone(),
        state.events.clone(),
        shutdown.clone(),
    ));
    let watch_events = tokio::spawn(events::hub::watch(
        pool.clone(),
        state.events.clone(),
        shutdown.clone(),
    ));
    let listen_auth = tokio::spawn(auth::listen(
        pool.clone(),
        state.auth.clone(),
        shutdown.clone(),
    ));
    let sealing = tokio::spawn(sealing::run(
        pool.clone(),
        state.config.secrets_key.clone().expect("checked above"),
        shutdown.clone(),
    ));
    let retention = tokio::spawn(retention::run(
        pool,
        retention::Retention {
            execution_days: state.config.retention_days,
            stats_days: state.config.stats_retention_days,
        },
        shutdown.clone(),
    ));
    // Every API process fires due schedules; the database makes each tick
    // fire once.
    let scheduler = tokio::spawn(scheduler::run(
        scheduler::Scheduler {
            db: state.db.clone(),
            max_queued_per_user: state.config.max_queued_per_user,
            new_jobs: state.new_jobs.clone(),
            retention_days: state.config.retention_days,
        },
        shutdown.clone(),
    ));
    let deliveries = tokio::spawn(webhooks::deliver::run(
        state.db.clone(),
        state.config.webhooks.clone(),
        state.config.secrets_key.clone(),
        shutdown.clone(),
    ));
    tracing::info!(address = %listener.local_addr()?, "API listening");
    let served = axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned())
    .await;
    shutdown.cancel();
    listen.abort();
    watch_events.abort();
    listen_auth.abort();
    retention.abort();
    // Each batch is one transaction; one cut short rolls back.
    sealing.abort();
    // Between its transactions it holds nothing; one cut short rolls back.
    scheduler.abort();
    deliveries.abort();
    served.context("serving HTTP")
}
