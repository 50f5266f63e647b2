//! Keyed rate limits kept in this API process's memory: one per role for
//! users (a user's key shared by all their API keys and sessions) and the
//! login and invalid-credential throttles (`throttle.rs`). With several API
//! processes behind a balancer each enforces its own, so the fleet-wide
//! limit is the per-process limit times the number of processes
//! (docs/security.md says why).
//!
//! The limiter is `governor`'s GCRA (generic cell rate algorithm): for a
//! rate `r` and a burst `b` it allows exactly what a token bucket of `b`
//! tokens refilled at `r` per second allows, keeping one timestamp per key
//! instead of a token count and a timestamp
//! (<https://docs.rs/governor/latest/governor/_guide/index.html>).

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::Quota;

/// governor's limiter with one state per key, reading the time from `C`.
type Keyed<K, C> =
    governor::RateLimiter<K, DashMapStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// Keys held before the idle ones are forgotten. Forgetting an idle key
/// changes nothing: its state is that of a key never seen.
const MAX_KEYS: usize = 10_000;

/// The longest a bucket takes to refill from empty. governor counts time in
/// u64 nanoseconds (584 years) and panics past it, so an absurd setting (a
/// rate of one a century with a burst of millions) is capped here instead:
/// it refills in 100 years rather than in 10,000.
const LONGEST_REFILL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A sustained rate and a burst. A rate of 0 means no limit.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub per_sec: f64,
    pub burst: u32,
}

impl Rate {
    /// Whether this rate limits anything (a rate of 0 does not).
    pub fn limits(self) -> bool {
        self.per_sec > 0.0
    }

    /// The most one key may spend at once, hence the most one call can cost.
    pub fn burst(self) -> u32 {
        self.burst.max(1)
    }

    /// governor's quota for this rate: one cell every `1 / per_sec`
    /// seconds, `burst` at once. `None` when it limits nothing.
    fn quota(self) -> Option<Quota> {
        if !self.limits() {
            return None;
        }
        let burst = NonZeroU32::new(self.burst()).unwrap_or(NonZeroU32::MIN);
        let longest = LONGEST_REFILL / burst.get();
        // Non-finite or out of range: too fast to measure or too slow to wait for.
        let period = Duration::try_from_secs_f64(1.0 / self.per_sec)
            .unwrap_or(longest)
            .clamp(Duration::from_nanos(1), longest);
        Quota::with_period(period).map(|quota| quota.allow_burst(burst))
    }
}

/// One rate, enforced separately for each key `K`.
pub struct RateLimiter<K: Hash + Eq + Clone, C: Clock = DefaultClock> {
    rate: Rate,
    /// `None` when the rate limits nothing.
    limiter: Option<Keyed<K, C>>,
    /// How many keys trigger the next sweep of idle ones (see [`Self::sweep`]).
    sweep_at: AtomicUsize,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            limiter: rate.quota().map(governor::RateLimiter::keyed),
            sweep_at: AtomicUsize::new(MAX_KEYS),
        }
    }
}

impl<K: Hash + Eq + Clone, C: Clock> RateLimiter<K, C> {
    /// A limiter that reads the time from `clock` (tests advance a fake one).
    #[cfg(test)]
    fn with_clock(rate: Rate, clock: C) -> Self {
        Self {
            rate,
            limiter: rate
                .quota()
                .map(|quota| governor::RateLimiter::dashmap_with_clock(quota, clock)),
            sweep_at: AtomicUsize::new(MAX_KEYS),
        }
    }

    /// The rate this limiter enforces, for messages.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Spends one request of `key`, or says how long until one is there.
    pub fn take(&self, key: &K) -> Result<(), Duration> {
        self.take_many(key, 1)
    }

    /// Spends `cost` requests of `key`, all or none, or says how long until
    /// that many are there. A cost over the burst never fits (`Duration::MAX`):
    /// callers refuse it before asking (see [`Rate::burst`]).
    pub fn take_many(&self, key: &K, cost: u32) -> Result<(), Duration> {
        let (Some(limiter), Some(cost)) = (&self.limiter, NonZeroU32::new(cost)) else {
            return Ok(());
        };
        let outcome = match limiter.check_key_n(key, cost) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(limiter.clock().now())),
            Err(governor::InsufficientCapacity(_)) => Err(Duration::MAX),
        };
        self.sweep(limiter);
        outcome
    }

    /// Bounds memory: once the limiter holds `sweep_at` keys, forgets those
    /// whose state is that of a fresh key (idle long enough to have refilled
    /// their whole burst), then waits until the keys left have doubled
    /// before sweeping again. Doubling keeps the cost per request constant
    /// however many keys stay busy, where sweeping at a fixed size would
    /// scan every key on every request once that many were busy.
    fn sweep(&self, limiter: &Keyed<K, C>) {
        if limiter.len() < self.sweep_at.load(Ordering::Relaxed) {
            return;
        }
        limiter.retain_recent();
        limiter.shrink_to_fit();
        self.sweep_at
            .store(MAX_KEYS.max(limiter.len() * 2), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn limiter(
        per_sec: f64,
        burst: u32,
    ) -> (
        RateLimiter<&'static str, FakeRelativeClock>,
        FakeRelativeClock,
    ) {
        let clock = FakeRelativeClock::default();
        (
            RateLimiter::with_clock(Rate { per_sec, burst }, clock.clone()),
            clock,
        )
    }

    #[test]
    fn a_key_gets_its_burst_then_refills_at_its_rate() {
        let (limiter, clock) = limiter(2.0, 3);
        for _ in 0..3 {
            assert!(limiter.take(&"k").is_ok());
        }
        let wait = limiter.take(&"k").unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(limiter.take(&"other").is_ok(), "limits are per key");
        clock.advance(Duration::from_millis(500));
        assert!(limiter.take(&"k").is_ok());
        assert!(limiter.take(&"k").is_err());
    }

    #[test]
    fn a_costly_take_is_all_or_nothing_and_waits_for_its_whole_cost() {
        let (limiter, _clock) = limiter(10.0, 10);
        assert!(limiter.take_many(&"k", 7).is_ok());
        let wait = limiter.take_many(&"k", 5).unwrap_err();
        assert_eq!(wait, Duration::from_millis(200), "2 short at 10/s");
        assert!(
            limiter.take_many(&"k", 3).is_ok(),
            "the refused take spent nothing"
        );
        assert!(limiter.take(&"k").is_err());
        assert_eq!(
            limiter.take_many(&"k", 11),
            Err(Duration::MAX),
            "over the burst"
        );
    }

    #[test]
    fn a_zero_rate_means_no_limit() {
        let (limiter, _clock) = limiter(0.0, 0);
        for _ in 0..1000 {
            assert!(limiter.take(&"k").is_ok());
        }
    }

    #[test]
    fn absurd_rates_neither_panic_nor_limit_more_than_asked() {
        for per_sec in [f64::INFINITY, 1e12, 1e-30, f64::MIN_POSITIVE] {
            let (limiter, clock) = limiter(per_sec, u32::MAX);
            assert!(limiter.take_many(&"k", u32::MAX).is_ok(), "{per_sec}");
            let _ = limiter.take(&"k");
            clock.advance(Duration::from_secs(3600));
            let _ = limiter.take(&"k");
        }
        let (limiter, _clock) = limiter(f64::NAN, 1);
        assert!(
            limiter.take(&"k").is_ok() && limiter.take(&"k").is_ok(),
            "NaN limits nothing"
        );
    }

    #[test]
    fn idle_keys_are_forgotten_once_there_are_many_and_busy_ones_kept() {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::<usize, _>::with_clock(
            Rate {
                per_sec: 1.0,
                burst: 2,
            },
            clock.clone(),
        );
        for key in 0..MAX_KEYS - 1 {
            limiter.take(&key).unwrap();
        }
        // Long enough for every key so far to have refilled.
        clock.advance(Duration::from_secs(10));
        limiter.take_many(&MAX_KEYS, 2).unwrap();
        assert!(limiter.take(&MAX_KEYS).is_err());
        assert_eq!(
            limiter.limiter.as_ref().unwrap().len(),
            1,
            "only the busy key stays"
        );
        assert!(limiter.take(&MAX_KEYS).is_err(), "and its state with it");
    }
}
