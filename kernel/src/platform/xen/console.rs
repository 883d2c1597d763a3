//! The Xen PV console: a shared page with an input ring (1024 bytes) and an output ring (2048
//! bytes) that xenconsoled drains into the domain's console log.
//!
//! Layout (xen/include/public/io/console.h): `in[1024]` at 0, `out[2048]` at 1024, then the u32
//! indices `in_cons`, `in_prod`, `out_cons`, `out_prod` at 3072, 3076, 3080, 3084.

use super::hypercall;
use super::ring::ByteRing;

/// Yields to wait for xenconsoled before output is dropped (a console must never hang the
/// service: without a reader, output is lost instead).
const MAX_WAIT_YIELDS: u32 = 20_000;

/// The console page and its event channel.
pub struct Console {
    input: ByteRing,
    output: ByteRing,
    port: u32,
}

// SAFETY: the rings are only used under the console lock (crate::console) or by the
// single-threaded exit path.
unsafe impl Sync for Console {}
// SAFETY: as above.
unsafe impl Send for Console {}

impl Console {
    /// The console from this domain's HVM parameters, if it has one.
    pub fn from_hvm_params() -> Option<Console> {
        let pfn = hypercall::hvm_param(hypercall::PARAM_CONSOLE_PFN)
            .ok()
            .filter(|&p| p != 0)?;
        let port = hypercall::hvm_param(hypercall::PARAM_CONSOLE_EVTCHN).ok()?;
        let page = (pfn << 12) as *mut u8;
        // SAFETY: Xen maps the console page at this frame for the life of the domain, laid out
        // as described above; this domain owns `in_cons` and `out_prod`.
        let (input, output) = unsafe {
            (
                ByteRing::new(page, 0, 1024, 3072, 3076),
                ByteRing::new(page, 1024, 2048, 3080, 3084),
            )
        };
        Some(Console {
            input,
            output,
            port: port as u32,
        })
    }

    /// The console's event channel.
    pub fn port(&self) -> u32 {
        self.port
    }

    /// Writes all of `bytes`, waiting for room; drops what does not fit if xenconsoled does
    /// not drain the ring (or corrupted its index).
    pub fn write(&self, mut bytes: &[u8]) {
        let mut waited = 0;
        while !bytes.is_empty() {
            match self.output.write(bytes) {
                Ok(0) => {
                    waited += 1;
                    if waited > MAX_WAIT_YIELDS {
                        return;
                    }
                    hypercall::notify(self.port);
                    hypercall::yield_cpu();
                }
                Ok(n) => {
                    hypercall::notify(self.port);
                    bytes = &bytes[n..];
                }
                Err(_) => return,
            }
        }
    }

    /// Waits (a bounded while) until xenconsoled has taken everything written.
    pub fn flush(&self) {
        for _ in 0..MAX_WAIT_YIELDS {
            if self.output.used().map_or(true, |u| u == 0) {
                return;
            }
            hypercall::notify(self.port);
            hypercall::yield_cpu();
        }
    }

    /// Reads input bytes into `buf`; returns how many (0 if none, or if the ring is corrupt).
    pub fn read(&self, buf: &mut [u8]) -> usize {
        let n = self.input.read(buf).unwrap_or(0);
        if n > 0 {
            hypercall::notify(self.port);
        }
        n
    }
}
