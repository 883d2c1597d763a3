//! QoS 1 and QoS 2 publishing's bookkeeping, sans-IO: which outbox items are in flight under
//! which packet id and at which step of their handshake, what to send next, what to send again
//! when a new connection resumes the session.
//!
//! - **QoS 1**: PUBLISH, then the broker's PUBACK ends it. An item stays in the [`Outbox`]
//!   until then, so a connection that breaks loses nothing that was not acknowledged: the next
//!   connection sends the unacknowledged items again, in order, with their packet ids and the
//!   DUP flag, then goes on with the rest.
//! - **QoS 2** (exactly once): PUBLISH, the broker's PUBREC (it has the message: the item
//!   leaves the outbox), our PUBREL, the broker's PUBCOMP (the packet id is free again). After a
//!   broken connection an item not yet received is published again with DUP; one received is
//!   never published again: its PUBREL is sent again instead. The broker then delivers it once.
//!
//! The broker may acknowledge a packet id that is not in flight (an old session's, a lie), or
//! at the wrong step (a PUBACK after a PUBREC, a PUBCOMP before it): that is ignored
//! and counted by the caller, never taken for another item's acknowledgement. A PUBREC for an
//! item already released is answered with its PUBREL again, as MQTT asks.

use crate::outbox::Outbox;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// One item in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    /// Its outbox sequence number.
    sequence: u64,
    /// Its packet id.
    id: u16,
    /// QoS 2, PUBREC received and PUBREL sent: waiting for PUBCOMP (the item has left the
    /// outbox).
    released: bool,
}

/// What a new connection sends again, oldest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resend {
    /// PUBLISH outbox item `sequence` again under packet id `id`, with DUP.
    Publish(u64, u16),
    /// PUBREL packet id `id` again (QoS 2: the broker has the message).
    Release(u16),
}

/// What a PUBREC means for the item it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// The broker has item `sequence`: remove it from the outbox and send PUBREL.
    First(u64),
    /// Already released (a PUBREC sent again): send PUBREL again.
    Again,
    /// Not in flight at QoS 2's first step: ignore it.
    Unknown,
}

/// Items in flight: outbox sequence numbers and their packet ids, oldest first.
#[derive(Debug, Default)]
pub struct Inflight {
    entries: VecDeque<Entry>,
    /// The last sequence number sent on this connection.
    sent_upto: Option<u64>,
    last_id: u16,
}

impl Inflight {
    /// Nothing in flight.
    pub fn new() -> Inflight {
        Inflight::default()
    }

    /// Items sent and not yet acknowledged (QoS 2: not yet completed).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A new connection: forgets items the outbox has dropped meanwhile (unless the broker
    /// had received them already) and returns what to send again, oldest first.
    pub fn restart<T>(&mut self, outbox: &Outbox<T>) -> Vec<Resend> {
        self.entries
            .retain(|e| e.released || outbox.get(e.sequence).is_some());
        self.sent_upto = self
            .entries
            .iter()
            .filter(|e| !e.released)
            .map(|e| e.sequence)
            .max();
        self.entries
            .iter()
            .map(|e| match e.released {
                true => Resend::Release(e.id),
                false => Resend::Publish(e.sequence, e.id),
            })
            .collect()
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
        self.entries.push_back(Entry {
            sequence,
            id,
            released: false,
        });
        self.sent_upto = Some(sequence);
        Some((sequence, id))
    }

    /// A packet id not in flight (nonzero).
    fn fresh_id(&mut self) -> u16 {
        loop {
            self.last_id = self.last_id.wrapping_add(1).max(1);
            if !self.entries.iter().any(|e| e.id == self.last_id) {
                return self.last_id;
            }
        }
    }

    fn position(&self, packet_id: u16) -> Option<usize> {
        self.entries.iter().position(|e| e.id == packet_id)
    }

    /// The broker acknowledged `packet_id` (QoS 1's PUBACK), or refused it at QoS 2's first
    /// step (a PUBREC with a failure reason): the sequence number it stood for, `None` if it
    /// was not in flight or was released already.
    pub fn acknowledge(&mut self, packet_id: u16) -> Option<u64> {
        let i = self.position(packet_id)?;
        if self.entries[i].released {
            return None;
        }
        self.entries.remove(i).map(|e| e.sequence)
    }

    /// QoS 2: the broker's PUBREC for `packet_id`.
    pub fn received(&mut self, packet_id: u16) -> Received {
        match self.position(packet_id) {
            None => Received::Unknown,
            Some(i) if self.entries[i].released => Received::Again,
            Some(i) => {
                self.entries[i].released = true;
                Received::First(self.entries[i].sequence)
            }
        }
    }

    /// QoS 2: the broker's PUBCOMP for `packet_id`; whether it ended an exchange in flight
    /// (released: a PUBCOMP before PUBREC is ignored).
    pub fn complete(&mut self, packet_id: u16) -> bool {
        match self.position(packet_id) {
            Some(i) if self.entries[i].released => {
                self.entries.remove(i);
                true
            }
            _ => false,
        }
    }
}

/// QoS 2 reception, exactly once: the packet ids of messages delivered to the service whose
/// PUBREL has not come yet. A PUBLISH sent again (DUP) under such an id is acknowledged and
/// not delivered twice; PUBREL frees the id. Kept across connections of one session; a broker
/// that lost the session (CONNACK's session present off) will not send those PUBRELs, so the
/// caller [`clear`](Received2::clear)s it then. A bitmap of the 65,535 ids: 8 KiB whatever the
/// broker does.
#[derive(Debug)]
pub struct Received2 {
    bits: alloc::boxed::Box<[u64; 1024]>,
    held: usize,
}

impl Default for Received2 {
    fn default() -> Self {
        Received2 {
            bits: alloc::boxed::Box::new([0; 1024]),
            held: 0,
        }
    }
}

impl Received2 {
    /// A PUBLISH at QoS 2 under `packet_id`: whether to deliver it (`false`: delivered
    /// already, awaiting PUBREL).
    pub fn publish(&mut self, packet_id: u16) -> bool {
        let (word, bit) = (usize::from(packet_id / 64), packet_id % 64);
        let fresh = self.bits[word] & (1 << bit) == 0;
        if fresh {
            self.bits[word] |= 1 << bit;
            self.held += 1;
        }
        fresh
    }

    /// A PUBREL for `packet_id`: frees the id; whether it was held.
    pub fn release(&mut self, packet_id: u16) -> bool {
        let (word, bit) = (usize::from(packet_id / 64), packet_id % 64);
        let held = self.bits[word] & (1 << bit) != 0;
        if held {
            self.bits[word] &= !(1 << bit);
            self.held -= 1;
        }
        held
    }

    /// Ids awaiting PUBREL.
    pub fn len(&self) -> usize {
        self.held
    }

    /// Whether no id awaits PUBREL.
    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// Forgets every id (the broker lost the session).
    pub fn clear(&mut self) {
        self.bits.fill(0);
        self.held = 0;
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
        assert_eq!(
            f.restart(&o),
            [Resend::Publish(b.0, b.1)],
            "b again, with its packet id; a is gone"
        );
        let c = f.next(&o, 10).unwrap();
        assert_eq!(o.get(c.0), Some(&"c"));
        assert_ne!(c.1, b.1);
        // A broker that lost its session acknowledges nothing old: b stays until acknowledged.
        assert_eq!(
            f.restart(&o),
            [Resend::Publish(b.0, b.1), Resend::Publish(c.0, c.1)]
        );
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

    #[test]
    fn qos2_publish_received_released_completed() {
        let mut o = Outbox::new(10);
        let mut f = Inflight::new();
        o.push("a");
        o.push("b");
        let a = f.next(&o, 2).unwrap();
        let b = f.next(&o, 2).unwrap();
        // PUBCOMP before PUBREC, and a PUBACK at QoS 2's second step, are ignored.
        assert!(!f.complete(a.1));
        assert_eq!(f.received(a.1), Received::First(a.0));
        assert!(
            o.pop_delivered(a.0),
            "the broker has it: it leaves the outbox"
        );
        assert_eq!(f.acknowledge(a.1), None);
        assert_eq!(
            f.received(a.1),
            Received::Again,
            "PUBREC again: PUBREL again"
        );
        assert_eq!(f.received(999), Received::Unknown);
        assert_eq!(f.len(), 2, "a holds its id (and the window) until PUBCOMP");
        assert!(f.complete(a.1));
        assert!(!f.complete(a.1), "completed once");
        assert_eq!(f.len(), 1);
        // A PUBREC with a failure reason ends b's exchange at the first step.
        assert_eq!(f.acknowledge(b.1), Some(b.0));
        assert!(f.is_empty());
    }

    #[test]
    fn qos2_a_new_connection_releases_what_the_broker_has_and_publishes_the_rest() {
        let mut o = Outbox::new(2);
        let mut f = Inflight::new();
        o.push("a");
        o.push("b");
        let a = f.next(&o, 10).unwrap();
        let b = f.next(&o, 10).unwrap();
        assert_eq!(f.received(a.1), Received::First(a.0));
        o.pop_delivered(a.0);
        // The connection breaks before a's PUBCOMP and b's PUBREC; two more arrive (the full
        // outbox drops b, which the broker never had).
        o.push("c");
        o.push("d");
        assert_eq!(o.get(b.0), None, "the full outbox dropped b");
        assert_eq!(
            f.restart(&o),
            [Resend::Release(a.1)],
            "a is not published twice; b is gone"
        );
        let c = f.next(&o, 10).unwrap();
        assert_eq!(o.get(c.0), Some(&"c"));
        assert_ne!(c.1, a.1, "a's id is held until its PUBCOMP");
        assert_eq!(
            f.restart(&o),
            [Resend::Release(a.1), Resend::Publish(c.0, c.1)]
        );
        assert!(f.complete(a.1));
        assert_eq!(f.restart(&o), [Resend::Publish(c.0, c.1)]);
    }

    #[test]
    fn qos2_reception_delivers_once_per_id_until_released() {
        let mut r = Received2::default();
        assert!(r.publish(7));
        assert!(!r.publish(7), "DUP before PUBREL: not delivered again");
        assert!(r.publish(65535) && r.publish(1));
        assert_eq!(r.len(), 3);
        assert!(r.release(7));
        assert!(!r.release(7), "PUBREL again: nothing held");
        assert!(r.publish(7), "a new message under a freed id");
        r.clear();
        assert!(r.is_empty());
        assert!(r.publish(65535));
    }
}
