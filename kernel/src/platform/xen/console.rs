//! The Xen PV console: a shared page with an input ring (1024 bytes) and an output ring (2048
//! bytes) that xenconsoled drains into the domain's console log.
//!
//! Layout (xen/include/public/io/console.h): `in[1024]` at 0, `out[2048]` at 1024, then the u32
//! indices `in_cons`, `in_prod`, `out_cons`, `out_prod` at 3072, 3076, 3080, 3084.

use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{fence, Ordering};

use super::{hypercall, ring};

const IN_SIZE: u32 = 1024;
const OUT: usize = 1024;
const OUT_SIZE: u32 = 2048;
const IN_CONS: usize = 3072;
const IN_PROD: usize = 3076;
const OUT_CONS: usize = 3080;
const OUT_PROD: usize = 3084;
/// Yields to wait for xenconsoled before output is dropped (a console must never hang the
/// service: without a reader, output is lost instead).
const MAX_WAIT_YIELDS: u32 = 20_000;

/// The console page and its event channel.
pub struct Console {
    page: *mut u8,
    port: u32,
}

// SAFETY: the page is only touched under the console lock (crate::console) or by the
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
        Some(Console {
            page: (pfn << 12) as *mut u8,
            port: port as u32,
        })
    }

    /// The console's event channel.
    pub fn port(&self) -> u32 {
        self.port
    }

    fn index(&self, offset: usize) -> u32 {
        // SAFETY: offsets are within the console page, which Xen mapped for this domain.
        unsafe { read_volatile(self.page.add(offset) as *const u32) }
    }

    fn set_index(&self, offset: usize, value: u32) {
        // SAFETY: as for `index`.
        unsafe { write_volatile(self.page.add(offset) as *mut u32, value) }
    }

    /// Writes all of `bytes`, waiting for room; drops what does not fit if xenconsoled does
    /// not drain the ring (or corrupted its index).
    pub fn write(&self, mut bytes: &[u8]) {
        let mut waited = 0;
        while !bytes.is_empty() {
            let prod = self.index(OUT_PROD);
            let free = match ring::free(prod, self.index(OUT_CONS), OUT_SIZE) {
                Ok(f) => f,
                Err(_) => return,
            };
            if free == 0 {
                waited += 1;
                if waited > MAX_WAIT_YIELDS {
                    return;
                }
                hypercall::notify(self.port);
                hypercall::yield_cpu();
                continue;
            }
            let n = free.min(bytes.len() as u32);
            let mut taken = 0;
            for (offset, len) in ring::pieces(prod, n, OUT_SIZE) {
                // SAFETY: `offset + len <= OUT_SIZE` (ring::pieces), inside the out ring.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        bytes[taken..].as_ptr(),
                        self.page.add(OUT + offset),
                        len,
                    )
                };
                taken += len;
            }
            fence(Ordering::Release);
            self.set_index(OUT_PROD, prod.wrapping_add(n));
            hypercall::notify(self.port);
            bytes = &bytes[n as usize..];
        }
    }

    /// Waits (a bounded while) until xenconsoled has taken everything written.
    pub fn flush(&self) {
        for _ in 0..MAX_WAIT_YIELDS {
            if self.index(OUT_CONS) == self.index(OUT_PROD) {
                return;
            }
            hypercall::notify(self.port);
            hypercall::yield_cpu();
        }
    }

    /// Reads input bytes into `buf`; returns how many (0 if none, or if the ring is corrupt).
    pub fn read(&self, buf: &mut [u8]) -> usize {
        let cons = self.index(IN_CONS);
        let available = ring::used(self.index(IN_PROD), cons, IN_SIZE).unwrap_or(0);
        fence(Ordering::Acquire);
        let n = available.min(buf.len() as u32);
        let mut done = 0;
        for (offset, len) in ring::pieces(cons, n, IN_SIZE) {
            // SAFETY: `offset + len <= IN_SIZE`, inside the in ring at offset 0.
            unsafe {
                core::ptr::copy_nonoverlapping(self.page.add(offset), buf[done..].as_mut_ptr(), len)
            };
            done += len;
        }
        fence(Ordering::Release);
        self.set_index(IN_CONS, cons.wrapping_add(n));
        if n > 0 {
            hypercall::notify(self.port);
        }
        n as usize
    }
}
