//! The shared-info page: event-channel bitmaps, vCPU 0's event flags, and the wall clock.
//!
//! Layout on x86-64 (xen/include/public/xen.h): 32 `vcpu_info` of 64 bytes (vCPU 0's
//! `evtchn_upcall_pending` u8 at 0, `evtchn_upcall_mask` u8 at 1, `evtchn_pending_sel` u64 at 8),
//! `evtchn_pending[64]` u64 at 2048, `evtchn_mask[64]` u64 at 2560, then the wall clock
//! `wc_version`, `wc_sec`, `wc_nsec` (u32) at 3072 and `wc_sec_hi` at 3084. The wall clock is
//! the time of day at Xen system time 0.

use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use super::{hypercall, physmap};

const UPCALL_PENDING: usize = 0;
/// vCPU 0's `vcpu_time_info` (pvclock): version u32 at +0, tsc_timestamp u64 at +8,
/// system_time u64 at +16, tsc_to_system_mul u32 at +24, tsc_shift i8 at +28.
const TIME: usize = 32;
const PENDING_SEL: usize = 8;
const EVTCHN_PENDING: usize = 2048;
const EVTCHN_MASK: usize = 2560;
const WC_VERSION: usize = 3072;
const WC_SEC: usize = 3076;
const WC_NSEC: usize = 3080;
const WC_SEC_HI: usize = 3084;
/// Words in each event-channel bitmap.
pub const EVENT_WORDS: usize = 64;

/// `XENMEM_add_to_physmap`.
const XENMEM_ADD_TO_PHYSMAP: u64 = 7;
/// `XENMAPSPACE_shared_info`.
pub const SPACE_SHARED_INFO: u32 = 0;
/// `XENMAPSPACE_grant_table`.
pub const SPACE_GRANT_TABLE: u32 = 1;

#[repr(C)]
struct AddToPhysmap {
    domid: u16,
    size: u16,
    space: u32,
    idx: u64,
    gpfn: u64,
}

/// Asks Xen to place page `idx` of `space` at guest-physical address `addr`.
pub fn add_to_physmap(space: u32, idx: u64, addr: u64) -> Result<(), i64> {
    let mut request = AddToPhysmap {
        domid: hypercall::DOMID_SELF,
        size: 0,
        space,
        idx,
        gpfn: addr >> 12,
    };
    // SAFETY: a live xen_add_to_physmap; `addr` lies in the physmap window (no RAM there).
    unsafe { hypercall::call_with(hypercall::MEMORY_OP, XENMEM_ADD_TO_PHYSMAP, &mut request) }
        .map(drop)
}

/// Maps the shared-info page into the physmap window.
pub fn map() -> Result<(), i64> {
    add_to_physmap(SPACE_SHARED_INFO, 0, physmap::SHARED_INFO)
}

fn byte(offset: usize) -> &'static AtomicU8 {
    // SAFETY: the shared-info page is mapped at SHARED_INFO for the life of the domain (see
    // `map`); Xen updates it concurrently, hence atomics.
    unsafe { &*((physmap::SHARED_INFO as usize + offset) as *const AtomicU8) }
}

fn word(offset: usize) -> &'static AtomicU64 {
    // SAFETY: as for `byte`; offsets are 8-byte aligned.
    unsafe { &*((physmap::SHARED_INFO as usize + offset) as *const AtomicU64) }
}

fn word32(offset: usize) -> u32 {
    // SAFETY: as for `byte`.
    unsafe { core::ptr::read_volatile((physmap::SHARED_INFO as usize + offset) as *const u32) }
}

/// vCPU 0's "an event is pending" flag.
pub fn upcall_pending() -> &'static AtomicU8 {
    byte(UPCALL_PENDING)
}

/// vCPU 0's selector: which words of `evtchn_pending` may have bits set.
pub fn pending_selector() -> &'static AtomicU64 {
    word(PENDING_SEL)
}

/// Word `i` of the pending bitmap.
pub fn pending(i: usize) -> &'static AtomicU64 {
    word(EVTCHN_PENDING + 8 * i)
}

/// Word `i` of the mask bitmap.
pub fn mask(i: usize) -> &'static AtomicU64 {
    word(EVTCHN_MASK + 8 * i)
}

/// vCPU 0's pvclock scale (TSC ticks to ns), as Xen keeps it.
pub fn tsc_scale() -> crate::time::TscScale {
    loop {
        let version = word32(TIME);
        core::sync::atomic::fence(Ordering::Acquire);
        let mul = word32(TIME + 24);
        let shift = (word32(TIME + 28) & 0xff) as u8 as i8;
        core::sync::atomic::fence(Ordering::Acquire);
        if version & 1 == 0 && version == word32(TIME) {
            return crate::time::TscScale { mul, shift };
        }
    }
}

/// Xen system time now (ns since the host booted), from vCPU 0's pvclock record.
pub fn system_time_ns() -> u64 {
    loop {
        let version = word32(TIME);
        core::sync::atomic::fence(Ordering::Acquire);
        // SAFETY: inside the mapped shared-info page (see `byte`).
        let (tsc_timestamp, system_time) = unsafe {
            let base = physmap::SHARED_INFO as usize + TIME;
            (
                core::ptr::read_volatile((base + 8) as *const u64),
                core::ptr::read_volatile((base + 16) as *const u64),
            )
        };
        let mul = word32(TIME + 24);
        let shift = (word32(TIME + 28) & 0xff) as u8 as i8;
        let tsc = crate::arch::cpu::rdtsc();
        core::sync::atomic::fence(Ordering::Acquire);
        if version & 1 == 0 && version == word32(TIME) {
            let scale = crate::time::TscScale { mul, shift };
            return system_time.wrapping_add(scale.ticks_to_ns(tsc.wrapping_sub(tsc_timestamp)));
        }
    }
}

/// The time of day at Xen system time 0, in ns since the epoch.
pub fn wall_clock_base_ns() -> i64 {
    loop {
        let version = word32(WC_VERSION);
        core::sync::atomic::fence(Ordering::Acquire);
        let seconds = (u64::from(word32(WC_SEC_HI)) << 32) | u64::from(word32(WC_SEC));
        let nanos = word32(WC_NSEC);
        core::sync::atomic::fence(Ordering::Acquire);
        if version & 1 == 0 && version == word32(WC_VERSION) {
            return seconds as i64 * 1_000_000_000 + i64::from(nanos);
        }
    }
}
