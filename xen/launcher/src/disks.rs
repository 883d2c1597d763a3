//! Disks: the node's block devices and which service gets which.
//!
//! A node declares its disks in `[disks]`; each is a block device of dom0 found by its serial
//! (QEMU: `-device virtio-blk-pci,serial=NAME`, which `scripts/run-xen` attaches from files
//! under `target/node/`). A service lists the disks it gets; each reaches its domain through
//! Xen's block backend (dom0's `xen-blkback`) as `xvda`, `xvdb`, ... in list order, and the
//! launcher writes the disk's name to the service's `data/lichen/disk/<vbd id>` so that
//! `kernel::block::open("persist")` finds it:
//!
//! ```toml
//! [disks.persist]
//! size_mib = 64          # the size scripts/run-xen gives a new disk file
//!
//! [disks.config]
//! size_mib = 1
//! contents = "config"    # "blank" (default), "config": a config partition with a vault key,
//!                        # or "image" with image = "NAME": that image at offset 0 (an app volume)
//!
//! [services.vault]
//! disks = ["persist"]    # "NAME" read-write, "NAME:ro" read-only
//! ```
//!
//! A disk may be written by one service only (two writers would corrupt each other's data);
//! several may read one that nobody writes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer};

/// The hotplug script dom0 carries for disks (xen/dom0/block-lichen).
pub const BLOCK_SCRIPT: &str = "/etc/lichen/block-lichen";

/// The largest disk, in MiB, a manifest may declare (a sanity bound).
pub const MAX_SIZE_MIB: u64 = 1 << 20;

/// Most disks a service may get (`xvda` to `xvdp`).
pub const MAX_PER_SERVICE: usize = 16;

/// A disk of the node.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeDisk {
    /// The size of the file backing a new disk, in MiB.
    pub size_mib: u64,
    /// What a new disk holds.
    #[serde(default)]
    pub contents: Contents,
    /// With `contents = "image"`: the image (looked up like a service's) the disk holds at
    /// offset 0, an app volume's kernel.
    #[serde(default)]
    pub image: Option<String>,
}

/// What a new disk holds when `scripts/run-xen` makes its file.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Contents {
    /// Zeros.
    #[default]
    Blank,
    /// A config partition with a fresh vault key (`img/mkconfig --vault-key`).
    Config,
    /// An image file at offset 0 (made anew at every run, as the image may have changed), the
    /// rest zeros: an app volume holding a PVH kernel.
    Image,
}

impl Contents {
    /// The name `lichen-launcher disks` prints.
    pub fn name(self) -> &'static str {
        match self {
            Contents::Blank => "blank",
            Contents::Config => "config",
            Contents::Image => "image",
        }
    }
}

/// A disk a service gets: `"NAME"` or `"NAME:ro"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskUse {
    /// The node disk's name (also the name the guest sees).
    pub name: String,
    /// Whether the service may only read it.
    pub read_only: bool,
}

impl<'de> Deserialize<'de> for DiskUse {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let (name, read_only) = match text.split_once(':') {
            None => (text.as_str(), false),
            Some((name, "ro")) => (name, true),
            Some((_, other)) => {
                return Err(serde::de::Error::custom(format!(
                    "disk `{text}`: unknown mode `{other}` (write NAME or NAME:ro)"
                )))
            }
        };
        Ok(DiskUse {
            name: name.into(),
            read_only,
        })
    }
}

/// The xenstore id of a service's disk number `index` (`xvda` is 51712: major 202, minor 0).
pub fn vbd_id(index: usize) -> u32 {
    (202 << 8) | ((index as u32) << 4)
}

/// The guest device name of disk number `index`: `xvda`, `xvdb`, ...
pub fn vdev(index: usize) -> String {
    format!("xvd{}", char::from(b'a' + index as u8))
}

/// Checks the node's disks and the services' use of them; the messages of what is wrong.
pub fn check<'a>(
    node: &IndexMap<String, NodeDisk>,
    services: impl Iterator<Item = (&'a String, &'a [DiskUse])>,
    is_good_name: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut errors = Vec::new();
    for (name, disk) in node {
        if !is_good_name(name) || name.len() > 20 {
            errors.push(format!(
                "disk `{name}`: a disk name is 1 to 20 of a-z, 0-9 and - (it is the device's serial)"
            ));
        }
        if (disk.contents == Contents::Image) != disk.image.is_some() {
            errors.push(format!(
                "disk `{name}`: contents = \"image\" goes with image = \"NAME\", and only it"
            ));
        }
        if disk.size_mib == 0 || disk.size_mib > MAX_SIZE_MIB {
            errors.push(format!(
                "disk `{name}`: size_mib must be 1 to {MAX_SIZE_MIB}, not {}",
                disk.size_mib
            ));
        }
    }
    let mut writer: HashMap<&str, &str> = HashMap::new();
    let mut reader: HashMap<&str, &str> = HashMap::new();
    for (service, uses) in services {
        if uses.len() > MAX_PER_SERVICE {
            errors.push(format!(
                "service `{service}`: {} disks, at most {MAX_PER_SERVICE}",
                uses.len()
            ));
        }
        for (i, disk) in uses.iter().enumerate() {
            if !node.contains_key(&disk.name) {
                errors.push(format!(
                    "service `{service}`: disk `{}` is not one of the node's [disks]",
                    disk.name
                ));
            } else if uses[..i].iter().any(|d| d.name == disk.name) {
                errors.push(format!(
                    "service `{service}`: disk `{}` listed twice",
                    disk.name
                ));
            } else if disk.read_only {
                reader.entry(&disk.name).or_insert(service);
            } else if let Some(other) = writer.insert(&disk.name, service) {
                errors.push(format!(
                    "disk `{}`: written by both `{other}` and `{service}` (they would corrupt each other's data)",
                    disk.name
                ));
            }
        }
    }
    for (disk, w) in &writer {
        if let Some(r) = reader.get(disk) {
            errors.push(format!(
                "disk `{disk}`: `{w}` writes it while `{r}` reads it (the reader would see half-written data)"
            ));
        }
    }
    errors.sort();
    errors
}

/// The dom0 block device whose serial is `serial`: `/dev/<name>` for the `/sys/block/<name>`
/// whose `serial` file holds it (virtio-blk disks).
pub fn find_device(sys_block: &Path, serial: &str) -> Result<PathBuf, String> {
    let entries = std::fs::read_dir(sys_block)
        .map_err(|e| format!("cannot list {}: {e}", sys_block.display()))?;
    let mut seen = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(found) = std::fs::read_to_string(entry.path().join("serial")) else {
            continue;
        };
        if found.trim() == serial {
            return Ok(PathBuf::from("/dev").join(name));
        }
        seen.push(format!("{name} ({})", found.trim()));
    }
    Err(format!(
        "no dom0 disk has serial `{serial}` (found: {})",
        if seen.is_empty() {
            "none".into()
        } else {
            seen.join(", ")
        }
    ))
}

/// The dom0 block device of disk `name`: the node disk with that serial, or, for an app's disk,
/// the device itself (its name is a path under `/dev/`: a loop device over its volume).
pub fn resolve(sys_block: &Path, name: &str) -> Result<PathBuf, String> {
    if name.starts_with("/dev/") {
        Ok(PathBuf::from(name))
    } else {
        find_device(sys_block, name)
    }
}

/// The xl `disk` entry of a service's disk number `index`, backed by dom0 device `target`.
pub fn xl_disk(index: usize, disk: &DiskUse, target: &Path) -> String {
    format!(
        "format=raw,vdev={},access={},script={BLOCK_SCRIPT},target={}",
        vdev(index),
        if disk.read_only { "ro" } else { "rw" },
        target.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uses(list: &[&str]) -> Vec<DiskUse> {
        list.iter().map(|t| parse_use(t)).collect()
    }

    /// Parses `NAME[:ro]` as the manifest does.
    fn parse_use(text: &str) -> DiskUse {
        #[derive(Deserialize)]
        struct One {
            d: DiskUse,
        }
        toml::from_str::<One>(&format!("d = {text:?}")).unwrap().d
    }

    fn good(name: &str) -> bool {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    }

    #[test]
    fn names_and_modes_parse() {
        assert_eq!(
            uses(&["persist", "config:ro"]),
            [
                DiskUse {
                    name: "persist".into(),
                    read_only: false
                },
                DiskUse {
                    name: "config".into(),
                    read_only: true
                }
            ]
        );
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct One {
            d: DiskUse,
        }
        let err = toml::from_str::<One>("d = \"persist:rw\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown mode `rw`"), "{err}");
    }

    #[test]
    fn sharing_rules_are_enforced() {
        let mut node = IndexMap::new();
        node.insert(
            "persist".to_string(),
            NodeDisk {
                size_mib: 64,
                contents: Contents::Blank,
                image: None,
            },
        );
        node.insert(
            "config".to_string(),
            NodeDisk {
                size_mib: 1,
                contents: Contents::Config,
                image: None,
            },
        );
        let vault = ("vault".to_string(), uses(&["persist", "config:ro"]));
        let agent = ("agent".to_string(), uses(&["config:ro"]));
        let ok = [vault.clone(), agent.clone()];
        assert!(check(&node, ok.iter().map(|(n, u)| (n, u.as_slice())), good).is_empty());
        let bad = [
            vault,
            (
                "thief".to_string(),
                uses(&["persist", "nope", "config", "config:ro"]),
            ),
        ];
        let errors = check(&node, bad.iter().map(|(n, u)| (n, u.as_slice())), good);
        assert_eq!(
            errors,
            [
                "disk `config`: `thief` writes it while `vault` reads it (the reader would see half-written data)",
                "disk `persist`: written by both `vault` and `thief` (they would corrupt each other's data)",
                "service `thief`: disk `config` listed twice",
                "service `thief`: disk `nope` is not one of the node's [disks]",
            ]
        );
        let mut odd = IndexMap::new();
        odd.insert(
            "Bad_Name".to_string(),
            NodeDisk {
                size_mib: 0,
                contents: Contents::Blank,
                image: Some("echo".into()),
            },
        );
        assert_eq!(check(&odd, std::iter::empty(), good).len(), 3);
    }

    #[test]
    fn devices_are_found_by_serial() {
        let dir = std::env::temp_dir().join(format!("lichen-sysblock-{}", std::process::id()));
        for (name, serial) in [("vda", "persist\n"), ("vdb", "config")] {
            std::fs::create_dir_all(dir.join(name)).unwrap();
            std::fs::write(dir.join(name).join("serial"), serial).unwrap();
        }
        std::fs::create_dir_all(dir.join("loop0")).unwrap();
        assert_eq!(
            find_device(&dir, "persist").unwrap(),
            PathBuf::from("/dev/vda")
        );
        let err = find_device(&dir, "other").unwrap_err();
        assert!(err.contains("no dom0 disk has serial `other`"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn xl_entries_and_ids_follow_linux_names() {
        assert_eq!((vbd_id(0), vbd_id(1)), (51712, 51728));
        assert_eq!(vdev(2), "xvdc");
        let d = DiskUse {
            name: "config".into(),
            read_only: true,
        };
        assert_eq!(
            xl_disk(1, &d, Path::new("/dev/vdb")),
            "format=raw,vdev=xvdb,access=ro,script=/etc/lichen/block-lichen,target=/dev/vdb"
        );
    }
}
