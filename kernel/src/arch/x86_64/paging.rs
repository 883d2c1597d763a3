//! The boot page tables after the entry stub: 4 KiB pages for the first 2 MiB (page 0 and the
//! stack guard unmapped), and unmapping single pages there later.
//!
//! The stub maps 0..4 GiB with 1 GiB pages (or 2 MiB pages where the CPU has no 1 GiB pages)
//! and nothing finer: with paging off some nested hypervisors emulate every store, so the stub
//! keeps its stores few. [`init`] then fills the 4 KiB table for the first 2 MiB (and, under
//! 1 GiB pages, the page directory of the first GiB) in pages that are not part of the live
//! tables yet, which costs plain memory stores even under shadow paging, and links them in with
//! one store and a CR3 reload.

use super::boot::{PageTable, BOOT_PAGE_TABLES, BOOT_STACK, PAGE_SIZE};
use super::cpu;
use core::arch::asm;
use core::ptr::{addr_of, addr_of_mut};

/// Present and writable.
const PRESENT_RW: u64 = 0x3;
/// A large page (1 GiB in a PDPT, 2 MiB in a page directory).
const LARGE: u64 = 0x80;

/// Splits the first 2 MiB into 4 KiB pages, leaving page 0 (null pointers fault) and the stack
/// guard page (stack overflows fault) unmapped.
///
/// # Safety
/// Call once at boot, before anything else touches the page tables.
pub unsafe fn init() {
    // SAFETY: only the address is taken.
    let guard = unsafe { addr_of!(BOOT_STACK.guard) } as u64;
    // SAFETY: boot, one CPU: the tables are ours. `pt0` (and `pd[0]` when the PDPT maps 1 GiB
    // pages) is not referenced by the live tables yet, so filling it changes no mapping; the
    // single store that links it in replaces a large page by a table mapping the same
    // addresses (except the two unmapped pages, which nothing uses yet), and the CR3 reload
    // drops the old large-page translations.
    unsafe {
        let tables = &mut *addr_of_mut!(BOOT_PAGE_TABLES);
        fill_pt0(&mut tables.pt0, guard);
        let pt0 = addr_of!(tables.pt0) as u64 | PRESENT_RW;
        if tables.pdpt.0[0] & LARGE != 0 {
            let pd0 = &mut tables.pd[0];
            pd0.0[0] = pt0;
            for (i, entry) in pd0.0.iter_mut().enumerate().skip(1) {
                *entry = ((i as u64) << 21) | LARGE | PRESENT_RW;
            }
            tables.pdpt.0[0] = addr_of!(tables.pd[0]) as u64 | PRESENT_RW;
        } else {
            tables.pd[0].0[0] = pt0;
        }
        asm!("mov cr3, {}", in(reg) cpu::cr3(), options(nostack, preserves_flags));
    }
}

fn fill_pt0(pt0: &mut PageTable, guard: u64) {
    for (i, entry) in pt0.0.iter_mut().enumerate() {
        let addr = (i * PAGE_SIZE) as u64;
        *entry = if i == 0 || addr == guard {
            0
        } else {
            addr | PRESENT_RW
        };
    }
}

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
    unsafe { (*addr_of_mut!(BOOT_PAGE_TABLES)).pt0.0[index] = 0 };
    cpu::invlpg(addr);
}

/// Bounds of the kernel stack (above its guard page).
pub fn stack_bounds() -> (u64, u64) {
    // SAFETY: only the address is taken; no reference to the mutable static is made.
    let base = unsafe { addr_of!(BOOT_STACK.stack) } as u64;
    (base, base + super::boot::STACK_SIZE as u64)
}
