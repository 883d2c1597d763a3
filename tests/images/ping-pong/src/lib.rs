//! The ping-pong services' pure parts, testable on the host: how they check what they receive ([`tally`]) and their command line ([`config`]).
//!
//! `ping` publishes a counter; `pong` subscribes to it and publishes an acknowledgement of every
//! value it sees; `ping` publishes the next value once it sees the acknowledgement of the
//! current one. The exchange is in lockstep, so every value must be seen exactly once, in order,
//! even when one side dies, is restarted by the launcher and resynchronises (docs/bus.md).
#![no_std]
#![warn(missing_docs)]

extern crate alloc;

pub mod config;
pub mod tally;
