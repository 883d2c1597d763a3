//! What `volumemgr` publishes (services/volumemgr, docs/apps.md): where each app volume lives on
//! the node's app data disk, and how far it is from being usable.
//!
//! An app volume is an **extent** of the data disk (whole MiB, never overlapping another's):
//! volumemgr chooses it, the downloader fills it (a content tree's image, or zeros for a blank
//! volume), the launcher maps it to a dom0 block device when an app boots from it or gets it as
//! a disk. [`ALLOCATION`] is persistent (the vault keeps it): after any restart, of a pillar or
//! the node, a volume is found where it was and a volume already made is never filled again
//! (the app's writes on it are its data).

use alloc::string::String;
use serde::{Deserialize, Serialize};

use crate::Topic;

/// A volume's place on the app data disk, in MiB from its start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Extent {
    /// The first MiB.
    pub offset_mib: u64,
    /// How many MiB.
    pub size_mib: u64,
}

impl Extent {
    /// The MiB after the last.
    pub fn end_mib(&self) -> u64 {
        self.offset_mib.saturating_add(self.size_mib)
    }

    /// Whether the two share a MiB.
    pub fn overlaps(&self, other: &Extent) -> bool {
        self.offset_mib < other.end_mib() && other.offset_mib < self.end_mib()
    }
}

/// What goes into a volume before it is used.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fill {
    /// Zeros (EVE's blank volume).
    #[default]
    Zeros,
    /// A content tree's image at offset 0 (its UUID: `zedagent/ContentTree`'s key).
    ContentTree(String),
}

/// One volume's allocation, as the vault keeps it, keyed by the volume's UUID.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// The volume generation it was made for (a new generation is a new volume).
    pub generation: i64,
    /// Where it lives.
    pub extent: Extent,
    /// What it is filled with.
    pub fill: Fill,
    /// Whether it was filled and handed over: from then on only apps write it.
    pub made: bool,
}

/// Every volume's allocation.
pub const ALLOCATION: Topic<String, Allocation> = Topic::persistent("volumemgr/Allocation", 1);

/// Where a volume stands (the part of EVE's `ZSwState` sequence that is volumemgr's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeState {
    /// Waiting for a place on the data disk (the disk's size not known yet); or, with an
    /// `extent`, changed (a purge: a new generation) and waiting for the app domain using it
    /// to go before it is made again (zedmanager withdraws that domain).
    #[default]
    Pending,
    /// Being filled by the downloader (its `DownloadStatus` has the progress).
    Filling,
    /// Made: apps may use it (EVE's CREATED_VOLUME).
    Created,
    /// Being released: no app domain may use it any more, then its extent is free.
    Deleting,
    /// Failed until its configuration changes (`error` says why).
    Error,
}

/// One volume's state, keyed by the volume's UUID.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeStatus {
    /// Its display name.
    pub name: String,
    /// The generation this status is about.
    pub generation: i64,
    /// Where it stands.
    pub state: VolumeState,
    /// Its place on the data disk, once it has one.
    pub extent: Option<Extent>,
    /// What fills it.
    pub fill: Fill,
    /// Bytes filled so far (from the downloader's status), and of how many (0: not known).
    pub bytes: u64,
    /// The size the content has, or the volume's for a blank one (0: not known yet).
    pub total: u64,
    /// Why it failed, or the last retried error; empty when none.
    pub error: String,
}

impl core::fmt::Display for VolumeStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "volume {} {:?}", self.name, self.state)?;
        if let Some(e) = self.extent {
            write!(f, " at {} MiB, {} MiB", e.offset_mib, e.size_mib)?;
        }
        if self.state == VolumeState::Filling {
            write!(f, " {}/{} bytes", self.bytes, self.total)?;
        }
        if !self.error.is_empty() {
            write!(f, ": {}", self.error)?;
        }
        Ok(())
    }
}

/// Every volume's state.
pub const VOLUME_STATUS: Topic<String, VolumeStatus> = Topic::volatile("volumemgr/VolumeStatus", 1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_overlap_when_they_share_a_mib() {
        let a = Extent {
            offset_mib: 4,
            size_mib: 4,
        };
        let touching = Extent {
            offset_mib: 8,
            size_mib: 2,
        };
        let inside = Extent {
            offset_mib: 5,
            size_mib: 1,
        };
        assert!(!a.overlaps(&touching) && !touching.overlaps(&a));
        assert!(a.overlaps(&inside) && inside.overlaps(&a));
        assert!(!a.overlaps(&Extent::default()));
        assert_eq!(a.end_mib(), 8);
    }
}
