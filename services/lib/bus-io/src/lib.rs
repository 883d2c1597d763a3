//! Runs lichen-bus publishers and subscribers over async byte streams.
//!
//! `lichen-bus` is sans-IO: it turns bytes into events and changes into bytes. This crate is the
//! I/O around it that every service needs, written once: a [`SharedPublisher`] serves its table
//! to subscriber connections, a [`Subscription`] mirrors a remote table and hands its events to
//! the application, and both reconnect through a [`Connector`] whenever a connection ends (the
//! peer closed, died, or broke the protocol), so that the bus resynchronises the view.
//!
//! The streams are anything that implements [`ByteStream`]: a kernel channel in a lichen image
//! (feature `kernel`: a vchan under Xen, a virtio-console port under microvm), an in-memory pipe
//! in tests. Everything runs on a single-threaded async executor:
//! the shared handles are `Rc`s, and nothing here needs a timer.
//!
//! ```ignore
//! let acks = Subscription::<Ack>::new(ACK_TOPIC);
//! kernel::spawn({ let acks = acks.clone(); async move { acks.run(NamedChannel::new("ack")).await } });
//! loop {
//!     match acks.next().await {
//!         Update::Event(OwnedEvent::Modified { new, .. }) => { /* ... */ }
//!         Update::Link(link) => kernel::info!("ack channel: {link}"),
//!         _ => {}
//!     }
//! }
//! ```
#![no_std]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

#[cfg(all(feature = "kernel", target_os = "none"))]
pub mod channel;
mod link;
pub mod mux;
pub mod node;
mod notify;
mod persist;
mod publication;
mod race;
mod stream;
mod subscription;

#[cfg(test)]
mod node_tests;
#[cfg(test)]
mod persist_tests;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

pub use link::{EndReason, Link};
pub use node::{Node, NodeError, Publication};
pub use publication::SharedPublisher;
pub use stream::{ByteStream, Connector, Duplex, Transferred};
pub use subscription::{Subscription, Update, DEFAULT_MAX_QUEUED};

/// How many bytes a driver reads or writes at a time.
pub const CHUNK: usize = 4096;
