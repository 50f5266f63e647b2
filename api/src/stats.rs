//! `GET /functions/{function}/stats?from=&to=&bucket=hour|day`: how a
//! function behaved over a time range. Read from `execution_rollups`, which
//! the database keeps current as executions finish (see the migration
//! 20261124000002), so the cost depends on the range, not on how many
//! executions there were.
//!
//! Durations come from a histogram with exact buckets below 7 ms and about
//! 25% wide ones above: a percentile is exact up to 6 ms, and above that it
//! is the largest whole millisecond of its bucket (never an understatement).

use std::collections::BTreeMap;

use axum::extract::State;
use chrono::{DateTime, Duration, DurationRound, Utc};
use plat_common::ExecutionStatus;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::extract::{Json, Path, Query};
use crate::functions::{self, FunctionKey};
use crate::AppState;

/// Most buckets one answer may hold.
const MAX_BUCKETS: i64 = 2000;

pub fn router() -> crate::openapi::ApiRouter {
    OpenApiRouter::new().routes(routes!(stats))
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    fn width(self) -> Duration {
        match self {
            Bucket::Hour => Duration::hours(1),
            Bucket::Day => Duration::days(1),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct StatsParams {
    /// Start (RFC 3339), rounded down to a bucket; default: 24 hours (or, by day, 30 days) before `to`.
    from: Option<DateTime<Utc>>,
    /// End (RFC 3339), rounded up to a bucket; default: now.
    to: Option<DateTime<Utc>>,
    /// `hour` (the default) or `day`.
    bucket: Option<Bucket>,
}

/// Counts and duration histogram of a set of executions.
#[derive(Debug, Default, Clone)]
struct Tally {
    by_status: BTreeMap<ExecutionStatus, i64>,
    errors: BTreeMap<String, i64>,
    /// Over SUCCEEDED and FAILED runs (a cancelled one may never have run).
    histogram: Vec<i64>,
    ran: i64,
    duration_ms_sum: i64,
    queued_ms_sum: i64,
    total: i64,
}

impl Tally {
    fn add(&mut self, row: &Row) {
        *self.by_status.entry(row.status).or_default() += row.executions;
        if !row.error_type.is_empty() {
            *self.errors.entry(row.error_type.clone()).or_default() += row.executions;
        }
        self.total += row.executions;
        self.queued_ms_sum += row.queued_ms_sum;
        if matches!(
            row.status,
            ExecutionStatus::Succeeded | ExecutionStatus::Failed
        ) {
            self.ran += row.executions;
            self.duration_ms_sum += row.duration_ms_sum;
            if self.histogram.len() < row.duration_histogram.len() {
                self.histogram.resize(row.duration_histogram.len(), 0);
            }
            for (sum, count) in self.histogram.iter_mut().zip(&row.duration_histogram) {
                *sum += count;
            }
        }
    }

    /// The nearest-rank percentile `p` (0–1) of the durations, from the
    /// histogram whose bucket `i` ends (exclusive) at `bounds[i]`.
    fn percentile(&self, p: f64, bounds: &[i32]) -> Option<i64> {
        if self.ran == 0 {
            return None;
        }
        let rank = ((p * self.ran as f64).ceil() as i64).max(1);
        let mut seen = 0;
        for (i, count) in self.histogram.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(match bounds.get(i) {
                    Some(end) => i64::from(*end) - 1,
                    // The open last bucket: at least its start.
                    None => bounds.last().map_or(0, |b| i64::from(*b)),
                });
            }
        }
        None
    }

    fn durations(&self, bounds: &[i32]) -> Durations {
        Durations {
            avg: (self.ran > 0).then(|| self.duration_ms_sum as f64 / self.ran as f64),
            p50: self.percentile(0.50, bounds),
            p95: self.percentile(0.95, bounds),
            p99: self.percentile(0.99, bounds),
        }
    }

    fn count(&self, status: ExecutionStatus) -> i64 {
        self.by_status.get(&status).copied().unwrap_or(0)
    }
}

struct Row {
    hour: DateTime<Utc>,
    status: ExecutionStatus,
    error_type: String,
    executions: i64,
    duration_ms_sum: i64,
    queued_ms_sum: i64,
    duration_histogram: Vec<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Durations {
    avg: Option<f64>,
    p50: Option<i64>,
    p95: Option<i64>,
    p99: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Point {
    start: DateTime<Utc>,
    total: i64,
    succeeded: i64,
    failed: i64,
    cancelled: i64,
    duration_ms: Durations,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Stats {
    function_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket: Bucket,
    total: i64,
    by_status: BTreeMap<ExecutionStatus, i64>,
    /// SUCCEEDED over all finished; null without executions.
    success_rate: Option<f64>,
    duration_ms: Durations,
    queued_ms: QueuedMs,
    /// FAILED (and CANCELLED) executions by `error.type`.
    errors: BTreeMap<String, i64>,
    series: Vec<Point>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct QueuedMs {
    avg: Option<f64>,
}

/// Executions that finished in `from` ≤ t < `to`, by the hour they finished
/// in: `from` is rounded down and `to` up to whole buckets (UTC). Defaults:
/// the last 24 hours by hour, or the last 30 days by day.
#[utoipa::path(
    get,
    path = "/functions/{function}/stats",
    tag = "stats",
    operation_id = "getFunctionStats",
    params(
        ("function" = String, Path, description = "The function's id or name"),
        StatsParams,
    ),
    responses(
        (status = 200, description = "Totals by status, success rate, duration percentiles, average queue time, errors by type and a series per bucket", body = Stats),
        (status = 400, description = "An invalid parameter, `from` not before `to`, or more than 2000 buckets"),
        (status = 404, description = "No such function, or not accessible"),
    ),
)]
async fn stats(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    Query(params): Query<StatsParams>,
) -> Result<Json<Stats>> {
    let bucket = params.bucket.unwrap_or(Bucket::Hour);
    let width = bucket.width();
    let to = params.to.unwrap_or_else(Utc::now);
    let from = params.from.unwrap_or(match bucket {
        Bucket::Hour => to - Duration::hours(24),
        Bucket::Day => to - Duration::days(30),
    });
    if from >= to {
        return Err(Error::BadRequest("`from` must be before `to`".to_owned()));
    }
    let round = |t: DateTime<Utc>| {
        t.duration_trunc(width)
            .map_err(|e| Error::BadRequest(format!("cannot round {t} to a {bucket:?}: {e}")))
    };
    let from = round(from)?;
    let to_floor = round(to)?;
    let to = if to_floor == to { to } else { to_floor + width };
    let buckets = (to - from).num_seconds() / width.num_seconds();
    if buckets > MAX_BUCKETS {
        return Err(Error::BadRequest(format!(
            "the range holds {buckets} buckets; at most {MAX_BUCKETS}: narrow it or use bucket=day"
        )));
    }

    let function = functions::find(&state.db, &caller, &FunctionKey::parse(key), false).await?;
    let bounds = sqlx::query_scalar!(r#"select plat_duration_bounds() as "bounds!""#)
        .fetch_one(&state.db)
        .await?;
    let rows = sqlx::query_as!(
        Row,
        r#"
        select hour, status as "status: ExecutionStatus", error_type, executions, duration_ms_sum,
               queued_ms_sum, duration_histogram
        from execution_rollups
        where function_id = $1 and hour >= $2 and hour < $3
        "#,
        function.id,
        from,
        to
    )
    .fetch_all(&state.db)
    .await?;

    let mut overall = Tally::default();
    let mut series: BTreeMap<DateTime<Utc>, Tally> = BTreeMap::new();
    let mut start = from;
    while start < to {
        series.insert(start, Tally::default());
        start += width;
    }
    for row in &rows {
        overall.add(row);
        let start = row.hour.duration_trunc(width).unwrap_or(row.hour);
        series.entry(start).or_default().add(row);
    }
    let finished = overall.total;
    Ok(Json(Stats {
        function_id: function.id,
        from,
        to,
        bucket,
        total: finished,
        success_rate: (finished > 0)
            .then(|| overall.count(ExecutionStatus::Succeeded) as f64 / finished as f64),
        duration_ms: overall.durations(&bounds),
        queued_ms: QueuedMs {
            avg: (finished > 0).then(|| overall.queued_ms_sum as f64 / finished as f64),
        },
        series: series
            .into_iter()
            .map(|(start, tally)| Point {
                start,
                total: tally.total,
                succeeded: tally.count(ExecutionStatus::Succeeded),
                failed: tally.count(ExecutionStatus::Failed),
                cancelled: tally.count(ExecutionStatus::Cancelled),
                duration_ms: tally.durations(&bounds),
            })
            .collect(),
        by_status: overall.by_status,
        errors: overall.errors,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_exact_in_single_millisecond_buckets_and_conservative_above() {
        let bounds = [1, 2, 3, 5, 10];
        // Durations: 0 ms ×2, 1 ms ×5, 2 ms ×2, one in [5, 10) ms.
        let tally = Tally {
            histogram: vec![2, 5, 2, 0, 1, 0],
            ran: 10,
            ..Tally::default()
        };
        assert_eq!(tally.percentile(0.2, &bounds), Some(0));
        assert_eq!(tally.percentile(0.5, &bounds), Some(1));
        assert_eq!(tally.percentile(0.9, &bounds), Some(2));
        assert_eq!(tally.percentile(0.99, &bounds), Some(9));
        assert_eq!(Tally::default().percentile(0.5, &bounds), None);
    }
}
