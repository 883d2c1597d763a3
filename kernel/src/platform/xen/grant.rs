//! Grant tables (version 1): sharing our pages with another domain, and mapping pages another
//! domain granted us.
//!
//! Our table's frames are placed in the physmap window; each entry is 8 bytes: `flags` u16,
//! `domid` u16, `frame` u32 (xen/include/public/grant_table.h). Xen sets `GTF_reading` /
//! `GTF_writing` in `flags` while the peer has the page mapped, so access can only be ended once
//! the peer let go. Foreign pages are mapped into free frames of the physmap window.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU16, AtomicU32, Ordering};

use super::{hypercall, physmap, shared_info};
use crate::sync::IrqMutex;

/// A grant reference.
pub type GrantRef = u32;

const ENTRIES_PER_FRAME: u32 = 512;
/// References reserved by convention for the toolstack (console, xenstore).
const RESERVED: u32 = 8;
const GTF_PERMIT_ACCESS: u16 = 1;
const GTF_READONLY: u16 = 1 << 2;
const GTF_READING: u16 = 1 << 3;
const GTF_WRITING: u16 = 1 << 4;
/// `GNTTABOP_map_grant_ref`.
const MAP_GRANT_REF: u64 = 0;
/// `GNTTABOP_unmap_grant_ref`.
const UNMAP_GRANT_REF: u64 = 1;
/// `GNTMAP_host_map`.
const GNTMAP_HOST_MAP: u32 = 1 << 1;
/// `GNTMAP_readonly`.
const GNTMAP_READONLY: u32 = 1 << 2;

/// A grant-table operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantError {
    /// The hypercall failed (negative errno) or Xen reported a GNTST status (negative).
    Xen(&'static str, i64),
    /// No free grant references or mapping slots left.
    Exhausted,
    /// The peer still has the page mapped: access cannot end yet.
    InUse,
    /// The reference is not one of ours.
    BadRef,
}

impl core::fmt::Display for GrantError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GrantError::Xen(op, e) => write!(f, "grant {op} failed: {e}"),
            GrantError::Exhausted => f.write_str("grant references or mapping slots exhausted"),
            GrantError::InUse => f.write_str("granted page still mapped by the peer"),
            GrantError::BadRef => f.write_str("not a grant reference of this domain"),
        }
    }
}

struct Table {
    entries: u32,
    free: Vec<GrantRef>,
}

static TABLE: IrqMutex<Table> = IrqMutex::new(Table {
    entries: 0,
    free: Vec::new(),
});

/// Maps up to [`physmap::GRANT_TABLE_FRAMES`] table frames (at least one) into `table`, on the
/// first grant: the hypercalls stay off the boot path, and images that never grant a page never
/// make them.
fn map_table(table: &mut Table) -> Result<(), GrantError> {
    let mut frames = 0;
    for i in 0..physmap::GRANT_TABLE_FRAMES as u64 {
        match shared_info::add_to_physmap(
            shared_info::SPACE_GRANT_TABLE,
            i,
            physmap::GRANT_TABLE + i * 4096,
        ) {
            Ok(()) => frames += 1,
            Err(e) if i == 0 => return Err(GrantError::Xen("map table", e)),
            Err(_) => break,
        }
    }
    table.entries = frames * ENTRIES_PER_FRAME;
    table.free = (RESERVED..table.entries).rev().collect();
    Ok(())
}

fn flags(r: GrantRef) -> &'static AtomicU16 {
    // SAFETY: `r` is below `entries`, inside the mapped table frames; Xen updates flags
    // concurrently, hence the atomic.
    unsafe { &*((physmap::GRANT_TABLE + u64::from(r) * 8) as *const AtomicU16) }
}

fn domid_and_frame(r: GrantRef) -> (&'static AtomicU16, &'static AtomicU32) {
    let base = physmap::GRANT_TABLE + u64::from(r) * 8;
    // SAFETY: as for `flags`.
    unsafe {
        (
            &*((base + 2) as *const AtomicU16),
            &*((base + 4) as *const AtomicU32),
        )
    }
}

/// Lets domain `domid` map the page at `frame_addr` (read-only if `readonly`).
pub fn grant_access(domid: u16, frame_addr: u64, readonly: bool) -> Result<GrantRef, GrantError> {
    let r = {
        let mut table = TABLE.lock();
        if table.entries == 0 {
            map_table(&mut table)?;
        }
        table.free.pop().ok_or(GrantError::Exhausted)?
    };
    let (dom, frame) = domid_and_frame(r);
    dom.store(domid, Ordering::Relaxed);
    frame.store((frame_addr >> 12) as u32, Ordering::Relaxed);
    let mode = if readonly {
        GTF_PERMIT_ACCESS | GTF_READONLY
    } else {
        GTF_PERMIT_ACCESS
    };
    flags(r).store(mode, Ordering::Release);
    Ok(r)
}

/// Ends access to a page granted with [`grant_access`]; fails with [`GrantError::InUse`]
/// (keeping the grant) while the peer still maps it.
pub fn end_access(r: GrantRef) -> Result<(), GrantError> {
    let mut table = TABLE.lock();
    if r < RESERVED || r >= table.entries || table.free.contains(&r) {
        return Err(GrantError::BadRef);
    }
    let entry = flags(r);
    let mut current = entry.load(Ordering::Acquire);
    loop {
        if current & (GTF_READING | GTF_WRITING) != 0 {
            return Err(GrantError::InUse);
        }
        match entry.compare_exchange(current, 0, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => break,
            Err(now) => current = now,
        }
    }
    table.free.push(r);
    Ok(())
}

/// A page of another domain mapped into ours.
#[derive(Debug)]
pub struct ForeignPage {
    /// Where the page is mapped (identity-mapped physical address).
    pub addr: u64,
    handle: u32,
}

#[repr(C)]
struct MapGrantRef {
    host_addr: u64,
    flags: u32,
    gref: u32,
    dom: u16,
    status: i16,
    handle: u32,
    dev_bus_addr: u64,
}

#[repr(C)]
struct UnmapGrantRef {
    host_addr: u64,
    dev_bus_addr: u64,
    handle: u32,
    status: i16,
}

/// Runs grant-table operation `cmd` on the one entry `op`; Xen's error, or the entry's own
/// status (read with `status`), becomes a [`GrantError`].
///
/// # Safety
/// `T` must be the structure Xen expects for `cmd`, laid out as in the public headers.
unsafe fn one_op<T>(
    what: &'static str,
    cmd: u64,
    op: &mut T,
    status: impl Fn(&T) -> i16,
) -> Result<(), GrantError> {
    // SAFETY: forwarded to the caller; `op` is live for the call.
    let rc = unsafe { hypercall::call(hypercall::GRANT_TABLE_OP, cmd, op as *mut T as u64, 1) };
    match (rc, status(op)) {
        (rc, _) if rc < 0 => Err(GrantError::Xen(what, rc)),
        (_, 0) => Ok(()),
        (_, status) => Err(GrantError::Xen(what, i64::from(status))),
    }
}

/// Maps page `gref` granted by domain `domid`.
pub fn map_foreign(domid: u16, gref: GrantRef, readonly: bool) -> Result<ForeignPage, GrantError> {
    let addr = physmap::alloc(1).ok_or(GrantError::Exhausted)?;
    let flags = GNTMAP_HOST_MAP | if readonly { GNTMAP_READONLY } else { 0 };
    let mut op = MapGrantRef {
        host_addr: addr,
        flags,
        gref,
        dom: domid,
        status: 0,
        handle: 0,
        dev_bus_addr: 0,
    };
    // SAFETY: a gnttab_map_grant_ref; `addr` is a free window frame.
    if let Err(e) = unsafe { one_op("map", MAP_GRANT_REF, &mut op, |op| op.status) } {
        physmap::free(addr, 1);
        return Err(e);
    }
    Ok(ForeignPage {
        addr,
        handle: op.handle,
    })
}

/// Unmaps a page from [`map_foreign`].
pub fn unmap_foreign(page: ForeignPage) -> Result<(), GrantError> {
    let mut op = UnmapGrantRef {
        host_addr: page.addr,
        dev_bus_addr: 0,
        handle: page.handle,
        status: 0,
    };
    // SAFETY: a gnttab_unmap_grant_ref.
    unsafe { one_op("unmap", UNMAP_GRANT_REF, &mut op, |op| op.status) }?;
    physmap::free(page.addr, 1);
    Ok(())
}
