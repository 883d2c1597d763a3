//! Direct domain control through Linux's privcmd driver: `XEN_DOMCTL_unpausedomain` issued as a
//! hypercall from the launcher itself. `xl unpause` spends tenths of a second under TCG just
//! starting up, which would hide a unikernel's boot time; this takes microseconds.
//!
//! The domctl interface is versioned: this speaks Xen 4.17's (0x15). On any other version Xen
//! refuses the call and the toolstack falls back to `xl unpause`.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `__HYPERVISOR_domctl`.
const HYPERVISOR_DOMCTL: u64 = 36;
/// `XEN_DOMCTL_INTERFACE_VERSION` of Xen 4.17 (xen/include/public/domctl.h).
const DOMCTL_INTERFACE_VERSION: u32 = 0x15;
/// `XEN_DOMCTL_unpausedomain`.
const DOMCTL_UNPAUSEDOMAIN: u32 = 4;
/// `IOCTL_PRIVCMD_HYPERCALL`: `_IOC(_IOC_NONE, 'P', 0, sizeof(privcmd_hypercall_t))`.
const IOCTL_PRIVCMD_HYPERCALL: u64 =
    (b'P' as u64) << 8 | (std::mem::size_of::<PrivcmdHypercall>() as u64) << 16;

/// `privcmd_hypercall_t`.
#[repr(C)]
struct PrivcmdHypercall {
    op: u64,
    arg: [u64; 5],
}

/// `struct xen_domctl`: a header and a 128-byte union (unused by unpause).
#[repr(C)]
struct Domctl {
    cmd: u32,
    interface_version: u32,
    domain: u16,
    pad: [u16; 3],
    payload: [u64; 16],
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

    /// Unpauses a domain.
    pub fn unpause(&self, domid: u32) -> io::Result<()> {
        let domain = u16::try_from(domid)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad domid"))?;
        let mut domctl = Domctl {
            cmd: DOMCTL_UNPAUSEDOMAIN,
            interface_version: DOMCTL_INTERFACE_VERSION,
            domain,
            pad: [0; 3],
            payload: [0; 16],
        };
        let mut call = PrivcmdHypercall {
            op: HYPERVISOR_DOMCTL,
            arg: [&mut domctl as *mut Domctl as u64, 0, 0, 0, 0],
        };
        // SAFETY: the ioctl reads `call` and, through the hypercall, reads and writes `domctl`;
        // both live on this stack frame, are initialised, and outlive the call.
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
            Ok(())
        }
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
    }
}
