//! What `counter` publishes: a persistent count, the storage test's table
//! (tests/images/counter, docs/storage.md).

use serde::{Deserialize, Serialize};

use crate::{Global, Topic};

/// How often counter started and how far it counted, kept across restarts and reboots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// Starts of the counter service so far.
    pub starts: u64,
    /// The count.
    pub value: u64,
}

impl core::fmt::Display for Count {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "count {} after {} starts", self.value, self.starts)
    }
}

/// The count (one object), persistent.
pub const COUNT: Topic<Global, Count> = Topic::persistent("counter/Count", 1);
