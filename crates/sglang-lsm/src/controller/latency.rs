//! A lock-free latency histogram: log-linear buckets (4 per power of two, so a percentile is
//! within 19% of the truth) over microseconds. The hot paths add one relaxed increment; the
//! monitor diffs two snapshots to get a window's percentiles.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Bucket count: values up to 2^42 us (~50 days) have their own bucket; larger ones share the
/// last.
pub const BUCKETS: usize = 4 * 42;

pub struct LatencyHistogram {
    buckets: [AtomicU64; BUCKETS],
    /// Total of all recorded values, us (the controller's foreground-cost verification).
    sum_us: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }
}

fn bucket_of(us: u64) -> usize {
    if us < 4 {
        return usize::try_from(us).unwrap_or(0);
    }
    let exp = 63 - us.leading_zeros() as usize; // >= 2
    let sub = usize::try_from((us >> (exp - 2)) & 3).unwrap_or(0);
    (4 * (exp - 1) + sub).min(BUCKETS - 1)
}

/// Largest value that lands in bucket `b` (what a percentile reports: an upper bound).
fn upper_of(b: usize) -> u64 {
    if b < 4 {
        return b as u64;
    }
    let exp = b / 4 + 1;
    let sub = (b % 4) as u64;
    ((4 + sub + 1) << (exp - 2)) - 1
}

impl LatencyHistogram {
    pub fn record_us(&self, us: u64) {
        self.buckets[bucket_of(us)].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    /// Total of all recorded values, us.
    #[must_use]
    pub fn sum_us(&self) -> u64 {
        self.sum_us.load(Relaxed)
    }

    pub fn record(&self, since: std::time::Instant) {
        self.record_us(u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX));
    }

    #[must_use]
    pub fn snapshot(&self) -> Vec<u64> {
        self.buckets.iter().map(|b| b.load(Relaxed)).collect()
    }
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n: u64 = self.snapshot().iter().sum();
        write!(f, "LatencyHistogram({n} samples)")
    }
}

/// Records the time from its creation to its drop: one line at the top of a call times every
/// return path.
pub struct Timer<'h> {
    hist: &'h LatencyHistogram,
    started: std::time::Instant,
}

impl<'h> Timer<'h> {
    #[must_use]
    pub fn start(hist: &'h LatencyHistogram) -> Self {
        Self {
            hist,
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.hist.record(self.started);
    }
}

/// The `q` quantile (0..=1) of the samples recorded between two snapshots, in microseconds;
/// `None` when the window recorded nothing.
#[must_use]
pub fn window_quantile_us(before: &[u64], after: &[u64], q: f64) -> Option<u64> {
    let delta: Vec<u64> = after
        .iter()
        .zip(before.iter().chain(std::iter::repeat(&0)))
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    let total: u64 = delta.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (b, n) in delta.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(upper_of(b));
        }
    }
    Some(upper_of(BUCKETS - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotone_and_bound_their_values() {
        let mut last = 0;
        for us in [0u64, 1, 3, 4, 5, 7, 8, 100, 1000, 65_537, 1 << 30] {
            let b = bucket_of(us);
            assert!(b >= last, "bucket order follows value order at {us}");
            assert!(upper_of(b) >= us, "upper bound {} >= {us}", upper_of(b));
            assert!(
                upper_of(b) as f64 <= (us as f64 * 1.25).max(3.0),
                "tight at {us}"
            );
            last = b;
        }
    }

    #[test]
    fn window_quantiles_ignore_samples_before_the_window() {
        let h = LatencyHistogram::default();
        for _ in 0..1000 {
            h.record_us(10_000);
        }
        let before = h.snapshot();
        for us in 1..=100 {
            h.record_us(us);
        }
        let after = h.snapshot();
        let p50 = window_quantile_us(&before, &after, 0.5).expect("samples");
        let p99 = window_quantile_us(&before, &after, 0.99).expect("samples");
        assert!((50..=63).contains(&p50), "p50 {p50}");
        assert!((99..=127).contains(&p99), "p99 {p99}");
        assert_eq!(window_quantile_us(&after, &after, 0.5), None);
    }
}
