//! The two Postgres queues, compile and execute, and the SQL that moves jobs
//! through them.
//!
//! A job lives in its hot table (`compile_jobs`, `execution_jobs`) only while
//! it can be claimed or is running. Claiming sets a lease: a random token and
//! an expiry. Every write a worker makes afterwards is conditional on still
//! holding that token, so a worker that lost its lease (it stalled, the
//! rescuer gave the job to someone else) can never overwrite the newer
//! attempt's result. Finishing a job deletes its row in the same statement
//! that writes the result to the history table.
//!
//! Until then the job row is the only one that changes: an execution's
//! stored status stays QUEUED, and it reads as RUNNING (with the job's
//! `started_at`, `attempt` and `worker_id`) while its job is claimed. The
//! result copies those onto the execution. Claiming thus writes one row per
//! execution instead of two, and a retry or a rescue none in the history.

pub mod compile;
pub mod execute;
mod lease;

use std::time::Duration;

use rand::Rng;

/// How long to wait before the next attempt of a job whose attempt `attempt`
/// (1-based) failed for an infrastructure reason: exponential with full
/// jitter between half and all of the step, capped at five minutes.
pub fn retry_backoff(attempt: i32) -> Duration {
    let exp = attempt.clamp(1, 16) as u32 - 1;
    let step = Duration::from_secs(1)
        .saturating_mul(1 << exp)
        .min(Duration::from_secs(300));
    step.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

/// Seconds as the `float8` that `make_interval(secs => ...)` takes.
pub(crate) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_backoff_grows_and_is_capped() {
        for _ in 0..100 {
            let first = retry_backoff(1);
            assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1));
            let third = retry_backoff(3);
            assert!(third >= Duration::from_secs(2) && third <= Duration::from_secs(4));
            assert!(retry_backoff(40) <= Duration::from_secs(300));
        }
    }
}
