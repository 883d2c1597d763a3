//! What core-data keeps in the vault when persistence is asked: the newest events within two
//! bounds (a count and bytes), as the persistent table `core-data/Event`
//! ([`topics::core_data::EVENTS`]), keyed by arrival number.
//!
//! Sans-IO: [`Journal`] decides which objects to put and delete; the image applies its
//! [`Change`]s to the table, and the vault commits them. At start the image hands it the table
//! as the vault kept it ([`Journal::restore`]) and gets the events back, oldest first, for the
//! in-memory store.
//!
//! What the vault's copy may hold that we did not write (an older core-data's objects, a
//! damaged or foreign value): keys that are not 20 decimal digits, values that are not an
//! event's JSON, more events or bytes than the bounds now allow. Each is deleted from the
//! table and counted, never served; the events that do decode are kept.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use edgex::Event;

/// Digits of a key: `u64::MAX` has 20, and equal widths sort in arrival order.
const KEY_DIGITS: usize = 20;

/// The largest event (its JSON) kept in the vault; a larger one is kept in memory only, and
/// counted. Keeps one event far below the vault's largest value.
pub const MAX_EVENT_BYTES: usize = 8 * 1024;

/// The table's key of event number `n`.
pub fn key(n: u64) -> String {
    alloc::format!("{n:0width$}", width = KEY_DIGITS)
}

/// The number in a key, if it is one of ours.
pub fn number(key: &str) -> Option<u64> {
    (key.len() == KEY_DIGITS && key.bytes().all(|b| b.is_ascii_digit()))
        .then(|| key.parse().ok())
        .flatten()
}

/// A change to apply to the persistent table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Create the object `key` with the event's JSON.
    Put(String, Vec<u8>),
    /// Delete the object `key`.
    Delete(String),
}

/// An event kept in the table.
#[derive(Debug)]
struct Kept {
    number: u64,
    bytes: usize,
}

/// The bookkeeping of the persistent table: which events it holds, within the bounds.
#[derive(Debug)]
pub struct Journal {
    kept: VecDeque<Kept>,
    bytes: usize,
    next: u64,
    max_events: usize,
    max_bytes: usize,
    evicted: u64,
    too_large: u64,
    unreadable: u64,
}

/// What [`Journal::restore`] found.
#[derive(Debug, Default)]
pub struct Restored {
    /// The events, oldest first.
    pub events: Vec<Event>,
    /// Objects to delete: unreadable ones and those beyond the bounds.
    pub changes: Vec<Change>,
}

impl Journal {
    /// An empty journal keeping at most `max_events` events (at least 1) and `max_bytes` bytes
    /// of their JSON.
    pub fn new(max_events: usize, max_bytes: usize) -> Journal {
        Journal {
            kept: VecDeque::new(),
            bytes: 0,
            next: 1,
            max_events: max_events.max(1),
            max_bytes,
            evicted: 0,
            too_large: 0,
            unreadable: 0,
        }
    }

    /// Takes the table as the vault kept it (`(key, JSON)` in any order): the events that
    /// decode, oldest first, and the deletions that bring the table within the bounds.
    /// Arrival numbers go on after the highest key seen.
    pub fn restore(&mut self, stored: impl IntoIterator<Item = (String, Vec<u8>)>) -> Restored {
        let mut restored = Restored::default();
        let mut readable = Vec::new();
        for (key, json) in stored {
            let Some(n) = number(&key) else {
                self.unreadable += 1;
                restored.changes.push(Change::Delete(key));
                continue;
            };
            self.next = self.next.max(n.saturating_add(1));
            match serde_json::from_slice::<Event>(&json) {
                Ok(event) if json.len() <= MAX_EVENT_BYTES => readable.push((n, json.len(), event)),
                _ => {
                    self.unreadable += 1;
                    restored.changes.push(Change::Delete(key));
                }
            }
        }
        readable.sort_by_key(|(n, _, _)| *n);
        for (n, bytes, event) in readable {
            self.kept.push_back(Kept { number: n, bytes });
            self.bytes += bytes;
            restored.events.push(event);
        }
        let evicted = self.evict();
        // Events evicted here are not served either: the store must match the table.
        let gone = evicted.len().min(restored.events.len());
        restored.events.drain(..gone);
        restored.changes.extend(evicted);
        restored
    }

    /// Records a new event (stored in memory by the caller): the object to create, and the
    /// oldest to delete to stay within the bounds. An event over [`MAX_EVENT_BYTES`] or the
    /// byte bound is not persisted (counted).
    pub fn record(&mut self, event: &Event) -> Vec<Change> {
        let Ok(json) = serde_json::to_vec(event) else {
            self.too_large += 1;
            return Vec::new();
        };
        if json.len() > MAX_EVENT_BYTES || json.len() > self.max_bytes {
            self.too_large += 1;
            return Vec::new();
        }
        let n = self.next;
        self.next += 1;
        self.kept.push_back(Kept {
            number: n,
            bytes: json.len(),
        });
        self.bytes += json.len();
        let mut changes = alloc::vec![Change::Put(key(n), json)];
        changes.extend(self.evict());
        changes
    }

    /// Deletes the oldest events until both bounds hold.
    fn evict(&mut self) -> Vec<Change> {
        let mut changes = Vec::new();
        while self.kept.len() > self.max_events || self.bytes > self.max_bytes {
            let Some(old) = self.kept.pop_front() else {
                break;
            };
            self.bytes -= old.bytes;
            self.evicted += 1;
            changes.push(Change::Delete(key(old.number)));
        }
        changes
    }

    /// Events in the table.
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    /// Whether the table holds no event.
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// Bytes of JSON in the table.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Events deleted to stay within the bounds, events not persisted for their size, and
    /// objects of the vault's copy that were not ours or did not decode.
    pub fn counters(&self) -> (u64, u64, u64) {
        (self.evicted, self.too_large, self.unreadable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::event;
    use alloc::string::ToString;
    use alloc::vec;

    /// The table a journal's changes leave, as the vault would keep it.
    fn apply(table: &mut Vec<(String, Vec<u8>)>, changes: Vec<Change>) {
        for change in changes {
            match change {
                Change::Put(k, v) => {
                    table.retain(|(key, _)| *key != k);
                    table.push((k, v));
                }
                Change::Delete(k) => table.retain(|(key, _)| *key != k),
            }
        }
    }

    fn ids(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.id.as_str()).collect()
    }

    #[test]
    fn keys_sort_in_arrival_order_and_only_ours_parse() {
        assert_eq!(key(7), "00000000000000000007");
        assert!(key(9) < key(10) && key(10) < key(u64::MAX));
        assert_eq!(number(&key(u64::MAX)), Some(u64::MAX));
        for bad in [
            "7",
            "0000000000000000000x",
            "000000000000000000007",
            "-0000000000000000007",
            "99999999999999999999",
        ] {
            assert_eq!(number(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_table_keeps_the_newest_within_the_count_and_survives_a_restart() {
        let mut table = Vec::new();
        let mut journal = Journal::new(3, 1 << 20);
        for i in 0..5 {
            apply(&mut table, journal.record(&event(i, "A", i64::from(i))));
        }
        assert_eq!((journal.len(), journal.counters()), (3, (2, 0, 0)));
        assert_eq!(table.len(), 3);

        // core-data restarts: the vault hands back the table, in whatever order.
        table.reverse();
        let mut again = Journal::new(3, 1 << 20);
        let restored = again.restore(table.clone());
        assert!(restored.changes.is_empty());
        assert_eq!(ids(&restored.events), ["2", "3", "4"]);
        assert_eq!(restored.events[2], event(4, "A", 4));
        // Numbering goes on after the highest key: a new event evicts the oldest restored.
        let changes = again.record(&event(5, "A", 5));
        assert_eq!(
            changes[0],
            Change::Put(key(6), serde_json::to_vec(&event(5, "A", 5)).unwrap())
        );
        assert_eq!(changes[1], Change::Delete(key(3)));
        apply(&mut table, changes);
        let mut keys: Vec<&str> = table.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort();
        assert_eq!(keys, [key(4), key(5), key(6)]);
    }

    #[test]
    fn the_byte_bound_evicts_oldest_and_oversized_events_stay_in_memory() {
        let one = serde_json::to_vec(&event(0, "A", 0)).unwrap().len();
        let mut journal = Journal::new(100, 2 * one + one / 2);
        let mut table = Vec::new();
        for i in 0..4 {
            apply(&mut table, journal.record(&event(i, "A", 0)));
        }
        assert_eq!(journal.len(), 2);
        assert!(journal.bytes() <= 2 * one + one / 2);
        assert_eq!(table.len(), 2);

        let mut big = event(9, "A", 0);
        big.readings[0].value = "x".repeat(MAX_EVENT_BYTES);
        assert!(journal.record(&big).is_empty());
        assert_eq!(journal.counters(), (2, 1, 0));
        assert_eq!(journal.len(), 2);
    }

    #[test]
    fn what_the_vault_may_hold_that_is_not_ours_is_deleted_and_never_served() {
        let good = |i: u32| {
            (
                key(u64::from(i)),
                serde_json::to_vec(&event(i, "A", 0)).unwrap(),
            )
        };
        let mut big = event(8, "A", 0);
        big.readings[0].value = "x".repeat(MAX_EVENT_BYTES);
        let stored = vec![
            good(1),
            ("global".to_string(), b"{}".to_vec()),
            (key(2), b"not json".to_vec()),
            (key(3), br#"{"id":"3"}"#.to_vec()),
            (key(4), serde_json::to_vec(&big).unwrap()),
            good(5),
            good(6),
            good(7),
        ];
        let mut journal = Journal::new(2, 1 << 20);
        let restored = journal.restore(stored);
        assert_eq!(ids(&restored.events), ["6", "7"]);
        assert_eq!(
            restored.changes,
            [
                Change::Delete("global".into()),
                Change::Delete(key(2)),
                Change::Delete(key(3)),
                Change::Delete(key(4)),
                Change::Delete(key(1)),
                Change::Delete(key(5)),
            ]
        );
        assert_eq!(journal.counters(), (2, 0, 4));
        // The next number is past every key seen, readable or not.
        assert_eq!(
            journal.record(&event(9, "A", 0))[0],
            Change::Put(key(8), serde_json::to_vec(&event(9, "A", 0)).unwrap())
        );
    }

    #[test]
    fn a_smaller_bound_after_a_restart_trims_the_restored_table() {
        let mut table = Vec::new();
        let mut journal = Journal::new(10, 1 << 20);
        for i in 0..10 {
            apply(&mut table, journal.record(&event(i, "A", 0)));
        }
        let mut smaller = Journal::new(4, 1 << 20);
        let restored = smaller.restore(table.clone());
        assert_eq!(ids(&restored.events), ["6", "7", "8", "9"]);
        apply(&mut table, restored.changes);
        assert_eq!(table.len(), 4);
        assert_eq!(smaller.len(), 4);
    }
}
