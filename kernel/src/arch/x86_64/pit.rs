//! The 8254 PIT, used once at boot to calibrate the TSC where no hypervisor states its rate.
//!
//! Channel 0 runs as a rate generator from 0xffff and its count is latched and read back, so
//! no gate or speaker port is needed (QEMU's microvm has none).

use super::cpu::{inb, outb, rdtsc};
use crate::time::TscScale;

/// The PIT input clock.
const PIT_HZ: u64 = 1_193_182;
/// Calibration window: 5 ms in PIT ticks.
const WINDOW_TICKS: u64 = 5966;
/// Give up after this many TSC ticks without the window elapsing (no PIT).
const GIVE_UP_TSC: u64 = 20_000_000_000;

fn read_count() -> u16 {
    // SAFETY: 0x43 is the PIT mode port (0x00 latches channel 0), 0x40 channel 0's data port.
    unsafe {
        outb(0x43, 0x00);
        let lo = inb(0x40);
        let hi = inb(0x40);
        u16::from_le_bytes([lo, hi])
    }
}

/// Measures the TSC rate against PIT channel 0 over a 5 ms window.
pub fn calibrate_tsc() -> TscScale {
    // SAFETY: channel 0, lobyte/hibyte, mode 2, count 0xffff; its interrupt line is masked at
    // the PIC and the I/O APIC, and nothing else uses the PIT.
    unsafe {
        outb(0x43, 0x34);
        outb(0x40, 0xff);
        outb(0x40, 0xff);
    }
    let first = read_count();
    let start = rdtsc();
    loop {
        let elapsed_ticks = u64::from(first.wrapping_sub(read_count()));
        let end = rdtsc();
        if elapsed_ticks >= WINDOW_TICKS {
            let hz =
                (u128::from(end - start) * u128::from(PIT_HZ) / u128::from(elapsed_ticks)) as u64;
            if let Some(scale) = TscScale::from_hz(hz) {
                return scale;
            }
            break;
        }
        if end - start > GIVE_UP_TSC {
            break;
        }
    }
    // No working PIT: assume 1 GHz. Time will be off but the kernel keeps running.
    crate::warn!("no PIT to calibrate the TSC against: assuming 1 GHz");
    TscScale::from_hz(1_000_000_000).expect("non-zero rate")
}
