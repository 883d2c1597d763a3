//! A block device in memory: for tests, and for a service that wants a scratch disk.

use super::{BlockDevice, Error, Geometry};
use alloc::vec;
use alloc::vec::Vec;

/// A disk held in a `Vec`; every write is durable at once.
pub struct MemoryDisk {
    geometry: Geometry,
    bytes: Vec<u8>,
}

impl MemoryDisk {
    /// A zeroed disk of `sectors` sectors of `sector_size` bytes.
    pub fn new(sector_size: u32, sectors: u64) -> MemoryDisk {
        let len = sectors as usize * sector_size as usize;
        MemoryDisk {
            geometry: Geometry {
                sector_size,
                sectors,
                read_only: false,
            },
            bytes: vec![0; len],
        }
    }

    /// Makes the disk refuse writes from now on (or accept them again).
    pub fn set_read_only(&mut self, read_only: bool) {
        self.geometry.read_only = read_only;
    }

    /// The disk's contents.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The disk's contents, to corrupt in tests.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    fn range(&self, sector: u64, len: usize) -> Result<core::ops::Range<usize>, Error> {
        self.geometry.check(sector, len)?;
        let start = sector as usize * self.geometry.sector_size as usize;
        Ok(start..start + len)
    }
}

impl BlockDevice for MemoryDisk {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    async fn read(&mut self, sector: u64, buffer: &mut [u8]) -> Result<(), Error> {
        let range = self.range(sector, buffer.len())?;
        buffer.copy_from_slice(&self.bytes[range]);
        Ok(())
    }

    async fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), Error> {
        if self.geometry.read_only {
            return Err(Error::ReadOnly);
        }
        let range = self.range(sector, data.len())?;
        self.bytes[range].copy_from_slice(data);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::future::Future;
    use core::pin::pin;
    use core::task::{Context, Poll, Waker};

    fn ready<T>(f: impl Future<Output = T>) -> T {
        let mut cx = Context::from_waker(Waker::noop());
        match pin!(f).poll(&mut cx) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("a memory disk never waits"),
        }
    }

    #[test]
    fn reads_back_what_was_written_and_refuses_bad_transfers() {
        let mut d = MemoryDisk::new(512, 4);
        let data = [7u8; 1024];
        ready(d.write(2, &data)).unwrap();
        let mut back = [0u8; 1024];
        ready(d.read(2, &mut back)).unwrap();
        assert_eq!(back, data);
        assert_eq!(ready(d.write(3, &data)), Err(Error::OutOfRange));
        assert_eq!(ready(d.read(0, &mut back[..10])), Err(Error::Unaligned));
        d.set_read_only(true);
        assert_eq!(ready(d.write(0, &data)), Err(Error::ReadOnly));
        assert_eq!(ready(d.flush()), Ok(()));
        assert_eq!(&d.bytes()[1024..2048], &data[..]);
    }
}
