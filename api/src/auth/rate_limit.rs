//! Token buckets, one per credential (and one per source address for
//! logins), kept in this API process's memory. With several API processes
//! behind a balancer each enforces its own buckets, so the fleet-wide limit
//! is the per-process limit times the number of processes (docs/security.md).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Past this many buckets, full ones (idle callers) are forgotten.
const MAX_BUCKETS: usize = 10_000;

/// A sustained rate and a burst. A rate of 0 means no limit.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub per_sec: f64,
    pub burst: u32,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// Takes one token from `key`'s bucket, or says how long until one is there.
    pub fn take(&self, key: &str, rate: Rate) -> Result<(), Duration> {
        self.take_at(key, rate, Instant::now())
    }

    fn take_at(&self, key: &str, rate: Rate, now: Instant) -> Result<(), Duration> {
        if rate.per_sec <= 0.0 {
            return Ok(());
        }
        let burst = f64::from(rate.burst.max(1));
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            buckets.retain(|_, bucket| {
                bucket.tokens + now.duration_since(bucket.updated).as_secs_f64() * rate.per_sec
                    < burst
            });
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let refilled = now.duration_since(bucket.updated).as_secs_f64() * rate.per_sec;
        bucket.tokens = (bucket.tokens + refilled).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / rate.per_sec,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let limiter = RateLimiter::default();
        let rate = Rate {
            per_sec: 2.0,
            burst: 3,
        };
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.take_at("k", rate, start).is_ok());
        }
        let wait = limiter.take_at("k", rate, start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(
            limiter.take_at("other", rate, start).is_ok(),
            "buckets are per key"
        );
        assert!(limiter
            .take_at("k", rate, start + Duration::from_millis(500))
            .is_ok());
        assert!(limiter
            .take_at("k", rate, start + Duration::from_millis(500))
            .is_err());
    }

    #[test]
    fn a_zero_rate_means_no_limit() {
        let limiter = RateLimiter::default();
        let rate = Rate {
            per_sec: 0.0,
            burst: 0,
        };
        for _ in 0..1000 {
            assert!(limiter.take("k", rate).is_ok());
        }
    }
}
