//! Randomness for handshakes and keys: the CPU's generator (RDRAND, `kernel::random`) in a
//! guest, the operating system's on the host. A failure is an error, never predictable bytes.

use core::fmt;

/// No randomness could be had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoEntropy;

impl fmt::Display for NoEntropy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no randomness (hardware random generator missing or failing)")
    }
}

/// Fills `buffer` with random bytes.
#[cfg(target_os = "none")]
pub fn fill(buffer: &mut [u8]) -> Result<(), NoEntropy> {
    kernel::random::fill(buffer).map_err(|_| NoEntropy)
}

/// Fills `buffer` with random bytes.
#[cfg(not(target_os = "none"))]
pub fn fill(buffer: &mut [u8]) -> Result<(), NoEntropy> {
    getrandom::fill(buffer).map_err(|_| NoEntropy)
}
