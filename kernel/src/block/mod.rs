//! Block devices: one API over virtio-blk (microvm) and blkfront (Xen).
//!
//! A [`BlockDevice`] reads and writes whole sectors at sector addresses and flushes its
//! volatile write cache. Writes are not durable until a [`flush`](BlockDevice::flush) that
//! started after them has returned `Ok`: a power cut may drop any unflushed write, or tear
//! it (some of its sectors written, others not). Crash-safe storage above this layer must
//! assume exactly that and nothing more.
//!
//! Buffers belong to the caller; their length must be a whole number of sectors. Drivers
//! validate everything their device answers and turn a misbehaving device into an
//! [`Error`], never into a crash or a wrong buffer.

use core::fmt;

pub mod blkfront;
#[cfg(target_os = "none")]
mod disk;
mod memory;
pub mod requests;
mod window;
#[cfg(target_os = "none")]
pub use disk::{disks, open, Disk, Disks, NotFound};
pub use memory::MemoryDisk;
pub use window::Window;

/// What a block device is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Bytes per sector: a power of two, at least 512.
    pub sector_size: u32,
    /// Sectors on the device.
    pub sectors: u64,
    /// Whether writes are refused.
    pub read_only: bool,
}

impl Geometry {
    /// The device's size in bytes.
    pub fn bytes(&self) -> u64 {
        self.sectors.saturating_mul(u64::from(self.sector_size))
    }

    /// Checks a transfer of `len` bytes at `sector`: whole sectors, inside the device.
    pub fn check(&self, sector: u64, len: usize) -> Result<(), Error> {
        let size = self.sector_size as usize;
        if size == 0 || !len.is_multiple_of(size) {
            return Err(Error::Unaligned);
        }
        let count = (len / size) as u64;
        match sector.checked_add(count) {
            Some(end) if end <= self.sectors => Ok(()),
            _ => Err(Error::OutOfRange),
        }
    }
}

/// The pieces of a transfer of `len` bytes at `sector` that a driver sends as separate
/// requests of at most `max_chunk` bytes (a whole number of sectors): `(sector, byte range of
/// the caller's buffer)`. `len` must already be checked against the geometry.
pub fn chunks(
    sector_size: u32,
    sector: u64,
    len: usize,
    max_chunk: usize,
) -> impl Iterator<Item = (u64, core::ops::Range<usize>)> {
    let size = sector_size.max(1) as usize;
    let step = (max_chunk / size).max(1) * size;
    (0..len).step_by(step).map(move |start| {
        let end = (start + step).min(len);
        (sector + (start / size) as u64, start..end)
    })
}

/// Why a block operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The buffer is not a whole number of sectors.
    Unaligned,
    /// The transfer runs past the end of the device.
    OutOfRange,
    /// The device is read-only.
    ReadOnly,
    /// The device answered the request with an error status (the status it gave).
    Device(i32),
    /// The device broke its protocol (impossible index, unknown id, wrong operation) or went
    /// away; the driver has given up on it and every later request fails the same way.
    Broken,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unaligned => f.write_str("transfer is not a whole number of sectors"),
            Error::OutOfRange => f.write_str("transfer runs past the end of the device"),
            Error::ReadOnly => f.write_str("device is read-only"),
            Error::Device(status) => write!(f, "device reported error status {status}"),
            Error::Broken => f.write_str("device broke its protocol and was given up on"),
        }
    }
}

/// A disk, as storage sees it.
///
/// The futures are not `Send`: the kernel's executor runs on one CPU.
#[allow(async_fn_in_trait)]
pub trait BlockDevice {
    /// Sector size, sector count, read-only flag.
    fn geometry(&self) -> Geometry;

    /// Reads `buffer.len()` bytes (whole sectors) starting at `sector`.
    async fn read(&mut self, sector: u64, buffer: &mut [u8]) -> Result<(), Error>;

    /// Writes `data` (whole sectors) starting at `sector`. Not durable until a later flush.
    async fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), Error>;

    /// Makes every write that completed before this call durable.
    async fn flush(&mut self) -> Result<(), Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_are_checked_against_the_geometry() {
        let g = Geometry {
            sector_size: 512,
            sectors: 8,
            read_only: false,
        };
        assert_eq!(g.bytes(), 4096);
        assert_eq!(g.check(0, 4096), Ok(()));
        assert_eq!(g.check(7, 512), Ok(()));
        assert_eq!(g.check(7, 1024), Err(Error::OutOfRange));
        assert_eq!(g.check(u64::MAX, 512), Err(Error::OutOfRange));
        assert_eq!(g.check(0, 100), Err(Error::Unaligned));
        assert_eq!(g.check(8, 0), Ok(()));
    }

    #[test]
    fn transfers_split_into_whole_sector_chunks() {
        let all: alloc::vec::Vec<_> = chunks(512, 10, 5 * 512, 1024 + 100).collect();
        assert_eq!(all, [(10, 0..1024), (12, 1024..2048), (14, 2048..2560)]);
        assert_eq!(
            chunks(4096, 0, 4096, 512).count(),
            1,
            "at least one sector per chunk"
        );
        assert_eq!(chunks(512, 0, 0, 4096).count(), 0);
    }
}
