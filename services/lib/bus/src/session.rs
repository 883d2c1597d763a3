//! One subscriber's connection, seen from the publisher: what it still has to be told.
//!
//! A session never queues messages. It remembers *which keys* the subscriber has not heard the
//! latest of, and reads their values from the table only when the transport has room for the
//! next frame, so every key waiting is sent once, with its latest state, however often it
//! changed meanwhile (EVE's semantic: the latest state wins). The set of waiting keys is
//! bounded; when a slow subscriber lets it overflow, the session forgets it and starts a full
//! resynchronisation instead, whose size is bounded by the table itself.

use alloc::{
    borrow::ToOwned,
    collections::{BTreeSet, VecDeque},
    rc::Rc,
    string::String,
    vec::Vec,
};
use core::ops::Bound;

use crate::{
    frame::{FrameDecoder, Outbox},
    storage::StoredObjects,
    wire::{self, Message, ProtocolError, Refusal},
    Topic,
};

/// Where a session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionStatus {
    /// Connected; waiting for the subscriber's `Subscribe`.
    AwaitingSubscribe,
    /// Sending the subscriber every object, then the `Complete` marker.
    Syncing,
    /// Synchronised; sending changes as they happen.
    Live,
    /// Refused or broken: nothing more is accepted. Once [`wants_to_send`] is false (a refusal
    /// may still be going out), the transport should close the connection.
    ///
    /// [`wants_to_send`]: crate::Publisher::wants_to_send
    Closed,
}

/// Which keys of the table a session may see (see
/// [`Publisher::connect_filtered`](crate::Publisher::connect_filtered)).
pub type KeyFilter = Rc<dyn Fn(&str) -> bool>;

/// The publisher's side of one connection.
pub(crate) struct Session {
    outbox: Outbox,
    decoder: FrameDecoder,
    received_seq: u32,
    progress: Progress,
}

impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("received_seq", &self.received_seq)
            .field("progress", &self.progress)
            .finish()
    }
}

/// What a session has told its subscriber and what it still has to.
struct Progress {
    stage: Stage,
    sent_seq: u32,
    /// Keys changed since the subscriber last heard of them.
    pending: PendingKeys,
    /// The `Restarted` signal has to go out.
    restart_due: bool,
    /// The keys this subscriber may see (all when `None`).
    filter: Option<KeyFilter>,
}

impl core::fmt::Debug for Progress {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Progress")
            .field("stage", &self.stage)
            .field("sent_seq", &self.sent_seq)
            .field("pending", &self.pending)
            .field("restart_due", &self.restart_due)
            .field("filtered", &self.filter.is_some())
            .finish()
    }
}

impl Progress {
    fn may_see(&self, key: &str) -> bool {
        self.filter.as_ref().is_none_or(|f| f(key))
    }
}

#[derive(Debug)]
enum Stage {
    AwaitingSubscribe,
    Refusing(Refusal),
    Syncing(SyncCursor),
    Live,
    Closed,
}

impl Stage {
    /// The stage a subscription to topic `name` with schema version `schema` leads to.
    fn answering(topic: &Topic, name: &str, schema: u32) -> Self {
        if name != topic.name {
            Self::Refusing(Refusal::WrongTopic {
                published: topic.name.to_owned(),
            })
        } else if schema != topic.schema {
            Self::Refusing(Refusal::WrongSchema {
                published: topic.schema,
            })
        } else {
            Self::Syncing(SyncCursor::default())
        }
    }
}

/// How far a full synchronisation got through the table, which it walks in key order.
#[derive(Debug, Default)]
struct SyncCursor {
    started: bool,
    last_sent: Option<String>,
}

impl SyncCursor {
    /// Whether the walk already sent `key`, so that a change to it must be sent on its own.
    fn has_passed(&self, key: &str) -> bool {
        self.last_sent.as_deref().is_some_and(|last| key <= last)
    }
}

impl Session {
    /// A fresh connection, waiting for its subscriber to subscribe; it sees the keys `filter`
    /// accepts (all without one).
    pub(crate) fn new(filter: Option<KeyFilter>) -> Self {
        let progress = Progress {
            stage: Stage::AwaitingSubscribe,
            sent_seq: 0,
            pending: PendingKeys::default(),
            restart_due: false,
            filter,
        };
        Self {
            outbox: Outbox::default(),
            decoder: FrameDecoder::new(),
            received_seq: 0,
            progress,
        }
    }

    /// Where the session is in its life.
    pub(crate) fn status(&self) -> SessionStatus {
        match self.progress.stage {
            Stage::AwaitingSubscribe => SessionStatus::AwaitingSubscribe,
            Stage::Syncing(_) => SessionStatus::Syncing,
            Stage::Live => SessionStatus::Live,
            Stage::Refusing(_) | Stage::Closed => SessionStatus::Closed,
        }
    }

    /// Handles bytes from the subscriber.
    pub(crate) fn receive(&mut self, topic: &Topic, mut bytes: &[u8]) -> Result<(), ProtocolError> {
        let result = self.receive_frames(topic, &mut bytes);
        if result.is_err() {
            self.progress.stage = Stage::Closed;
            self.outbox.clear();
        }
        result
    }

    fn receive_frames(&mut self, topic: &Topic, bytes: &mut &[u8]) -> Result<(), ProtocolError> {
        while let Some(payload) = self.decoder.decode(bytes)? {
            let message = wire::open(&mut self.received_seq, payload)?;
            match (&self.progress.stage, message) {
                (
                    Stage::AwaitingSubscribe,
                    Message::Subscribe {
                        topic: name,
                        schema,
                    },
                ) => {
                    self.progress.stage = Stage::answering(topic, name, schema);
                }
                (Stage::Refusing(_) | Stage::Closed, _) => return Err(ProtocolError::NotConnected),
                (_, message) => {
                    return Err(ProtocolError::Unexpected {
                        message: message.name(),
                    })
                }
            }
        }
        Ok(())
    }

    /// Notes that the object at `key` changed (or was deleted) in the table.
    pub(crate) fn note_change(&mut self, key: &str, max_pending: usize) {
        let progress = &mut self.progress;
        if !progress.may_see(key) {
            return;
        }
        match &progress.stage {
            Stage::Syncing(cursor) if cursor.has_passed(key) => {}
            Stage::Live => {}
            // Not subscribed yet, or the synchronisation walk will reach the key and send its
            // latest state (or, if deleted, not send it, and `Complete` implies the deletion).
            _ => return,
        }
        progress.pending.insert(key);
        if progress.pending.len() > max_pending {
            progress.pending.clear();
            progress.stage = Stage::Syncing(SyncCursor::default());
        }
    }

    /// Notes that the publisher signalled a restart.
    pub(crate) fn note_restart(&mut self) {
        // A session still synchronising tells it in `Complete`.
        if matches!(self.progress.stage, Stage::Live) {
            self.progress.restart_due = true;
        }
    }

    /// Whether the session has bytes to write.
    pub(crate) fn wants_to_send(&self) -> bool {
        !self.outbox.is_empty() || self.progress.has_next()
    }

    /// Writes as many bytes as fit into `out`, encoding frames as needed; returns how many.
    pub(crate) fn fill(&mut self, table: &StoredObjects, restarted: bool, out: &mut [u8]) -> usize {
        let progress = &mut self.progress;
        self.outbox
            .fill(out, |bytes| progress.write_next(table, restarted, bytes))
    }
}

impl Progress {
    fn has_next(&self) -> bool {
        match self.stage {
            Stage::Refusing(_) | Stage::Syncing(_) => true,
            Stage::Live => self.restart_due || !self.pending.is_empty(),
            Stage::AwaitingSubscribe | Stage::Closed => false,
        }
    }

    /// Appends the next frame due to `out`; returns false if nothing is due.
    fn write_next(&mut self, table: &StoredObjects, restarted: bool, out: &mut Vec<u8>) -> bool {
        let seq = &mut self.sent_seq;
        match &mut self.stage {
            Stage::AwaitingSubscribe | Stage::Closed => return false,
            Stage::Refusing(refusal) => {
                wire::seal(seq, Message::Refused(refusal.clone()), out);
                self.stage = Stage::Closed;
                return true;
            }
            Stage::Syncing(cursor) if !cursor.started => {
                wire::seal(seq, Message::SyncStart, out);
                cursor.started = true;
                return true;
            }
            Stage::Syncing(_) | Stage::Live => {}
        }
        if let Some(key) = self.pending.pop() {
            let value = table.get(&key).map(Vec::as_slice);
            wire::seal(seq, Message::object(&key, value), out);
            return true;
        }
        match &mut self.stage {
            Stage::Syncing(cursor) => {
                let after = cursor
                    .last_sent
                    .as_deref()
                    .map_or(Bound::Unbounded, Bound::Excluded);
                let filter = &self.filter;
                let next = table
                    .range::<str, _>((after, Bound::Unbounded))
                    .find(|(key, _)| filter.as_ref().is_none_or(|f| f(key)));
                match next {
                    Some((key, value)) => {
                        wire::seal(seq, Message::object(key, Some(value)), out);
                        cursor.last_sent = Some(key.clone());
                    }
                    None => {
                        wire::seal(seq, Message::Complete { restarted }, out);
                        self.restart_due = false;
                        self.stage = Stage::Live;
                    }
                }
            }
            _ if self.restart_due => {
                wire::seal(seq, Message::Restarted, out);
                self.restart_due = false;
            }
            _ => return false,
        }
        true
    }
}

/// Keys waiting to be sent, each once, in the order they first changed.
#[derive(Debug, Default)]
struct PendingKeys {
    order: VecDeque<String>,
    members: BTreeSet<String>,
}

impl PendingKeys {
    fn insert(&mut self, key: &str) {
        if !self.members.contains(key) {
            self.members.insert(key.to_owned());
            self.order.push_back(key.to_owned());
        }
    }

    fn pop(&mut self) -> Option<String> {
        let key = self.order.pop_front()?;
        self.members.remove(&key);
        Some(key)
    }

    fn len(&self) -> usize {
        self.order.len()
    }

    fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    fn clear(&mut self) {
        self.order.clear();
        self.members.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_keys_keep_first_change_order_and_coalesce() {
        let mut pending = PendingKeys::default();
        for key in ["b", "a", "b", "c", "a"] {
            pending.insert(key);
        }
        assert_eq!(pending.len(), 3);
        let popped: Vec<String> = core::iter::from_fn(|| pending.pop()).collect();
        assert_eq!(popped, ["b", "a", "c"]);
        pending.insert("b");
        assert_eq!(pending.pop().as_deref(), Some("b"));
    }

    #[test]
    fn the_sync_cursor_passes_keys_in_order() {
        let mut cursor = SyncCursor::default();
        assert!(!cursor.has_passed(""));
        cursor.last_sent = Some("m".into());
        assert!(cursor.has_passed("a") && cursor.has_passed("m"));
        assert!(!cursor.has_passed("n"));
    }
}
