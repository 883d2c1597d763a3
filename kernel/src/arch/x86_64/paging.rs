//! The boot page tables after the entry stub: 0..4 GiB identity mapped, 4 KiB pages for the
//! first 2 MiB (page 0 and the stack guard unmapped), and unmapping single pages there later.
//!
//! The stub maps only the image, with 2 MiB pages through a page directory of its own
//! (`stub_pd`): with paging off some nested
//! hypervisors emulate every store, so the stub keeps its stores few (and asks no CPUID about
//! 1 GiB pages: a VM exit under Xen). [`init`] then fills the tables in pages that are not part
//! of the live tables yet, which costs plain memory stores even under shadow paging, and links
//! them in with four stores to the PDPT and one CR3 reload. Above the first GiB it uses 1 GiB
//! pages where the CPU has them and the boot did not skip asking (Xen): fewer pages of tables
//! touched, each about a millisecond under a nested KVM.

use super::boot::{PageTable, BOOT_PAGE_TABLES, BOOT_STACK, PAGE_SIZE};
use super::cpu;
use core::arch::asm;
use core::ptr::{addr_of, addr_of_mut};

/// Present and writable.
const PRESENT_RW: u64 = 0x3;
/// A large page (1 GiB in a PDPT, 2 MiB in a page directory).
const LARGE: u64 = 0x80;

/// Maps 0..4 GiB (1 GiB pages above the first GiB if `gib_pages`, else 2 MiB pages),
/// splitting the first 2 MiB into 4 KiB pages, leaving page 0 (null pointers fault) and the
/// stack guard page (stack overflows fault) unmapped.
///
/// # Safety
/// Call once at boot, before anything else touches the page tables; `gib_pages` only if the
/// CPU has 1 GiB pages.
pub unsafe fn init(gib_pages: bool) {
    // SAFETY: only the address is taken.
    let guard = unsafe { addr_of!(BOOT_STACK.guard) } as u64;
    // SAFETY: boot, one CPU: the tables are ours. The stub's live tables are the PML4, the
    // PDPT and `stub_pd` (the image, from address 0). `pt0` and `pd` are not referenced yet,
    // so filling them changes no mapping; linking `pd[0]` in place of `stub_pd` maps the same
    // addresses and more (except the two unmapped pages, which nothing uses yet), the other
    // PDPT entries were empty, and the CR3 reload drops the old translations.
    unsafe {
        let tables = &mut *addr_of_mut!(BOOT_PAGE_TABLES);
        fill_pt0(&mut tables.pt0, guard);
        let filled = if gib_pages { 1 } else { tables.pd.len() };
        for (gib, pd) in tables.pd.iter_mut().enumerate().take(filled) {
            fill_pd(pd, gib as u64);
        }
        tables.pd[0].0[0] = addr_of!(tables.pt0) as u64 | PRESENT_RW;
        for gib in 0..tables.pd.len() {
            tables.pdpt.0[gib] = if gib < filled {
                addr_of!(tables.pd[gib]) as u64 | PRESENT_RW
            } else {
                ((gib as u64) << 30) | LARGE | PRESENT_RW
            };
        }
        asm!("mov cr3, {}", in(reg) cpu::cr3(), options(nostack, preserves_flags));
    }
}

/// Fills a page directory with the 2 MiB pages of GiB number `gib`.
fn fill_pd(pd: &mut PageTable, gib: u64) {
    for (i, entry) in pd.0.iter_mut().enumerate() {
        *entry = (gib << 30) | ((i as u64) << 21) | LARGE | PRESENT_RW;
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
