//! What the bench's `vbench-a` publishes (tests/images/vchan-bench: `scripts/bench vchan`'s
//! lichen-bus rows over a derived channel).

use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::Topic;

/// One published object of a bench run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// The run it belongs to, from 0.
    pub run: u32,
    /// Its index in the run, below `count`.
    pub index: u32,
    /// How many objects the run publishes.
    pub count: u32,
    /// The payload.
    pub payload: Vec<u8>,
}

/// The samples of the run under way, keyed by index.
pub const SAMPLES: Topic<alloc::string::String, Sample> = Topic::volatile("vbench-a/Sample", 1);
