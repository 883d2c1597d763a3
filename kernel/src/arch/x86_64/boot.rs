//! PVH entry: from 32-bit protected mode with paging off to Rust in 64-bit long mode.
//!
//! Xen's domain builder and QEMU's PVH loader both jump to the address in the
//! `XEN_ELFNOTE_PHYS32_ENTRY` note with EBX holding the physical address of `hvm_start_info`,
//! paging off and interrupts disabled. The stub below records the TSC (for boot timing) and the
//! start-info address, zeroes .bss, builds identity page tables for the first 4 GiB (4 KiB pages
//! for the first 2 MiB, so that page 0 and the stack guard can be unmapped, 2 MiB pages above),
//! enables SSE, PAE and long mode, and calls [`kernel_entry`](crate::boot::kernel_entry).

use core::arch::global_asm;

/// Size of the boot (and only) kernel stack.
pub const STACK_SIZE: usize = 128 * 1024;

/// Page size of the 4 KiB mappings.
pub const PAGE_SIZE: usize = 4096;

/// One page table page: 512 entries.
#[repr(C, align(4096))]
pub struct PageTable(pub [u64; 512]);

/// The boot page tables: PML4, one PDPT, four page directories (4 GiB of 2 MiB pages) and one
/// page table for the first 2 MiB. Placed first in .bss so they are page aligned.
#[repr(C, align(4096))]
pub struct BootPageTables {
    /// Level 4.
    pub pml4: PageTable,
    /// Level 3: entries 0..4 point at `pd`.
    pub pdpt: PageTable,
    /// Level 2: 2048 entries of 2 MiB pages, except entry 0 which points at `pt0`.
    pub pd: [PageTable; 4],
    /// Level 1 for the first 2 MiB.
    pub pt0: PageTable,
}

/// The kernel stack with one page under it that is unmapped at boot: running off the end of the
/// stack faults instead of silently corrupting memory.
#[repr(C, align(4096))]
pub struct BootStack {
    /// Unmapped by [`crate::arch::paging::protect_stack_guard`].
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

    /* zero .bss (page tables and stack included) */
    mov edi, offset __bss_start
    mov ecx, offset __bss_end
    sub ecx, edi
    shr ecx, 2
    xor eax, eax
    rep stosd

    /* PML4[0] -> PDPT; PDPT[0] -> PD0 */
    mov edi, offset {tables}
    lea eax, [edi + 4096 + 3]
    mov dword ptr [edi], eax
    lea eax, [edi + 8192 + 3]
    mov dword ptr [edi + 4096], eax

    /* 1..4 GiB: 1 GiB pages when the CPU has them (CPUID 0x80000001 EDX bit 26), else
       PDPT[1..4] -> PD1..PD3 of 2 MiB pages. Every store here counts: some nested hypervisors
       emulate this paging-off code store by store. EDX ends up as the number of PD entries. */
    mov eax, 0x80000001
    cpuid
    bt edx, 26
    jnc 4f
    mov dword ptr [edi + 4096 + 8], 0x40000083
    mov dword ptr [edi + 4096 + 16], 0x80000083
    mov dword ptr [edi + 4096 + 24], 0xc0000083
    mov edx, 512
    jmp 5f
4:
    lea eax, [edi + 3 * 4096 + 3]
    mov dword ptr [edi + 4096 + 8], eax
    add eax, 4096
    mov dword ptr [edi + 4096 + 16], eax
    add eax, 4096
    mov dword ptr [edi + 4096 + 24], eax
    mov edx, 2048
5:
    /* PD entries: 2 MiB pages from 0 */
    lea ebx, [edi + 8192]
    xor ecx, ecx
2:
    mov eax, ecx
    shl eax, 21
    or eax, 0x83
    mov dword ptr [ebx + ecx * 8], eax
    mov eax, ecx
    shr eax, 11
    mov dword ptr [ebx + ecx * 8 + 4], eax
    inc ecx
    cmp ecx, edx
    jne 2b

    /* PD0[0] -> PT0, which maps 4 KiB pages 1..512 (page 0 stays unmapped: null pointers fault) */
    lea eax, [edi + 6 * 4096 + 3]
    mov dword ptr [ebx], eax
    lea ebx, [edi + 6 * 4096]
    mov ecx, 1
3:
    mov eax, ecx
    shl eax, 12
    or eax, 3
    mov dword ptr [ebx + ecx * 8], eax
    inc ecx
    cmp ecx, 512
    jne 3b

    /* SSE, PAE; page tables; long mode; paging */
    mov eax, cr4
    or eax, (1 << 5) | (1 << 9) | (1 << 10)
    mov cr4, eax
    mov cr3, edi
    mov ecx, 0xC0000080
    rdmsr
    or eax, (1 << 8)
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
