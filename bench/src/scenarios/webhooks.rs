//! What a completion webhook costs: the same burst of executions drained by
//! one executor, for a function without a webhook and for one with a
//! `webhookUrl` pointing at a receiver in this process (127.0.0.1, allowed
//! by the bench API's PLAT_OUTBOUND_ALLOW), and how fast the API's delivery
//! worker empties the outbox (deliveries/s, from the first delivery row
//! written to the last one delivered).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context as _};
use serde_json::json;
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::options::Scale;
use crate::platform::Platform;
use crate::queue::{self, between};
use crate::report::Group;
use crate::sources;
use crate::stats::per_sec;

/// The longest wait for the last delivery after the executions finished.
const DELIVERY_PATIENCE: Duration = Duration::from_secs(300);

pub async fn run(
    platform: &mut Platform,
    scale: &Scale,
    notes: &mut Vec<String>,
) -> anyhow::Result<Group> {
    let receiver = Receiver::start().await?;
    let plain = platform.echo_function().await?;
    let hooked = platform
        .ready_function("echo-webhook", "rust", sources::ECHO_RUST)
        .await?;
    platform
        .api
        .put_ok(
            &format!("/functions/{hooked}"),
            &json!({ "webhookUrl": receiver.url }),
        )
        .await?;
    let n = scale.executions;
    prime(platform, &[plain, hooked]).await?;
    let without = drain(platform, plain, n).await?;
    let since = queue::now(&platform.db).await?;
    let with = drain(platform, hooked, n).await?;
    let delivered = receiver.wait_for(n + 1).await;
    let (rows, outbox_secs) = outbox(platform, hooked, since).await?;
    if !delivered || rows != n as i64 {
        notes.push(format!(
            "webhooks: {} of {} deliveries reached the receiver, {rows} delivered in the outbox",
            receiver.count(),
            n + 1
        ));
    }

    let mut group = Group::new("webhooks");
    group.push(
        "without_webhook_per_sec",
        "1 executor, function without a webhook: executions/s",
        without,
    );
    group.push(
        "with_webhook_per_sec",
        "1 executor, function with a webhook: executions/s",
        with,
    );
    group.push(
        "overhead_per_execution_us",
        "a completion webhook's cost per execution (drain time), µs",
        1e6 / with - 1e6 / without,
    );
    group.push(
        "deliveries_per_sec",
        "deliveries/s to a local receiver (outbox row written to delivered)",
        rows as f64 / outbox_secs,
    );
    Ok(group)
}

/// Runs each function once, so that neither drain pays for compiling its
/// module to native code (both share the executors' module cache), and the
/// delivery path has its connections open.
async fn prime(platform: &Platform, functions: &[Uuid]) -> anyhow::Result<()> {
    let workers = platform.start_executors(1).await?;
    for function in functions {
        platform
            .api
            .execute_ok(*function, &json!({ "n": 0 }))
            .await?;
    }
    workers.stop().await
}

/// Queues `n` runs, then drains them with one executor: executions/s from
/// the first claim to the last result.
async fn drain(platform: &Platform, function: Uuid, n: usize) -> anyhow::Result<f64> {
    let ids = platform.api.enqueue_numbers(function, 0..n).await?;
    let workers = platform.start_executors(1).await?;
    queue::wait_until_drained(&platform.db).await?;
    workers.stop().await?;
    let outcome = queue::outcome(&platform.db, &ids).await?;
    ensure!(
        outcome.not_succeeded() == 0,
        "webhooks: runs did not succeed"
    );
    let first = outcome.first_started.context("no execution started")?;
    let last = outcome.last_finished.context("no execution finished")?;
    Ok(per_sec(n, between(first, last)))
}

/// The function's deliveries written since `since` and delivered, and the
/// seconds from the first one written to the last one delivered.
async fn outbox(
    platform: &Platform,
    function: Uuid,
    since: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<(i64, f64)> {
    let (rows, secs): (i64, Option<f64>) = sqlx::query_as(
        "select count(*), extract(epoch from (max(finished_at) - min(created_at)))::float8
         from webhook_deliveries
         where function_id = $1 and status = 'DELIVERED' and created_at >= $2",
    )
    .bind(function)
    .bind(since)
    .fetch_one(&platform.db)
    .await?;
    Ok((rows, secs.unwrap_or(f64::NAN)))
}

/// A receiver that answers 204 to every POST and counts them.
struct Receiver {
    url: String,
    received: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let received = Arc::new(AtomicUsize::new(0));
        let counter = received.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                counter.fetch_add(1, Ordering::Relaxed);
                async { axum::http::StatusCode::NO_CONTENT }
            }),
        );
        let url = format!("http://{}/hook", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { url, received })
    }

    fn count(&self) -> usize {
        self.received.load(Ordering::Relaxed)
    }

    /// Whether `n` requests arrived within [`DELIVERY_PATIENCE`].
    async fn wait_for(&self, n: usize) -> bool {
        let deadline = tokio::time::Instant::now() + DELIVERY_PATIENCE;
        while self.count() < n {
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }
}
