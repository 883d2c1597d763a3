//! The PVH start-info block: where the loader says what it handed over.
//!
//! Layout (Xen's `hvm_start_info`, version 1): magic, version, flags, number of modules (u32
//! each); module list, command line and RSDP addresses (u64 each); memory map address (u64),
//! entry count (u32) and a reserved u32. Every address is physical; the kernel identity-maps the
//! first 4 GiB, so physical addresses below that are directly usable.

use core::ops::Range;

/// `hvm_start_info.magic`.
pub const MAGIC: u32 = 0x336e_c578;

/// The start-info block as laid out in memory.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct StartInfo {
    /// [`MAGIC`].
    pub magic: u32,
    /// 0 (no memory map) or 1.
    pub version: u32,
    /// Flags (unused by lichen).
    pub flags: u32,
    /// Number of entries in the module list.
    pub nr_modules: u32,
    /// Physical address of `nr_modules` [`Module`]s.
    pub modlist_paddr: u64,
    /// Physical address of the NUL-terminated command line, or 0.
    pub cmdline_paddr: u64,
    /// Physical address of the ACPI RSDP, or 0.
    pub rsdp_paddr: u64,
    /// Physical address of the memory map (version >= 1).
    pub memmap_paddr: u64,
    /// Number of memory-map entries (version >= 1).
    pub memmap_entries: u32,
    /// Reserved.
    pub reserved: u32,
}

/// One memory-map entry (E820 style).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryMapEntry {
    /// Start address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// E820 type: see [`MemoryMapEntry::RAM`].
    pub kind: u32,
    /// Reserved.
    pub reserved: u32,
}

impl MemoryMapEntry {
    /// E820 type of usable RAM.
    pub const RAM: u32 = 1;

    /// The address range, saturating at the top of the address space.
    pub fn range(&self) -> Range<u64> {
        self.addr..self.addr.saturating_add(self.size)
    }
}

/// One module handed over by the loader.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Module {
    /// Physical address.
    pub paddr: u64,
    /// Size in bytes.
    pub size: u64,
    /// Physical address of the module's command line, or 0.
    pub cmdline_paddr: u64,
    /// Reserved.
    pub reserved: u64,
}

/// What the start-info block says, validated.
#[derive(Clone, Copy, Debug)]
pub struct BootInfo {
    /// The command line (empty if none, or not UTF-8).
    pub cmdline: &'static str,
    /// The memory map.
    pub memory_map: &'static [MemoryMapEntry],
    /// Modules.
    pub modules: &'static [Module],
    /// Physical address of the start-info block itself.
    pub start_info_paddr: u64,
}

/// Why the start-info block could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartInfoError {
    /// No start-info address was passed.
    Missing,
    /// The magic number is wrong: this was not a PVH boot.
    BadMagic(u32),
    /// Version 0 blocks have no memory map.
    NoMemoryMap,
}

/// Longest command line accepted; anything longer is cut at this length.
pub const MAX_CMDLINE: usize = 4096;

impl BootInfo {
    /// Reads and validates the block at physical address `paddr`.
    ///
    /// # Safety
    /// `paddr` must be what the PVH loader passed in EBX, and the memory it describes must be
    /// identity mapped and left untouched for the life of the kernel.
    #[cfg(target_os = "none")]
    pub unsafe fn read(paddr: u64) -> Result<BootInfo, StartInfoError> {
        if paddr == 0 {
            return Err(StartInfoError::Missing);
        }
        // SAFETY: the caller guarantees the block is mapped; it is plain old data.
        let info = unsafe { core::ptr::read_unaligned(paddr as *const StartInfo) };
        if info.magic != MAGIC {
            return Err(StartInfoError::BadMagic(info.magic));
        }
        if info.version < 1 || info.memmap_paddr == 0 {
            return Err(StartInfoError::NoMemoryMap);
        }
        // SAFETY: the loader placed these tables in memory it reserved for us (see above).
        unsafe {
            let memory_map = core::slice::from_raw_parts(
                info.memmap_paddr as *const MemoryMapEntry,
                info.memmap_entries as usize,
            );
            let modules = if info.nr_modules == 0 || info.modlist_paddr == 0 {
                &[][..]
            } else {
                core::slice::from_raw_parts(
                    info.modlist_paddr as *const Module,
                    info.nr_modules as usize,
                )
            };
            let cmdline = c_string(info.cmdline_paddr);
            Ok(BootInfo {
                cmdline,
                memory_map,
                modules,
                start_info_paddr: paddr,
            })
        }
    }

    /// Memory the kernel must not reuse: the block, its tables, the command line and modules.
    pub fn reserved_ranges(&self, mut f: impl FnMut(Range<u64>)) {
        f(self.start_info_paddr..self.start_info_paddr + core::mem::size_of::<StartInfo>() as u64);
        f(span_of(self.memory_map));
        f(span_of(self.modules));
        if !self.cmdline.is_empty() {
            f(span_of(self.cmdline.as_bytes()));
        }
        for module in self.modules {
            f(module.paddr..module.paddr.saturating_add(module.size));
        }
    }
}

fn span_of<T>(slice: &[T]) -> Range<u64> {
    let start = slice.as_ptr() as u64;
    start..start + core::mem::size_of_val(slice) as u64 + 1
}

/// The NUL-terminated string at `paddr`, up to [`MAX_CMDLINE`] bytes; empty if absent or not UTF-8.
///
/// # Safety
/// `paddr` must be 0 or point at mapped memory holding a NUL within [`MAX_CMDLINE`] bytes, or
/// at least [`MAX_CMDLINE`] readable bytes.
#[cfg(target_os = "none")]
unsafe fn c_string(paddr: u64) -> &'static str {
    if paddr == 0 {
        return "";
    }
    let base = paddr as *const u8;
    let mut len = 0;
    // SAFETY: bounded by MAX_CMDLINE, within the memory the caller vouches for.
    while len < MAX_CMDLINE && unsafe { *base.add(len) } != 0 {
        len += 1;
    }
    // SAFETY: `len` bytes were just read from this memory.
    let bytes = unsafe { core::slice::from_raw_parts(base, len) };
    core::str::from_utf8(bytes).unwrap_or("")
}
