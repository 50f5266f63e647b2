//! How many jobs an executor claims ahead of its run threads.
//!
//! Claiming ahead is what makes fast functions fast: claims (and so result
//! batches) grow with it, and PostgreSQL's cost per job falls (a prefetch
//! of 128 instead of 64: claims of 65 instead of 34, 50 instead of 62 µs of
//! database CPU per execution; docs/benchmarks.md), and the next run is
//! already here when one ends. It is also how one worker
//! could hoard work: jobs it claimed wait for its own threads while other
//! workers sit idle. So an executor claims ahead only as many jobs as its
//! run threads get through in [`HORIZON`], by the recent runs' average
//! duration, and never more than the configured maximum: all of it for
//! runs of microseconds, a few for runs of a millisecond, none for runs of
//! seconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How much work, per run thread, may wait in claimed jobs.
const HORIZON: Duration = Duration::from_millis(5);

/// Each new run moves the average by this fraction of the difference, so a
/// change of workload shows within a few dozen runs.
const WEIGHT: f64 = 1.0 / 16.0;

pub(crate) struct Prefetch {
    /// The most jobs claimed ahead (`--execute-prefetch`).
    max: usize,
    /// The runs' moving average, in nanoseconds (as f64 bits); 0 until the
    /// first run.
    average_nanos: AtomicU64,
}

impl Prefetch {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            average_nanos: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Counts one run's duration (instantiate + run) into the average.
    pub(crate) fn record(&self, run: Duration) {
        // Concurrent updates may overwrite each other: an average that
        // misses a sample now and then is still the average.
        let sample = run.as_nanos() as f64;
        let average = f64::from_bits(self.average_nanos.load(Ordering::Relaxed));
        let updated = if average == 0.0 {
            sample
        } else {
            average + (sample - average) * WEIGHT
        };
        // At least a nanosecond, so 0 keeps meaning "no run yet".
        self.average_nanos
            .store(updated.max(1.0).to_bits(), Ordering::Relaxed);
    }

    /// Jobs to hold beyond those `threads` run threads are running. None
    /// before the first run: until then nothing says whether runs take
    /// microseconds or minutes.
    pub(crate) fn jobs(&self, threads: usize) -> usize {
        let average = f64::from_bits(self.average_nanos.load(Ordering::Relaxed));
        if average == 0.0 {
            return 0;
        }
        let per_thread = HORIZON.as_nanos() as f64 / average;
        // Saturates: a huge quotient becomes usize::MAX, then `max`.
        ((per_thread * threads as f64) as usize).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(runs: &[Duration]) -> usize {
        let prefetch = Prefetch::new(128);
        for run in runs {
            prefetch.record(*run);
        }
        prefetch.jobs(2)
    }

    #[test]
    fn nothing_is_claimed_ahead_before_the_first_run() {
        assert_eq!(after(&[]), 0);
    }

    #[test]
    fn runs_of_microseconds_get_the_whole_prefetch() {
        assert_eq!(after(&[Duration::from_micros(15); 10]), 128);
        assert_eq!(after(&[Duration::ZERO]), 128);
    }

    #[test]
    fn the_prefetch_covers_the_horizon_for_slower_runs() {
        // 2 threads × 5 ms / 1 ms.
        assert_eq!(after(&[Duration::from_millis(1); 10]), 10);
    }

    #[test]
    fn runs_longer_than_the_horizon_get_none() {
        assert_eq!(after(&[Duration::from_secs(2)]), 0);
    }

    #[test]
    fn the_average_follows_a_change_of_workload() {
        let mut runs = vec![Duration::from_micros(15); 50];
        runs.extend([Duration::from_secs(1); 50]);
        assert_eq!(after(&runs), 0);
        runs.extend([Duration::from_micros(15); 200]);
        assert_eq!(after(&runs), 128);
    }
}
