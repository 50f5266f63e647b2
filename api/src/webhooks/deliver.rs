//! The delivery worker: claims due deliveries from the outbox
//! (`webhook_deliveries`), POSTs the finished execution record signed per
//! Standard Webhooks, and records each attempt. It runs in every API process
//! (PLAT_WEBHOOK_DELIVERY_CONCURRENCY=0 turns it off in one): the body is
//! exactly what `GET /executions/{id}` answers, built by the same code.
//!
//! Like the execution queue: the claim is one `FOR UPDATE SKIP LOCKED`
//! statement that also takes a lease (the delivery's `next_attempt_at`
//! moves to the lease's end), so a worker killed mid-delivery leaves it to
//! be claimed again when the lease ends: delivery is at least once, under
//! one `webhook-id`. Every outcome is written only by the lease's holder.

use std::sync::Arc;
use std::time::{Duration, Instant};

use plat_common::outbound::{OutboundPolicy, Refused};
use plat_common::secrets::SecretsKey;
use rand::Rng;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{signature, DeliveryStatus, WebhookConfig};

/// Where the outbox's trigger announces new deliveries (migration
/// 20261207000004).
const CHANNEL: &str = "plat_webhook_deliveries";

/// The `webhook-id` of a delivery: `msg_` and its id's hex digits.
pub(crate) fn webhook_id(id: Uuid) -> String {
    format!("msg_{}", id.simple())
}

/// What the worker needs, shared by its deliveries.
struct Worker {
    db: PgPool,
    config: WebhookConfig,
    secrets_key: Option<SecretsKey>,
    policy: Arc<OutboundPolicy>,
    client: reqwest::Client,
    worker_id: String,
}

/// A claimed delivery.
struct Claimed {
    id: Uuid,
    execution_id: Uuid,
    function_id: Uuid,
    url: String,
    attempt: i32,
    lease_token: Uuid,
    /// Null when the function is gone, or never had a secret.
    sealed_secret: Option<Vec<u8>>,
}

/// How one attempt went.
struct Outcome {
    status_code: Option<i32>,
    error: Option<String>,
    /// Worth another attempt: a timeout, a connection error, 5xx or 429.
    retryable: bool,
    duration_ms: i32,
}

impl Outcome {
    /// An attempt that sent nothing.
    fn given_up(error: String) -> Self {
        Self {
            status_code: None,
            error: Some(error),
            retryable: false,
            duration_ms: 0,
        }
    }

    fn delivered(&self) -> bool {
        self.error.is_none()
    }
}

/// Delivers until `shutdown`, with at most `config.delivery_concurrency`
/// deliveries in flight. A delivery in flight at shutdown is dropped with
/// its lease: another process (or this one, restarted) sends it again.
pub(crate) async fn run(
    db: PgPool,
    config: WebhookConfig,
    secrets_key: Option<SecretsKey>,
    shutdown: CancellationToken,
) {
    if config.delivery_concurrency == 0 {
        return;
    }
    let policy = Arc::new(config.outbound_allow.clone());
    let worker = Arc::new(Worker {
        client: policy.client(config.timeout()),
        policy,
        worker_id: plat_common::worker::worker_id("webhooks"),
        db: db.clone(),
        config,
        secrets_key,
    });
    let woken = Arc::new(Notify::new());
    let listening = tokio::spawn({
        let (woken, shutdown) = (woken.clone(), shutdown.clone());
        plat_common::notify::listen(db, CHANNEL, shutdown, move |_| woken.notify_one())
    });
    let mut running = JoinSet::new();
    while !shutdown.is_cancelled() {
        let free = worker.config.delivery_concurrency - running.len();
        let claimed = if free > 0 {
            match worker.claim(free).await {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::warn!(error = %error, "claiming webhook deliveries failed");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let all_taken = !claimed.is_empty() && claimed.len() == free;
        for delivery in claimed {
            running.spawn(worker.clone().deliver(delivery));
        }
        if all_taken {
            continue;
        }
        let nap = worker.until_next_due().await;
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = woken.notified() => {}
            () = tokio::time::sleep(nap) => {}
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
    running.shutdown().await;
    listening.abort();
}

impl Worker {
    /// Claims up to `limit` due deliveries, recording the start of their
    /// attempts in the same statement.
    async fn claim(&self, limit: usize) -> Result<Vec<Claimed>, sqlx::Error> {
        let lease_token = Uuid::new_v4();
        let rows = sqlx::query!(
            r#"
            with next as (
                select id from webhook_deliveries
                where status = 'PENDING' and next_attempt_at <= now()
                order by next_attempt_at
                limit $1
                for update skip locked
            ), claimed as (
                update webhook_deliveries d
                set attempts = d.attempts + 1, lease_token = $2,
                    next_attempt_at = now() + make_interval(secs => $3), updated_at = now()
                from next where d.id = next.id
                returning d.id, d.execution_id, d.function_id, d.url, d.attempts
            ), started as (
                insert into webhook_delivery_attempts (delivery_id, attempt, worker_id)
                select id, attempts, $4 from claimed
            )
            select c.id as "id!", c.execution_id as "execution_id!", c.function_id as "function_id!",
                   c.url as "url!", c.attempts as "attempts!", f.webhook_secret as "webhook_secret?"
            from claimed c left join functions f on f.id = c.function_id
            "#,
            limit as i64,
            lease_token,
            self.config.lease().as_secs_f64(),
            self.worker_id,
        )
        .fetch_all(&self.db)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| Claimed {
                id: row.id,
                execution_id: row.execution_id,
                function_id: row.function_id,
                url: row.url,
                attempt: row.attempts,
                lease_token,
                sealed_secret: row.webhook_secret,
            })
            .collect())
    }

    /// How long to wait for the next delivery to come due: until the
    /// earliest one's time (so retries keep their backoff to the
    /// millisecond), at most the poll interval.
    async fn until_next_due(&self) -> Duration {
        let poll = Duration::from_millis(self.config.poll_ms);
        let due = sqlx::query_scalar!(
            r#"
            select extract(epoch from (next_attempt_at - now()))::float8 as "secs!"
            from webhook_deliveries where status = 'PENDING'
            order by next_attempt_at limit 1
            "#
        )
        .fetch_optional(&self.db)
        .await;
        match due {
            Ok(Some(secs)) => Duration::from_secs_f64(secs.max(0.0)).min(poll),
            Ok(None) | Err(_) => poll,
        }
    }

    /// One attempt of `delivery`, and its outcome recorded.
    #[tracing::instrument(skip_all, fields(delivery_id = %delivery.id, execution_id = %delivery.execution_id, attempt = delivery.attempt))]
    async fn deliver(self: Arc<Self>, delivery: Claimed) {
        let outcome = self.attempt(&delivery).await;
        let max_attempts = self.config.max_attempts;
        let (status, retry_in) = if outcome.delivered() {
            (DeliveryStatus::Delivered, Duration::ZERO)
        } else if outcome.retryable && delivery.attempt < max_attempts {
            (DeliveryStatus::Pending, self.backoff(delivery.attempt))
        } else {
            (DeliveryStatus::DeadLettered, Duration::ZERO)
        };
        match status {
            DeliveryStatus::DeadLettered => tracing::warn!(
                error = outcome.error.as_deref().unwrap_or_default(),
                "webhook delivery dead-lettered"
            ),
            DeliveryStatus::Pending => tracing::info!(
                error = outcome.error.as_deref().unwrap_or_default(),
                retry_in_ms = retry_in.as_millis() as u64,
                "webhook delivery failed; retrying"
            ),
            DeliveryStatus::Delivered => tracing::debug!("webhook delivered"),
        }
        if let Err(error) = self.record(&delivery, &outcome, status, retry_in).await {
            // The lease ends by itself: the delivery is attempted again.
            tracing::warn!(error = %error, "recording a webhook attempt failed");
        }
    }

    /// Exponential, doubling from `backoff_ms`, with "equal jitter": a
    /// random wait between half and all of the step, so that retries of
    /// deliveries that failed together spread out, yet each wait is at
    /// least as long as the previous one's could have been.
    fn backoff(&self, attempt: i32) -> Duration {
        let exp = attempt.clamp(1, 30) as u32 - 1;
        let step = Duration::from_millis(self.config.backoff_ms)
            .saturating_mul(1u32 << exp.min(20))
            .min(Duration::from_secs(self.config.max_backoff_secs));
        step.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
    }

    async fn attempt(&self, delivery: &Claimed) -> Outcome {
        if delivery.attempt > self.config.max_attempts {
            return Outcome::given_up(
                "the last attempt was lost with its worker (its lease ran out)".to_owned(),
            );
        }
        let secret = match (&delivery.sealed_secret, &self.secrets_key) {
            (None, _) => {
                return Outcome::given_up(
                    "the function was deleted, or has no signing secret".to_owned(),
                )
            }
            (Some(_), None) => {
                return Outcome::given_up(
                    "PLAT_SECRETS_KEY is not set in this API process: cannot sign".to_owned(),
                )
            }
            (Some(sealed), Some(key)) => match key.open_bytes(delivery.function_id, sealed) {
                Ok(secret) => secret,
                Err(error) => return Outcome::given_up(error.to_string()),
            },
        };
        let body = match crate::executions::fetch(&self.db, delivery.execution_id).await {
            Ok(Some(execution)) => match serde_json::to_vec(&execution) {
                Ok(body) => body,
                Err(error) => return Outcome::given_up(format!("serialising: {error}")),
            },
            Ok(None) => return Outcome::given_up("the execution no longer exists".to_owned()),
            Err(error) => {
                return Outcome {
                    retryable: true,
                    ..Outcome::given_up(format!("reading the execution: {error}"))
                }
            }
        };
        let url = match self.policy.check_url(&delivery.url) {
            Ok(url) => url,
            Err(refused) => return Outcome::given_up(format!("refused: {refused}")),
        };
        let id = webhook_id(delivery.id);
        let timestamp = chrono::Utc::now().timestamp();
        let signature = signature::sign(&secret, &id, timestamp, &body);
        let started = Instant::now();
        let sent = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let duration_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
        match sent {
            Ok(response) => {
                let status = response.status();
                // Drained so the connection can be reused; its content is
                // not ours to keep.
                let _ = response.bytes().await;
                let code = i32::from(status.as_u16());
                Outcome {
                    status_code: Some(code),
                    error: (!status.is_success())
                        .then(|| format!("the receiver answered {status}")),
                    retryable: status.is_server_error() || code == 429,
                    duration_ms,
                }
            }
            Err(error) => Outcome {
                status_code: None,
                retryable: refusal(&error).is_none(),
                error: Some(describe(&error)),
                duration_ms,
            },
        }
    }

    /// Writes the attempt's outcome and the delivery's next state, if this
    /// worker still holds the lease.
    async fn record(
        &self,
        delivery: &Claimed,
        outcome: &Outcome,
        status: DeliveryStatus,
        retry_in: Duration,
    ) -> Result<(), sqlx::Error> {
        sqlx::query!(
            r#"
            with d as (
                update webhook_deliveries
                set status = $3,
                    next_attempt_at = case when $3 = 'PENDING'::webhook_delivery_status
                                           then now() + make_interval(secs => $4)
                                           else next_attempt_at end,
                    finished_at = case when $3 = 'PENDING'::webhook_delivery_status then null else now() end,
                    last_status_code = $5, last_error = $6, lease_token = null, updated_at = now()
                where id = $1 and lease_token = $2 and status = 'PENDING'
                returning id, attempts
            )
            update webhook_delivery_attempts a
            set finished_at = now(), duration_ms = $7, status_code = $5, error = $6
            from d where a.delivery_id = d.id and a.attempt = d.attempts
            "#,
            delivery.id,
            delivery.lease_token,
            status as DeliveryStatus,
            retry_in.as_secs_f64(),
            outcome.status_code,
            outcome.error,
            outcome.duration_ms,
        )
        .execute(&self.db)
        .await?;
        Ok(())
    }
}

/// The policy's refusal behind a failed request (from our resolver), if
/// that is why it failed: never retried.
fn refusal(error: &reqwest::Error) -> Option<&Refused> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<Refused>() {
            return Some(refused);
        }
        source = cause.source();
    }
    None
}

/// A failed request in a few words, for the attempt's record.
fn describe(error: &reqwest::Error) -> String {
    if let Some(refused) = refusal(error) {
        return format!("refused: {refused}");
    }
    if error.is_timeout() {
        return "timed out".to_owned();
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
