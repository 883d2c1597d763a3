//! A latency histogram in fixed memory: samples in microseconds, counted in buckets whose
//! bounds grow by a quarter (so a percentile read back is at most 25% above the true one,
//! never below), from 1 µs to half an hour. The client keeps one for "given to the client -> written to the
//! broker's socket" (the part of a reading's way to the broker that runs in the guest).

use core::cell::Cell;

/// Buckets; the last one takes everything beyond the bounds.
const BUCKETS: usize = 96;

/// Upper bounds (µs) of the buckets: each a quarter above the last (at least one more).
const BOUNDS: [u64; BUCKETS] = {
    let mut b = [0u64; BUCKETS];
    b[0] = 1;
    let mut i = 1;
    while i < BUCKETS {
        let next = b[i - 1] + b[i - 1] / 4;
        b[i] = if next > b[i - 1] { next } else { b[i - 1] + 1 };
        i += 1;
    }
    b[BUCKETS - 1] = u64::MAX;
    b
};

/// Samples counted by bucket.
#[derive(Debug)]
pub struct Histogram {
    counts: [Cell<u64>; BUCKETS],
    total: Cell<u64>,
    max: Cell<u64>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: core::array::from_fn(|_| Cell::new(0)),
            total: Cell::new(0),
            max: Cell::new(0),
        }
    }
}

impl Histogram {
    /// Counts one sample of `us` microseconds.
    pub fn record(&self, us: u64) {
        let i = BOUNDS.partition_point(|&b| b < us).min(BUCKETS - 1);
        self.counts[i].set(self.counts[i].get() + 1);
        self.total.set(self.total.get() + 1);
        self.max.set(self.max.get().max(us));
    }

    /// Samples counted.
    pub fn count(&self) -> u64 {
        self.total.get()
    }

    /// The largest sample.
    pub fn max(&self) -> u64 {
        self.max.get()
    }

    /// The quantile of `per_10000` (5000: the median, 9900: p99), as its bucket's upper bound
    /// (at most the largest sample); 0 with no sample.
    pub fn quantile(&self, per_10000: u64) -> u64 {
        let total = self.total.get();
        if total == 0 {
            return 0;
        }
        let rank = (total.saturating_mul(per_10000.min(10_000)) / 10_000).clamp(1, total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c.get();
            if seen >= rank {
                return BOUNDS[i].min(self.max.get());
            }
        }
        self.max.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_a_quarter_above_the_truth() {
        let h = Histogram::default();
        assert_eq!(h.quantile(9900), 0);
        for us in 1..=1000u64 {
            h.record(us * 10);
        }
        assert_eq!(h.count(), 1000);
        assert_eq!(h.max(), 10_000);
        let p50 = h.quantile(5000);
        assert!((5_000..=6_250).contains(&p50), "{p50}");
        let p99 = h.quantile(9900);
        assert!((9_900..=10_000).contains(&p99), "{p99}");
        assert_eq!(h.quantile(10_000), 10_000);
    }

    #[test]
    fn huge_and_zero_samples_are_kept() {
        let h = Histogram::default();
        h.record(0);
        h.record(u64::MAX);
        assert_eq!(h.quantile(5000), 1);
        assert_eq!(h.quantile(10_000), u64::MAX);
        assert!(BOUNDS[BUCKETS - 2] > 1_000_000_000, "a quarter of an hour");
        assert!(BOUNDS[..BUCKETS - 1]
            .windows(2)
            .all(|w| w[1] > w[0] && w[1] <= w[0] + w[0] / 4 + 1));
    }
}
