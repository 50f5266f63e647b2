//! `GET /metrics` (admins; Prometheus sends the key as a bearer token) and
//! the HTTP request metrics every route records. The queue gauges are read
//! from the database at each scrape, so they are current whatever process
//! does the work.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::Result;
use crate::policy;
use crate::AppState;

pub fn router() -> crate::openapi::ApiRouter {
    OpenApiRouter::new().routes(routes!(scrape))
}

/// The `route` label of a request that matched no route.
const UNMATCHED_ROUTE: &str = "unmatched";
/// The `method` label of a method outside [`method_label`]'s set.
const OTHER_METHOD: &str = "OTHER";

/// Counts and times every request by method, route template (never the
/// raw path: ids would make a series per resource) and status.
///
/// Every label has a fixed, small set of values, whatever the client sends:
/// this runs before authentication, and each distinct label value is a new
/// series held in memory for the life of the process. So the method is one
/// of the standard ones or `OTHER` (HTTP allows any token as a method: a
/// client looping `curl -X <random>` would otherwise grow memory without
/// bound), and the route is a template or `unmatched`.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method()).to_owned();
    // `/functions/:function/execute`: the `{function}` form breaks some
    // Prometheus text parsers (braces inside a label value).
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE.to_owned(), |path| {
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

/// The methods of RFC 9110 and PATCH keep their name; any other is `OTHER`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => OTHER_METHOD,
    }
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
    policy::may_read_metrics(&caller)?;
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
struct QueueDepth {
    queue: String,
    ready: i64,
    scheduled: i64,
    running: i64,
    oldest: Option<DateTime<Utc>>,
}

/// Sets the queue depth and oldest-ready-age gauges from the queue tables.
async fn record_queues(db: &PgPool) -> Result<()> {
    // The columns of a `union` are nullable to PostgreSQL; the counts and
    // names never are null.
    let rows = sqlx::query_as!(
        QueueDepth,
        r#"
        select 'compile' as "queue!",
               count(*) filter (where state = 'available' and run_at <= now()) as "ready!",
               count(*) filter (where state = 'available' and run_at > now()) as "scheduled!",
               count(*) filter (where state = 'running') as "running!",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_methods_keep_their_name_and_any_other_is_other() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(method_label(&Method::GET), "GET");
        let invented = Method::from_bytes("X".repeat(40_000).as_bytes()).unwrap();
        assert_eq!(method_label(&invented), "OTHER");
        assert_eq!(method_label(&Method::from_bytes(b"get").unwrap()), "OTHER");
    }
}
