//! Index arithmetic for the byte rings Xen protocols share with another domain (console,
//! xenstore, vchan).
//!
//! Indices are free-running u32 counters; a position is `index & (size - 1)`. The other side
//! writes one of the two indices, so every computation here checks that the pair makes sense
//! (`prod - cons <= size`) and reports an error instead of trusting it.

use core::fmt;

/// The other domain left the ring indices in an impossible state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorruptRing {
    /// Producer index as read.
    pub prod: u32,
    /// Consumer index as read.
    pub cons: u32,
    /// Ring size.
    pub size: u32,
}

impl fmt::Display for CorruptRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "corrupt ring indices: prod {} cons {} for a {}-byte ring",
            self.prod, self.cons, self.size
        )
    }
}

/// Bytes waiting to be consumed.
pub fn used(prod: u32, cons: u32, size: u32) -> Result<u32, CorruptRing> {
    let used = prod.wrapping_sub(cons);
    if used > size {
        return Err(CorruptRing { prod, cons, size });
    }
    Ok(used)
}

/// Bytes free for the producer.
pub fn free(prod: u32, cons: u32, size: u32) -> Result<u32, CorruptRing> {
    used(prod, cons, size).map(|u| size - u)
}

/// Splits `len` bytes starting at free-running `index` into the (offset, length) pieces that
/// do not wrap: at most two.
pub fn pieces(index: u32, len: u32, size: u32) -> [(usize, usize); 2] {
    let start = index & (size - 1);
    let first = len.min(size - start);
    [
        (start as usize, first as usize),
        (0, (len - first) as usize),
    ]
}

/// One direction of a byte ring in a shared page: `size` data bytes and two u32 indices, all at
/// fixed offsets of the page. The other domain owns one index; every value read from it is
/// checked, so a misbehaving peer yields [`CorruptRing`], never an access outside the ring.
pub struct ByteRing {
    data: *mut u8,
    size: u32,
    cons: *mut u32,
    prod: *mut u32,
}

impl ByteRing {
    /// The ring with `size` (a power of two) data bytes at `page + data`, consumer index at
    /// `page + cons` and producer index at `page + prod`.
    ///
    /// # Safety
    /// The page must stay mapped for the life of the ring, hold `size` bytes at `data` and
    /// aligned u32 indices at `cons` and `prod`; only this ring (on this side) writes the
    /// index it owns.
    pub unsafe fn new(page: *mut u8, data: usize, size: u32, cons: usize, prod: usize) -> ByteRing {
        debug_assert!(size.is_power_of_two());
        // SAFETY: the caller guarantees these offsets lie inside the mapped page.
        unsafe {
            ByteRing {
                data: page.add(data),
                size,
                cons: page.add(cons).cast(),
                prod: page.add(prod).cast(),
            }
        }
    }

    fn load(index: *mut u32) -> u32 {
        // SAFETY: `new`'s contract: a mapped, aligned u32 the other domain may write at any time.
        unsafe { core::ptr::read_volatile(index) }
    }

    fn store(index: *mut u32, value: u32) {
        // SAFETY: as for `load`.
        unsafe { core::ptr::write_volatile(index, value) }
    }

    /// Producer side: copies as much of `bytes` as fits; returns how much.
    pub fn write(&self, bytes: &[u8]) -> Result<usize, CorruptRing> {
        let prod = Self::load(self.prod);
        let n = free(prod, Self::load(self.cons), self.size)?.min(bytes.len() as u32);
        let mut done = 0;
        for (offset, len) in pieces(prod, n, self.size) {
            // SAFETY: offset + len <= size (`pieces`), inside the ring's data.
            unsafe {
                core::ptr::copy_nonoverlapping(bytes[done..].as_ptr(), self.data.add(offset), len)
            };
            done += len;
        }
        // Publish the data before the index that makes it visible.
        core::sync::atomic::fence(core::sync::atomic::Ordering::Release);
        Self::store(self.prod, prod.wrapping_add(n));
        Ok(n as usize)
    }

    /// Consumer side: copies up to `buf.len()` waiting bytes; returns how many.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize, CorruptRing> {
        let cons = Self::load(self.cons);
        let n = used(Self::load(self.prod), cons, self.size)?.min(buf.len() as u32);
        // Read the data only after the index that announced it.
        core::sync::atomic::fence(core::sync::atomic::Ordering::Acquire);
        let mut done = 0;
        for (offset, len) in pieces(cons, n, self.size) {
            // SAFETY: offset + len <= size (`pieces`), inside the ring's data.
            unsafe {
                core::ptr::copy_nonoverlapping(self.data.add(offset), buf[done..].as_mut_ptr(), len)
            };
            done += len;
        }
        // Finish reading before handing the space back.
        core::sync::atomic::fence(core::sync::atomic::Ordering::Release);
        Self::store(self.cons, cons.wrapping_add(n));
        Ok(n as usize)
    }

    /// Bytes waiting to be consumed.
    pub fn used(&self) -> Result<u32, CorruptRing> {
        used(Self::load(self.prod), Self::load(self.cons), self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_and_free_across_wraparound() {
        assert_eq!(used(10, 4, 16), Ok(6));
        assert_eq!(free(10, 4, 16), Ok(10));
        assert_eq!(used(3, u32::MAX - 2, 16), Ok(6), "indices wrap at 2^32");
        assert_eq!(used(20, 4, 16), Ok(16));
        assert_eq!(
            used(21, 4, 16),
            Err(CorruptRing {
                prod: 21,
                cons: 4,
                size: 16
            })
        );
        assert!(used(4, 5, 16).is_err(), "consumer ahead of producer");
    }

    /// A fake shared page: 16 data bytes at 0, cons at 16, prod at 20.
    fn fake_ring(page: &mut [u32; 8]) -> ByteRing {
        // SAFETY: the array outlives the ring in each test and holds the layout above.
        unsafe { ByteRing::new(page.as_mut_ptr().cast(), 0, 16, 16, 20) }
    }

    #[test]
    fn byte_ring_round_trips_across_the_wrap() {
        let mut page = [0u32; 8];
        let ring = fake_ring(&mut page);
        let mut out = [0u8; 32];
        for round in 0..5u8 {
            let data: [u8; 11] = core::array::from_fn(|i| round * 16 + i as u8);
            assert_eq!(ring.write(&data), Ok(11));
            assert_eq!(ring.write(&data), Ok(5), "only 5 bytes of room left");
            assert_eq!(ring.used(), Ok(16));
            assert_eq!(ring.read(&mut out), Ok(16));
            assert_eq!(&out[..11], &data);
            assert_eq!(&out[11..16], &data[..5]);
        }
    }

    #[test]
    fn byte_ring_refuses_corrupt_peer_indices() {
        let mut page = [0u32; 8];
        page[5] = 1000; // the peer's producer index claims 1000 bytes in a 16-byte ring
        let ring = fake_ring(&mut page);
        let mut out = [0u8; 64];
        assert_eq!(
            ring.read(&mut out),
            Err(CorruptRing {
                prod: 1000,
                cons: 0,
                size: 16
            })
        );
        assert_eq!(
            ring.write(b"x"),
            Err(CorruptRing {
                prod: 1000,
                cons: 0,
                size: 16
            })
        );
    }

    #[test]
    fn pieces_split_at_the_end() {
        assert_eq!(pieces(2, 4, 16), [(2, 4), (0, 0)]);
        assert_eq!(pieces(14, 5, 16), [(14, 2), (0, 3)]);
        assert_eq!(pieces(16 + 14, 2, 16), [(14, 2), (0, 0)]);
    }
}
