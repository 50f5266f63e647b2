//! Token buckets, one per user (shared by all their API keys and sessions)
//! and one per source address for logins, kept in this API process's
//! memory. With several API processes behind a balancer each enforces its
//! own buckets, so the fleet-wide limit is the per-process limit times the
//! number of processes (docs/security.md says why).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

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

impl Rate {
    /// Whether this rate limits anything (a rate of 0 does not).
    pub fn limits(self) -> bool {
        self.per_sec > 0.0
    }

    /// The most tokens a bucket holds, hence the most one call can cost.
    pub fn burst(self) -> u32 {
        self.burst.max(1)
    }
}

impl RateLimiter {
    /// Takes one token from `key`'s bucket, or says how long until one is there.
    pub fn take(&self, key: &str, rate: Rate) -> Result<(), Duration> {
        self.take_many(key, rate, 1)
    }

    /// Takes `cost` tokens from `key`'s bucket, all or none, or says how
    /// long until that many are there. A cost over the burst never fits:
    /// callers refuse it before asking (see [`Rate::burst`]).
    pub fn take_many(&self, key: &str, rate: Rate, cost: u32) -> Result<(), Duration> {
        self.take_at(key, rate, cost, Instant::now())
    }

    fn take_at(&self, key: &str, rate: Rate, cost: u32, now: Instant) -> Result<(), Duration> {
        if !rate.limits() || cost == 0 {
            return Ok(());
        }
        let burst = f64::from(rate.burst());
        let cost = f64::from(cost);
        let mut buckets = self.buckets.lock();
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
        if bucket.tokens >= cost {
            bucket.tokens -= cost;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (cost - bucket.tokens) / rate.per_sec,
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
            assert!(limiter.take_at("k", rate, 1, start).is_ok());
        }
        let wait = limiter.take_at("k", rate, 1, start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(
            limiter.take_at("other", rate, 1, start).is_ok(),
            "buckets are per key"
        );
        assert!(limiter
            .take_at("k", rate, 1, start + Duration::from_millis(500))
            .is_ok());
        assert!(limiter
            .take_at("k", rate, 1, start + Duration::from_millis(500))
            .is_err());
    }

    #[test]
    fn a_costly_take_is_all_or_nothing_and_waits_for_its_whole_cost() {
        let limiter = RateLimiter::default();
        let rate = Rate {
            per_sec: 10.0,
            burst: 10,
        };
        let start = Instant::now();
        assert!(limiter.take_at("k", rate, 7, start).is_ok());
        let wait = limiter.take_at("k", rate, 5, start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(200), "2 tokens short at 10/s");
        assert!(
            limiter.take_at("k", rate, 3, start).is_ok(),
            "the refused take spent nothing"
        );
        assert!(limiter.take_at("k", rate, 1, start).is_err());
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
