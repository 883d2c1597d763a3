//! Helpers shared by the kernel's fuzz targets: reading a fuzzer's input as a script of
//! operations, and page-aligned memory that plays the part of a page shared with another domain.

use std::alloc::{alloc_zeroed, dealloc, Layout};

/// A fuzzer's input read as a stream of small numbers; once exhausted it yields zeros and
/// [`Script::done`] turns true.
pub struct Script<'a> {
    data: &'a [u8],
}

impl<'a> Script<'a> {
    /// Reads `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Script { data }
    }

    /// Whether the input is used up.
    pub fn done(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte.
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// The next little-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    /// Up to `max` bytes (the count comes first, as one byte scaled to `max`).
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let want = usize::from(self.byte()) * max / 255;
        let n = want.min(self.data.len());
        let (taken, rest) = self.data.split_at(n);
        self.data = rest;
        taken
    }

    /// A value in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        usize::from(self.u16()) % n
    }
}

/// Zeroed page-aligned memory, freed on drop.
pub struct Pages {
    base: *mut u8,
    layout: Layout,
}

impl Pages {
    /// `bytes` of zeroed memory aligned to 4096.
    pub fn new(bytes: usize) -> Pages {
        let layout = Layout::from_size_align(bytes.max(1), 4096).expect("layout");
        // SAFETY: non-zero size.
        let base = unsafe { alloc_zeroed(layout) };
        assert!(!base.is_null(), "out of memory");
        Pages { base, layout }
    }

    /// The first byte.
    pub fn base(&self) -> *mut u8 {
        self.base
    }

    /// Writes `value` at byte `offset` as the peer would (any alignment the field has).
    pub fn poke_u32(&self, offset: usize, value: u32) {
        assert!(offset + 4 <= self.layout.size());
        // SAFETY: inside the allocation; the fuzz targets are single-threaded.
        unsafe { self.base.add(offset).cast::<u32>().write_volatile(value) }
    }

    /// Writes `value` at byte `offset`.
    pub fn poke_u16(&self, offset: usize, value: u16) {
        assert!(offset + 2 <= self.layout.size());
        // SAFETY: as for `poke_u32`.
        unsafe { self.base.add(offset).cast::<u16>().write_volatile(value) }
    }

    /// Writes `bytes` at `offset` (clamped to the allocation).
    pub fn poke(&self, offset: usize, bytes: &[u8]) {
        let offset = offset.min(self.layout.size());
        let n = bytes.len().min(self.layout.size() - offset);
        // SAFETY: `offset + n` is inside the allocation.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.add(offset), n) }
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.layout.size()
    }

    /// Whether the allocation is empty (never: at least one byte).
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.base, self.layout) }
    }
}
