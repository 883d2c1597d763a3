//! A window onto part of a block device: an app volume is an extent of the node's app data
//! disk (topics::volumemgr), and the pillar that fills it sees only that extent, as a device of
//! its own whose sector 0 is the extent's first sector.
//!
//! Every transfer is checked against the window before it reaches the device, so a caller can
//! never read or write outside its extent, whatever sector it names.

use super::{BlockDevice, Error, Geometry};

/// `count` sectors of `device` from `first` on.
pub struct Window<'a, D: BlockDevice> {
    device: &'a mut D,
    first: u64,
    count: u64,
}

impl<'a, D: BlockDevice> Window<'a, D> {
    /// The window of `bytes` bytes at byte `offset` of `device`; `None` when either is not a
    /// whole number of sectors or the window runs past the device's end.
    pub fn new(device: &'a mut D, offset: u64, bytes: u64) -> Option<Self> {
        let g = device.geometry();
        let size = u64::from(g.sector_size);
        if size == 0 || !offset.is_multiple_of(size) || !bytes.is_multiple_of(size) {
            return None;
        }
        let (first, count) = (offset / size, bytes / size);
        if first.checked_add(count)? > g.sectors {
            return None;
        }
        Some(Window {
            device,
            first,
            count,
        })
    }
}

impl<D: BlockDevice> BlockDevice for Window<'_, D> {
    fn geometry(&self) -> Geometry {
        Geometry {
            sectors: self.count,
            ..self.device.geometry()
        }
    }

    async fn read(&mut self, sector: u64, buffer: &mut [u8]) -> Result<(), Error> {
        self.geometry().check(sector, buffer.len())?;
        self.device.read(self.first + sector, buffer).await
    }

    async fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), Error> {
        self.geometry().check(sector, data.len())?;
        self.device.write(self.first + sector, data).await
    }

    async fn flush(&mut self) -> Result<(), Error> {
        self.device.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::MemoryDisk;

    /// Runs a future that never waits (a memory disk's).
    fn block_on<F: core::future::Future>(f: F) -> F::Output {
        let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
        match core::pin::pin!(f).poll(&mut cx) {
            core::task::Poll::Ready(v) => v,
            core::task::Poll::Pending => panic!("a memory disk never waits"),
        }
    }

    #[test]
    fn a_window_maps_its_sectors_and_refuses_what_lies_outside() {
        let mut disk = MemoryDisk::new(512, 16);
        block_on(async {
            let mut w = Window::new(&mut disk, 4 * 512, 4 * 512).unwrap();
            assert_eq!(w.geometry().sectors, 4);
            w.write(0, &[7u8; 1024]).await.unwrap();
            assert_eq!(w.write(3, &[1u8; 1024]).await, Err(Error::OutOfRange));
            assert_eq!(w.read(4, &mut [0u8; 512]).await, Err(Error::OutOfRange));
            assert_eq!(w.write(u64::MAX, &[1u8; 512]).await, Err(Error::OutOfRange));
        });
        let mut sector = [0u8; 512];
        block_on(disk.read(3, &mut sector)).unwrap();
        assert_eq!(sector, [0u8; 512]);
        block_on(disk.read(4, &mut sector)).unwrap();
        assert_eq!(sector, [7u8; 512]);
        block_on(disk.read(6, &mut sector)).unwrap();
        assert_eq!(sector, [0u8; 512]);
    }

    #[test]
    fn a_window_must_be_whole_sectors_inside_the_device() {
        let mut disk = MemoryDisk::new(512, 16);
        assert!(Window::new(&mut disk, 100, 512).is_none());
        assert!(Window::new(&mut disk, 512, 100).is_none());
        assert!(Window::new(&mut disk, 8 * 512, 9 * 512).is_none());
        assert!(Window::new(&mut disk, u64::MAX - 511, 1024).is_none());
        assert!(Window::new(&mut disk, 0, 16 * 512).is_some());
    }
}
