//! What `logs` publishes (services/logs, docs/logs.md): the batches of log lines waiting for
//! the controller, persistent, and its state for diag.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::{Global, Topic};

/// One batch of log lines, as the controller's `newlogs` route takes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The body: gzip of JSON lines (EVE's newlogs format, docs/logs.md).
    pub gzip: Vec<u8>,
    /// Lines in it.
    pub lines: u32,
    /// Bytes before compression.
    pub raw_bytes: u32,
}

/// The batches not yet accepted by the controller, keyed by their number (20 decimal digits,
/// so that key order is age order), persistent: kept in the vault while the node is offline,
/// within the logs pillar's quota.
pub const QUEUE: Topic<String, Batch> = Topic::persistent("logs/Queue", 1);

/// How the logs pillar is doing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Services sending their lines now.
    pub sources: u32,
    /// Lines taken since start.
    pub lines: u64,
    /// Lines the services had to drop (their buffer was full), as the gaps in their numbers
    /// show.
    pub lines_lost: u64,
    /// Batches waiting for the controller, and their bytes.
    pub queued: u64,
    /// Bytes of the batches waiting.
    pub queued_bytes: u64,
    /// Batches dropped, oldest first, to stay within the quota.
    pub batches_dropped: u64,
    /// Lines in those batches.
    pub lines_dropped: u64,
    /// Batches the controller accepted since start.
    pub uploaded: u64,
    /// Uploads that failed since start.
    pub failures: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// Heap bytes in use when the status was made.
    pub heap_bytes: u64,
}

impl core::fmt::Display for Status {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} sources, {} lines ({} lost), {} batches queued ({} KiB), {} dropped ({} lines), {} uploaded, {} failures, heap {} KiB",
            self.sources,
            self.lines,
            self.lines_lost,
            self.queued,
            self.queued_bytes / 1024,
            self.batches_dropped,
            self.lines_dropped,
            self.uploaded,
            self.failures,
            self.heap_bytes / 1024
        )?;
        if let Some(e) = &self.last_error {
            write!(f, " (last: {e})")?;
        }
        Ok(())
    }
}

/// The logs pillar's state (one object).
pub const STATUS: Topic<Global, Status> = Topic::volatile("logs/Status", 1);
