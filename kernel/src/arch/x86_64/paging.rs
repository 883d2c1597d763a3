//! Changes to the boot page tables: unmapping single 4 KiB pages in the first 2 MiB.

use super::boot::{BOOT_PAGE_TABLES, BOOT_STACK};
use super::cpu;
use core::ptr::addr_of;

/// Unmaps the 4 KiB page at `addr`, which must lie in the first 2 MiB.
///
/// # Safety
/// Nothing may use the page afterwards (it will fault).
pub unsafe fn unmap_low_page(addr: u64) {
    let index = (addr >> 12) as usize;
    assert!(
        index < 512,
        "only the first 2 MiB are mapped with 4 KiB pages"
    );
    // SAFETY: the boot tables are ours; the caller vouches that the page is unused.
    unsafe { (*core::ptr::addr_of_mut!(BOOT_PAGE_TABLES)).pt0.0[index] = 0 };
    cpu::invlpg(addr);
}

/// Unmaps the guard page under the kernel stack.
///
/// # Safety
/// Call once at boot.
pub unsafe fn protect_stack_guard() {
    // SAFETY: the guard page is never used by design.
    unsafe { unmap_low_page(addr_of!(BOOT_STACK.guard) as u64) }
}

/// Bounds of the kernel stack (above its guard page).
pub fn stack_bounds() -> (u64, u64) {
    // SAFETY: only the address is taken; no reference to the mutable static is made.
    let base = unsafe { addr_of!(BOOT_STACK.stack) } as u64;
    (base, base + super::boot::STACK_SIZE as u64)
}
