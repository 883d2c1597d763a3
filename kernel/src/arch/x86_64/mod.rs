//! x86-64 support: boot, descriptor tables, traps, the local APIC and CPU instructions.

pub mod apic;
pub mod boot;
pub mod cpu;
pub mod gdt;
pub mod ioapic;
pub mod paging;
pub mod pit;
pub mod trap;

/// Sets up the CPU: the 4 KiB mappings of the first 2 MiB (null page and stack guard unmapped),
/// GDT and TSS, and the IDT. The local APIC is left to [`init_timer`]: a Xen guest whose event
/// channels work never uses it, and under Xen every APIC or PIC access traps to the hypervisor.
///
/// # Safety
/// Call once at boot, with interrupts disabled, before anything else.
pub unsafe fn init(gib_pages: bool) {
    // SAFETY: forwarded: once, at boot, interrupts off.
    unsafe {
        paging::init(gib_pages);
        gdt::init();
        trap::init();
    }
}

/// Sets up the local APIC (8259 PIC masked) and its timer interrupt: TSC-deadline mode if the
/// CPU has it; else one-shot mode, whose
/// APIC timer rate is measured against the TSC (over 1 ms) when the timer is first armed, so
/// that boot does not wait for it (and never does where the timer is not used: Xen guests with
/// event channels).
///
/// # Safety
/// Call once per boot, with interrupts disabled.
pub unsafe fn init_timer() {
    // SAFETY: forwarded: once, interrupts off.
    unsafe { apic::init() };
    if apic::has_tsc_deadline() {
        apic::use_tsc_deadline();
    } else {
        apic::use_uncalibrated();
    }
}

/// Measures the APIC timer rate against the TSC over 1 ms and selects one-shot mode with it.
fn calibrate_apic_timer() {
    let Some(scale) = crate::time::scale() else {
        return;
    };
    let window = scale.ns_to_ticks(1_000_000);
    apic::start_free_running();
    let start = cpu::rdtsc();
    let count_start = apic::current_count();
    while cpu::rdtsc() - start < window {
        core::hint::spin_loop();
    }
    let elapsed = cpu::rdtsc() - start;
    let counted = u64::from(count_start - apic::current_count());
    apic::use_one_shot(((u128::from(counted) << 32) / u128::from(elapsed.max(1))) as u64);
}
