//! Memory: which physical ranges are free, and the heap built on them.
//!
//! At boot the memory map is reduced to usable ranges (RAM, page aligned, below the identity
//! mapped limit, minus the image, the start-info data, page 0 and anything else reserved) and
//! every usable range is handed to the heap allocator (talc). Page frames for device rings and
//! shared pages are page-aligned heap allocations: the kernel runs identity mapped, so their
//! addresses are physical addresses.

use core::ops::Range;

/// Page size.
pub const PAGE_SIZE: u64 = 4096;

/// Calls `f` with each part of `range` not covered by `reserved[..]`, in address order when
/// `reserved` is sorted. Allocation-free, for use before the heap exists.
pub fn subtract(range: Range<u64>, reserved: &[Range<u64>], f: &mut impl FnMut(Range<u64>)) {
    if range.start >= range.end {
        return;
    }
    let Some((first, rest)) = reserved.split_first() else {
        f(range);
        return;
    };
    if first.end <= range.start || first.start >= range.end {
        subtract(range, rest, f);
        return;
    }
    subtract(range.start..first.start, rest, f);
    subtract(first.end..range.end, rest, f);
}

/// Shrinks `range` to whole pages.
pub fn page_align_inward(range: Range<u64>) -> Range<u64> {
    let start = range.start.div_ceil(PAGE_SIZE) * PAGE_SIZE;
    let end = range.end / PAGE_SIZE * PAGE_SIZE;
    start..end.max(start)
}

/// Grows `range` to whole pages.
pub fn page_align_outward(range: Range<u64>) -> Range<u64> {
    let start = range.start / PAGE_SIZE * PAGE_SIZE;
    let end = range.end.div_ceil(PAGE_SIZE) * PAGE_SIZE;
    start..end
}

/// Calls `f` with each usable range: RAM entries of `map` (given as `(range, is_ram)`),
/// page-aligned inward, clipped to `[PAGE_SIZE, limit)`, minus the `reserved` ranges
/// (page-aligned outward; they need not be sorted).
pub fn usable_ranges<const N: usize>(
    map: impl Iterator<Item = (Range<u64>, bool)>,
    reserved: &mut heapless_ranges::Ranges<N>,
    limit: u64,
    mut f: impl FnMut(Range<u64>),
) {
    reserved.sort();
    for (range, is_ram) in map {
        if !is_ram {
            continue;
        }
        let clipped = range.start.max(PAGE_SIZE)..range.end.min(limit);
        subtract(page_align_inward(clipped), reserved.as_slice(), &mut f);
    }
}

/// A fixed-capacity list of ranges, for bookkeeping before the heap exists.
pub mod heapless_ranges {
    use core::ops::Range;

    /// Up to `N` ranges.
    pub struct Ranges<const N: usize> {
        items: [Range<u64>; N],
        len: usize,
    }

    impl<const N: usize> Default for Ranges<N> {
        fn default() -> Self {
            Ranges {
                items: [const { 0..0 }; N],
                len: 0,
            }
        }
    }

    impl<const N: usize> Ranges<N> {
        /// Adds a range, page-aligned outward; returns false (and drops it) when full.
        pub fn push(&mut self, range: Range<u64>) -> bool {
            if self.len == N {
                return false;
            }
            self.items[self.len] = super::page_align_outward(range);
            self.len += 1;
            true
        }

        /// Sorts by start address (insertion sort: the list is short and this is small code).
        pub fn sort(&mut self) {
            for i in 1..self.len {
                let mut j = i;
                while j > 0 && self.items[j - 1].start > self.items[j].start {
                    self.items.swap(j - 1, j);
                    j -= 1;
                }
            }
        }

        /// The ranges.
        pub fn as_slice(&self) -> &[Range<u64>] {
            &self.items[..self.len]
        }
    }
}

#[cfg(target_os = "none")]
pub use heap::*;

#[cfg(target_os = "none")]
mod heap {
    use crate::sync::RawIrqMutex;
    use core::alloc::Layout;
    use core::ops::Range;
    use core::sync::atomic::{AtomicU64, Ordering};
    use talc::{source::Manual, sync::TalcLock, DefaultBinning};

    #[global_allocator]
    static HEAP: TalcLock<RawIrqMutex, Manual, DefaultBinning> = TalcLock::new(Manual);

    static HEAP_SIZE: AtomicU64 = AtomicU64::new(0);

    /// Smallest range worth giving to the allocator.
    const MIN_HEAP_RANGE: u64 = 16 * 1024;

    /// Gives a free physical range to the heap.
    ///
    /// # Safety
    /// The range must be identity-mapped RAM that nothing else uses, ever.
    pub unsafe fn add_to_heap(range: Range<u64>) {
        let size = range.end.saturating_sub(range.start);
        if size < MIN_HEAP_RANGE {
            return;
        }
        // SAFETY: the caller hands over exclusive ownership of the range.
        if unsafe { HEAP.lock().claim(range.start as *mut u8, size as usize) }.is_some() {
            HEAP_SIZE.fetch_add(size, Ordering::Relaxed);
        }
    }

    /// Bytes handed to the heap.
    pub fn heap_size() -> u64 {
        HEAP_SIZE.load(Ordering::Relaxed)
    }

    /// Bytes currently allocated from the heap.
    pub fn heap_used() -> u64 {
        HEAP.lock().counters().allocated_bytes as u64
    }

    /// Allocates `count` zeroed, page-aligned page frames; returns their physical address.
    /// They stay allocated until [`free_frames`].
    pub fn alloc_frames(count: usize) -> Option<u64> {
        let layout = frames_layout(count)?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc::alloc::alloc_zeroed(layout) };
        (!ptr.is_null()).then_some(ptr as u64)
    }

    /// Frees frames from [`alloc_frames`].
    ///
    /// # Safety
    /// `paddr` and `count` must come from one `alloc_frames` call, and nothing (no device, no
    /// other domain) may still use the frames.
    pub unsafe fn free_frames(paddr: u64, count: usize) {
        if let Some(layout) = frames_layout(count) {
            // SAFETY: the caller guarantees the pointer and layout match an allocation.
            unsafe { alloc::alloc::dealloc(paddr as *mut u8, layout) }
        }
    }

    fn frames_layout(count: usize) -> Option<Layout> {
        let size = count
            .checked_mul(super::PAGE_SIZE as usize)
            .filter(|&s| s > 0)?;
        Layout::from_size_align(size, super::PAGE_SIZE as usize).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::heapless_ranges::Ranges;
    use super::*;
    use std::vec::Vec;

    fn usable(map: &[(Range<u64>, bool)], reserved: &[Range<u64>], limit: u64) -> Vec<Range<u64>> {
        let mut r = Ranges::<8>::default();
        for x in reserved {
            assert!(r.push(x.clone()));
        }
        let mut out = Vec::new();
        usable_ranges(map.iter().cloned(), &mut r, limit, |x| out.push(x));
        out
    }

    #[test]
    fn carves_reserved_ranges_out_of_ram() {
        let map = [
            (0..0x9fc00, true),
            (0x9fc00..0x100000, false),
            (0x100000..0x800_0000, true),
        ];
        let reserved = [0x100000..0x123456, 0x7000..0x7001, 0x200_0000..0x200_1000];
        assert_eq!(
            usable(&map, &reserved, 1 << 32),
            [
                0x1000..0x7000,
                0x8000..0x9f000,
                0x124000..0x200_0000,
                0x200_1000..0x800_0000
            ]
        );
    }

    #[test]
    fn clips_to_limit_and_skips_page_zero() {
        let map = [(0..0x3000, true), (0xffff_0000..0x1_0000_8000, true)];
        assert_eq!(
            usable(&map, &[], 1 << 32),
            [0x1000..0x3000, 0xffff_0000..0x1_0000_0000]
        );
    }

    #[test]
    fn fully_reserved_and_tiny_regions_vanish() {
        let map = [
            (0x1000..0x2000, true),
            (0x5000..0x5800, true),
            (0x10000..0x20000, false),
        ];
        assert_eq!(
            usable(
                &map,
                &[Range {
                    start: 0,
                    end: 0x3000
                }],
                1 << 32
            ),
            Vec::<Range<u64>>::new()
        );
    }

    #[test]
    fn full_list_refuses() {
        let mut r = Ranges::<1>::default();
        assert!(r.push(1..2));
        assert!(!r.push(3..4));
        assert_eq!(
            r.as_slice(),
            &[Range {
                start: 0,
                end: 0x1000
            }]
        );
    }
}
