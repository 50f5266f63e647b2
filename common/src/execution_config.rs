//! The limits and environment a function version runs with.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::ErrorKind;

/// Stored per function version (`function_versions.execution_config`), always
/// fully populated: the API fills defaults before storing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionConfig {
    /// Wall-clock limit of one run.
    pub timeout_ms: u32,
    /// Cap on the module's linear memory.
    pub memory_limit_mb: u32,
    /// The only environment variables the function sees.
    #[serde(default)]
    pub environment_variables: BTreeMap<String, String>,
    /// Most runs of the function RUNNING at once across all executors
    /// (`None`: no limit). Enforced by the queue: see
    /// `migrations/20261206000001_fair_queue_and_quotas.sql`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Runs again after a handler error or a timeout (`None`: never).
    /// Applied by the executor: see [`RetryPolicy`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
}

impl Default for ExecutionConfig {
    fn default() -> Self {
        Self {
            timeout_ms: 10_000,
            memory_limit_mb: 128,
            environment_variables: BTreeMap::new(),
            max_concurrency: None,
            retry: None,
        }
    }
}

/// `executionConfig.retry`: how often and how soon a failed run runs again
/// (docs/triggers.md, "Retries and dead letters"). The API checks the
/// bounds before storing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Most runs in all, the first included (1: no retry).
    pub max_attempts: u32,
    /// Wait before the second run.
    pub backoff_ms: u32,
    /// Each further wait is this many times the one before.
    pub backoff_multiplier: f64,
}

/// The longest wait between two runs, whatever the policy says.
pub const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(3600);

impl RetryPolicy {
    /// Whether a run that failed with `kind` as its attempt `attempt`
    /// (1-based) runs again. Only the failures a later run may not repeat
    /// are retried: a handler error (a flaky dependency) and a timeout (a
    /// slow one). An invalid output, a trap, a panic or running out of
    /// memory would fail the same way again.
    pub fn retries(&self, kind: ErrorKind, attempt: u32) -> bool {
        matches!(kind, ErrorKind::HandlerError | ErrorKind::Timeout) && attempt < self.max_attempts
    }

    /// How long to wait after the failed attempt `attempt` (1-based):
    /// `backoffMs * backoffMultiplier^(attempt - 1)`, capped at
    /// [`MAX_RETRY_BACKOFF`], plus up to a quarter more at random. The
    /// jitter only ever adds, so a run never comes sooner than its policy
    /// says, and runs that failed together (one outage) do not all come
    /// back in the same instant.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(64) as i32;
        let ms = f64::from(self.backoff_ms) * self.backoff_multiplier.powi(exponent);
        let step = Duration::from_secs_f64((ms / 1000.0).min(MAX_RETRY_BACKOFF.as_secs_f64()));
        step.mul_f64(rand::thread_rng().gen_range(1.0..1.25))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_handler_errors_and_timeouts_are_retried_while_attempts_remain() {
        let policy = RetryPolicy {
            max_attempts: 3,
            backoff_ms: 100,
            backoff_multiplier: 2.0,
        };
        assert!(policy.retries(ErrorKind::HandlerError, 1));
        assert!(policy.retries(ErrorKind::Timeout, 2));
        assert!(!policy.retries(ErrorKind::HandlerError, 3));
        assert!(!policy.retries(ErrorKind::InvalidOutput, 1));
        assert!(!policy.retries(ErrorKind::Trap, 1));
    }

    #[test]
    fn backoff_grows_by_the_multiplier_with_added_jitter_and_a_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            backoff_ms: 100,
            backoff_multiplier: 3.0,
        };
        for _ in 0..100 {
            let third = policy.backoff(3);
            assert!(third >= Duration::from_millis(900) && third < Duration::from_millis(1125));
            assert!(policy.backoff(60) <= MAX_RETRY_BACKOFF.mul_f64(1.25));
        }
    }
}
