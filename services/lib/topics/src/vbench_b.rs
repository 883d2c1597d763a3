//! What the bench's `vbench-b` publishes (tests/images/vchan-bench: `scripts/bench vchan`'s
//! lichen-bus rows over a derived channel).

use serde::{Deserialize, Serialize};

use crate::Topic;

/// How far the bench's subscriber got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// `2r`: ready for run `r` (view empty); `2r + 1`: saw all of run `r`.
    pub step: u32,
    /// Synchronisations after the first one (the bus resynchronises a session whose changed
    /// keys overflow; the bench's batches should make that never happen).
    pub resyncs: u32,
}

/// The subscriber's progress (one object, keyed `progress`).
pub const PROGRESS: Topic<alloc::string::String, Progress> =
    Topic::volatile("vbench-b/Progress", 1);
