//! What `vault` publishes: the committed copy of every persistent table (services/vault).
//!
//! The vault follows every persistent topic ([`crate::persistent`]), commits each change to its
//! encrypted store, and only then publishes it here, so an object in [`STORED`] is on disk.
//! Keys are `<topic>#<key>` ([`stored_key`]); each peer is served only the objects of the
//! topics it publishes or subscribes to. A publisher of a persistent table restores its table
//! from here when it starts, and a subscriber sees the stored table before its publisher is up
//! (`bus_io::Node` does both).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::{Global, Topic};

/// One committed object of a persistent table: its value's bus encoding (postcard), as the
/// publisher sent it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// The value's bytes.
    pub bytes: Vec<u8>,
}

/// The committed objects of every persistent table, keyed `<topic>#<key>`.
pub const STORED: Topic<String, Stored> = Topic::volatile("vault/Stored", 1);

/// How the vault is doing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Objects committed, all tables together.
    pub objects: u64,
    /// Bytes of the store's log in use, and its capacity.
    pub used_bytes: u64,
    /// The log's capacity in bytes.
    pub capacity_bytes: u64,
    /// Commits since the vault started.
    pub commits: u64,
    /// Commits that failed (the changes stay pending and are retried).
    pub failures: u64,
    /// Changes waiting to be committed.
    pub pending: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// Heap bytes in use after the last commit, and the most seen after any.
    pub heap_bytes: u64,
    /// The most heap bytes seen in use after a commit.
    pub heap_peak_bytes: u64,
}

impl core::fmt::Display for Status {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} objects, {} of {} KiB used, {} commits, {} failed, {} pending, heap {} KiB (peak {} KiB)",
            self.objects,
            self.used_bytes / 1024,
            self.capacity_bytes / 1024,
            self.commits,
            self.failures,
            self.pending,
            self.heap_bytes / 1024,
            self.heap_peak_bytes / 1024
        )?;
        if let Some(e) = &self.last_error {
            write!(f, " (last failure: {e})")?;
        }
        Ok(())
    }
}

/// The vault's status (one object).
pub const STATUS: Topic<Global, Status> = Topic::volatile("vault/Status", 1);

/// The separator between a topic's name and an object's key in [`STORED`] (no topic name
/// holds it).
pub const SEPARATOR: char = '#';

/// The [`STORED`] key of object `key` of `topic`.
pub fn stored_key(topic: &str, key: &str) -> String {
    format!("{topic}{SEPARATOR}{key}")
}

/// The topic and object key of a [`STORED`] key.
pub fn split_stored_key(stored: &str) -> Option<(&str, &str)> {
    stored.split_once(SEPARATOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_back_even_when_the_object_key_holds_the_separator() {
        let key = stored_key("zedagent/Config", "a#b");
        assert_eq!(key, "zedagent/Config#a#b");
        assert_eq!(split_stored_key(&key), Some(("zedagent/Config", "a#b")));
        assert_eq!(split_stored_key("no-separator"), None);
    }
}
