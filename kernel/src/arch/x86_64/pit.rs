//! The 8254 PIT, used once at boot to calibrate the TSC where no hypervisor states its rate.
//!
//! Channel 0 counts down once from 0xffff (mode 0: its output goes high at zero, 55 ms later);
//! boot starts it ([`start_calibration`]) and the first user of the clock finishes the
//! measurement ([`finish_calibration`]), waiting only if fewer than 5 ms have passed. The count
//! and the output pin are latched together with the read-back command, so no gate or speaker
//! port is needed (QEMU's microvm has none). If the count already reached zero (more than
//! 55 ms between start and finish), the measurement starts over.

use super::cpu::{inb, outb, rdtsc};
use crate::time::TscScale;
use core::sync::atomic::{AtomicU64, Ordering};

/// The PIT input clock.
const PIT_HZ: u64 = 1_193_182;
/// Shortest calibration window: 5 ms in PIT ticks.
const WINDOW_TICKS: u64 = 5966;
/// Give up after this many TSC ticks without the window elapsing (no PIT).
const GIVE_UP_TSC: u64 = 20_000_000_000;
/// Read-back status: the channel's output pin.
const STATUS_OUT: u8 = 0x80;

/// The count and the TSC at the start of the measurement.
static START_COUNT: AtomicU64 = AtomicU64::new(0);
static START_TSC: AtomicU64 = AtomicU64::new(0);

/// Latches channel 0's status and count together; returns (status, count).
fn read_back() -> (u8, u16) {
    // SAFETY: 0x43 is the PIT mode port (0xc2: read-back of channel 0's status and count),
    // 0x40 channel 0's data port, which then yields the status byte and the count.
    unsafe {
        outb(0x43, 0xc2);
        let status = inb(0x40);
        let lo = inb(0x40);
        let hi = inb(0x40);
        (status, u16::from_le_bytes([lo, hi]))
    }
}

/// Starts channel 0 counting down from 0xffff and records the TSC at its first reading.
pub fn start_calibration() {
    // SAFETY: channel 0, lobyte/hibyte, mode 0, count 0xffff; its interrupt line is masked at
    // the PIC and the I/O APIC, and nothing else uses the PIT.
    unsafe {
        outb(0x43, 0x30);
        outb(0x40, 0xff);
        outb(0x40, 0xff);
    }
    let (_, first) = read_back();
    START_TSC.store(rdtsc(), Ordering::Relaxed);
    START_COUNT.store(u64::from(first), Ordering::Relaxed);
}

/// Finishes the measurement begun by [`start_calibration`]: the TSC rate over the time since
/// (at least 5 ms). Call with interrupts off.
pub fn finish_calibration() -> TscScale {
    let origin = rdtsc();
    loop {
        let (status, count) = read_back();
        let end = rdtsc();
        if status & STATUS_OUT != 0 {
            // The count passed zero: how long ago is unknown. Measure again.
            start_calibration();
        } else {
            let start = START_TSC.load(Ordering::Relaxed);
            let elapsed_ticks = START_COUNT
                .load(Ordering::Relaxed)
                .saturating_sub(u64::from(count));
            if elapsed_ticks >= WINDOW_TICKS {
                let hz = (u128::from(end - start) * u128::from(PIT_HZ) / u128::from(elapsed_ticks))
                    as u64;
                if let Some(scale) = TscScale::from_hz(hz) {
                    return scale;
                }
                break;
            }
        }
        if end - origin > GIVE_UP_TSC {
            break;
        }
    }
    // No working PIT: assume 1 GHz. Time will be off but the kernel keeps running.
    crate::warn!("no PIT to calibrate the TSC against: assuming 1 GHz");
    TscScale::from_hz(1_000_000_000).expect("non-zero rate")
}
