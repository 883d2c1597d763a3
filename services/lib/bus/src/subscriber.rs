//! The subscribing side: a mirror of one publisher's table, and the events that change it.

use alloc::{collections::BTreeMap, string::String};
use core::mem;

use serde::de::DeserializeOwned;

use crate::{
    frame::{FrameDecoder, Outbox},
    wire::{self, Message, ProtocolError},
    Topic,
};

/// A change of the subscriber's view, reported as it is applied.
///
/// Across a whole connection, and across reconnections, the events a subscriber reports are
/// exactly those that turn its previous view into the publisher's table: an object the
/// subscriber already holds with an equal value produces no event, not even after a resync.
#[derive(Debug, PartialEq)]
pub enum Event<'a, T> {
    /// An object appeared.
    Created {
        /// Its key.
        key: &'a str,
        /// Its value.
        value: &'a T,
    },
    /// An object changed value.
    Modified {
        /// Its key.
        key: &'a str,
        /// The value it had.
        old: &'a T,
        /// The value it has now.
        new: &'a T,
    },
    /// An object was deleted.
    Deleted {
        /// Its key.
        key: &'a str,
        /// The value it had.
        value: &'a T,
    },
    /// The view now equals the publisher's table (EVE's "synchronized"); sent after every
    /// (re)synchronisation.
    Synchronized,
    /// The publisher signalled that it restarted and republished its objects (EVE's
    /// "restarted"); sent once per signal.
    Restarted,
}

/// A subscriber: mirrors the table a publisher publishes under one topic.
///
/// It is sans-IO: a transport calls [`connect`](Self::connect) whenever it (re)establishes the
/// connection, writes what [`fill`](Self::fill) produces, hands it the bytes it reads with
/// [`receive`](Self::receive), and calls [`disconnect`](Self::disconnect) when the connection
/// breaks, or when `receive` fails (and then reconnects). The view survives reconnections; the
/// publisher resynchronises it and only the differences are reported.
#[derive(Debug)]
pub struct Subscriber<T> {
    topic: Topic,
    mirror: Mirror<T>,
    decoder: FrameDecoder,
    outbox: Outbox,
    received_seq: u32,
}

/// The view and where its synchronisation stands.
#[derive(Debug)]
struct Mirror<T> {
    view: BTreeMap<String, Entry<T>>,
    /// Counts synchronisations; objects not sent during the current one are gone.
    round: u32,
    stage: Stage,
    restarted: bool,
}

#[derive(Debug)]
struct Entry<T> {
    value: T,
    /// The synchronisation round in which the object was last sent.
    round: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Disconnected,
    Subscribing,
    Syncing,
    Live,
}

impl<T: DeserializeOwned + PartialEq> Subscriber<T> {
    /// A subscriber to `topic`, not connected yet.
    pub fn new(topic: Topic) -> Self {
        let mirror = Mirror {
            view: BTreeMap::new(),
            round: 0,
            stage: Stage::Disconnected,
            restarted: false,
        };
        Self {
            topic,
            mirror,
            decoder: FrameDecoder::new(),
            outbox: Outbox::default(),
            received_seq: 0,
        }
    }

    /// Starts a new connection: the subscription request goes out through [`fill`](Self::fill),
    /// and the publisher answers with a full synchronisation.
    pub fn connect(&mut self) {
        self.decoder = FrameDecoder::new();
        self.received_seq = 0;
        self.outbox.clear();
        let subscribe = Message::Subscribe {
            topic: self.topic.name,
            schema: self.topic.schema,
        };
        wire::seal(&mut 0, subscribe, self.outbox.queue());
        self.mirror.stage = Stage::Subscribing;
    }

    /// Notes that the connection is gone. The view is kept until the next synchronisation.
    pub fn disconnect(&mut self) {
        self.mirror.stage = Stage::Disconnected;
        self.outbox.clear();
    }

    /// Handles bytes read from the connection, reporting every change to `on_event` as it is
    /// applied. On error the connection is unusable: disconnect, then connect again.
    pub fn receive(
        &mut self,
        mut bytes: &[u8],
        mut on_event: impl FnMut(Event<'_, T>),
    ) -> Result<(), ProtocolError> {
        if self.mirror.stage == Stage::Disconnected {
            return Err(ProtocolError::NotConnected);
        }
        let result = self.receive_frames(&mut bytes, &mut on_event);
        if result.is_err() {
            self.disconnect();
        }
        result
    }

    fn receive_frames(
        &mut self,
        bytes: &mut &[u8],
        on_event: &mut impl FnMut(Event<'_, T>),
    ) -> Result<(), ProtocolError> {
        while let Some(payload) = self.decoder.decode(bytes)? {
            let message = wire::open(&mut self.received_seq, payload)?;
            self.mirror.apply(message, on_event)?;
        }
        Ok(())
    }

    /// Puts an object kept by storage (the vault's copy of a persistent table) into the view,
    /// reporting it like a received one, while the publisher has never synchronised this
    /// subscriber: after a reboot, subscribers see the last committed table before its
    /// publisher is up. The publisher's first synchronisation then replaces what was seeded
    /// (objects it no longer has are deleted). Returns whether the object was taken; a value
    /// that does not decode is an error and changes nothing.
    pub fn seed(
        &mut self,
        key: &str,
        bytes: &[u8],
        mut on_event: impl FnMut(Event<'_, T>),
    ) -> Result<bool, ProtocolError> {
        if self.mirror.round != 0 || self.mirror.stage == Stage::Syncing {
            return Ok(false);
        }
        let value =
            postcard::from_bytes(bytes).map_err(|_| ProtocolError::BadValue { key: key.into() })?;
        self.mirror.update(key, value, &mut on_event);
        Ok(true)
    }

    /// Removes a seeded object whose stored copy was deleted, while the publisher has never
    /// synchronised this subscriber (see [`seed`](Self::seed)). Returns whether it was taken.
    pub fn unseed(&mut self, key: &str, mut on_event: impl FnMut(Event<'_, T>)) -> bool {
        if self.mirror.round != 0 || self.mirror.stage == Stage::Syncing {
            return false;
        }
        if let Some(entry) = self.mirror.view.remove(key) {
            on_event(Event::Deleted {
                key,
                value: &entry.value,
            });
        }
        true
    }

    /// Whether the subscriber has bytes to write.
    pub fn wants_to_send(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// Writes as many outgoing bytes as fit into `out`; returns how many.
    pub fn fill(&mut self, out: &mut [u8]) -> usize {
        self.outbox.fill(out, |_| false)
    }
}

impl<T> Subscriber<T> {
    /// The subscribed topic.
    pub fn topic(&self) -> Topic {
        self.topic
    }

    /// The object at `key`, as last received.
    pub fn get(&self, key: &str) -> Option<&T> {
        self.mirror.view.get(key).map(|entry| &entry.value)
    }

    /// Every object, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &T)> + '_ {
        self.mirror
            .view
            .iter()
            .map(|(key, entry)| (key.as_str(), &entry.value))
    }

    /// How many objects the view holds.
    pub fn len(&self) -> usize {
        self.mirror.view.len()
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.mirror.view.is_empty()
    }

    /// Whether the view equals the publisher's table: connected, and synchronised.
    pub fn is_synchronized(&self) -> bool {
        self.mirror.stage == Stage::Live
    }

    /// Whether the publisher has ever started synchronising this subscriber: until then, the
    /// view holds only what storage seeded ([`seed`](Self::seed)).
    pub fn has_heard_publisher(&self) -> bool {
        self.mirror.round != 0
    }

    /// Whether the subscriber is connected (possibly still synchronising).
    pub fn is_connected(&self) -> bool {
        self.mirror.stage != Stage::Disconnected
    }

    /// Whether the publisher has signalled that it restarted.
    pub fn publisher_restarted(&self) -> bool {
        self.mirror.restarted
    }
}

impl<T: DeserializeOwned + PartialEq> Mirror<T> {
    /// Applies one message from the publisher.
    fn apply(
        &mut self,
        message: Message<'_>,
        on_event: &mut impl FnMut(Event<'_, T>),
    ) -> Result<(), ProtocolError> {
        match (self.stage, message) {
            (Stage::Subscribing | Stage::Syncing | Stage::Live, Message::SyncStart) => {
                self.round = self.round.wrapping_add(1);
                self.stage = Stage::Syncing;
            }
            (Stage::Syncing | Stage::Live, Message::Update { key, value }) => {
                let value = postcard::from_bytes(value.0)
                    .map_err(|_| ProtocolError::BadValue { key: key.into() })?;
                self.update(key, value, on_event);
            }
            (Stage::Syncing | Stage::Live, Message::Delete { key }) => {
                if let Some(entry) = self.view.remove(key) {
                    on_event(Event::Deleted {
                        key,
                        value: &entry.value,
                    });
                }
            }
            (Stage::Syncing, Message::Complete { restarted }) => {
                let round = self.round;
                self.view.retain(|key, entry| {
                    let sent = entry.round == round;
                    if !sent {
                        on_event(Event::Deleted {
                            key,
                            value: &entry.value,
                        });
                    }
                    sent
                });
                if restarted && !self.restarted {
                    on_event(Event::Restarted);
                }
                self.restarted = restarted;
                self.stage = Stage::Live;
                on_event(Event::Synchronized);
            }
            (Stage::Live, Message::Restarted) => {
                if !mem::replace(&mut self.restarted, true) {
                    on_event(Event::Restarted);
                }
            }
            (Stage::Subscribing, Message::Refused(refusal)) => {
                return Err(ProtocolError::Refused(refusal))
            }
            (_, message) => {
                return Err(ProtocolError::Unexpected {
                    message: message.name(),
                })
            }
        }
        Ok(())
    }

    /// Sets the object at `key`, reporting a creation, or a modification if the value differs.
    fn update(&mut self, key: &str, value: T, on_event: &mut impl FnMut(Event<'_, T>)) {
        let round = self.round;
        match self.view.get_mut(key) {
            Some(entry) => {
                entry.round = round;
                if entry.value != value {
                    let old = mem::replace(&mut entry.value, value);
                    on_event(Event::Modified {
                        key,
                        old: &old,
                        new: &entry.value,
                    });
                }
            }
            None => {
                let entry = self
                    .view
                    .entry(key.into())
                    .or_insert(Entry { value, round });
                on_event(Event::Created {
                    key,
                    value: &entry.value,
                });
            }
        }
    }
}

impl<T: Clone> Event<'_, T> {
    /// An owned copy of the event.
    pub fn to_owned(&self) -> OwnedEvent<T> {
        match *self {
            Self::Created { key, value } => OwnedEvent::Created {
                key: key.into(),
                value: value.clone(),
            },
            Self::Modified { key, old, new } => OwnedEvent::Modified {
                key: key.into(),
                old: old.clone(),
                new: new.clone(),
            },
            Self::Deleted { key, value } => OwnedEvent::Deleted {
                key: key.into(),
                value: value.clone(),
            },
            Self::Synchronized => OwnedEvent::Synchronized,
            Self::Restarted => OwnedEvent::Restarted,
        }
    }
}

/// An [`Event`] that owns its key and values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnedEvent<T> {
    /// See [`Event::Created`].
    Created {
        /// Its key.
        key: String,
        /// Its value.
        value: T,
    },
    /// See [`Event::Modified`].
    Modified {
        /// Its key.
        key: String,
        /// The value it had.
        old: T,
        /// The value it has now.
        new: T,
    },
    /// See [`Event::Deleted`].
    Deleted {
        /// Its key.
        key: String,
        /// The value it had.
        value: T,
    },
    /// See [`Event::Synchronized`].
    Synchronized,
    /// See [`Event::Restarted`].
    Restarted,
}
