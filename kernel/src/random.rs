//! Randomness from the CPU's hardware generator (RDRAND), for keys, nonces and identities.
//!
//! RDRAND's output comes from a CSPRNG (AES-CTR DRBG) that the CPU reseeds from its entropy
//! source. Each word is retried up to [`RETRIES`] times when the generator has none ready (as
//! Intel recommends), and the output is checked against the known failure of some AMD parts
//! (the same word, all ones, every time). Without RDRAND, or when it fails, [`fill`] is an error:
//! nothing that needs secrets may run on predictable bytes. QEMU's TCG implements RDRAND with
//! `-cpu ...,+rdrand`; Xen passes the CPU's to PVH guests.

use core::fmt;

/// Attempts per word before giving up.
pub const RETRIES: usize = 10;

/// No randomness: the CPU has no RDRAND, or it keeps failing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoEntropy {
    /// CPUID says there is no RDRAND.
    Missing,
    /// RDRAND had no word ready, [`RETRIES`] times in a row.
    Exhausted,
    /// RDRAND returned a stuck value.
    Stuck,
}

impl fmt::Display for NoEntropy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NoEntropy::Missing => "no hardware random generator (RDRAND; QEMU: -cpu ...,+rdrand)",
            NoEntropy::Exhausted => "the hardware random generator keeps failing",
            NoEntropy::Stuck => "the hardware random generator returns a stuck value",
        })
    }
}

/// Checks a run of generator outputs: a generator that returns all ones or repeats itself
/// word for word is broken.
pub fn looks_stuck(words: &[u64]) -> bool {
    words.iter().all(|&w| w == u64::MAX) || words.windows(2).any(|w| w[0] == w[1])
}

/// One random word.
#[cfg(target_os = "none")]
pub fn word() -> Result<u64, NoEntropy> {
    use crate::arch::cpu;
    if !cpu::has_rdrand() {
        return Err(NoEntropy::Missing);
    }
    for _ in 0..RETRIES {
        // SAFETY: CPUID says RDRAND exists.
        if let Some(w) = unsafe { cpu::rdrand64() } {
            return Ok(w);
        }
    }
    Err(NoEntropy::Exhausted)
}

/// Fills `buffer` with random bytes.
#[cfg(target_os = "none")]
pub fn fill(buffer: &mut [u8]) -> Result<(), NoEntropy> {
    let probe = [word()?, word()?, word()?];
    if looks_stuck(&probe) {
        return Err(NoEntropy::Stuck);
    }
    let mut last = probe[2];
    for chunk in buffer.chunks_mut(8) {
        let w = word()?;
        if w == last {
            return Err(NoEntropy::Stuck);
        }
        last = w;
        chunk.copy_from_slice(&w.to_le_bytes()[..chunk.len()]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuck_generators_are_recognised() {
        assert!(looks_stuck(&[u64::MAX, u64::MAX, u64::MAX]));
        assert!(looks_stuck(&[1, 2, 2]));
        assert!(!looks_stuck(&[1, 2, 3]));
    }
}
