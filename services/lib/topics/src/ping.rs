//! What `ping` publishes (the bus test pair ping/pong, tests/images/ping-pong).

use serde::{Deserialize, Serialize};

use crate::{Global, Topic};

/// The round ping is at: it publishes round n + 1 once pong acknowledged round n.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seq {
    /// The round, from 1.
    pub n: u64,
}

impl core::fmt::Display for Seq {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "round {}", self.n)
    }
}

/// ping's current round (one object).
pub const SEQ: Topic<Global, Seq> = Topic::volatile("ping/Seq", 1);
