//! `GET /metrics` (admins; Prometheus sends the key as a bearer token) and
//! the HTTP request metrics every route records. The queue gauges are read
//! from the database at each scrape, so they are current whatever process
//! does the work.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::Result;
use crate::AppState;

pub fn router() -> crate::openapi::ApiRouter {
    OpenApiRouter::new().routes(routes!(scrape))
}

/// Counts and times every request by method, route template (never the
/// raw path: ids would make a series per resource) and status.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    // `/functions/:function/execute`: the `{function}` form breaks some
    // Prometheus text parsers (braces inside a label value).
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".to_owned(), |path| {
            path.as_str().replace('{', ":").replace('}', "")
        });
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    ::metrics::counter!("plat_http_requests_total", &labels).increment(1);
    ::metrics::histogram!("plat_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Prometheus's scrape (admins).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "getMetrics",
    responses((
        status = 200,
        description = "Prometheus text format: requests, queue depth and age, job outcomes and durations, compile times, module cache, pool usage",
        content_type = "text/plain",
        body = String,
    )),
)]
async fn scrape(State(state): State<AppState>, caller: Caller) -> Result<Response> {
    caller.require_admin("read the metrics")?;
    record_queues(&state.db).await?;
    plat_common::metrics::record_pool("api", &state.db);
    let mut response = plat_common::metrics::render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

/// One queue's depth by state, and its oldest ready job's `run_at`.
#[derive(sqlx::FromRow)]
struct QueueDepth {
    queue: String,
    ready: i64,
    scheduled: i64,
    running: i64,
    oldest: Option<DateTime<Utc>>,
}

/// Sets the queue depth and oldest-ready-age gauges from the queue tables.
async fn record_queues(db: &PgPool) -> Result<()> {
    let rows: Vec<QueueDepth> = sqlx::query_as(
        r#"
        select 'compile' as queue,
               count(*) filter (where state = 'available' and run_at <= now()) as ready,
               count(*) filter (where state = 'available' and run_at > now()) as scheduled,
               count(*) filter (where state = 'running') as running,
               min(run_at) filter (where state = 'available' and run_at <= now()) as oldest
        from compile_jobs
        union all
        select 'execute', count(*) filter (where state = 'available' and run_at <= now()),
               count(*) filter (where state = 'available' and run_at > now()),
               count(*) filter (where state = 'running'),
               min(run_at) filter (where state = 'available' and run_at <= now())
        from execution_jobs
        "#,
    )
    .fetch_all(db)
    .await?;
    let now = Utc::now();
    for row in rows {
        for (state, count) in [
            ("ready", row.ready),
            ("scheduled", row.scheduled),
            ("running", row.running),
        ] {
            ::metrics::gauge!("plat_queue_jobs", "queue" => row.queue.clone(), "state" => state)
                .set(count as f64);
        }
        let age = row.oldest.map_or(0.0, |at| {
            (now - at).num_milliseconds().max(0) as f64 / 1000.0
        });
        ::metrics::gauge!("plat_queue_oldest_ready_seconds", "queue" => row.queue).set(age);
    }
    Ok(())
}
