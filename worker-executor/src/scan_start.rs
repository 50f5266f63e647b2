//! Where an executor's claims start their scan of the claim index.
//!
//! The index is ordered by fairness stamp, and its start holds an entry for
//! every run claimed since the last vacuum: a claim that scans from the
//! beginning visits them all (1-6 ms per claim in the middle of a
//! 200,000-run drain, a fifth of the machine). Claims take the smallest
//! stamps first and new runs are stamped at the front or after it, so a
//! claim can start where a recent claim began. Runs can still come back
//! behind that point with their old stamps (admitted after waiting for a
//! concurrency slot, given back, rescued, retried), and a run stamped just
//! as claims moved on lands there too; so every [`SWEEP_EVERY`], after a
//! short claim, and when told of such runs, a claim starts from the
//! beginning. docs/architecture.md, "Where a scan starts".

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The longest a run behind the scans' start waits for a claim from the
/// beginning.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_millis(250);

#[derive(Default)]
pub(crate) struct ScanStart {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The smallest stamps of this executor's last two claims, older first.
    /// Claims start at the older: a run stamped at the front while the
    /// latest claim moved past it is still ahead of that.
    recent: [Option<f64>; 2],
    /// When a claim last started from the beginning.
    swept_at: Option<Instant>,
    /// The next claim starts from the beginning.
    sweep: bool,
}

impl ScanStart {
    /// The stamp the next claim starts at; `None`: from the beginning.
    pub(crate) fn next(&self, now: Instant) -> Option<f64> {
        let mut state = self.state.lock();
        let due = state
            .swept_at
            .is_none_or(|at| now.duration_since(at) >= SWEEP_EVERY);
        match state.recent[0] {
            Some(from) if !state.sweep && !due => Some(from),
            _ => {
                (state.sweep, state.swept_at) = (false, Some(now));
                None
            }
        }
    }

    /// Records a claim of `limit` that got `stamps`.
    pub(crate) fn claimed(&self, limit: usize, stamps: impl Iterator<Item = f64>) {
        let mut state = self.state.lock();
        let (mut got, mut smallest) = (0, f64::INFINITY);
        for stamp in stamps {
            got += 1;
            smallest = smallest.min(stamp);
        }
        if got < limit {
            // The queue after the start may be empty: what waits, if
            // anything, is behind it.
            state.sweep = true;
        }
        if got > 0 {
            state.recent = [state.recent[1].or(Some(smallest)), Some(smallest)];
        }
    }

    /// Runs came back to the queue with old stamps.
    pub(crate) fn sweep_next(&self) {
        self.state.lock().sweep = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after_claims(start: &ScanStart, now: Instant, claims: &[&[f64]]) {
        for stamps in claims {
            start.next(now);
            start.claimed(stamps.len(), stamps.iter().copied());
        }
    }

    #[test]
    fn the_first_claim_starts_from_the_beginning() {
        assert_eq!(ScanStart::default().next(Instant::now()), None);
    }

    #[test]
    fn claims_start_where_the_claim_before_the_last_began() {
        let (start, now) = (ScanStart::default(), Instant::now());
        after_claims(&start, now, &[&[0.0, 1.0], &[2.0, 3.0], &[4.0, 5.0]]);
        assert_eq!(start.next(now), Some(2.0));
    }

    #[test]
    fn a_claim_starts_from_the_beginning_now_and_then() {
        let (start, now) = (ScanStart::default(), Instant::now());
        after_claims(&start, now, &[&[0.0, 1.0], &[2.0, 3.0]]);
        assert_eq!(start.next(now + SWEEP_EVERY), None);
        assert_eq!(start.next(now + SWEEP_EVERY), Some(0.0), "once per period");
    }

    #[test]
    fn a_short_claim_or_old_stamps_make_the_next_claim_start_from_the_beginning() {
        let (start, now) = (ScanStart::default(), Instant::now());
        after_claims(&start, now, &[&[0.0, 1.0], &[2.0, 3.0]]);
        start.next(now);
        start.claimed(4, [7.0].into_iter());
        assert_eq!(start.next(now), None);

        after_claims(&start, now, &[&[8.0, 9.0]]);
        start.sweep_next();
        assert_eq!(start.next(now), None);
    }
}
