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

/// Reads console input into `buf`, waiting until at least one byte is there.
pub async fn read(buf: &mut [u8]) -> usize {
    use crate::platform::ConsoleInput;
    loop {
        let platform = crate::platform::current();
        let n = platform.console_read(buf);
        if n > 0 {
            return n;
        }
        match platform.console_input_event() {
            ConsoleInput::XenPort(port) => crate::platform::xen::evtchn::wait(port).await,
            ConsoleInput::Poll => {
                crate::executor::sleep(core::time::Duration::from_millis(50)).await
            }
        }
    }
}
