//! QoS 1 publishing's bookkeeping, sans-IO: which outbox items are in flight under which
//! packet id, what to send next, what to send again (DUP) when a new connection starts.
//!
//! An item stays in the [`Outbox`] until the broker acknowledges it, so a connection that
//! breaks loses nothing that was not acknowledged: the next connection sends the unacknowledged
//! items again, in order, with their packet ids and the DUP flag, then goes on with the rest.
//! The broker may acknowledge a packet id that is not in flight (an old session's, a lie): that
//! is ignored and counted by the caller, never taken for another item's acknowledgement.

use crate::outbox::Outbox;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// Items in flight: outbox sequence numbers and their packet ids, oldest first.
#[derive(Debug, Default)]
pub struct Inflight {
    entries: VecDeque<(u64, u16)>,
    /// The last sequence number sent on this connection.
    sent_upto: Option<u64>,
    last_id: u16,
}

impl Inflight {
    /// Nothing in flight.
    pub fn new() -> Inflight {
        Inflight::default()
    }

    /// Items sent and not yet acknowledged.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A new connection: forgets items the outbox has dropped meanwhile and returns the rest
    /// (sequence number, packet id) to send again with DUP set, oldest first.
    pub fn restart<T>(&mut self, outbox: &Outbox<T>) -> Vec<(u64, u16)> {
        self.entries.retain(|(s, _)| outbox.get(*s).is_some());
        self.sent_upto = self.entries.back().map(|(s, _)| *s);
        self.entries.iter().copied().collect()
    }

    /// The next item to send for the first time on this connection, if the window (at most
    /// `window` in flight) allows one: its sequence number and a fresh packet id, recorded as in
    /// flight.
    pub fn next<T>(&mut self, outbox: &Outbox<T>, window: usize) -> Option<(u64, u16)> {
        if self.entries.len() >= window {
            return None;
        }
        let (sequence, _) = outbox.first_after(self.sent_upto)?;
        let id = self.fresh_id();
        self.entries.push_back((sequence, id));
        self.sent_upto = Some(sequence);
        Some((sequence, id))
    }

    /// A packet id not in flight (nonzero).
    fn fresh_id(&mut self) -> u16 {
        loop {
            self.last_id = self.last_id.wrapping_add(1).max(1);
            if !self.entries.iter().any(|(_, id)| *id == self.last_id) {
                return self.last_id;
            }
        }
    }

    /// The broker acknowledged `packet_id`: the sequence number it stood for, `None` if it was
    /// not in flight.
    pub fn acknowledge(&mut self, packet_id: u16) -> Option<u64> {
        let i = self.entries.iter().position(|(_, id)| *id == packet_id)?;
        self.entries.remove(i).map(|(s, _)| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_of_acknowledged_items() {
        let mut o = Outbox::new(10);
        let mut f = Inflight::new();
        for i in 0..5 {
            o.push(i);
        }
        let a = f.next(&o, 2).unwrap();
        let b = f.next(&o, 2).unwrap();
        assert_eq!(f.next(&o, 2), None, "the window is full");
        assert_ne!(a.1, b.1);
        assert_eq!(f.acknowledge(a.1), Some(a.0));
        assert_eq!(f.acknowledge(a.1), None, "acknowledged once");
        assert!(o.pop_delivered(a.0));
        let c = f.next(&o, 2).unwrap();
        assert_eq!(o.get(c.0), Some(&2));
        assert_eq!(f.acknowledge(999), None);
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn a_new_connection_resends_what_was_not_acknowledged() {
        let mut o = Outbox::new(3);
        let mut f = Inflight::new();
        o.push("a");
        o.push("b");
        let a = f.next(&o, 10).unwrap();
        let b = f.next(&o, 10).unwrap();
        assert_eq!(f.next(&o, 10), None, "everything sent");
        // The connection breaks; meanwhile two more arrive and the full outbox drops "a".
        o.push("c");
        o.push("d");
        assert_eq!(o.get(a.0), None);
        assert_eq!(f.restart(&o), [b], "b again, with its packet id; a is gone");
        let c = f.next(&o, 10).unwrap();
        assert_eq!(o.get(c.0), Some(&"c"));
        assert_ne!(c.1, b.1);
        // A broker that lost its session acknowledges nothing old: b stays until acknowledged.
        assert_eq!(f.restart(&o), [b, c]);
    }

    #[test]
    fn packet_ids_wrap_and_skip_those_in_flight() {
        let mut o = Outbox::new(100_000);
        let mut f = Inflight::new();
        for i in 0..70_000 {
            o.push(i);
        }
        let first = f.next(&o, 10).unwrap();
        for _ in 0..70_000 {
            let (s, id) = f.next(&o, 10).unwrap();
            assert_ne!(id, 0);
            assert_ne!(id, first.1, "the id in flight is not reused");
            assert_eq!(f.acknowledge(id), Some(s));
            if o.first_after(Some(s)).is_none() {
                break;
            }
        }
    }
}
