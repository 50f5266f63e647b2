//! Completion webhooks (docs/triggers.md, "Completion webhooks"): a
//! function's `webhookUrl` and signing secret, the per-call `callbackUrl`,
//! the deliveries' history, and the worker that delivers them.

pub(crate) mod deliver;
mod signature;

use std::time::Duration;

use axum::extract::State;
use chrono::{DateTime, Utc};
use plat_common::outbound::OutboundPolicy;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::types::Json as SqlJson;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Caller;
use crate::config::ApiConfig;
use crate::error::{Error, Result};
use crate::extract::{Json, Path, Query};
use crate::functions::{find, FunctionKey};
use crate::{audit, policy, AppState};

/// The delivery worker's and the outbound requests' settings.
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookConfig {
    /// Destinations reachable even though they are not public addresses:
    /// comma-separated hosts, `host:port` or CIDR blocks (docs/security.md,
    /// "Outbound requests"). Empty (the default): public addresses only.
    #[arg(long, env = "PLAT_OUTBOUND_ALLOW", default_value = "")]
    pub outbound_allow: OutboundPolicy,
    /// Deliveries this process sends at once; 0 runs no delivery worker here.
    #[arg(long, env = "PLAT_WEBHOOK_DELIVERY_CONCURRENCY", default_value_t = 16)]
    pub delivery_concurrency: usize,
    /// Attempts of a delivery before it is dead-lettered.
    #[arg(long, env = "PLAT_WEBHOOK_MAX_ATTEMPTS", default_value_t = 8)]
    pub max_attempts: i32,
    /// The wait after the first failed attempt, in milliseconds; it doubles
    /// after each further one (with jitter), up to PLAT_WEBHOOK_MAX_BACKOFF_SECS.
    #[arg(long, env = "PLAT_WEBHOOK_BACKOFF_MS", default_value_t = 5_000)]
    pub backoff_ms: u64,
    /// The longest wait between two attempts, in seconds.
    #[arg(long, env = "PLAT_WEBHOOK_MAX_BACKOFF_SECS", default_value_t = 3_600)]
    pub max_backoff_secs: u64,
    /// How long one attempt may take (connect, send, answer), in milliseconds.
    #[arg(long, env = "PLAT_WEBHOOK_TIMEOUT_MS", default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// How long a claimed delivery is this process's: one whose process died
    /// is attempted again after that (at least the timeout plus 5 seconds).
    #[arg(long, env = "PLAT_WEBHOOK_LEASE_SECS", default_value_t = 60)]
    pub lease_secs: u64,
    /// The longest the worker sleeps without looking for due deliveries, in
    /// milliseconds (new ones wake it at once).
    #[arg(long, env = "PLAT_WEBHOOK_POLL_MS", default_value_t = 1_000)]
    pub poll_ms: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            outbound_allow: OutboundPolicy::default(),
            delivery_concurrency: 16,
            max_attempts: 8,
            backoff_ms: 5_000,
            max_backoff_secs: 3_600,
            timeout_ms: 10_000,
            lease_secs: 60,
            poll_ms: 1_000,
        }
    }
}

impl WebhookConfig {
    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Never shorter than an attempt can take, so a live attempt is never
    /// taken over.
    fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs).max(self.timeout() + Duration::from_secs(5))
    }
}

pub fn router() -> crate::openapi::ApiRouter {
    OpenApiRouter::new()
        .routes(routes!(rotate_secret))
        .routes(routes!(deliveries))
}

/// Checks a `webhookUrl` or `callbackUrl` (`field`) as far as the API can
/// without resolving it: http or https, no credentials, and an IP-literal
/// host must be public or allowlisted. Names are checked again, resolved,
/// at each delivery.
pub(crate) fn check_url(config: &ApiConfig, field: &str, url: &str) -> Result<()> {
    const MAX_URL_BYTES: usize = 2048;
    if url.len() > MAX_URL_BYTES {
        return Err(Error::BadRequest(format!(
            "`{field}` is longer than {MAX_URL_BYTES} bytes"
        )));
    }
    config
        .webhooks
        .outbound_allow
        .check_url(url)
        .map(|_| ())
        .map_err(|refused| Error::BadRequest(format!("`{field}` is refused: {refused}")))
}

fn secrets_key(config: &ApiConfig) -> Result<&plat_common::secrets::SecretsKey> {
    config.secrets_key.as_ref().ok_or_else(|| {
        Error::NotConfigured(
            "webhooks are not available: the operator has not set PLAT_SECRETS_KEY, which encrypts their signing secrets".to_owned(),
        )
    })
}

/// Sets the function's `webhookUrl` (`None`: removes it), in the caller's
/// transaction. The first URL a function gets also gets it a signing
/// secret: answered then (once), as `whsec_…`.
pub(crate) async fn set_url(
    tx: &mut sqlx::PgConnection,
    config: &ApiConfig,
    function_id: Uuid,
    url: Option<&str>,
) -> Result<Option<String>> {
    if let Some(url) = url {
        check_url(config, "webhookUrl", url)?;
    }
    let has_secret = sqlx::query_scalar!(
        r#"
        update functions set webhook_url = $2, updated_at = now() where id = $1
        returning webhook_secret is not null as "has_secret!"
        "#,
        function_id,
        url,
    )
    .fetch_one(&mut *tx)
    .await?;
    if url.is_none() || has_secret {
        return Ok(None);
    }
    store_new_secret(tx, config, function_id).await.map(Some)
}

/// Makes, seals and stores a new signing secret; answers it as shown.
async fn store_new_secret(
    tx: &mut sqlx::PgConnection,
    config: &ApiConfig,
    function_id: Uuid,
) -> Result<String> {
    let (bytes, shown) = signature::new_secret();
    let sealed = secrets_key(config)?.seal_bytes(function_id, &bytes);
    sqlx::query!(
        "update functions set webhook_secret = $2, updated_at = now() where id = $1",
        function_id,
        sealed,
    )
    .execute(&mut *tx)
    .await?;
    Ok(shown)
}

/// A new signing secret, shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct WebhookSecret {
    /// `whsec_` and the base64 of the secret's bytes, as the Standard
    /// Webhooks libraries take it.
    webhook_secret: String,
}

/// Replaces the function's webhook signing secret (or makes its first one,
/// which a `callbackUrl` needs) and answers it, once. Deliveries from now
/// on, retries included, are signed with it (admins).
#[utoipa::path(
    post,
    path = "/functions/{function}/webhooks/secret",
    tag = "webhooks",
    operation_id = "rotateWebhookSecret",
    params(("function" = String, Path, description = "The function's id or name")),
    responses(
        (status = 200, description = "The new secret, shown only now", body = WebhookSecret),
        (status = 403, description = "Only admins change functions"),
        (status = 404, description = "No such function, or not accessible"),
        (status = 503, description = "PLAT_SECRETS_KEY is not set"),
    ),
)]
async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<Json<WebhookSecret>> {
    let mut tx = state.db.begin().await?;
    let function = find(&mut *tx, &caller, &FunctionKey::parse(key), true).await?;
    policy::may_change_functions(&caller)?;
    let webhook_secret = store_new_secret(&mut tx, &state.config, function.id).await?;
    audit::record(
        &mut tx,
        &caller,
        "function.webhook_secret.rotate",
        ("function", function.id.to_string()),
        json!({}),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(function_id = %function.id, "webhook signing secret rotated");
    Ok(Json(WebhookSecret { webhook_secret }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DeliveryParams {
    /// Only deliveries in this state.
    status: Option<DeliveryStatus>,
    /// Only the deliveries of this execution.
    #[serde(rename = "executionId")]
    execution_id: Option<Uuid>,
    /// At most this many, newest first (default 50, at most 200).
    limit: Option<i64>,
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[sqlx(
    type_name = "webhook_delivery_status",
    rename_all = "SCREAMING_SNAKE_CASE"
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum DeliveryStatus {
    /// Not delivered yet: an attempt is due, in progress, or waits its backoff.
    Pending,
    /// A 2xx answered.
    Delivered,
    /// Given up: attempts exhausted, an answer that is not retried, or a
    /// destination refused (see `lastError`).
    DeadLettered,
}

/// One attempt of a delivery.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct AttemptView {
    attempt: i32,
    started_at: DateTime<Utc>,
    /// Null while in progress, or when it was lost with its worker.
    finished_at: Option<DateTime<Utc>>,
    duration_ms: Option<i32>,
    /// The receiver's HTTP status; null when none answered.
    status_code: Option<i32>,
    /// Why it failed (timeout, connection, refused destination, status).
    error: Option<String>,
    worker_id: Option<String>,
}

/// One delivery of a finished execution to one URL.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct DeliveryView {
    id: Uuid,
    /// The `webhook-id` header: the same on every attempt.
    webhook_id: String,
    execution_id: Uuid,
    url: String,
    status: DeliveryStatus,
    attempts: i32,
    /// When a PENDING delivery is attempted next.
    next_attempt_at: Option<DateTime<Utc>>,
    last_status_code: Option<i32>,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    /// Every attempt, oldest first.
    attempt_log: Vec<AttemptView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct DeliveryList {
    items: Vec<DeliveryView>,
}

/// The function's webhook deliveries, newest first, each with every
/// attempt (status code, duration, error).
#[utoipa::path(
    get,
    path = "/functions/{function}/webhooks/deliveries",
    tag = "webhooks",
    operation_id = "listWebhookDeliveries",
    params(("function" = String, Path, description = "The function's id or name"), DeliveryParams),
    responses(
        (status = 200, description = "The deliveries", body = DeliveryList),
        (status = 400, description = "An invalid query parameter"),
        (status = 404, description = "No such function, or not accessible"),
    ),
)]
async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    Query(params): Query<DeliveryParams>,
) -> Result<Json<DeliveryList>> {
    let limit = params.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(Error::BadRequest(
            "`limit` must be from 1 to 200".to_owned(),
        ));
    }
    let function = find(&state.db, &caller, &FunctionKey::parse(key), false).await?;
    let rows = sqlx::query!(
        r#"
        select d.id, d.execution_id, d.url, d.status as "status: DeliveryStatus", d.attempts,
               d.next_attempt_at, d.last_status_code, d.last_error, d.created_at, d.finished_at,
               coalesce((select json_agg(json_build_object(
                             'attempt', a.attempt, 'startedAt', a.started_at,
                             'finishedAt', a.finished_at, 'durationMs', a.duration_ms,
                             'statusCode', a.status_code, 'error', a.error,
                             'workerId', a.worker_id) order by a.attempt)
                         from webhook_delivery_attempts a where a.delivery_id = d.id),
                        '[]') as "attempt_log!: SqlJson<Vec<AttemptView>>"
        from webhook_deliveries d
        where d.function_id = $1
          and ($2::webhook_delivery_status is null or d.status = $2)
          and ($3::uuid is null or d.execution_id = $3)
        order by d.created_at desc, d.id desc
        limit $4
        "#,
        function.id,
        params.status as Option<DeliveryStatus>,
        params.execution_id,
        limit,
    )
    .fetch_all(&state.db)
    .await?;
    let items = rows
        .into_iter()
        .map(|row| DeliveryView {
            webhook_id: deliver::webhook_id(row.id),
            id: row.id,
            execution_id: row.execution_id,
            url: row.url,
            next_attempt_at: matches!(row.status, DeliveryStatus::Pending)
                .then_some(row.next_attempt_at),
            status: row.status,
            attempts: row.attempts,
            last_status_code: row.last_status_code,
            last_error: row.last_error,
            created_at: row.created_at,
            finished_at: row.finished_at,
            attempt_log: row.attempt_log.0,
        })
        .collect();
    Ok(Json(DeliveryList { items }))
}
