//! Hypercalls from the launcher through Linux's privcmd driver: domctls (create, unpause,
//! destroy, query domains), memory and event-channel operations, HVM parameters, and mappings of
//! another domain's memory (`IOCTL_PRIVCMD_MMAPBATCH_V2`) and resources such as its grant table
//! (`IOCTL_PRIVCMD_MMAP_RESOURCE`). `xl` spends tenths of a second under TCG just starting up;
//! each of these takes microseconds to milliseconds.
//!
//! The domctl and sysctl interfaces are versioned: this speaks Xen 4.17's (0x15). On any other
//! version Xen refuses the calls (`EACCES`), and the launcher falls back to `xl`.
//!
//! Buffers handed to Xen by address (an extent list, an HVM context) live in this process and are
//! written before each call, so their pages are present: Xen copies from dom0's page tables and
//! does not fault pages in.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `__HYPERVISOR_memory_op`.
pub const HYPERVISOR_MEMORY_OP: u64 = 12;
/// `__HYPERVISOR_event_channel_op`.
pub const HYPERVISOR_EVENT_CHANNEL_OP: u64 = 32;
/// `__HYPERVISOR_hvm_op`.
pub const HYPERVISOR_HVM_OP: u64 = 34;
/// `__HYPERVISOR_domctl`.
const HYPERVISOR_DOMCTL: u64 = 36;
/// `XEN_DOMCTL_INTERFACE_VERSION` of Xen 4.17 (xen/include/public/domctl.h).
const DOMCTL_INTERFACE_VERSION: u32 = 0x15;
/// `XEN_DOMCTL_unpausedomain`.
const DOMCTL_UNPAUSEDOMAIN: u32 = 4;
/// `XEN_DOMCTL_destroydomain`.
const DOMCTL_DESTROYDOMAIN: u32 = 2;
/// `XEN_DOMCTL_getdomaininfo`.
const DOMCTL_GETDOMAININFO: u32 = 5;
/// `IOCTL_PRIVCMD_HYPERCALL`: `_IOC(_IOC_NONE, 'P', 0, sizeof(privcmd_hypercall_t))`.
const IOCTL_PRIVCMD_HYPERCALL: u64 =
    (b'P' as u64) << 8 | (std::mem::size_of::<PrivcmdHypercall>() as u64) << 16;
/// `IOCTL_PRIVCMD_MMAPBATCH_V2`: `_IOC(_IOC_NONE, 'P', 4, sizeof(privcmd_mmapbatch_v2))`.
const IOCTL_PRIVCMD_MMAPBATCH_V2: u64 =
    (b'P' as u64) << 8 | 4 | (std::mem::size_of::<MmapBatchV2>() as u64) << 16;
/// `IOCTL_PRIVCMD_MMAP_RESOURCE`: `_IOC(_IOC_NONE, 'P', 7, sizeof(privcmd_mmap_resource))`.
const IOCTL_PRIVCMD_MMAP_RESOURCE: u64 =
    (b'P' as u64) << 8 | 7 | (std::mem::size_of::<MmapResource>() as u64) << 16;
/// Page size of x86 guests.
pub const PAGE_SIZE: usize = 4096;

/// `privcmd_hypercall_t`.
#[repr(C)]
struct PrivcmdHypercall {
    op: u64,
    arg: [u64; 5],
}

/// `privcmd_mmapbatch_v2`.
#[repr(C)]
struct MmapBatchV2 {
    num: u32,
    dom: u16,
    addr: u64,
    arr: *const u64,
    err: *mut i32,
}

/// `privcmd_mmap_resource`.
#[repr(C)]
struct MmapResource {
    dom: u16,
    kind: u32,
    id: u32,
    idx: u32,
    num: u64,
    addr: u64,
}

/// `struct xen_domctl`: a header and a 128-byte union, which [`Payload`] fills by offset.
#[repr(C)]
struct Domctl {
    cmd: u32,
    interface_version: u32,
    domain: u16,
    pad: [u16; 3],
    payload: [u8; 128],
}

/// The argument of a hypercall or domctl, written and read by byte offset as the public headers
/// lay it out (little-endian, natural alignment).
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub struct Payload(pub [u8; 128]);

impl Default for Payload {
    fn default() -> Payload {
        Payload([0; 128])
    }
}

impl Payload {
    /// Writes a u16 at `offset`.
    pub fn u16(mut self, offset: usize, value: u16) -> Payload {
        self.0[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
        self
    }
    /// Writes a u32 at `offset`.
    pub fn u32(mut self, offset: usize, value: u32) -> Payload {
        self.0[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
        self
    }
    /// Writes a u64 at `offset`.
    pub fn u64(mut self, offset: usize, value: u64) -> Payload {
        self.0[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
        self
    }
    /// Reads the u16 at `offset`.
    pub fn get_u16(&self, offset: usize) -> u16 {
        u16::from_le_bytes(self.0[offset..offset + 2].try_into().expect("2 bytes"))
    }
    /// Reads the u32 at `offset`.
    pub fn get_u32(&self, offset: usize) -> u32 {
        u32::from_le_bytes(self.0[offset..offset + 4].try_into().expect("4 bytes"))
    }
    /// Reads the u64 at `offset`.
    pub fn get_u64(&self, offset: usize) -> u64 {
        u64::from_le_bytes(self.0[offset..offset + 8].try_into().expect("8 bytes"))
    }
}

/// What `XEN_DOMCTL_getdomaininfo` says about a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainInfo {
    /// The domain's id.
    pub domid: u32,
    /// `XEN_DOMINF_*` flags; the shutdown code sits in bits 16..24.
    pub flags: u32,
    /// Pages it holds (`tot_pages`).
    pub pages: u64,
    /// CPU time it used, ns (`cpu_time`).
    pub cpu_ns: u64,
}

impl DomainInfo {
    /// `XEN_DOMINF_dying`.
    pub const DYING: u32 = 1 << 0;
    /// `XEN_DOMINF_shutdown`.
    pub const SHUTDOWN: u32 = 1 << 2;

    /// The guest's shutdown code (meaningful with [`DomainInfo::SHUTDOWN`]).
    pub fn shutdown_code(&self) -> u32 {
        (self.flags >> 16) & 0xff
    }
}

/// The privcmd device.
pub struct Privcmd {
    device: File,
}

impl Privcmd {
    /// Opens /dev/xen/privcmd (or xenfs' /proc/xen/privcmd).
    pub fn open() -> io::Result<Privcmd> {
        let device = File::options()
            .read(true)
            .write(true)
            .open("/dev/xen/privcmd")
            .or_else(|_| {
                File::options()
                    .read(true)
                    .write(true)
                    .open("/proc/xen/privcmd")
            })?;
        Ok(Privcmd { device })
    }

    /// Issues hypercall `op` with `args`; returns its (non-negative) result.
    ///
    /// # Safety
    /// Every pointer in `args` must point at memory of this process laid out as the hypercall
    /// expects, present, and valid for the reads and writes the hypercall makes.
    pub unsafe fn hypercall(&self, op: u64, args: [u64; 5]) -> io::Result<i64> {
        let mut call = PrivcmdHypercall { op, arg: args };
        // SAFETY: the ioctl reads `call`, which lives on this frame; what the hypercall touches
        // through `args` the caller vouches for.
        let result = unsafe {
            libc::ioctl(
                self.device.as_raw_fd(),
                IOCTL_PRIVCMD_HYPERCALL as _,
                &mut call,
            )
        };
        if result < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(i64::from(result))
        }
    }

    /// Issues domctl `cmd` on `domid` with `payload`; returns the payload as Xen left it.
    pub fn domctl(&self, cmd: u32, domid: u32, payload: Payload) -> io::Result<Payload> {
        let domain = u16::try_from(domid)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad domid"))?;
        let mut domctl = Domctl {
            cmd,
            interface_version: DOMCTL_INTERFACE_VERSION,
            domain,
            pad: [0; 3],
            payload: payload.0,
        };
        // SAFETY: `domctl` lives on this frame and is a complete `struct xen_domctl`; domctls
        // that take further buffers get their addresses inside the payload from callers that
        // keep them alive (see `hypercall`'s contract, restated by those callers).
        unsafe {
            self.hypercall(
                HYPERVISOR_DOMCTL,
                [&mut domctl as *mut Domctl as u64, 0, 0, 0, 0],
            )?
        };
        let mut out = Payload::default();
        out.0.copy_from_slice(&domctl.payload);
        Ok(out)
    }

    /// The domain id Xen gave a domain created by `XEN_DOMCTL_createdomain` on domid 0 (Xen
    /// picks one), from the domctl's header.
    pub fn create_domain(&self, payload: Payload) -> io::Result<u32> {
        let mut domctl = Domctl {
            cmd: 1,
            interface_version: DOMCTL_INTERFACE_VERSION,
            domain: 0,
            pad: [0; 3],
            payload: payload.0,
        };
        // SAFETY: as in `domctl`.
        unsafe {
            self.hypercall(
                HYPERVISOR_DOMCTL,
                [&mut domctl as *mut Domctl as u64, 0, 0, 0, 0],
            )?
        };
        Ok(u32::from(domctl.domain))
    }

    /// Unpauses a domain.
    pub fn unpause(&self, domid: u32) -> io::Result<()> {
        self.domctl(DOMCTL_UNPAUSEDOMAIN, domid, Payload::default())
            .map(drop)
    }

    /// Destroys a domain (Xen frees it once every mapping of its memory is gone).
    pub fn destroy(&self, domid: u32) -> io::Result<()> {
        self.domctl(DOMCTL_DESTROYDOMAIN, domid, Payload::default())
            .map(drop)
    }

    /// Every domain but dom0: `XEN_DOMCTL_getdomaininfo` answers for the first domain whose id is
    /// at least the one asked for, so asking from 1 upwards walks them all.
    pub fn domains(&self) -> io::Result<Vec<DomainInfo>> {
        let mut found = Vec::new();
        let mut next = 1u32;
        while next < 0x7ff0 {
            match self.domctl(DOMCTL_GETDOMAININFO, next, Payload::default()) {
                Ok(info) => {
                    let domid = u32::from(info.get_u16(0));
                    if domid < next {
                        break;
                    }
                    // Offsets in `struct xen_domctl_getdomaininfo` (domctl.h of Xen 4.17).
                    found.push(DomainInfo {
                        domid,
                        flags: info.get_u32(4),
                        pages: info.get_u64(8),
                        cpu_ns: info.get_u64(56),
                    });
                    next = domid + 1;
                }
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }

    /// Maps guest frames `gfns` of `domid` into this process, in order.
    pub fn map_foreign(&self, domid: u32, gfns: &[u64]) -> io::Result<Mapping> {
        let mapping = Mapping::reserve(&self.device, gfns.len())?;
        let mut errors = vec![0i32; gfns.len()];
        let mut batch = MmapBatchV2 {
            num: u32::try_from(gfns.len())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many frames"))?,
            dom: u16::try_from(domid)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad domid"))?,
            addr: mapping.ptr as u64,
            arr: gfns.as_ptr(),
            err: errors.as_mut_ptr(),
        };
        // SAFETY: `batch` points at the reserved privcmd mapping, `gfns` and `errors`, all alive
        // for the call and of `num` entries.
        let result = unsafe {
            libc::ioctl(
                self.device.as_raw_fd(),
                IOCTL_PRIVCMD_MMAPBATCH_V2 as _,
                &mut batch,
            )
        };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        if let Some((i, e)) = errors.iter().enumerate().find(|(_, &e)| e != 0) {
            return Err(io::Error::other(format!(
                "frame {:#x}: {}",
                gfns[i],
                io::Error::from_raw_os_error(-e)
            )));
        }
        Ok(mapping)
    }

    /// Maps `num` frames of resource `kind`/`id` of `domid` from frame `idx` (for instance
    /// `XENMEM_resource_grant_table` = 1, id 0: the shared grant frames).
    pub fn map_resource(
        &self,
        domid: u32,
        kind: u32,
        id: u32,
        idx: u32,
        num: usize,
    ) -> io::Result<Mapping> {
        let mapping = Mapping::reserve(&self.device, num)?;
        let mut request = MmapResource {
            dom: u16::try_from(domid)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad domid"))?,
            kind,
            id,
            idx,
            num: num as u64,
            addr: mapping.ptr as u64,
        };
        // SAFETY: `request` points at the reserved privcmd mapping of `num` pages.
        let result = unsafe {
            libc::ioctl(
                self.device.as_raw_fd(),
                IOCTL_PRIVCMD_MMAP_RESOURCE as _,
                &mut request,
            )
        };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(mapping)
    }
}

/// Pages of another domain mapped into this process; unmapped when dropped.
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    /// Reserves `pages` pages of privcmd address space for a mapping ioctl to fill.
    fn reserve(device: &File, pages: usize) -> io::Result<Mapping> {
        let len = pages * PAGE_SIZE;
        // SAFETY: a fresh shared mapping of the privcmd device; nothing else refers to it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                device.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }

    /// The mapped bytes.
    pub fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` is a live mapping of `len` bytes owned by this value.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping this value owns; nothing refers to it afterwards.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_abi() {
        assert_eq!(std::mem::size_of::<PrivcmdHypercall>(), 48);
        assert_eq!(IOCTL_PRIVCMD_HYPERCALL, 0x0030_5000);
        assert_eq!(std::mem::size_of::<Domctl>(), 16 + 128);
        assert_eq!(std::mem::offset_of!(Domctl, payload), 16);
        assert_eq!(std::mem::size_of::<MmapBatchV2>(), 32);
        assert_eq!(IOCTL_PRIVCMD_MMAPBATCH_V2, 0x0020_5004);
        assert_eq!(std::mem::size_of::<MmapResource>(), 32);
        assert_eq!(std::mem::offset_of!(MmapResource, num), 16);
        assert_eq!(IOCTL_PRIVCMD_MMAP_RESOURCE, 0x0020_5007);
    }

    #[test]
    fn payload_fields_are_little_endian_at_their_offsets() {
        let p = Payload::default()
            .u16(0, 7)
            .u32(4, 0x1234_5678)
            .u64(8, 1 << 40);
        assert_eq!(&p.0[..2], &[7, 0]);
        assert_eq!(p.get_u32(4), 0x1234_5678);
        assert_eq!(p.get_u64(8), 1 << 40);
        let info = DomainInfo {
            domid: 3,
            flags: (3 << 16) | DomainInfo::SHUTDOWN,
            pages: 0,
            cpu_ns: 0,
        };
        assert_eq!(info.shutdown_code(), 3);
    }
}
