//! The console: where log lines and fault reports go (COM1 under QEMU, the PV console ring
//! under Xen; the platform decides).

use crate::sync::IrqMutex;

/// Serialises console writers so that lines never interleave.
static CONSOLE: IrqMutex<()> = IrqMutex::new(());

/// Writes bytes to the console.
pub fn write(bytes: &[u8]) {
    let _guard = CONSOLE.lock();
    crate::platform::current().console_write(bytes);
}

/// Writes bytes without taking the console lock: for fault and panic reports, which may
/// interrupt a writer that holds it.
pub fn write_unlocked(bytes: &[u8]) {
    crate::platform::current().console_write(bytes);
}

/// A `fmt::Write` sink for fault reports (unlocked, unbuffered).
pub struct EmergencyWriter;

impl core::fmt::Write for EmergencyWriter {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        write_unlocked(s.as_bytes());
        Ok(())
    }
}
