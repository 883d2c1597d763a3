//! The batches waiting for the controller (EVE's loguploader keeps them on `/persist`), within
//! a quota: when a new batch would exceed it, the oldest batches are dropped and counted.
//!
//! The queue holds only each batch's number and size: the batches themselves live in the
//! persistent table `logs/Queue` (the vault), under [`key`]; the pillar publishes and deletes
//! them as this queue says. A batch leaves the queue only when the controller accepted it
//! ([`Queue::remove`]) or when the quota drops it ([`Queue::push`]'s evictions).
//!
//! What the table may hold after a crash: anything the pillar wrote. Keys that are not batch
//! numbers are reported by [`Queue::restore`] so that the pillar deletes them.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use topics::logs::Batch;

/// The smallest quota: two of the largest batches.
pub const MIN_QUOTA: u64 = 128 * 1024;

/// The table key of batch `n`: 20 digits, so that key order is age order.
pub fn key(n: u64) -> String {
    format!("{n:020}")
}

/// The batch number of a table key.
pub fn number(key: &str) -> Option<u64> {
    (key.len() == 20 && key.bytes().all(|b| b.is_ascii_digit()))
        .then(|| key.parse().ok())
        .flatten()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Held {
    bytes: u64,
    lines: u32,
}

/// The batches waiting, oldest first.
#[derive(Clone, Debug)]
pub struct Queue {
    held: BTreeMap<u64, Held>,
    quota: u64,
    bytes: u64,
    next: u64,
    dropped_batches: u64,
    dropped_lines: u64,
}

impl Queue {
    /// An empty queue holding at most `quota` bytes of batches (at least [`MIN_QUOTA`]).
    pub fn new(quota: u64) -> Self {
        Queue {
            held: BTreeMap::new(),
            quota: quota.max(MIN_QUOTA),
            bytes: 0,
            next: 0,
            dropped_batches: 0,
            dropped_lines: 0,
        }
    }

    /// Takes back a batch found in the table at start; false when `key` is not a batch number
    /// (the pillar deletes that object).
    pub fn restore(&mut self, key: &str, batch: &Batch) -> bool {
        let Some(n) = number(key) else {
            return false;
        };
        self.insert(n, batch);
        self.next = self.next.max(n.saturating_add(1));
        true
    }

    fn insert(&mut self, n: u64, batch: &Batch) {
        let held = Held {
            bytes: batch.gzip.len() as u64,
            lines: batch.lines,
        };
        if let Some(old) = self.held.insert(n, held) {
            self.bytes -= old.bytes;
        }
        self.bytes += held.bytes;
    }

    /// Adds a new batch; returns its number and the numbers of the batches dropped (oldest
    /// first) to stay within the quota, which the pillar deletes from the table. The new batch
    /// is always kept.
    pub fn push(&mut self, batch: &Batch) -> (u64, Vec<u64>) {
        let n = self.next;
        self.next += 1;
        self.insert(n, batch);
        let mut dropped = Vec::new();
        while self.bytes > self.quota {
            let Some((&oldest, &held)) = self.held.iter().next() else {
                break;
            };
            if oldest == n {
                break;
            }
            self.held.remove(&oldest);
            self.bytes -= held.bytes;
            self.dropped_batches += 1;
            self.dropped_lines += u64::from(held.lines);
            dropped.push(oldest);
        }
        (n, dropped)
    }

    /// The oldest batch waiting.
    pub fn oldest(&self) -> Option<u64> {
        self.held.keys().next().copied()
    }

    /// Forgets batch `n`, which the controller accepted; false if it was not held (dropped
    /// meanwhile).
    pub fn remove(&mut self, n: u64) -> bool {
        match self.held.remove(&n) {
            Some(held) => {
                self.bytes -= held.bytes;
                true
            }
            None => false,
        }
    }

    /// Batches waiting.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Bytes of the batches waiting.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The quota in bytes.
    pub fn quota(&self) -> u64 {
        self.quota
    }

    /// Batches dropped to stay within the quota, and the lines in them.
    pub fn dropped(&self) -> (u64, u64) {
        (self.dropped_batches, self.dropped_lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn batch(bytes: usize, lines: u32) -> Batch {
        Batch {
            gzip: vec![0; bytes],
            lines,
            raw_bytes: 0,
        }
    }

    #[test]
    fn keys_sort_by_age_and_parse_back() {
        assert_eq!(key(42), "00000000000000000042");
        assert!(key(9) < key(10));
        assert_eq!(number(&key(u64::MAX)), Some(u64::MAX));
        for bad in ["42", "0000000000000000004x", "", "000000000000000000042"] {
            assert_eq!(number(bad), None, "{bad}");
        }
    }

    #[test]
    fn over_quota_the_oldest_go_and_are_counted() {
        let mut q = Queue::new(MIN_QUOTA);
        let mut numbers = vec![];
        for _ in 0..3 {
            let (n, dropped) = q.push(&batch(40 * 1024, 10));
            assert!(dropped.is_empty());
            numbers.push(n);
        }
        assert_eq!(numbers, [0, 1, 2]);
        assert_eq!(q.bytes(), 120 * 1024);
        let (n, dropped) = q.push(&batch(40 * 1024, 10));
        assert_eq!((n, dropped), (3, vec![0]));
        assert_eq!(q.dropped(), (1, 10));
        assert_eq!(q.bytes(), 120 * 1024);
    }

    #[test]
    fn the_quota_holds_after_every_push_and_removal_is_by_number() {
        let mut q = Queue::new(100 * 1024);
        assert_eq!(q.quota(), MIN_QUOTA);
        let (a, _) = q.push(&batch(60 * 1024, 5));
        let (b, _) = q.push(&batch(60 * 1024, 6));
        assert_eq!(q.len(), 2);
        let (c, dropped) = q.push(&batch(60 * 1024, 7));
        assert_eq!(dropped, [a]);
        assert_eq!(q.dropped(), (1, 5));
        assert!(q.bytes() <= q.quota());
        assert_eq!(q.oldest(), Some(b));
        assert!(q.remove(b));
        assert!(!q.remove(a));
        assert_eq!(q.oldest(), Some(c));
        // A batch larger than the quota alone is still kept (it is the newest).
        let (d, dropped) = q.push(&batch(200 * 1024, 1));
        assert_eq!(dropped, [c]);
        assert_eq!(q.oldest(), Some(d));
    }

    #[test]
    fn restored_batches_keep_their_numbers_and_new_ones_follow() {
        let mut q = Queue::new(MIN_QUOTA);
        assert!(q.restore(&key(7), &batch(10, 1)));
        assert!(q.restore(&key(3), &batch(10, 1)));
        assert!(!q.restore("junk", &batch(10, 1)));
        assert_eq!(q.oldest(), Some(3));
        assert_eq!(q.push(&batch(10, 1)).0, 8);
        assert_eq!(q.bytes(), 30);
    }
}
