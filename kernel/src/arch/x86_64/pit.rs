//! The 8254 PIT, used once at boot to calibrate the TSC where no hypervisor states its rate.

use super::cpu::{inb, outb, rdtsc};
use crate::time::TscScale;

/// The PIT input clock.
const PIT_HZ: u64 = 1_193_182;
/// Calibration window: 5 ms (PIT ticks).
const WINDOW_TICKS: u16 = 5966;

/// Measures the TSC rate against PIT channel 2 over a 5 ms window.
pub fn calibrate_tsc() -> TscScale {
    // SAFETY: port 0x61 gates channel 2 (speaker output kept off), 0x43 is the PIT mode
    // register and 0x42 the channel 2 counter; nothing else uses channel 2.
    let ticks = unsafe {
        outb(0x61, (inb(0x61) & !0x02) | 0x01);
        outb(0x43, 0xb0); // channel 2, lobyte/hibyte, mode 0 (interrupt on terminal count)
        outb(0x42, WINDOW_TICKS as u8);
        outb(0x42, (WINDOW_TICKS >> 8) as u8);
        let start = rdtsc();
        let mut spins = 0u64;
        while inb(0x61) & 0x20 == 0 {
            spins += 1;
            if spins > 100_000_000 {
                break; // no PIT: fall through to the fallback below
            }
        }
        rdtsc() - start
    };
    let hz = ticks * PIT_HZ / u64::from(WINDOW_TICKS);
    // Without a PIT, assume 1 GHz: time will be wrong but the kernel keeps running.
    TscScale::from_hz(if hz > 1_000_000 { hz } else { 1_000_000_000 }).expect("non-zero rate")
}
