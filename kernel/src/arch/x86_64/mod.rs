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
/// GDT and TSS, IDT and the local APIC.
///
/// # Safety
/// Call once at boot, with interrupts disabled, before anything else.
pub unsafe fn init() {
    // SAFETY: forwarded: once, at boot, interrupts off.
    unsafe {
        paging::init();
        gdt::init();
        trap::init();
        apic::init();
    }
}

/// Sets up the timer interrupt: TSC-deadline mode if the CPU has it; else one-shot mode, whose
/// APIC timer rate is measured against the TSC (over 1 ms) when the timer is first armed, so
/// that boot does not wait for it (and never does where the timer is not used: Xen guests with
/// event channels).
pub fn init_timer() {
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
