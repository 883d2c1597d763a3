//! The local APIC: interrupt acknowledgement and the one-shot timer behind `sleep`.
//!
//! The timer runs in TSC-deadline mode when the CPU has it (one MSR write per arming, no
//! calibration); otherwise in one-shot mode with a count derived from the calibrated APIC
//! timer rate. The legacy 8259 PICs are masked: every interrupt comes through the APIC.

use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use super::cpu;
use super::trap::{SPURIOUS_VECTOR, TIMER_VECTOR};

/// xAPIC MMIO base (identity mapped by the boot page tables).
const BASE: usize = 0xfee0_0000;
const REG_EOI: usize = 0xb0;
const REG_SPURIOUS: usize = 0xf0;
const REG_LVT_TIMER: usize = 0x320;
const REG_LVT_LINT0: usize = 0x350;
const REG_LVT_LINT1: usize = 0x360;
const REG_LVT_ERROR: usize = 0x370;
const REG_TIMER_INITIAL: usize = 0x380;
const REG_TIMER_CURRENT: usize = 0x390;
const REG_TIMER_DIVIDE: usize = 0x3e0;
const LVT_MASKED: u32 = 1 << 16;
const LVT_TSC_DEADLINE: u32 = 0b10 << 17;
const MSR_TSC_DEADLINE: u32 = 0x6e0;
/// Divide configuration value meaning "divide by 1".
const DIVIDE_BY_1: u32 = 0b1011;

/// How the timer is programmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerMode {
    /// Not initialised.
    None = 0,
    /// IA32_TSC_DEADLINE holds the absolute TSC deadline.
    TscDeadline = 1,
    /// The initial-count register counts down at the calibrated APIC timer rate.
    OneShot = 2,
    /// One-shot mode, its rate to be measured when the timer is first armed.
    Uncalibrated = 3,
}

static MODE: AtomicU8 = AtomicU8::new(TimerMode::None as u8);
/// APIC timer ticks per 2^32 TSC ticks (one-shot mode only).
static TICKS_PER_TSC_Q32: AtomicU64 = AtomicU64::new(0);

fn read(reg: usize) -> u32 {
    // SAFETY: BASE is the local APIC's MMIO window, identity mapped; `reg` is a register offset.
    unsafe { read_volatile((BASE + reg) as *const u32) }
}

fn write(reg: usize, value: u32) {
    // SAFETY: as for `read`.
    unsafe { write_volatile((BASE + reg) as *mut u32, value) }
}

/// Whether the CPU supports TSC-deadline mode (CPUID.1:ECX bit 24).
pub fn has_tsc_deadline() -> bool {
    cpu::cpuid(1).ecx & (1 << 24) != 0
}

/// Masks the legacy PICs and software-enables the local APIC with the timer masked.
///
/// # Safety
/// Call once at boot with interrupts disabled.
pub unsafe fn init() {
    // SAFETY: ports 0x21 and 0xa1 are the 8259 data ports; writing 0xff masks every line.
    unsafe {
        cpu::outb(0x21, 0xff);
        cpu::outb(0xa1, 0xff);
    }
    write(REG_SPURIOUS, (1 << 8) | u32::from(SPURIOUS_VECTOR));
    write(REG_LVT_LINT0, LVT_MASKED);
    write(REG_LVT_LINT1, LVT_MASKED);
    write(REG_LVT_ERROR, LVT_MASKED);
    write(REG_LVT_TIMER, LVT_MASKED);
}

/// Selects TSC-deadline mode.
pub fn use_tsc_deadline() {
    write(REG_LVT_TIMER, LVT_TSC_DEADLINE | u32::from(TIMER_VECTOR));
    MODE.store(TimerMode::TscDeadline as u8, Ordering::Relaxed);
}

/// Selects one-shot mode with the given rate, in APIC ticks per 2^32 TSC ticks.
pub fn use_one_shot(ticks_per_tsc_q32: u64) {
    write(REG_TIMER_DIVIDE, DIVIDE_BY_1);
    write(REG_LVT_TIMER, u32::from(TIMER_VECTOR));
    TICKS_PER_TSC_Q32.store(ticks_per_tsc_q32.max(1), Ordering::Relaxed);
    MODE.store(TimerMode::OneShot as u8, Ordering::Relaxed);
}

/// Selects one-shot mode with a rate measured on the first [`arm`].
pub fn use_uncalibrated() {
    MODE.store(TimerMode::Uncalibrated as u8, Ordering::Relaxed);
}

/// Starts the APIC timer counting down from its maximum, masked, for calibration.
pub fn start_free_running() {
    write(REG_TIMER_DIVIDE, DIVIDE_BY_1);
    write(REG_LVT_TIMER, LVT_MASKED);
    write(REG_TIMER_INITIAL, u32::MAX);
}

/// Current count of the free-running timer.
pub fn current_count() -> u32 {
    read(REG_TIMER_CURRENT)
}

/// Arms the timer to fire at TSC value `deadline` (immediately if it has passed).
pub fn arm(deadline: u64) {
    match MODE.load(Ordering::Relaxed) {
        m if m == TimerMode::TscDeadline as u8 => {
            // SAFETY: TSC-deadline mode was selected only after CPUID reported the MSR.
            unsafe { cpu::wrmsr(MSR_TSC_DEADLINE, deadline.max(1)) }
        }
        m if m == TimerMode::OneShot as u8 => {
            let delta = deadline.saturating_sub(cpu::rdtsc());
            let ticks =
                (u128::from(delta) * u128::from(TICKS_PER_TSC_Q32.load(Ordering::Relaxed))) >> 32;
            // A count of 0 stops the timer: fire as soon as possible instead. A deadline
            // further than the counter can reach fires early and the executor re-arms.
            write(
                REG_TIMER_INITIAL,
                ticks.clamp(1, u128::from(u32::MAX)) as u32,
            );
        }
        m if m == TimerMode::Uncalibrated as u8 => {
            super::calibrate_apic_timer();
            if MODE.load(Ordering::Relaxed) == TimerMode::OneShot as u8 {
                arm(deadline);
            }
        }
        _ => {}
    }
}

/// Signals end of interrupt to the local APIC.
pub fn end_of_interrupt() {
    write(REG_EOI, 0);
}
