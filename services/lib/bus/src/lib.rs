//! The lichen service bus: typed publish/subscribe of keyed objects over any byte channel,
//! modelled on EVE's pubsub.
//!
//! A [`Publisher`] owns a named table of objects of one type, keyed by strings, and creates,
//! modifies and deletes them. A [`Subscriber`] connected to it receives a full synchronisation
//! (every object, then a "synchronized" marker), then every change as it happens; its view
//! survives reconnections and publisher restarts, after which it is resynchronised and reports
//! exactly the changes it missed. Tables are volatile or persistent (written through a
//! [`Storage`]). A slow subscriber never makes the publisher queue without bound: pending changes
//! coalesce per key, latest state wins.
//!
//! Both sides are sans-IO state machines: the transport (a vchan, a virtio console, or memory,
//! see [`loopback`]) feeds them the bytes it reads and writes the bytes they produce. On the wire
//! each message is a checked frame (see [`frame`]); `docs/bus.md` describes the protocol.
#![no_std]
#![warn(missing_docs)]

extern crate alloc;

mod crc32;
pub mod frame;
pub mod loopback;
mod publisher;
mod session;
mod storage;
mod subscriber;
mod wire;

#[cfg(test)]
mod tests;

pub use frame::{FrameDecoder, FrameError};
pub use publisher::{PublishError, Publisher, SessionId, DEFAULT_MAX_PENDING};
pub use session::{KeyFilter, SessionStatus};
pub use storage::{MemoryStorage, Storage, StoredObjects, Volatile};
pub use subscriber::{Event, OwnedEvent, Subscriber};
pub use wire::{ProtocolError, Refusal};

/// What a publisher publishes: a table name and the schema version of its object type.
///
/// A subscriber names the topic it expects; a publisher of another name or schema version
/// refuses it. Bump `schema` whenever the object type changes incompatibly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Topic {
    /// The table's name, e.g. `"nim/DeviceNetworkStatus"`.
    pub name: &'static str,
    /// The schema version of the object type.
    pub schema: u32,
}

impl Topic {
    /// The topic `name` with objects of schema version `schema`.
    pub const fn new(name: &'static str, schema: u32) -> Self {
        Self { name, schema }
    }
}
