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

    #[test]
    fn pieces_split_at_the_end() {
        assert_eq!(pieces(2, 4, 16), [(2, 4), (0, 0)]);
        assert_eq!(pieces(14, 5, 16), [(14, 2), (0, 3)]);
        assert_eq!(pieces(16 + 14, 2, 16), [(14, 2), (0, 0)]);
    }
}
