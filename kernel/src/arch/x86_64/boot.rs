//! PVH entry: from 32-bit protected mode with paging off to Rust in 64-bit long mode.
//!
//! Xen's domain builder and QEMU's PVH loader both jump to the address in the
//! `XEN_ELFNOTE_PHYS32_ENTRY` note with EBX holding the physical address of `hvm_start_info`,
//! paging off and interrupts disabled. The stub below records the TSC (for boot timing) and the
//! start-info address, maps only the image (2 MiB pages from 0 to its end, in a page directory
//! of its own), enables SSE, PAE and long mode, and calls [`kernel_entry`](crate::boot::kernel_entry);
//! `paging::init` then maps 0..4 GiB, with 4 KiB pages for the first 2 MiB.
//!
//! The stub makes as few VM exits as it can: under Xen (HVM container) the CR4, EFER and CR0
//! writes trap to the hypervisor, and under Xen in QEMU's TCG each exit costs milliseconds
//! (docs/BENCHMARKS.md, boot). It asks CPUID nothing (an exit too) and writes EFER without
//! reading it first.
//!
//! The stub does not zero .bss: .bss is the part of the load segment past its file size, which
//! the ELF specification defines as zero and every PVH loader lichen boots under fills with
//! zeroes: Xen's libelf (`elf_load_image`), QEMU's ELF loader (fresh guest RAM, and since QEMU
//! 6.1 `rom_reset` zeroes it again on reset) and the launcher's own domain builder
//! (xen/launcher/src/builder). With paging off some nested hypervisors emulate every store
//! (about 1.6 us each), so the 12 pages of .bss cost milliseconds to zero by hand.

use core::arch::global_asm;

/// Size of the boot (and only) kernel stack.
pub const STACK_SIZE: usize = 128 * 1024;

/// Page size of the 4 KiB mappings.
pub const PAGE_SIZE: usize = 4096;

/// One page table page: 512 entries.
#[repr(C, align(4096))]
pub struct PageTable(pub [u64; 512]);

/// The boot page tables: PML4, one PDPT, four page directories (4 GiB of 2 MiB pages), one
/// page table for the first 2 MiB, and the entry stub's page directory. Placed first in .bss so
/// they are page aligned.
#[repr(C, align(4096))]
pub struct BootPageTables {
    /// Level 4.
    pub pml4: PageTable,
    /// Level 3: entries 0..4 point at `pd` (in the entry stub, entry 0 points at `stub_pd`).
    pub pdpt: PageTable,
    /// Level 2: 2048 entries of 2 MiB pages, except entry 0 which points at `pt0`.
    pub pd: [PageTable; 4],
    /// Level 1 for the first 2 MiB.
    pub pt0: PageTable,
    /// The entry stub's level 2: the image's 2 MiB pages from address 0, until
    /// [`crate::arch::paging::init`] links `pd` instead. A page of its own, never written once
    /// it was live: under shadow paging a write to a page that was a live table traps.
    pub stub_pd: PageTable,
}

/// The kernel stack with one page under it that is unmapped at boot: running off the end of the
/// stack faults instead of silently corrupting memory.
#[repr(C, align(4096))]
pub struct BootStack {
    /// Left unmapped by [`crate::arch::paging::init`].
    pub guard: [u8; PAGE_SIZE],
    /// The stack proper; it grows down from its end.
    pub stack: [u8; STACK_SIZE],
}

/// Boot page tables (zeroed with .bss, filled by the entry stub).
#[unsafe(link_section = ".bss.pagetables")]
#[unsafe(no_mangle)]
pub static mut BOOT_PAGE_TABLES: BootPageTables = BootPageTables {
    pml4: PageTable([0; 512]),
    pdpt: PageTable([0; 512]),
    pd: [const { PageTable([0; 512]) }; 4],
    pt0: PageTable([0; 512]),
    stub_pd: PageTable([0; 512]),
};

/// The kernel stack (in `.stacks`: not zeroed at boot).
#[unsafe(link_section = ".stacks")]
#[unsafe(no_mangle)]
pub static mut BOOT_STACK: BootStack = BootStack {
    guard: [0; PAGE_SIZE],
    stack: [0; STACK_SIZE],
};

/// TSC value read by the very first instruction after the PVH entry (kept in .data: .bss is
/// zeroed after it is written).
#[unsafe(no_mangle)]
pub static mut BOOT_TSC: u64 = 1;

/// Physical address of `hvm_start_info`, as passed in EBX.
#[unsafe(no_mangle)]
pub static mut START_INFO_PADDR: u32 = 1;

// The ELF note that makes this image PVH-bootable (Xen and QEMU).
global_asm!(
    r#"
    .pushsection .note.Xen, "a", @note
    .p2align 2
    .long 4
    .long 4
    .long 18
    .asciz "Xen"
    .long pvh_start32
    .popsection
"#
);

// 32-bit entry. Flags (architecture manuals): CR4.PAE = bit 5, CR4.OSFXSR = bit 9,
// CR4.OSXMMEXCPT = bit 10; CR0.MP = bit 1, CR0.EM = bit 2, CR0.WP = bit 16, CR0.PG = bit 31;
// EFER = MSR 0xC0000080, EFER.LME = bit 8. Page entry bits: P = 1, RW = 2, PS (2 MiB) = 0x80.
global_asm!(
    r#"
    .pushsection .text.boot, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    mov esi, ebx
    rdtsc
    mov dword ptr [{boot_tsc}], eax
    mov dword ptr [{boot_tsc} + 4], edx
    mov dword ptr [{start_info}], esi

    /* No zeroing of .bss: it lies in the load segment's memsz beyond its filesz, which the
       ELF loader fills with zeroes (the ELF specification requires it; Xen's libelf
       `elf_load_image` and QEMU's ROM loader do it; see the module docs). */

    /* PML4[0] -> PDPT; PDPT[0] -> stub_pd, whose entries map 2 MiB pages from 0 to the image's end
       (below 1 GiB, lichen.ld checks): a few stores. Every store here counts: some nested
       hypervisors emulate this paging-off code store by store. The upper halves of every
       entry stay zero (all addresses < 4 GiB). `paging::init` maps the rest with paging on,
       where filling a page that is not a live table yet costs plain stores. No CPUID for
       1 GiB pages: under Xen it is a VM exit. */
    mov edi, offset {tables}
    lea eax, [edi + 4096 + 3]
    mov dword ptr [edi], eax
    lea ebx, [edi + 7 * 4096]
    lea eax, [ebx + 3]
    mov dword ptr [edi + 4096], eax
    xor edx, edx
2:
    lea eax, [edx + 0x83]
    mov dword ptr [ebx], eax
    add ebx, 8
    add edx, 0x200000
    cmp edx, offset __image_end
    jb 2b

    /* SSE, PAE; page tables; long mode; paging */
    mov eax, cr4
    or eax, (1 << 5) | (1 << 9) | (1 << 10)
    mov cr4, eax
    mov cr3, edi
    /* EFER is written, not read and modified: LME is the only bit lichen wants, and reading
       EFER is one more VM exit under Xen (milliseconds each under QEMU's TCG). */
    mov ecx, 0xC0000080
    mov eax, 1 << 8
    xor edx, edx
    wrmsr
    mov eax, cr0
    and eax, ~(1 << 2)
    or eax, (1 << 1) | (1 << 16) | (1 << 31)
    mov cr0, eax

    lgdt [lichen_boot_gdt_ptr]
    /* PVH leaves ESP undefined: switch to the kernel stack before the far return */
    mov esp, offset {stack} + {stack_top}
    mov eax, offset lichen_entry64
    push 0x08
    push eax
    retf

    .code64
lichen_entry64:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    lea rsp, [{stack} + {stack_top}]
    xor ebp, ebp
    call {kernel_entry}
    ud2
    .popsection

    .pushsection .rodata
    .p2align 3
lichen_boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
lichen_boot_gdt_ptr:
    .word 3 * 8 - 1
    .long lichen_boot_gdt
    .popsection
"#,
    boot_tsc = sym BOOT_TSC,
    start_info = sym START_INFO_PADDR,
    tables = sym BOOT_PAGE_TABLES,
    stack = sym BOOT_STACK,
    stack_top = const PAGE_SIZE + STACK_SIZE,
    kernel_entry = sym crate::boot::kernel_entry,
);
