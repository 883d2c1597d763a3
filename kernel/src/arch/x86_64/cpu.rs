//! Thin wrappers over the x86-64 instructions the kernel needs.
//!
//! Each function is one instruction (or a short, fixed sequence). Port and MSR accesses are
//! `unsafe`: the caller must know the device or register behind the number.

use core::arch::asm;

/// Result of the CPUID instruction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cpuid {
    /// EAX output.
    pub eax: u32,
    /// EBX output.
    pub ebx: u32,
    /// ECX output.
    pub ecx: u32,
    /// EDX output.
    pub edx: u32,
}

/// Executes CPUID for `leaf` (sub-leaf 0).
pub fn cpuid(leaf: u32) -> Cpuid {
    let r = core::arch::x86_64::__cpuid_count(leaf, 0);
    Cpuid {
        eax: r.eax,
        ebx: r.ebx,
        ecx: r.ecx,
        edx: r.edx,
    }
}

/// Whether the CPU has 1 GiB pages (CPUID 0x80000001 EDX bit 26).
pub fn has_gib_pages() -> bool {
    cpuid(0x8000_0001).edx & (1 << 26) != 0
}

/// Reads the time-stamp counter.
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC is unprivileged here (CR4.TSD is clear) and has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Writes a byte to an I/O port.
///
/// # Safety
/// The port must belong to a device whose state the caller is entitled to change.
#[inline(always)]
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller vouches for the port.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    }
}

/// Writes a 32-bit word to an I/O port.
///
/// # Safety
/// As for [`outb`].
#[inline(always)]
pub unsafe fn outl(port: u16, value: u32) {
    // SAFETY: the caller vouches for the port.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
    }
}

/// Reads a byte from an I/O port.
///
/// # Safety
/// As for [`outb`]: reading some device registers has side effects.
#[inline(always)]
pub unsafe fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: the caller vouches for the port.
    unsafe {
        asm!("in al, dx", out("al") value, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    value
}

/// Reads a model-specific register.
///
/// # Safety
/// The MSR must exist on this CPU (reading a missing one faults).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller vouches that the MSR exists.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes a model-specific register.
///
/// # Safety
/// The MSR must exist and the value must be valid for it.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller vouches for the MSR and the value.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, preserves_flags))
    }
}

/// Reads CR2, the faulting address of the last page fault.
pub fn cr2() -> u64 {
    let value: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) value, options(nomem, nostack, preserves_flags)) }
    value
}

/// Reads CR3, the physical address of the page-table root.
pub fn cr3() -> u64 {
    let value: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) value, options(nomem, nostack, preserves_flags)) }
    value
}

/// Invalidates the TLB entry for the page holding `addr`.
pub fn invlpg(addr: u64) {
    // SAFETY: INVLPG only drops a cached translation.
    unsafe { asm!("invlpg [{}]", in(reg) addr, options(nostack, preserves_flags)) }
}

/// Whether maskable interrupts are enabled (RFLAGS.IF).
pub fn interrupts_enabled() -> bool {
    let flags: u64;
    // SAFETY: reading RFLAGS has no side effects.
    unsafe { asm!("pushfq", "pop {}", out(reg) flags, options(nomem, preserves_flags)) }
    flags & (1 << 9) != 0
}

/// Disables maskable interrupts.
#[inline(always)]
pub fn disable_interrupts() {
    // SAFETY: CLI only masks interrupts; it cannot break memory safety.
    unsafe { asm!("cli", options(nomem, nostack)) }
}

/// Enables maskable interrupts.
#[inline(always)]
pub fn enable_interrupts() {
    // SAFETY: handlers are installed before the first call (see `arch::init`).
    unsafe { asm!("sti", options(nomem, nostack)) }
}

/// Enables interrupts and halts until the next one, atomically: an interrupt that arrives
/// between the two instructions still ends the halt (STI's one-instruction shadow).
#[inline(always)]
pub fn enable_interrupts_and_halt() {
    // SAFETY: as for `enable_interrupts`; HLT resumes on the next interrupt.
    unsafe { asm!("sti", "hlt", options(nomem, nostack)) }
}

/// Halts forever with interrupts off: the last resort when even shutting down failed.
pub fn halt_forever() -> ! {
    loop {
        disable_interrupts();
        // SAFETY: HLT with interrupts off stops this CPU; nothing is left to run.
        unsafe { asm!("hlt", options(nomem, nostack)) }
    }
}

/// Reads the frame-pointer register (RBP).
#[inline(always)]
pub fn frame_pointer() -> u64 {
    let rbp: u64;
    // SAFETY: reading a register has no side effects.
    unsafe { asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags)) }
    rbp
}

/// Whether the CPU has RDRAND (CPUID leaf 1, ECX bit 30).
pub fn has_rdrand() -> bool {
    cpuid(1).ecx & (1 << 30) != 0
}

/// One RDRAND attempt: the random word, or `None` when the DRNG had none ready (CF clear).
///
/// # Safety
/// The CPU must have RDRAND ([`has_rdrand`]).
#[target_feature(enable = "rdrand")]
pub unsafe fn rdrand64() -> Option<u64> {
    let mut value = 0u64;
    // Safe inside this function: the `rdrand` feature is enabled here (the caller checked
    // that the CPU has it); it only writes `value`.
    let ok = core::arch::x86_64::_rdrand64_step(&mut value);
    (ok == 1).then_some(value)
}
