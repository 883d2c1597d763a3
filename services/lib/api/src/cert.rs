//! Certificates as the EVE API handles them: truncated SHA-256 hashes, base64-wrapped PEM, and
//! the few X.509 checks a peer needs (public key, issuer signature).
//!
//! Which bytes are hashed depends on the certificate's role, as in EVE and its reference
//! controller: a device certificate is hashed in DER, a controller certificate in the PEM text
//! carried by [`crate::certs::ZCert::cert`].

use alloc::{string::String, vec::Vec};
use core::fmt;

use base64ct::{Base64, Encoding};
use p256::ecdsa::{signature::Verifier, Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use sha2::{Digest, Sha256};
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode, DecodePem, Encode, EncodePem};
use x509_cert::Certificate;

use crate::common::HashAlgorithm;

/// The OID of ecdsa-with-SHA256, the only certificate signature lichen checks.
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

/// Why a certificate could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertError {
    /// The bytes are not base64, PEM or DER as expected.
    Encoding,
    /// The public key is not an ECDSA P-256 key.
    UnsupportedKey,
    /// The certificate is not signed with ECDSA P-256 over SHA-256.
    UnsupportedSignature,
    /// The certificate names another issuer or its signature does not verify.
    NotIssuedBy,
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Encoding => "certificate is not valid base64/PEM/DER",
            Self::UnsupportedKey => "certificate key is not ECDSA P-256",
            Self::UnsupportedSignature => "certificate is not signed with ECDSA P-256/SHA-256",
            Self::NotIssuedBy => "certificate is not issued by the expected issuer",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for CertError {}

/// The hash of `cert` under `algo`: SHA-256, cut to 16 bytes for `Sha25616bytes`.
/// Returns `None` for [`HashAlgorithm::Invalid`].
pub fn cert_hash(cert: &[u8], algo: HashAlgorithm) -> Option<Vec<u8>> {
    let full = Sha256::digest(cert);
    match algo {
        HashAlgorithm::Invalid => None,
        HashAlgorithm::Sha25616bytes => Some(full[..16].to_vec()),
        HashAlgorithm::Sha25632bytes => Some(full.to_vec()),
    }
}

/// Whether `hash` is `cert`'s hash under `algo`.
pub fn hash_matches(cert: &[u8], algo: HashAlgorithm, hash: &[u8]) -> bool {
    cert_hash(cert, algo).is_some_and(|expected| expected == hash)
}

/// Base64 of a PEM certificate, the form of `AuthContainer.senderCert` and
/// `ZRegisterMsg.pemCert`.
pub fn encode_base64_pem(pem: &str) -> Vec<u8> {
    Base64::encode_string(pem.as_bytes()).into_bytes()
}

/// The PEM text inside a base64-wrapped certificate (see [`encode_base64_pem`]).
pub fn decode_base64_pem(wrapped: &[u8]) -> Result<String, CertError> {
    let trimmed = trim_ascii(wrapped);
    let bytes = Base64::decode_vec(core::str::from_utf8(trimmed).map_err(|_| CertError::Encoding)?)
        .map_err(|_| CertError::Encoding)?;
    String::from_utf8(bytes).map_err(|_| CertError::Encoding)
}

/// The DER of the first certificate in `pem`.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>, CertError> {
    let cert = Certificate::from_pem(pem.trim().as_bytes()).map_err(|_| CertError::Encoding)?;
    cert.to_der().map_err(|_| CertError::Encoding)
}

/// The PEM text of a DER certificate.
pub fn der_to_pem(der: &[u8]) -> Result<String, CertError> {
    let cert = Certificate::from_der(der).map_err(|_| CertError::Encoding)?;
    cert.to_pem(x509_cert::der::pem::LineEnding::LF)
        .map_err(|_| CertError::Encoding)
}

/// The subject of a DER certificate, as an RFC 4514 string (e.g. `CN=device 42`).
pub fn subject(der: &[u8]) -> Result<String, CertError> {
    let cert = Certificate::from_der(der).map_err(|_| CertError::Encoding)?;
    Ok(alloc::format!("{}", cert.tbs_certificate.subject))
}

/// The ECDSA P-256 public key of a DER certificate.
pub fn public_key(der: &[u8]) -> Result<VerifyingKey, CertError> {
    let cert = Certificate::from_der(der).map_err(|_| CertError::Encoding)?;
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|_| CertError::Encoding)?;
    VerifyingKey::from_public_key_der(&spki).map_err(|_| CertError::UnsupportedKey)
}

/// Checks that DER certificate `cert` names `issuer` as its issuer and carries a valid
/// ECDSA P-256/SHA-256 signature by `issuer`'s key. Validity dates are left to the caller, which
/// knows the time.
pub fn verify_issued_by(cert: &[u8], issuer: &[u8]) -> Result<(), CertError> {
    let cert = Certificate::from_der(cert).map_err(|_| CertError::Encoding)?;
    let issuer_cert = Certificate::from_der(issuer).map_err(|_| CertError::Encoding)?;
    if cert.tbs_certificate.issuer != issuer_cert.tbs_certificate.subject {
        return Err(CertError::NotIssuedBy);
    }
    if cert.signature_algorithm.oid != ECDSA_WITH_SHA256 {
        return Err(CertError::UnsupportedSignature);
    }
    let signature = cert
        .signature
        .as_bytes()
        .and_then(|der| Signature::from_der(der).ok())
        .ok_or(CertError::Encoding)?;
    let tbs = cert
        .tbs_certificate
        .to_der()
        .map_err(|_| CertError::Encoding)?;
    public_key(issuer)?
        .verify(&tbs, &signature)
        .map_err(|_| CertError::NotIssuedBy)
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Decodes a hex string of a test vector.
    pub(crate) fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn hashes_are_sha256_and_its_first_16_bytes() {
        let full = hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(
            cert_hash(b"abc", HashAlgorithm::Sha25632bytes),
            Some(full.clone())
        );
        assert_eq!(
            cert_hash(b"abc", HashAlgorithm::Sha25616bytes),
            Some(full[..16].to_vec())
        );
        assert_eq!(cert_hash(b"abc", HashAlgorithm::Invalid), None);
        assert!(hash_matches(
            b"abc",
            HashAlgorithm::Sha25616bytes,
            &full[..16]
        ));
        assert!(!hash_matches(
            b"abd",
            HashAlgorithm::Sha25616bytes,
            &full[..16]
        ));
        assert!(!hash_matches(
            b"abc",
            HashAlgorithm::Sha25632bytes,
            &full[..16]
        ));
    }

    #[test]
    fn base64_pem_round_trips_and_rejects_garbage() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let wrapped = encode_base64_pem(pem);
        assert_eq!(decode_base64_pem(&wrapped).unwrap(), pem);
        assert_eq!(decode_base64_pem(b"not base64!"), Err(CertError::Encoding));
    }

    /// A test root (self-signed) and a certificate it issued, both ECDSA P-256.
    const ROOT_PEM: &str = include_str!("testdata/ca.pem");
    const LEAF_PEM: &str = include_str!("testdata/leaf.pem");
    /// `openssl x509 -in leaf.pem -outform der | sha256sum`.
    const LEAF_DER_SHA256: &str =
        "59a9cd2876510fa0162787659be14038f28c34c8ba22979d4d44051dad12b036";
    /// The leaf's public key, uncompressed SEC1 (from `openssl x509 -pubkey`).
    const LEAF_PUBLIC_KEY: &str = concat!(
        "0471eae7c34ede0e1898d55c7449a5635247eda153547f7e4df71caee7dcffeffe",
        "1a6a6a7be8b2f42c86754b83dc405109cfdcca2969c2b4436305c32652768b8b"
    );

    #[test]
    fn reads_the_key_and_hash_of_a_fixed_certificate() {
        let der = pem_to_der(LEAF_PEM).unwrap();
        assert_eq!(
            cert_hash(&der, HashAlgorithm::Sha25632bytes).unwrap(),
            hex(LEAF_DER_SHA256)
        );
        let key = public_key(&der).unwrap();
        assert_eq!(
            key.to_encoded_point(false).as_bytes(),
            &hex(LEAF_PUBLIC_KEY)[..]
        );
        assert_eq!(pem_to_der(&der_to_pem(&der).unwrap()).unwrap(), der);
        assert_eq!(subject(&der).unwrap(), "CN=lichen test signing");
    }

    #[test]
    fn checks_who_issued_a_certificate() {
        let root = pem_to_der(ROOT_PEM).unwrap();
        let leaf = pem_to_der(LEAF_PEM).unwrap();
        assert_eq!(verify_issued_by(&leaf, &root), Ok(()));
        assert_eq!(verify_issued_by(&root, &root), Ok(()));
        assert_eq!(verify_issued_by(&root, &leaf), Err(CertError::NotIssuedBy));

        // Flip one bit of the leaf's signature.
        let mut forged = leaf.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert!(verify_issued_by(&forged, &root).is_err());
    }

    #[test]
    fn malformed_certificates_are_rejected() {
        assert_eq!(pem_to_der("no pem here"), Err(CertError::Encoding));
        assert_eq!(
            public_key(b"\x30\x03\x02\x01\x00").unwrap_err(),
            CertError::Encoding
        );
        assert_eq!(verify_issued_by(b"", b""), Err(CertError::Encoding));
    }
}
