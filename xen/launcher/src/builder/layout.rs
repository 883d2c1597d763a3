//! Where the builder puts things in a new PVH domain's memory, and the boot information it
//! hands the guest (`struct hvm_start_info`, version 1, with its memory map, module list and
//! command line).
//!
//! Guest-physical layout (the same places libxenguest uses for the special pages):
//!
//! ```text
//! 0 .. RAM end                 RAM (E820 type 1); the kernel's segments (lichen: at 1 MiB),
//!                              then, page aligned, the boot information, then the ramdisk
//! 0xfeff8000 .. 0xff000000     special pages (E820 reserved): xenstore ring at 0xfeffc000,
//!                              console ring at 0xfefff000
//! ```

use super::elf::Image;

/// The guest page size.
pub const PAGE: u64 = 4096;
/// `X86_HVM_END_SPECIAL_REGION` (a frame number): the special pages end here.
const SPECIAL_END_PFN: u64 = 0xff000;
/// `X86_HVM_NR_SPECIAL_PAGES`.
const SPECIAL_PAGES: u64 = 8;
/// The first special frame.
pub const SPECIAL_BASE_PFN: u64 = SPECIAL_END_PFN - SPECIAL_PAGES;
/// libxenguest's `SPECIALPAGE_XENSTORE`.
pub const XENSTORE_PFN: u64 = SPECIAL_BASE_PFN + 4;
/// libxenguest's `SPECIALPAGE_CONSOLE`.
pub const CONSOLE_PFN: u64 = SPECIAL_BASE_PFN + 7;
/// `hvm_start_info.magic`.
const START_INFO_MAGIC: u32 = 0x336e_c578;
/// Size of `struct hvm_start_info` (version 1).
const START_INFO_SIZE: u64 = 56;
/// Size of `struct hvm_memmap_table_entry`.
const MEMMAP_ENTRY_SIZE: u64 = 24;
/// Size of `struct hvm_modlist_entry`.
const MODLIST_ENTRY_SIZE: u64 = 32;
/// E820 types.
const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;
/// The longest command line accepted (the guest kernel reads at most 4 KiB of it).
pub const MAX_CMDLINE: usize = 4095;

/// Where everything goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// RAM pages (frames 0..ram_pages).
    pub ram_pages: u64,
    /// Physical address of the start info; the boot information follows it.
    pub start_info: u64,
    /// The boot information's bytes, to copy at `start_info`.
    pub boot_info: Vec<u8>,
    /// Physical address of the ramdisk, if there is one.
    pub ramdisk: Option<u64>,
}

fn align_up(value: u64) -> u64 {
    value.div_ceil(PAGE) * PAGE
}

/// Plans a domain of `memory_mib` MiB for `image`, with `cmdline` and a ramdisk of
/// `ramdisk_len` bytes (if any).
pub fn plan(
    memory_mib: u32,
    image: &Image,
    cmdline: &str,
    ramdisk_len: Option<u64>,
) -> Result<Layout, String> {
    let ram_end = u64::from(memory_mib) << 20;
    if ram_end > SPECIAL_BASE_PFN * PAGE {
        return Err(format!(
            "{memory_mib} MiB reaches the special pages at {:#x}: not supported by this builder",
            SPECIAL_BASE_PFN * PAGE
        ));
    }
    if cmdline.len() > MAX_CMDLINE || cmdline.contains('\0') {
        return Err("command line too long or with a NUL byte".into());
    }
    for s in &image.segments {
        if s.paddr < PAGE || s.paddr + s.memsz > ram_end {
            return Err(format!(
                "the image loads at {:#x}..{:#x}, outside the guest's RAM (1 page..{ram_end:#x})",
                s.paddr,
                s.paddr + s.memsz
            ));
        }
    }
    let start_info = align_up(image.end());
    let memmap = start_info + START_INFO_SIZE;
    let modlist = memmap + 2 * MEMMAP_ENTRY_SIZE;
    let modules = u64::from(ramdisk_len.is_some());
    let cmdline_at = modlist + modules * MODLIST_ENTRY_SIZE;
    let info_end = cmdline_at + cmdline.len() as u64 + 1;
    let ramdisk = ramdisk_len.map(|_| align_up(info_end));
    let end = match (ramdisk, ramdisk_len) {
        (Some(at), Some(len)) => at + len,
        _ => info_end,
    };
    if end > ram_end {
        return Err(format!(
            "image, boot information and ramdisk need {} KiB: more than the {memory_mib} MiB of RAM",
            end.div_ceil(1024)
        ));
    }

    let mut info = Vec::with_capacity((info_end - start_info) as usize);
    let u32s = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_le_bytes());
    let u64s = |v: &mut Vec<u8>, x: u64| v.extend_from_slice(&x.to_le_bytes());
    u32s(&mut info, START_INFO_MAGIC);
    u32s(&mut info, 1); // version
    u32s(&mut info, 0); // flags
    u32s(&mut info, modules as u32);
    u64s(&mut info, if modules > 0 { modlist } else { 0 });
    u64s(&mut info, cmdline_at);
    u64s(&mut info, 0); // rsdp_paddr: no ACPI tables
    u64s(&mut info, memmap);
    u32s(&mut info, 2); // memmap_entries
    u32s(&mut info, 0);
    for (addr, size, kind) in [
        (0, ram_end, E820_RAM),
        (SPECIAL_BASE_PFN * PAGE, SPECIAL_PAGES * PAGE, E820_RESERVED),
    ] {
        u64s(&mut info, addr);
        u64s(&mut info, size);
        u32s(&mut info, kind);
        u32s(&mut info, 0);
    }
    if let (Some(at), Some(len)) = (ramdisk, ramdisk_len) {
        u64s(&mut info, at);
        u64s(&mut info, len);
        u64s(&mut info, 0); // cmdline_paddr
        u64s(&mut info, 0);
    }
    info.extend_from_slice(cmdline.as_bytes());
    info.push(0);
    debug_assert_eq!(info.len() as u64, info_end - start_info);
    Ok(Layout {
        ram_pages: ram_end / PAGE,
        start_info,
        boot_info: info,
        ramdisk,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::elf::{parse, tests::image};

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn boot_information_follows_the_image_and_describes_ram_and_special_pages() {
        let elf = parse(&image(&[0x90; 100], 5000, 0x100000)).unwrap();
        let layout = plan(16, &elf, "a=1", None).unwrap();
        assert_eq!(layout.ram_pages, 4096);
        assert_eq!(layout.start_info, 0x102000);
        let b = &layout.boot_info;
        assert_eq!(&b[..4], &START_INFO_MAGIC.to_le_bytes());
        assert_eq!(u64_at(b, 16), 0, "no module list");
        let cmdline = u64_at(b, 24);
        assert_eq!(&b[(cmdline - layout.start_info) as usize..], b"a=1\0");
        let memmap = (u64_at(b, 40) - layout.start_info) as usize;
        assert_eq!(u64_at(b, memmap + 8), 16 << 20);
        assert_eq!(u64_at(b, memmap + 24), 0xfeff8000);
        assert_eq!(layout.ramdisk, None);
    }

    #[test]
    fn a_ramdisk_is_a_module_on_its_own_pages() {
        let elf = parse(&image(&[0x90; 100], 0, 0x100000)).unwrap();
        let layout = plan(16, &elf, "", Some(10_000)).unwrap();
        let b = &layout.boot_info;
        assert_eq!(u32::from_le_bytes(b[12..16].try_into().unwrap()), 1);
        let modlist = (u64_at(b, 16) - layout.start_info) as usize;
        let at = layout.ramdisk.unwrap();
        assert_eq!(at % PAGE, 0);
        assert!(at > layout.start_info);
        assert_eq!(u64_at(b, modlist), at);
        assert_eq!(u64_at(b, modlist + 8), 10_000);
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let elf = parse(&image(&[0x90; 100], 0, 0x100000)).unwrap();
        assert!(plan(1, &elf, "", None).unwrap_err().contains("outside"));
        assert!(plan(2, &elf, "", Some(2 << 20))
            .unwrap_err()
            .contains("more than"));
        assert!(plan(4096, &elf, "", None)
            .unwrap_err()
            .contains("special pages"));
        assert!(plan(16, &elf, &"x".repeat(5000), None).is_err());
    }
}
