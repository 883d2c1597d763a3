//! App volumes as dom0 block devices: a loop device over an extent of the app data disk
//! (Linux's `LOOP_CONFIGURE`), so that Xen's block backend serves an app exactly its volume.
//!
//! The loop is made with `LO_FLAGS_AUTOCLEAR`: it goes away by itself once its last user
//! closes it. The launcher holds it open ([`Mapped`]) from before blkback opens it until the
//! app's domain is gone; blkback then lets go when the backend is removed, and the loop ends.
//! `LO_FLAGS_DIRECT_IO` keeps it off dom0's page cache: the downloader writes the data disk
//! through blkback, which bypasses that cache, so a cached loop could serve stale sectors.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// `LOOP_CTL_GET_FREE` (linux/loop.h).
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
/// `LOOP_CONFIGURE` (linux/loop.h, Linux 5.8 and later).
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_FLAGS_DIRECT_IO: u32 = 16;

/// `struct loop_info64` (linux/loop.h).
#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizelimit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

/// `struct loop_config` (linux/loop.h).
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// A loop device the launcher holds open (see the module's documentation).
#[derive(Debug)]
pub struct Mapped {
    /// `/dev/loopN`.
    pub path: PathBuf,
    _hold: Option<File>,
}

impl Mapped {
    /// A device that needs no holding (test platforms).
    pub fn unheld(path: PathBuf) -> Mapped {
        Mapped { path, _hold: None }
    }
}

/// Maps `size` bytes at byte `offset` of block device `disk` to a new loop device.
pub fn map(disk: &Path, offset: u64, size: u64, read_only: bool) -> Result<Mapped, String> {
    let backing = OpenOptions::new()
        .read(true)
        .write(!read_only)
        .open(disk)
        .map_err(|e| format!("cannot open {}: {e}", disk.display()))?;
    let control = File::open("/dev/loop-control")
        .map_err(|e| format!("cannot open /dev/loop-control (is the loop module loaded?): {e}"))?;
    // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number or -1.
    let number = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
    if number < 0 {
        return Err(format!(
            "no free loop device: {}",
            std::io::Error::last_os_error()
        ));
    }
    let path = PathBuf::from(format!("/dev/loop{number}"));
    let device = OpenOptions::new()
        .read(true)
        .write(!read_only)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO;
    if read_only {
        flags |= LO_FLAGS_READ_ONLY;
    }
    let config = LoopConfig {
        fd: backing.as_raw_fd() as u32,
        block_size: 0,
        info: LoopInfo64 {
            device: 0,
            inode: 0,
            rdevice: 0,
            offset,
            sizelimit: size,
            number: 0,
            encrypt_type: 0,
            encrypt_key_size: 0,
            flags,
            file_name: [0; 64],
            crypt_name: [0; 64],
            encrypt_key: [0; 32],
            init: [0; 2],
        },
        reserved: [0; 8],
    };
    // SAFETY: LOOP_CONFIGURE reads one `struct loop_config`, which `config` is (repr(C), the
    // kernel's layout), alive for the call; the kernel takes its own reference to `fd`.
    let r = unsafe { libc::ioctl(device.as_raw_fd(), LOOP_CONFIGURE as _, &config) };
    if r < 0 {
        return Err(format!(
            "cannot set up {} over {} at {offset}: {}",
            path.display(),
            disk.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(Mapped {
        path,
        _hold: Some(device),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_structures_have_the_kernels_sizes() {
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
    }
}
