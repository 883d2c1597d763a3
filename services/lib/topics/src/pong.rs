//! What `pong` publishes (the bus test pair ping/pong, tests/images/ping-pong).

use serde::{Deserialize, Serialize};

use crate::{Global, Topic};

/// The last round pong saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The round acknowledged.
    pub n: u64,
}

impl core::fmt::Display for Ack {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "acknowledged round {}", self.n)
    }
}

/// pong's acknowledgement (one object).
pub const ACK: Topic<Global, Ack> = Topic::volatile("pong/Ack", 1);
