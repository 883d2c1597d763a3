//! MQTT 3.1.1 and 5 for lichen's services.
//!
//! - [`codec`] (re-exported at the root): packets to bytes and back, sans-IO, at either
//!   protocol level; [`properties`] and [`reason`]: MQTT 5's properties and reason codes;
//! - [`outbox`]: a bounded store-and-forward queue that drops the oldest and counts;
//! - [`inflight`]: QoS 1 and 2 bookkeeping (packet ids in flight, what to resend);
//! - [`latency`]: a fixed-size latency histogram (the client's in-guest publish latency);
//! - [`sync`]: a wake-up flag and a two-way select for tasks of one executor;
//! - `client` (feature `kernel`, images only): a connection over `kernel::net` that publishes what its
//!   outbox holds, hands received messages to a callback and reconnects with backoff.

#![no_std]
#![warn(missing_docs)]

extern crate alloc;

#[cfg(all(feature = "kernel", target_os = "none"))]
pub mod client;
pub mod codec;
pub mod inflight;
pub mod latency;
pub mod outbox;
pub mod properties;
pub mod reason;
pub mod sync;

pub use codec::*;
pub use outbox::Outbox;
