//! The publishing side: a named table of objects and the subscribers connected to it.

use alloc::{collections::BTreeMap, string::String, vec::Vec};
use core::{fmt, marker::PhantomData};

use serde::{de::DeserializeOwned, Serialize};

use crate::{
    frame::MAX_PAYLOAD,
    session::{KeyFilter, Session, SessionStatus},
    storage::{Storage, StoredObjects, Volatile},
    wire::{ProtocolError, UPDATE_OVERHEAD},
    Topic,
};

/// How many changed keys a session remembers for a slow subscriber before it gives up on them
/// and resynchronises the subscriber instead.
pub const DEFAULT_MAX_PENDING: usize = 256;

/// Identifies one subscriber connection of a [`Publisher`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(u64);

/// Why a change could not be published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublishError<E> {
    /// The storage failed; the table is unchanged.
    Storage(E),
    /// postcard cannot serialize the value.
    Encode(postcard::Error),
    /// The key and value do not fit in one frame.
    TooLarge {
        /// The bytes the key and encoded value would take in a frame.
        size: usize,
        /// The largest frame payload.
        max: usize,
    },
    /// A stored value does not decode as the published type (when loading storage).
    BadStoredValue {
        /// The object's key.
        key: String,
    },
}

impl<E: fmt::Debug> fmt::Display for PublishError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Storage(error) => write!(f, "storage failed: {error:?}"),
            Self::Encode(error) => write!(f, "cannot serialize the value: {error}"),
            Self::TooLarge { size, max } => {
                write!(f, "object of {size} bytes exceeds the frame limit of {max}")
            }
            Self::BadStoredValue { key } => write!(
                f,
                "stored value of {key:?} does not decode as the published type"
            ),
        }
    }
}

/// A publisher: owns the table of one topic and feeds any number of subscriber connections.
///
/// It is sans-IO: a transport calls [`connect`](Self::connect) for every new connection, hands
/// it the bytes it reads with [`receive`](Self::receive), writes what [`fill`](Self::fill)
/// produces (whenever [`wants_to_send`](Self::wants_to_send) and the channel has room), and
/// calls [`disconnect`](Self::disconnect) when the connection goes away.
///
/// Objects are values of `T`, keyed by strings. With [`Volatile`] storage the table starts empty;
/// with persistent storage every change is written through and the table is reloaded at start.
pub struct Publisher<T, S = Volatile> {
    topic: Topic,
    storage: S,
    objects: StoredObjects,
    restarted: bool,
    sessions: BTreeMap<SessionId, Session>,
    next_session: u64,
    max_pending: usize,
    object_type: PhantomData<fn(T) -> T>,
}

impl<T: Serialize + DeserializeOwned, S: Storage> Publisher<T, S> {
    /// Starts publishing `topic`, with the objects `storage` holds.
    pub fn new(topic: Topic, mut storage: S) -> Result<Self, PublishError<S::Error>> {
        let objects = storage.load().map_err(PublishError::Storage)?;
        if let Some((key, _)) = objects
            .iter()
            .find(|(_, value)| postcard::from_bytes::<T>(value).is_err())
        {
            return Err(PublishError::BadStoredValue { key: key.clone() });
        }
        Ok(Self {
            topic,
            storage,
            objects,
            restarted: false,
            sessions: BTreeMap::new(),
            next_session: 0,
            max_pending: DEFAULT_MAX_PENDING,
            object_type: PhantomData,
        })
    }

    /// Sets how many changed keys each session remembers for a slow subscriber before it
    /// resynchronises it instead (at least 1; [`DEFAULT_MAX_PENDING`] by default).
    pub fn with_max_pending(mut self, max_pending: usize) -> Self {
        self.max_pending = max_pending.max(1);
        self
    }

    /// The published topic.
    pub fn topic(&self) -> Topic {
        self.topic
    }

    /// Creates or replaces the object at `key`. Publishing a value equal to the current one
    /// changes nothing and sends nothing.
    pub fn publish(&mut self, key: &str, value: &T) -> Result<(), PublishError<S::Error>> {
        let bytes = postcard::to_allocvec(value).map_err(PublishError::Encode)?;
        let size = key.len() + bytes.len() + UPDATE_OVERHEAD;
        if size > MAX_PAYLOAD {
            return Err(PublishError::TooLarge {
                size,
                max: MAX_PAYLOAD,
            });
        }
        let current = self.objects.get_mut(key);
        if current.as_deref() == Some(&bytes) {
            return Ok(());
        }
        self.storage
            .store(key, &bytes)
            .map_err(PublishError::Storage)?;
        match current {
            Some(current) => *current = bytes,
            None => drop(self.objects.insert(key.into(), bytes)),
        }
        self.note_change(key);
        Ok(())
    }

    /// Deletes the object at `key`; returns whether there was one.
    pub fn unpublish(&mut self, key: &str) -> Result<bool, PublishError<S::Error>> {
        if !self.objects.contains_key(key) {
            return Ok(false);
        }
        self.storage.remove(key).map_err(PublishError::Storage)?;
        self.objects.remove(key);
        self.note_change(key);
        Ok(true)
    }

    /// The object at `key`.
    pub fn get(&self, key: &str) -> Option<T> {
        self.objects
            .get(key)
            .and_then(|bytes| postcard::from_bytes(bytes).ok())
    }

    /// Every object, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, T)> + '_ {
        self.objects
            .iter()
            .filter_map(|(key, bytes)| Some((key.as_str(), postcard::from_bytes(bytes).ok()?)))
    }

    /// The keys of every object, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.objects.keys().map(String::as_str)
    }

    /// How many objects the table holds.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

impl<T, S> Publisher<T, S> {
    /// Signals subscribers that this publisher restarted and has republished its objects (EVE's
    /// `SignalRestarted`). Subscribers see one [`Event::Restarted`](crate::Event::Restarted).
    pub fn signal_restarted(&mut self) {
        self.restarted = true;
        self.sessions.values_mut().for_each(Session::note_restart);
    }

    /// Whether [`signal_restarted`](Self::signal_restarted) was called.
    pub fn has_signalled_restart(&self) -> bool {
        self.restarted
    }

    /// The bus encoding (postcard) of the object at `key`, as subscribers and storage get it.
    pub fn encoded(&self, key: &str) -> Option<&[u8]> {
        self.objects.get(key).map(Vec::as_slice)
    }

    /// Gives the storage back, e.g. to start the publisher again on it.
    pub fn into_storage(self) -> S {
        self.storage
    }

    /// Accepts a new subscriber connection.
    pub fn connect(&mut self) -> SessionId {
        self.connect_filtered(None)
    }

    /// Accepts a new subscriber connection that sees only the keys `filter` accepts (all
    /// without one): its synchronisation skips the others and their changes are never sent.
    /// For a table that holds several parties' objects, each entitled to its own.
    pub fn connect_filtered(&mut self, filter: Option<KeyFilter>) -> SessionId {
        let id = SessionId(self.next_session);
        self.next_session += 1;
        self.sessions.insert(id, Session::new(filter));
        id
    }

    /// Forgets a connection that went away.
    pub fn disconnect(&mut self, session: SessionId) {
        self.sessions.remove(&session);
    }

    /// Where a connection is in its life, if it exists.
    pub fn session_status(&self, session: SessionId) -> Option<SessionStatus> {
        self.sessions.get(&session).map(Session::status)
    }

    /// The open connections.
    pub fn sessions(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.sessions.keys().copied()
    }

    /// Handles bytes read from a connection. On error the session is closed: the transport
    /// should drop the connection.
    pub fn receive(&mut self, session: SessionId, bytes: &[u8]) -> Result<(), ProtocolError> {
        let session = self
            .sessions
            .get_mut(&session)
            .ok_or(ProtocolError::NotConnected)?;
        session.receive(&self.topic, bytes)
    }

    /// Whether the connection has bytes to write.
    pub fn wants_to_send(&self, session: SessionId) -> bool {
        self.sessions
            .get(&session)
            .is_some_and(Session::wants_to_send)
    }

    /// Writes as many of the connection's outgoing bytes as fit into `out`; returns how many.
    ///
    /// Frames are encoded only when there is room to start them, so a slow reader makes changes
    /// wait as keys and coalesce, never pile up as frames.
    pub fn fill(&mut self, session: SessionId, out: &mut [u8]) -> usize {
        match self.sessions.get_mut(&session) {
            Some(session) => session.fill(&self.objects, self.restarted, out),
            None => 0,
        }
    }

    /// Tells every session that the object at `key` changed.
    fn note_change(&mut self, key: &str) {
        let max_pending = self.max_pending;
        self.sessions
            .values_mut()
            .for_each(|session| session.note_change(key, max_pending));
    }
}

impl<T, S: fmt::Debug> fmt::Debug for Publisher<T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("topic", &self.topic)
            .field("storage", &self.storage)
            .field("objects", &self.objects.len())
            .field("restarted", &self.restarted)
            .field("sessions", &self.sessions.len())
            .finish()
    }
}

/// The encoded objects, for the storage tests below.
#[cfg(test)]
impl<T, S> Publisher<T, S> {
    pub(crate) fn encoded_objects(&self) -> &StoredObjects {
        &self.objects
    }
}

#[cfg(test)]
mod tests {
    use alloc::{string::ToString, vec, vec::Vec};

    use super::*;
    use crate::storage::MemoryStorage;

    const TOPIC: Topic = Topic::new("test/numbers", 1);

    #[test]
    fn publishes_modifies_and_deletes() {
        let mut publisher = Publisher::<u32>::new(TOPIC, Volatile).unwrap();
        publisher.publish("a", &1).unwrap();
        publisher.publish("b", &2).unwrap();
        publisher.publish("a", &3).unwrap();
        assert_eq!(publisher.get("a"), Some(3));
        assert_eq!(publisher.unpublish("b"), Ok(true));
        assert_eq!(publisher.unpublish("b"), Ok(false));
        assert_eq!(publisher.iter().collect::<Vec<_>>(), [("a", 3)]);
        assert_eq!(publisher.len(), 1);
    }

    #[test]
    fn persistent_tables_write_through_and_reload() {
        let mut publisher = Publisher::<u32, _>::new(TOPIC, MemoryStorage::default()).unwrap();
        publisher.publish("a", &1).unwrap();
        publisher.publish("b", &2).unwrap();
        publisher.unpublish("a").unwrap();
        let before = publisher.encoded_objects().clone();
        let restarted = Publisher::<u32, _>::new(TOPIC, publisher.into_storage()).unwrap();
        assert_eq!(restarted.encoded_objects(), &before);
        assert_eq!(restarted.get("b"), Some(2));
    }

    #[test]
    fn rejects_stored_values_of_another_type() {
        let mut storage = MemoryStorage::default();
        storage
            .objects
            .insert("bad".to_string(), vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        let error = Publisher::<u32, _>::new(TOPIC, storage).unwrap_err();
        assert_eq!(
            error,
            PublishError::BadStoredValue {
                key: "bad".to_string()
            }
        );
    }

    #[test]
    fn storage_failures_leave_the_table_unchanged() {
        struct Broken;
        impl Storage for Broken {
            type Error = &'static str;
            fn load(&mut self) -> Result<StoredObjects, Self::Error> {
                Ok(StoredObjects::new())
            }
            fn store(&mut self, _: &str, _: &[u8]) -> Result<(), Self::Error> {
                Err("disk full")
            }
            fn remove(&mut self, _: &str) -> Result<(), Self::Error> {
                Err("disk full")
            }
        }
        let mut publisher = Publisher::<u32, _>::new(TOPIC, Broken).unwrap();
        assert_eq!(
            publisher.publish("a", &1),
            Err(PublishError::Storage("disk full"))
        );
        assert!(publisher.is_empty());
    }

    #[test]
    fn refuses_objects_larger_than_a_frame() {
        let mut publisher = Publisher::<Vec<u8>>::new(TOPIC, Volatile).unwrap();
        let error = publisher.publish("big", &vec![0; MAX_PAYLOAD]).unwrap_err();
        assert!(matches!(error, PublishError::TooLarge { .. }), "{error}");
        publisher
            .publish("fits", &vec![0; MAX_PAYLOAD - 100])
            .unwrap();
    }
}
