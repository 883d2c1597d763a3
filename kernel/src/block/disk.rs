//! The node's disks, whatever driver serves them, found by name.
//!
//! Under microvm a disk's name is its virtio-blk id string (`scripts/run --disk FILE,name=NAME`);
//! under Xen it is the name the launcher gave the disk in the node manifest (written to
//! `data/lichen/disk/<vbd id>` in the domain's xenstore home), else `xvda`, `xvdb`, ...

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use super::blkfront::Blkfront;
use super::{BlockDevice, Error, Geometry};
use crate::virtio::blk::VirtioBlk;

/// A disk of this machine.
pub enum Disk {
    /// A virtio-blk disk (microvm).
    Virtio(VirtioBlk),
    /// A Xen virtual disk.
    Xen(Blkfront),
}

/// Runs `$body` with `$d` bound to the driver behind a [`Disk`].
macro_rules! each {
    ($disk:expr, $d:ident => $body:expr) => {
        match $disk {
            Disk::Virtio($d) => $body,
            Disk::Xen($d) => $body,
        }
    };
}

impl Disk {
    /// The disk's name.
    pub fn name(&self) -> &str {
        each!(self, d => d.name())
    }
}

/// Why [`open`] found no disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotFound {
    /// The name asked for.
    pub wanted: String,
    /// The names of the disks there are.
    pub present: Vec<String>,
}

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no disk named {:?}", self.wanted)?;
        if self.present.is_empty() {
            f.write_str(" (no disk is left to take)")
        } else {
            write!(f, " (there are: {})", self.present.join(", "))
        }
    }
}

/// The machine's disks, brought up once by [`disks`]; services take the ones they use.
pub struct Disks(Vec<Disk>);

impl Disks {
    /// The disks not taken yet.
    pub fn iter(&self) -> impl Iterator<Item = &Disk> {
        self.0.iter()
    }

    /// Takes the disk named `name`.
    pub fn take(&mut self, name: &str) -> Result<Disk, NotFound> {
        match self.0.iter().position(|d| d.name() == name) {
            Some(i) => Ok(self.0.swap_remove(i)),
            None => Err(NotFound {
                wanted: name.into(),
                present: self.0.iter().map(|d| String::from(d.name())).collect(),
            }),
        }
    }
}

/// Whether [`disks`] ran: drivers own their devices, so they are started once.
static CLAIMED: AtomicBool = AtomicBool::new(false);

/// Brings up every disk of this machine, named. The first call gets them all; later calls get
/// none (the devices belong to the first caller's drivers).
pub async fn disks() -> Disks {
    if CLAIMED.swap(true, Ordering::AcqRel) {
        crate::warn!("block: the disks were already brought up; this call gets none");
        return Disks(Vec::new());
    }
    let mut found = Vec::new();
    if crate::platform::kind() == crate::platform::Kind::Xen {
        for id in Blkfront::ids().await {
            match Blkfront::connect(id).await {
                Ok(disk) => found.push(Disk::Xen(disk)),
                Err(e) => crate::warn!("blkfront: vbd {id}: {e}"),
            }
        }
        return Disks(found);
    }
    for mut disk in VirtioBlk::find_all() {
        if let Err(e) = disk.read_name().await {
            crate::warn!("virtio-blk: no id string ({e}); the disk has no name");
        }
        found.push(Disk::Virtio(disk));
    }
    Disks(found)
}

/// Brings up the disks and takes the one named `name` (for a service that uses one disk).
pub async fn open(name: &str) -> Result<Disk, NotFound> {
    disks().await.take(name)
}

impl BlockDevice for Disk {
    fn geometry(&self) -> Geometry {
        each!(self, d => d.geometry())
    }

    async fn read(&mut self, sector: u64, buffer: &mut [u8]) -> Result<(), Error> {
        each!(self, d => d.read(sector, buffer).await)
    }

    async fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), Error> {
        each!(self, d => d.write(sector, data).await)
    }

    async fn flush(&mut self) -> Result<(), Error> {
        each!(self, d => d.flush().await)
    }
}
