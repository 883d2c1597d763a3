//! Store-and-forward: a bounded queue of messages waiting for a peer (a broker) that drops
//! the oldest when full and counts what it dropped.

use alloc::collections::VecDeque;

/// A bounded queue that drops its oldest entry to make room.
#[derive(Debug)]
pub struct Outbox<T> {
    items: VecDeque<T>,
    capacity: usize,
    dropped: u64,
    /// Sequence number of `items[0]` (every item pushed gets the next one).
    head: u64,
}

impl<T> Outbox<T> {
    /// An empty outbox holding at most `capacity` items (at least 1).
    pub fn new(capacity: usize) -> Outbox<T> {
        Outbox {
            items: VecDeque::new(),
            capacity: capacity.max(1),
            dropped: 0,
            head: 0,
        }
    }

    /// Queues `item`, dropping the oldest if full.
    pub fn push(&mut self, item: T) {
        if self.items.len() == self.capacity {
            self.items.pop_front();
            self.head += 1;
            self.dropped += 1;
        }
        self.items.push_back(item);
    }

    /// The oldest item, left in place (remove it with [`Outbox::pop`] once delivered).
    pub fn front(&self) -> Option<&T> {
        self.items.front()
    }

    /// Removes the oldest item.
    pub fn pop(&mut self) -> Option<T> {
        let item = self.items.pop_front()?;
        self.head += 1;
        Some(item)
    }

    /// The oldest item with its sequence number: a sender that awaits between taking the
    /// item and confirming its delivery passes that number to [`Outbox::pop_delivered`], so
    /// that an item dropped meanwhile (the outbox was full) does not take another with it.
    pub fn front_numbered(&self) -> Option<(u64, &T)> {
        self.items.front().map(|item| (self.head, item))
    }

    /// Removes the oldest item if it is still number `sequence`; whether it was.
    pub fn pop_delivered(&mut self, sequence: u64) -> bool {
        if self.head == sequence && !self.items.is_empty() {
            self.pop();
            true
        } else {
            false
        }
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
}
