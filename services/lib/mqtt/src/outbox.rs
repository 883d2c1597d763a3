//! Store-and-forward: a bounded queue of messages waiting for a peer (a broker) that drops
//! the oldest when full and counts what it dropped.
//!
//! Every item gets a sequence number when it is pushed. A sender that awaits between taking
//! an item and learning it was delivered (a socket write, a broker's PUBACK) names the item by
//! that number, so that an item dropped meanwhile does not take another with it, and several
//! items may be in flight at once, acknowledged in any order.

use alloc::collections::VecDeque;

/// A bounded queue that drops its oldest entry to make room.
#[derive(Debug)]
pub struct Outbox<T> {
    /// Items with their sequence numbers, oldest first (numbers increase).
    items: VecDeque<(u64, T)>,
    capacity: usize,
    dropped: u64,
    /// The number the next item pushed gets.
    next: u64,
}

impl<T> Outbox<T> {
    /// An empty outbox holding at most `capacity` items (at least 1).
    pub fn new(capacity: usize) -> Outbox<T> {
        Outbox {
            items: VecDeque::new(),
            capacity: capacity.max(1),
            dropped: 0,
            next: 0,
        }
    }

    /// Queues `item`, dropping the oldest if full; the item's sequence number.
    pub fn push(&mut self, item: T) -> u64 {
        if self.items.len() == self.capacity {
            self.items.pop_front();
            self.dropped += 1;
        }
        let sequence = self.next;
        self.next += 1;
        self.items.push_back((sequence, item));
        sequence
    }

    /// The oldest item, left in place (remove it with [`Outbox::pop`] once delivered).
    pub fn front(&self) -> Option<&T> {
        self.items.front().map(|(_, item)| item)
    }

    /// Removes the oldest item.
    pub fn pop(&mut self) -> Option<T> {
        self.items.pop_front().map(|(_, item)| item)
    }

    /// The oldest item with its sequence number.
    pub fn front_numbered(&self) -> Option<(u64, &T)> {
        self.items.front().map(|(s, item)| (*s, item))
    }

    /// The oldest item numbered after `sequence` (every item when `None`).
    pub fn first_after(&self, sequence: Option<u64>) -> Option<(u64, &T)> {
        let start = match sequence {
            None => 0,
            Some(s) => self.items.partition_point(|(n, _)| *n <= s),
        };
        self.items.get(start).map(|(s, item)| (*s, item))
    }

    /// Item number `sequence`, if it is still here.
    pub fn get(&self, sequence: u64) -> Option<&T> {
        self.index(sequence).map(|i| &self.items[i].1)
    }

    fn index(&self, sequence: u64) -> Option<usize> {
        self.items.binary_search_by_key(&sequence, |(s, _)| *s).ok()
    }

    /// Removes item number `sequence` wherever it is; whether it was still here (a full
    /// outbox may have dropped it meanwhile).
    pub fn pop_delivered(&mut self, sequence: u64) -> bool {
        match self.index(sequence) {
            Some(i) => {
                self.items.remove(i);
                true
            }
            None => false,
        }
    }

    /// The most items it keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Items dropped so far because the outbox was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_oldest_and_counts() {
        let mut o = Outbox::new(3);
        for i in 0..5 {
            o.push(i);
        }
        assert_eq!(o.len(), 3);
        assert_eq!(o.dropped(), 2);
        assert_eq!(o.front(), Some(&2));
        assert_eq!(o.pop(), Some(2));
        o.push(5);
        assert_eq!(o.dropped(), 2);
        assert_eq!(
            (o.pop(), o.pop(), o.pop(), o.pop()),
            (Some(3), Some(4), Some(5), None)
        );
        assert!(o.is_empty());
    }

    #[test]
    fn a_delivery_confirmed_after_a_drop_removes_nothing_else() {
        let mut o = Outbox::new(2);
        o.push("a");
        o.push("b");
        let (seq, _) = o.front_numbered().unwrap();
        o.push("c"); // drops "a", the item being sent
        assert!(!o.pop_delivered(seq));
        assert_eq!(o.len(), 2);
        let (seq, item) = o.front_numbered().unwrap();
        assert_eq!(*item, "b");
        assert!(o.pop_delivered(seq));
        assert_eq!(o.front(), Some(&"c"));
    }

    #[test]
    fn items_in_flight_are_acknowledged_in_any_order() {
        let mut o = Outbox::new(4);
        let a = o.push("a");
        let b = o.push("b");
        let c = o.push("c");
        assert_eq!(o.first_after(None), Some((a, &"a")));
        assert_eq!(o.first_after(Some(a)), Some((b, &"b")));
        assert_eq!(o.first_after(Some(c)), None);
        assert!(o.pop_delivered(b));
        assert!(!o.pop_delivered(b));
        assert_eq!(o.first_after(Some(a)), Some((c, &"c")));
        assert_eq!(o.get(c), Some(&"c"));
        assert_eq!(o.get(b), None);
        assert!(o.pop_delivered(a));
        assert_eq!(o.front(), Some(&"c"));
    }
}
