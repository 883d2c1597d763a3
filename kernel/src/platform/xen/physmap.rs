//! Guest-physical address space that holds no RAM, where lichen asks Xen to place pages:
//! shared info, grant-table frames, and other domains' granted pages.
//!
//! A PVH domain's RAM below 4 GiB ends well below 0xf000_0000 (the ACPI tables, special pages
//! and local APIC sit at 0xfc00_0000 and above), so the window 0xf000_0000..0xf800_0000 is a
//! hole; the boot page tables identity-map it like all of the low 4 GiB.

use crate::sync::IrqMutex;

/// Start of the window.
pub const WINDOW_START: u64 = 0xf000_0000;
/// Frames in the window (128 MiB).
pub const WINDOW_FRAMES: usize = 32 * 1024;
/// Fixed frame for the shared-info page.
pub const SHARED_INFO: u64 = WINDOW_START;
/// Fixed frames for the grant table (frame `i` at `GRANT_TABLE + i * 4096`).
pub const GRANT_TABLE: u64 = WINDOW_START + 0x1000;
/// Most grant-table frames mapped.
pub const GRANT_TABLE_FRAMES: usize = 4;
/// First frame handed out by [`alloc`].
const FIRST_DYNAMIC: usize = 1 + GRANT_TABLE_FRAMES;

/// One bit per window frame: set while in use.
static USED: IrqMutex<[u64; WINDOW_FRAMES / 64]> = IrqMutex::new([0; WINDOW_FRAMES / 64]);

/// Reserves `count` contiguous frames of the window; returns the first one's address.
pub fn alloc(count: usize) -> Option<u64> {
    let mut used = USED.lock();
    let is_used = |used: &[u64], i: usize| used[i / 64] & (1 << (i % 64)) != 0;
    let mut start = FIRST_DYNAMIC;
    while start + count <= WINDOW_FRAMES {
        match (start..start + count).find(|&i| is_used(&*used, i)) {
            Some(busy) => start = busy + 1,
            None => {
                (start..start + count).for_each(|i| used[i / 64] |= 1 << (i % 64));
                return Some(WINDOW_START + start as u64 * 4096);
            }
        }
    }
    None
}

/// Returns frames from [`alloc`].
pub fn free(addr: u64, count: usize) {
    let first = ((addr - WINDOW_START) / 4096) as usize;
    let mut used = USED.lock();
    (first..first + count).for_each(|i| used[i / 64] &= !(1 << (i % 64)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_contiguous_runs_and_reuses_freed_frames() {
        let a = alloc(2).unwrap();
        let b = alloc(1).unwrap();
        assert_eq!(a, WINDOW_START + FIRST_DYNAMIC as u64 * 4096);
        assert_eq!(b, a + 2 * 4096);
        free(a, 2);
        assert_eq!(alloc(1), Some(a));
        assert_eq!(alloc(1), Some(a + 4096));
        assert_eq!(alloc(2), Some(b + 4096));
        assert_eq!(alloc(WINDOW_FRAMES), None);
    }
}
