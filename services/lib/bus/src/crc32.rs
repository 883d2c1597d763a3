//! CRC-32 as used by Ethernet, zlib and PNG (polynomial 0x04C11DB7, reflected, initial value and
//! final XOR 0xFFFFFFFF), computed one byte at a time from a table built at compile time.

/// The reflected form of the CRC-32 polynomial.
const POLYNOMIAL: u32 = 0xEDB8_8320;

/// For every byte value, the CRC register change it causes.
const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut register = byte as u32;
        let mut bit = 0;
        while bit < 8 {
            register = if register & 1 == 1 {
                (register >> 1) ^ POLYNOMIAL
            } else {
                register >> 1
            };
            bit += 1;
        }
        table[byte] = register;
        byte += 1;
    }
    table
};

/// A running CRC-32 over data fed in pieces.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Crc32 {
    register: u32,
}

impl Crc32 {
    /// Starts a checksum over no data yet.
    pub(crate) const fn new() -> Self {
        Self { register: u32::MAX }
    }

    /// Adds `bytes` to the checksummed data.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            let index = usize::from((self.register as u8) ^ byte);
            self.register = (self.register >> 8) ^ TABLE[index];
        }
    }

    /// The checksum of everything fed so far.
    pub(crate) const fn finish(self) -> u32 {
        !self.register
    }
}

/// The CRC-32 of `bytes`.
#[cfg(test)]
pub(crate) fn checksum(bytes: &[u8]) -> u32 {
    let mut crc = Crc32::new();
    crc.update(bytes);
    crc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_check_value() {
        assert_eq!(checksum(b"123456789"), 0xCBF4_3926);
        assert_eq!(checksum(b""), 0);
    }

    #[test]
    fn pieces_give_the_same_checksum_as_the_whole() {
        let data = b"The quick brown fox jumps over the lazy dog";
        let mut crc = Crc32::new();
        for piece in data.chunks(5) {
            crc.update(piece);
        }
        assert_eq!(crc.finish(), 0x414F_A339);
        assert_eq!(crc.finish(), checksum(data));
    }
}
