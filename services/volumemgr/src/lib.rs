//! volumemgr's decisions: from the volumes the configuration asks for (`zedagent/Volume`,
//! `zedagent/ContentTree`), the app data disk's size, the fills the downloader reports and the
//! extents app domains may be using, the allocation table the vault keeps
//! (`volumemgr/Allocation`) and every volume's `volumemgr/VolumeStatus`. No I/O: `main.rs`
//! feeds it and publishes what it returns; the host tests drive it.
//!
//! The rules (docs/apps.md):
//! - a volume gets an extent of whole MiB, first fit, never overlapping another volume's (a
//!   volume being deleted keeps its extent until it is free);
//! - its size is its `maxsizebytes`; a volume made from a content tree is at least the content
//!   tree's `maxSizeBytes` plus [`RECORD_BYTES`] (the downloader's progress record lives in its
//!   last 4 KiB while it is filled); a blank volume without a size, or a volume that does not
//!   fit, is `Error` with the figures, and other volumes go on;
//! - a new extent is filled by the downloader (the content tree's image, or zeros) and the
//!   volume is `Created` only when the downloader reports that fill verified, for that volume
//!   and generation; from then on it is never filled again (its bytes are the app's);
//! - a new generation (a purge) or another content tree refills the volume, in place, once no
//!   app domain can be using it;
//! - a deleted volume is `Deleting` while an app domain may still use its extent or the
//!   downloader still writes it, then its extent is free.
#![no_std]
#![warn(missing_docs)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use topics::downloader::{DownloadState, DownloadStatus};
use topics::volumemgr::{Allocation, Extent, Fill, VolumeState, VolumeStatus};
use topics::zedagent::{ContentTree, Volume, VolumeOrigin};

/// A MiB.
pub const MIB: u64 = 1 << 20;

/// The room a content volume keeps for the downloader's progress record (services/lib/download).
pub const RECORD_BYTES: u64 = 4096;

/// What app domains may be using, as far as volumemgr can tell.
#[derive(Clone, Debug, Default)]
pub struct InUse {
    /// The extents the domains apps should have name (`zedmanager/DomainConfig`).
    pub extents: Vec<Extent>,
    /// Whether some app domain exists whose configuration is gone (being destroyed): its
    /// extents are not known, so every extent counts as in use until it is gone.
    pub unknown: bool,
}

impl InUse {
    fn holds(&self, extent: &Extent) -> bool {
        self.unknown || self.extents.iter().any(|e| e.overlaps(extent))
    }
}

/// Everything a decision depends on.
pub struct World<'a> {
    /// The app data disk's size in MiB, once the downloader has opened it.
    pub disk_mib: Option<u64>,
    /// The volumes the configuration asks for, by UUID.
    pub volumes: &'a BTreeMap<String, Volume>,
    /// The content trees, by UUID.
    pub trees: &'a BTreeMap<String, ContentTree>,
    /// The downloader's fills: by content tree UUID, or by volume UUID for zeros.
    pub fills: &'a BTreeMap<String, DownloadStatus>,
    /// What app domains may be using.
    pub in_use: &'a InUse,
}

/// What a round decides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The allocation table as it should be stored.
    pub allocations: BTreeMap<String, Allocation>,
    /// Every volume's status (volumes that are gone have none).
    pub statuses: BTreeMap<String, VolumeStatus>,
}

/// The key under which the downloader reports the fill of volume `uuid`.
pub fn fill_key<'a>(uuid: &'a str, fill: &'a Fill) -> &'a str {
    match fill {
        Fill::Zeros => uuid,
        Fill::ContentTree(tree) => tree,
    }
}

/// The MiB `volume` needs, or why it cannot be made.
fn needed_mib(volume: &Volume, trees: &BTreeMap<String, ContentTree>) -> Result<u64, String> {
    let bytes = match &volume.origin {
        VolumeOrigin::Blank if volume.max_size_bytes == 0 => {
            return Err("a blank volume needs a size (maxsizebytes)".into())
        }
        VolumeOrigin::Blank => volume.max_size_bytes,
        VolumeOrigin::ContentTree(uuid) => {
            let tree = trees
                .get(uuid)
                .ok_or_else(|| format!("content tree {uuid} is not in the configuration"))?;
            volume
                .max_size_bytes
                .max(tree.max_size_bytes.saturating_add(RECORD_BYTES))
        }
    };
    Ok(bytes.div_ceil(MIB).max(1))
}

/// The first gap of `mib` MiB on a disk of `disk_mib` MiB outside `taken`, or the largest gap.
fn first_fit(disk_mib: u64, taken: &[Extent], mib: u64) -> Result<Extent, u64> {
    let mut sorted: Vec<Extent> = taken.to_vec();
    sorted.sort_by_key(|e| e.offset_mib);
    let mut at = 0;
    let mut largest = 0;
    for e in sorted.iter().chain(core::iter::once(&Extent {
        offset_mib: disk_mib,
        size_mib: 0,
    })) {
        let gap = e.offset_mib.saturating_sub(at);
        if gap >= mib {
            return Ok(Extent {
                offset_mib: at,
                size_mib: mib,
            });
        }
        largest = largest.max(gap);
        at = at.max(e.end_mib());
    }
    Err(largest)
}

/// One round: the allocation table and every volume's status, from the stored table and the
/// world.
pub fn plan(world: &World<'_>, stored: &BTreeMap<String, Allocation>) -> Plan {
    let mut allocations = stored.clone();
    let mut statuses = BTreeMap::new();

    // Volumes that are gone: freed once nothing can be using them.
    for (uuid, a) in stored {
        if world.volumes.contains_key(uuid) {
            continue;
        }
        let writing = world
            .fills
            .get(fill_key(uuid, &a.fill))
            .is_some_and(|s| s.volume == *uuid && filling(s.state));
        if writing || world.in_use.holds(&a.extent) {
            statuses.insert(
                uuid.clone(),
                VolumeStatus {
                    state: VolumeState::Deleting,
                    generation: a.generation,
                    extent: Some(a.extent),
                    fill: a.fill.clone(),
                    ..Default::default()
                },
            );
        } else {
            allocations.remove(uuid);
        }
    }

    for (uuid, volume) in world.volumes {
        let fill = match &volume.origin {
            VolumeOrigin::Blank => Fill::Zeros,
            VolumeOrigin::ContentTree(tree) => Fill::ContentTree(tree.clone()),
        };
        let mut status = VolumeStatus {
            name: volume.name.clone(),
            generation: volume.generation,
            fill: fill.clone(),
            ..Default::default()
        };
        let needed = match needed_mib(volume, world.trees) {
            Ok(mib) => mib,
            Err(why) => {
                status.state = VolumeState::Error;
                status.error = why;
                statuses.insert(uuid.clone(), status);
                continue;
            }
        };
        status.total = match &fill {
            Fill::Zeros => needed * MIB,
            Fill::ContentTree(_) => 0,
        };
        // The allocation it has, if it still fits its configuration.
        if let Some(a) = allocations.get(uuid).cloned() {
            let same =
                a.generation == volume.generation && a.fill == fill && a.extent.size_mib >= needed;
            if !same {
                if world.in_use.holds(&a.extent) {
                    status.state = VolumeState::Pending;
                    status.extent = Some(a.extent);
                    status.error = "changed: waiting for the app using it to stop".into();
                    statuses.insert(uuid.clone(), status);
                    continue;
                }
                allocations.remove(uuid);
                if a.extent.size_mib >= needed {
                    // Refilled in place.
                    allocations.insert(
                        uuid.clone(),
                        Allocation {
                            generation: volume.generation,
                            extent: a.extent,
                            fill: fill.clone(),
                            made: false,
                        },
                    );
                }
            }
        }
        if !allocations.contains_key(uuid) {
            let Some(disk_mib) = world.disk_mib else {
                status.error = "the app data disk is not known yet".into();
                statuses.insert(uuid.clone(), status);
                continue;
            };
            let taken: Vec<Extent> = allocations.values().map(|a| a.extent).collect();
            match first_fit(disk_mib, &taken, needed) {
                Ok(extent) => {
                    allocations.insert(
                        uuid.clone(),
                        Allocation {
                            generation: volume.generation,
                            extent,
                            fill: fill.clone(),
                            made: false,
                        },
                    );
                }
                Err(largest) => {
                    status.state = VolumeState::Error;
                    status.error = format!(
                        "needs {needed} MiB; the largest free extent of the app data disk \
                         ({disk_mib} MiB) is {largest} MiB"
                    );
                    statuses.insert(uuid.clone(), status);
                    continue;
                }
            }
        }
        let a = allocations.get_mut(uuid).expect("allocated above");
        status.extent = Some(a.extent);
        if !a.made {
            let report = world
                .fills
                .get(fill_key(uuid, &fill))
                .filter(|s| s.volume == *uuid && s.generation == a.generation);
            match report {
                Some(s) if s.state == DownloadState::Verified => a.made = true,
                Some(s) if s.state == DownloadState::Error => {
                    status.state = VolumeState::Error;
                    status.error = s.error.clone();
                }
                Some(s) => {
                    status.state = VolumeState::Filling;
                    status.bytes = s.bytes;
                    status.total = s.total.max(status.total);
                    status.error = s.error.clone();
                }
                None => status.state = VolumeState::Filling,
            }
        }
        if a.made {
            status.state = VolumeState::Created;
            status.error.clear();
        }
        statuses.insert(uuid.clone(), status);
    }
    Plan {
        allocations,
        statuses,
    }
}

/// Whether the downloader may be writing in this state.
fn filling(state: DownloadState) -> bool {
    matches!(
        state,
        DownloadState::Pending | DownloadState::Downloading | DownloadState::Verifying
    )
}

#[cfg(test)]
mod tests;
