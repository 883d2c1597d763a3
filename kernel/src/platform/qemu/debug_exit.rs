//! QEMU's `isa-debug-exit` device: a write to its port ends QEMU with status `(value << 1) | 1`.
//! `scripts/run` adds it at port 0xf4 and maps the status back.

use crate::arch::cpu;

/// The device's I/O port, as `scripts/run` configures it.
pub const PORT: u16 = 0xf4;

/// Asks QEMU to exit with `status`; returns only if the device is missing.
pub fn exit(status: i32) {
    // SAFETY: port 0xf4 is isa-debug-exit on lichen's QEMU command line; on a machine without
    // it the write is ignored.
    unsafe { cpu::outl(PORT, status as u32) }
}
