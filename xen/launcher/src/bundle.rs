//! A Linux VM app's image: the bundle `img/mklinuxapp` makes (docs/apps.md, "A Linux VM app"),
//! a 4 KiB header naming a kernel (a bzImage, as Debian ships it), an initramfs and a command
//! line, all on the app's first volume.
//!
//! ```text
//! offset  size  field (little-endian)
//!      0     8  magic "LICHENLX"
//!      8     4  version, 1
//!     12     4  command line length (at most MAX_CMDLINE)
//!     16     8  kernel offset (a multiple of 4096, at least 4096)
//!     24     8  kernel length
//!     32     8  initramfs offset (a multiple of 4096)
//!     40     8  initramfs length (a multiple of 4096; 0: none)
//!     48     -  the command line, zeros to 4096
//! ```
//!
//! The launcher reads only this header from the volume (one page, [`read_head`]); the kernel
//! and the initramfs reach `xl` as read-only loop devices over their byte ranges of the volume,
//! which is why both start on a page and the initramfs is whole pages (mklinuxapp pads it with
//! zeros, which Linux's initramfs unpacker skips).
//!
//! What the volume may corrupt: everything. The volume is filled from a datastore the
//! controller names, so the header is untrusted input to dom0: [`parse`] checks every field
//! against the volume's size with checked arithmetic and refuses, with the field and the
//! figures, anything out of bounds, overlapping or not text; it never panics (host tests below,
//! and the fuzz target `scripts/fuzz bundle`). What the kernel itself holds is checked by Xen's
//! own loader in `xl` (libxenguest's bzImage and ELF loaders), whose error the request's
//! refusal carries.

use std::path::Path;

/// The bundle's magic.
pub const MAGIC: &[u8; 8] = b"LICHENLX";
/// The header's size, and the alignment of what it names.
pub const PAGE: u64 = 4096;
/// The longest command line a bundle may carry (the app's user data, at most
/// `launcher_api::check::MAX_CMDLINE`, is appended after a space: both fit Linux's 2048).
pub const MAX_CMDLINE: usize = 1023;
/// The largest kernel a bundle may name (as for a PVH kernel: `toolstack::MAX_VOLUME_KERNEL`).
pub const MAX_KERNEL: u64 = 64 << 20;
/// The bytes of the header's fixed part.
const FIXED: usize = 48;

/// What a bundle's header says: byte ranges relative to the start of its volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// The kernel's offset and length.
    pub kernel: (u64, u64),
    /// The initramfs's offset and length, if it has one.
    pub initramfs: Option<(u64, u64)>,
    /// The kernel's command line.
    pub cmdline: String,
}

impl Bundle {
    /// The dom0 view of the kernel: its offset and its length rounded up to a page (the
    /// padding lies inside the bundle, before the initramfs or the volume's end).
    pub fn kernel_pages(&self) -> (u64, u64) {
        (self.kernel.0, self.kernel.1.div_ceil(PAGE) * PAGE)
    }

    /// The kernel's command line with the app's own (its user data) after it.
    pub fn cmdline_with(&self, app: &str) -> String {
        match (self.cmdline.is_empty(), app.is_empty()) {
            (_, true) => self.cmdline.clone(),
            (true, false) => app.to_string(),
            (false, false) => format!("{} {app}", self.cmdline),
        }
    }
}

/// Whether a volume starting with `head` holds a bundle (its magic), rather than a PVH kernel.
pub fn is_bundle(head: &[u8]) -> bool {
    head.starts_with(MAGIC)
}

fn u32_at(head: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(head[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(head: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(head[at..at + 8].try_into().expect("8 bytes"))
}

/// Checks that `len` bytes at `offset` lie after the header and, rounded up to a page, inside
/// a volume of `volume` bytes.
fn range(what: &str, offset: u64, len: u64, volume: u64) -> Result<(u64, u64), String> {
    if !offset.is_multiple_of(PAGE) || offset < PAGE {
        return Err(format!(
            "the {what} offset {offset} is not a page ({PAGE} bytes) after the header"
        ));
    }
    let end = len
        .div_ceil(PAGE)
        .checked_mul(PAGE)
        .and_then(|pages| pages.checked_add(offset));
    match end {
        Some(end) if end <= volume => Ok((offset, end)),
        _ => Err(format!(
            "the {what} ({len} bytes at {offset}) does not fit the volume of {volume} bytes"
        )),
    }
}

/// Parses a bundle's header, `head` (the first bytes of its volume, at least
/// [`PAGE`] of them unless the volume is smaller), for a volume of `volume` bytes.
pub fn parse(head: &[u8], volume: u64) -> Result<Bundle, String> {
    if !is_bundle(head) {
        return Err("no LICHENLX magic".into());
    }
    if head.len() < PAGE as usize {
        return Err(format!(
            "the header is {} bytes, short of {PAGE}",
            head.len()
        ));
    }
    let version = u32_at(head, 8);
    if version != 1 {
        return Err(format!("bundle version {version}, this launcher reads 1"));
    }
    let cmdline_len = u32_at(head, 12) as usize;
    if cmdline_len > MAX_CMDLINE {
        return Err(format!(
            "a command line of {cmdline_len} bytes, above {MAX_CMDLINE}"
        ));
    }
    let cmdline = std::str::from_utf8(&head[FIXED..FIXED + cmdline_len])
        .map_err(|_| "the command line is not UTF-8".to_string())?;
    if cmdline.chars().any(char::is_control) {
        return Err("the command line holds control characters".into());
    }
    let (kernel_offset, kernel_len) = (u64_at(head, 16), u64_at(head, 24));
    if kernel_len == 0 || kernel_len > MAX_KERNEL {
        return Err(format!(
            "a kernel of {kernel_len} bytes (1 to {MAX_KERNEL} allowed)"
        ));
    }
    let kernel = range("kernel", kernel_offset, kernel_len, volume)?;
    let (initrd_offset, initrd_len) = (u64_at(head, 32), u64_at(head, 40));
    let initramfs = if initrd_len == 0 {
        None
    } else {
        if !initrd_len.is_multiple_of(PAGE) {
            return Err(format!(
                "an initramfs of {initrd_len} bytes: not whole pages ({PAGE} bytes; mklinuxapp pads it)"
            ));
        }
        let initrd = range("initramfs", initrd_offset, initrd_len, volume)?;
        if initrd.0 < kernel.1 && kernel.0 < initrd.1 {
            return Err(format!(
                "the initramfs ({initrd_len} bytes at {initrd_offset}) overlaps the kernel ({kernel_len} bytes at {kernel_offset})"
            ));
        }
        Some((initrd_offset, initrd_len))
    };
    Ok(Bundle {
        kernel: (kernel_offset, kernel_len),
        initramfs,
        cmdline: cmdline.to_string(),
    })
}

/// The first page of the `size` bytes at byte `offset` of `disk` (fewer if `size` is smaller):
/// dom0's cached pages of that range are dropped first, since the downloader wrote it through
/// blkback, which bypasses them.
pub fn read_head(disk: &Path, offset: u64, size: u64) -> Result<Vec<u8>, String> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(disk).map_err(|e| format!("{}: {e}", disk.display()))?;
    // SAFETY: posix_fadvise only reads its integer arguments; the descriptor is open.
    let advice = unsafe {
        libc::posix_fadvise(
            file.as_raw_fd(),
            offset as libc::off_t,
            PAGE as libc::off_t,
            libc::POSIX_FADV_DONTNEED,
        )
    };
    if advice != 0 {
        return Err(format!("cannot drop cached pages: error {advice}"));
    }
    let mut head = vec![0u8; PAGE.min(size) as usize];
    file.read_exact_at(&mut head, offset)
        .map_err(|e| format!("reading the volume's first page at {offset}: {e}"))?;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn header(cmdline: &[u8], kernel: (u64, u64), initrd: (u64, u64)) -> Vec<u8> {
        let mut head = MAGIC.to_vec();
        head.extend_from_slice(&1u32.to_le_bytes());
        head.extend_from_slice(&(cmdline.len() as u32).to_le_bytes());
        for v in [kernel.0, kernel.1, initrd.0, initrd.1] {
            head.extend_from_slice(&v.to_le_bytes());
        }
        head.extend_from_slice(cmdline);
        head.resize(PAGE as usize, 0);
        head
    }

    fn good() -> Vec<u8> {
        header(
            b"console=hvc0 quiet",
            (4096, 8_222_656),
            (8_228_864, 1_650_688),
        )
    }

    #[test]
    fn a_bundle_as_mklinuxapp_makes_it_parses() {
        let b = parse(&good(), 10 * MIB).unwrap();
        assert_eq!(b.kernel, (4096, 8_222_656));
        assert_eq!(b.kernel_pages(), (4096, 8_224_768));
        assert_eq!(b.initramfs, Some((8_228_864, 1_650_688)));
        assert_eq!(b.cmdline, "console=hvc0 quiet");
        assert_eq!(
            b.cmdline_with("linuxapp.report=10.0.2.2:80"),
            "console=hvc0 quiet linuxapp.report=10.0.2.2:80"
        );
        assert_eq!(b.cmdline_with(""), "console=hvc0 quiet");
        let bare = parse(&header(b"", (4096, 100), (0, 0)), MIB).unwrap();
        assert_eq!(bare.initramfs, None);
        assert_eq!(bare.cmdline_with("x=1"), "x=1");
        assert!(is_bundle(&good()));
        assert!(!is_bundle(b"\x7fELF\x02\x01\x01"));
    }

    /// Every malformed header gets its reason, never a panic.
    #[test]
    fn malformed_headers_are_refused_with_the_reason() {
        let cases: Vec<(Vec<u8>, u64, &str)> = vec![
            (b"\x7fELF".to_vec(), MIB, "no LICHENLX magic"),
            (good()[..100].to_vec(), 10 * MIB, "short of 4096"),
            (MAGIC.to_vec(), 10 * MIB, "short of 4096"),
            (
                {
                    let mut h = good();
                    h[8] = 2;
                    h
                },
                10 * MIB,
                "version 2",
            ),
            (
                header(&[b'a'; 1024], (4096, 100), (0, 0)),
                MIB,
                "above 1023",
            ),
            (
                {
                    let mut h = good();
                    h[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
                    h
                },
                10 * MIB,
                "above 1023",
            ),
            (
                header(b"a\nb", (4096, 100), (0, 0)),
                MIB,
                "control characters",
            ),
            (header(b"\xff\xfe", (4096, 100), (0, 0)), MIB, "not UTF-8"),
            (header(b"", (4096, 0), (0, 0)), MIB, "a kernel of 0 bytes"),
            (
                header(b"", (4096, MAX_KERNEL + 1), (0, 0)),
                u64::MAX,
                "1 to",
            ),
            (header(b"", (0, 100), (0, 0)), MIB, "kernel offset 0"),
            (header(b"", (4097, 100), (0, 0)), MIB, "kernel offset 4097"),
            // The truncated volume: the kernel runs past its end.
            (good(), 8 * MIB, "does not fit the volume"),
            (
                header(b"", (u64::MAX - 4095, 100), (0, 0)),
                u64::MAX,
                "does not fit",
            ),
            (
                header(b"", (4096, 100), (8192, 100)),
                MIB,
                "not whole pages",
            ),
            (
                header(b"", (4096, 100), (8192, u64::MAX - 4095)),
                MIB,
                "does not fit",
            ),
            (header(b"", (4096, 100), (MIB, 4096)), MIB, "does not fit"),
            (
                header(b"", (4096, 8192), (8192, 4096)),
                MIB,
                "overlaps the kernel",
            ),
            (
                header(b"", (8192, 4096), (4096, 8192)),
                MIB,
                "overlaps the kernel",
            ),
            (
                header(b"", (4096, 4096), (0, 4096)),
                MIB,
                "initramfs offset 0",
            ),
        ];
        for (head, volume, reason) in cases {
            let error = parse(&head, volume).unwrap_err();
            assert!(error.contains(reason), "{error:?} should say {reason:?}");
        }
    }

    #[test]
    fn the_head_is_read_from_the_volumes_offset() {
        let path = std::env::temp_dir().join(format!("lichen-bundle-{}", std::process::id()));
        let mut disk = vec![0u8; 3 * MIB as usize];
        disk[MIB as usize..MIB as usize + PAGE as usize].copy_from_slice(&good());
        std::fs::write(&path, &disk).unwrap();
        let head = read_head(&path, MIB, 2 * MIB).unwrap();
        assert_eq!(
            parse(&head, 10 * MIB).unwrap().cmdline,
            "console=hvc0 quiet"
        );
        // A volume smaller than a page gives what it has, which is then too short.
        assert_eq!(read_head(&path, MIB, 100).unwrap().len(), 100);
        // Past the disk's end: an error, not a panic.
        assert!(read_head(&path, 3 * MIB - 100, MIB).is_err());
        std::fs::remove_file(&path).unwrap();
    }
}
