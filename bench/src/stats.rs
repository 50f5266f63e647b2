//! Percentiles and rates.

use std::time::Duration;

/// Durations, sorted once so percentiles are cheap.
#[derive(Debug, Clone)]
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn new(mut samples: Vec<Duration>) -> Self {
        assert!(!samples.is_empty(), "percentiles of no samples");
        samples.sort_unstable();
        Self(samples)
    }

    /// The nearest-rank percentile: the smallest sample at or above `p`%
    /// of them (p50 of 1000 is the 500th).
    pub fn percentile(&self, p: f64) -> Duration {
        let rank = (p / 100.0 * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }

    pub fn ms(&self, p: f64) -> f64 {
        self.percentile(p).as_secs_f64() * 1e3
    }

    pub fn us(&self, p: f64) -> f64 {
        self.percentile(p).as_secs_f64() * 1e6
    }
}

/// `count` per second over `elapsed`.
pub fn per_sec(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples = Samples::new((1..=100).rev().map(Duration::from_millis).collect());

        assert_eq!(samples.percentile(50.0), Duration::from_millis(50));
        assert_eq!(samples.percentile(99.0), Duration::from_millis(99));
        assert_eq!(samples.percentile(100.0), Duration::from_millis(100));
        assert_eq!(samples.percentile(0.0), Duration::from_millis(1));
    }
}
