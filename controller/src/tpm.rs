//! The few TPM 2.0 structures attestation needs: the nonce of a TPMS_ATTEST quote and an
//! ECDSA/SHA-256 TPMT_SIGNATURE (TCG TPM 2.0 Part 2), and a software quote in the same form for
//! simulated devices.
//!
//! What a device may corrupt: any byte. Every length is checked against what remains; a short,
//! mistyped or oversized structure yields `None`, never a panic.

use p256::ecdsa::Signature;

/// `TPM_GENERATED_VALUE`, the first field of every TPMS_ATTEST.
const TPM_GENERATED: u32 = 0xff54_4347;
/// `TPM_ST_ATTEST_QUOTE`.
const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
/// `TPM_ALG_ECDSA`.
const TPM_ALG_ECDSA: u16 = 0x0018;
/// `TPM_ALG_SHA256`.
const TPM_ALG_SHA256: u16 = 0x000b;

/// Reads big-endian fields with bounds checks.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    /// A TPM2B: a u16 size, then that many bytes.
    fn sized(&mut self) -> Option<&'a [u8]> {
        let size = self.u16()?;
        self.take(usize::from(size))
    }
}

/// The nonce (`extraData`) of a TPMS_ATTEST quote: magic, type, qualifiedSigner, extraData.
pub fn quote_nonce(attest_data: &[u8]) -> Option<Vec<u8>> {
    let mut reader = Reader(attest_data);
    if reader.u32()? != TPM_GENERATED || reader.u16()? != TPM_ST_ATTEST_QUOTE {
        return None;
    }
    reader.sized()?;
    Some(reader.sized()?.to_vec())
}

/// An ECDSA/SHA-256 TPMT_SIGNATURE: algorithm, hash, then r and s as TPM2Bs.
pub fn ecdsa_signature(bytes: &[u8]) -> Option<Signature> {
    let mut reader = Reader(bytes);
    if reader.u16()? != TPM_ALG_ECDSA || reader.u16()? != TPM_ALG_SHA256 {
        return None;
    }
    let scalar = |bytes: &[u8]| -> Option<[u8; 32]> {
        let bytes = bytes.strip_prefix(&[0]).unwrap_or(bytes);
        let mut padded = [0; 32];
        padded
            .get_mut(32usize.checked_sub(bytes.len())?..)?
            .copy_from_slice(bytes);
        Some(padded)
    };
    let r = scalar(reader.sized()?)?;
    let s = scalar(reader.sized()?)?;
    Signature::from_scalars(r, s).ok()
}

/// A TPMS_ATTEST quote over `nonce` and its TPMT_SIGNATURE by `key`, as a TPM would make them
/// (for simulated devices and tests).
pub fn software_quote(key: &p256::ecdsa::SigningKey, nonce: &[u8]) -> (Vec<u8>, Vec<u8>) {
    use p256::ecdsa::signature::Signer;
    let mut attest = Vec::new();
    attest.extend_from_slice(&TPM_GENERATED.to_be_bytes());
    attest.extend_from_slice(&TPM_ST_ATTEST_QUOTE.to_be_bytes());
    let signer_name = b"lichen software attestation key";
    attest.extend_from_slice(&(signer_name.len() as u16).to_be_bytes());
    attest.extend_from_slice(signer_name);
    attest.extend_from_slice(&(nonce.len() as u16).to_be_bytes());
    attest.extend_from_slice(nonce);
    // TPMS_CLOCK_INFO, firmware version and TPMS_QUOTE_INFO follow in a real quote; lichen does
    // not read them yet, so a software quote carries zeros.
    attest.extend_from_slice(&[0; 17 + 8 + 4 + 2]);
    let signature: Signature = key.sign(&attest);
    let (r, s) = signature.split_bytes();
    let mut encoded = Vec::new();
    encoded.extend_from_slice(&TPM_ALG_ECDSA.to_be_bytes());
    encoded.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
    for scalar in [r, s] {
        encoded.extend_from_slice(&32u16.to_be_bytes());
        encoded.extend_from_slice(&scalar);
    }
    (attest, encoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;

    #[test]
    fn software_quotes_verify_and_tampering_fails() {
        let key = crate::pki::Identity::self_signed("attestation key")
            .unwrap()
            .key;
        let (attest, signature) = software_quote(&key, b"nonce-123");
        assert_eq!(quote_nonce(&attest).as_deref(), Some(&b"nonce-123"[..]));
        let parsed = ecdsa_signature(&signature).unwrap();
        assert!(key.verifying_key().verify(&attest, &parsed).is_ok());
        let mut bent = attest.clone();
        *bent.last_mut().unwrap() ^= 1;
        assert!(key.verifying_key().verify(&bent, &parsed).is_err());
    }

    #[test]
    fn malformed_quotes_and_signatures_are_refused_not_panicked_on() {
        for attest in [
            &[][..],
            &[0xff, 0x54, 0x43, 0x47],
            &[0xff, 0x54, 0x43, 0x47, 0x80, 0x18, 0xff, 0xff],
        ] {
            assert_eq!(quote_nonce(attest), None);
        }
        let mut wrong_type = TPM_GENERATED.to_be_bytes().to_vec();
        wrong_type.extend_from_slice(&[0x80, 0x14, 0, 0, 0, 1, 7]);
        assert_eq!(quote_nonce(&wrong_type), None);
        for signature in [
            &[][..],
            &[0, 0x18, 0, 0x0b, 0, 40],
            &[0, 0x14, 0, 0x0b, 0, 1, 1, 0, 1, 1],
            &[0, 0x18, 0, 0x04, 0, 1, 1, 0, 1, 1],
        ] {
            assert!(ecdsa_signature(signature).is_none(), "{signature:?}");
        }
        // Zero scalars are not a signature.
        assert!(ecdsa_signature(&[0, 0x18, 0, 0x0b, 0, 1, 0, 0, 1, 0]).is_none());
    }
}
