//! Simulated devices: each has its own device certificate, onboards with a shared onboarding
//! certificate, polls its configuration and posts info, metrics and logs, all through the EVE
//! API v2 like an EVE node. Tests drive single [`SimDevice`]s; [`fleet`] runs many (the
//! `lichen-devsim` binary), and [`bench`] measures the controller under them.

mod attest;
pub mod bench;
mod device;
pub mod fleet;
pub mod reports;

pub use device::{ConfigPoll, SimDevice, SimError};
