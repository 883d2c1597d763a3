//! Signing and opening [`AuthContainer`]s.
//!
//! The sender signs the payload bytes with ECDSA P-256 over SHA-256 and puts the raw `r || s`
//! signature in `signatureHash`, plus a (possibly truncated) hash of its certificate in
//! `senderCertHash` so that the receiver can find its key. Encrypted payloads (`cipherData`) are
//! not supported by lichen and are refused.

use alloc::vec::Vec;
use core::fmt;

use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use prost::Message;

use crate::auth::{AuthBody, AuthContainer};
use crate::cert::{self, cert_hash};
use crate::common::HashAlgorithm;

/// Why an [`AuthContainer`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeError {
    /// The bytes are not an `AuthContainer`.
    Malformed,
    /// The payload is encrypted (`cipherData`), which lichen does not support.
    Encrypted,
    /// There is no payload.
    MissingPayload,
    /// There is no signature or no sender certificate hash.
    Unsigned,
    /// `algo` is not a supported hash algorithm, or the hash has the wrong length for it.
    UnsupportedAlgorithm,
    /// The signature does not verify with the sender's key.
    BadSignature,
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "body is not an AuthContainer",
            Self::Encrypted => "encrypted payloads are not supported",
            Self::MissingPayload => "AuthContainer has no payload",
            Self::Unsigned => "AuthContainer is not signed",
            Self::UnsupportedAlgorithm => "unsupported sender certificate hash",
            Self::BadSignature => "signature does not verify",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for EnvelopeError {}

/// Someone who signs payloads: a private key and the hash of the matching certificate.
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
    algo: HashAlgorithm,
    cert_hash: Vec<u8>,
    sender_cert: Vec<u8>,
}

impl Signer {
    /// A signer with `key`, identified by the `algo` hash of `hashed_cert` (the certificate bytes
    /// the receiver hashes: DER for a device, PEM for the controller; see [`crate::cert`]).
    ///
    /// # Panics
    /// If `algo` is [`HashAlgorithm::Invalid`].
    pub fn new(key: SigningKey, hashed_cert: &[u8], algo: HashAlgorithm) -> Self {
        let cert_hash = cert_hash(hashed_cert, algo).expect("a valid hash algorithm");
        Self {
            key,
            algo,
            cert_hash,
            sender_cert: Vec::new(),
        }
    }

    /// Also sends the full certificate (base64 of its PEM) in every container, for receivers that
    /// do not know it yet (the register route).
    pub fn with_sender_cert(mut self, pem: &str) -> Self {
        self.sender_cert = cert::encode_base64_pem(pem);
        self
    }

    /// The hash that identifies this signer's certificate.
    pub fn cert_hash(&self) -> &[u8] {
        &self.cert_hash
    }

    /// The public half of the signing key.
    pub fn verifying_key(&self) -> VerifyingKey {
        *self.key.verifying_key()
    }

    /// Signs `payload` and wraps it in a container.
    pub fn seal(&self, payload: Vec<u8>) -> AuthContainer {
        let signature: Signature = self.key.sign(&payload);
        AuthContainer {
            protected_payload: Some(AuthBody { payload }),
            algo: self.algo as i32,
            sender_cert_hash: self.cert_hash.clone(),
            signature_hash: signature.to_bytes().to_vec(),
            sender_cert: self.sender_cert.clone(),
            cipher_context: None,
            cipher_data: None,
        }
    }

    /// [`Self::seal`], encoded: a body whose payload is not a protobuf message (newlogs' gzip).
    pub fn seal_to_bytes_raw(&self, payload: Vec<u8>) -> Vec<u8> {
        self.seal(payload).encode_to_vec()
    }

    /// Encodes `message`, signs it and wraps it in a container.
    pub fn seal_message(&self, message: &impl Message) -> AuthContainer {
        self.seal(message.encode_to_vec())
    }

    /// [`Self::seal_message`], encoded: a ready request or response body.
    pub fn seal_to_bytes(&self, message: &impl Message) -> Vec<u8> {
        self.seal_message(message).encode_to_vec()
    }
}

/// Decodes an `AuthContainer` and checks that it is signed, before its sender is looked up.
/// Returns the container and the sender's certificate hash algorithm.
pub fn decode(body: &[u8]) -> Result<(AuthContainer, HashAlgorithm), EnvelopeError> {
    let container = AuthContainer::decode(body).map_err(|_| EnvelopeError::Malformed)?;
    if container.cipher_data.is_some() {
        return Err(EnvelopeError::Encrypted);
    }
    if container.protected_payload.is_none() {
        return Err(EnvelopeError::MissingPayload);
    }
    if container.signature_hash.is_empty() || container.sender_cert_hash.is_empty() {
        return Err(EnvelopeError::Unsigned);
    }
    let algo =
        HashAlgorithm::try_from(container.algo).map_err(|_| EnvelopeError::UnsupportedAlgorithm)?;
    let expected_len = match algo {
        HashAlgorithm::Invalid => return Err(EnvelopeError::UnsupportedAlgorithm),
        HashAlgorithm::Sha25616bytes => 16,
        HashAlgorithm::Sha25632bytes => 32,
    };
    if container.sender_cert_hash.len() != expected_len {
        return Err(EnvelopeError::UnsupportedAlgorithm);
    }
    Ok((container, algo))
}

/// Verifies the container's signature with the sender's `key` and returns the payload.
pub fn open<'a>(
    container: &'a AuthContainer,
    key: &VerifyingKey,
) -> Result<&'a [u8], EnvelopeError> {
    let payload = &container
        .protected_payload
        .as_ref()
        .ok_or(EnvelopeError::MissingPayload)?
        .payload;
    let signature = Signature::from_slice(&container.signature_hash)
        .map_err(|_| EnvelopeError::BadSignature)?;
    key.verify(payload, &signature)
        .map_err(|_| EnvelopeError::BadSignature)?;
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::tests::hex;

    /// The P-256 private key of RFC 6979, appendix A.2.5.
    const RFC6979_KEY: &str = "c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721";
    /// Its deterministic SHA-256 signature of "sample" (r || s), from the same appendix.
    const RFC6979_SAMPLE_SIGNATURE: &str = concat!(
        "efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716",
        "f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8"
    );

    fn rfc6979_signer(algo: HashAlgorithm) -> Signer {
        let key = SigningKey::from_slice(&hex(RFC6979_KEY)).unwrap();
        Signer::new(key, b"abc", algo)
    }

    #[test]
    fn seal_matches_the_rfc6979_vector() {
        let container = rfc6979_signer(HashAlgorithm::Sha25616bytes).seal(b"sample".to_vec());
        assert_eq!(container.signature_hash, hex(RFC6979_SAMPLE_SIGNATURE));
        assert_eq!(container.algo, HashAlgorithm::Sha25616bytes as i32);
        assert_eq!(
            container.sender_cert_hash,
            hex("ba7816bf8f01cfea414140de5dae2223")
        );
        assert!(container.sender_cert.is_empty());
    }

    #[test]
    fn a_sealed_container_opens_with_the_senders_key_only() {
        let signer = rfc6979_signer(HashAlgorithm::Sha25632bytes);
        let body = signer.seal(b"payload".to_vec()).encode_to_vec();
        let (container, algo) = decode(&body).unwrap();
        assert_eq!(algo, HashAlgorithm::Sha25632bytes);
        assert_eq!(
            open(&container, &signer.verifying_key()),
            Ok(&b"payload"[..])
        );

        let other = SigningKey::from_slice(&[7; 32]).unwrap();
        assert_eq!(
            open(&container, other.verifying_key()),
            Err(EnvelopeError::BadSignature)
        );
    }

    #[test]
    fn a_changed_payload_or_signature_does_not_verify() {
        let signer = rfc6979_signer(HashAlgorithm::Sha25616bytes);
        let mut container = signer.seal(b"payload".to_vec());
        container.protected_payload.as_mut().unwrap().payload[0] ^= 1;
        assert_eq!(
            open(&container, &signer.verifying_key()),
            Err(EnvelopeError::BadSignature)
        );

        let mut container = signer.seal(b"payload".to_vec());
        container.signature_hash.truncate(63);
        assert_eq!(
            open(&container, &signer.verifying_key()),
            Err(EnvelopeError::BadSignature)
        );
    }

    #[test]
    fn decode_refuses_what_cannot_be_verified() {
        let signer = rfc6979_signer(HashAlgorithm::Sha25616bytes);
        let sealed = signer.seal(b"x".to_vec());
        let refused = |change: fn(&mut AuthContainer)| {
            let mut container = sealed.clone();
            change(&mut container);
            decode(&container.encode_to_vec()).unwrap_err()
        };
        assert_eq!(
            refused(|c| c.signature_hash.clear()),
            EnvelopeError::Unsigned
        );
        assert_eq!(
            refused(|c| c.sender_cert_hash.clear()),
            EnvelopeError::Unsigned
        );
        assert_eq!(
            refused(|c| c.protected_payload = None),
            EnvelopeError::MissingPayload
        );
        assert_eq!(refused(|c| c.algo = 0), EnvelopeError::UnsupportedAlgorithm);
        assert_eq!(refused(|c| c.algo = 9), EnvelopeError::UnsupportedAlgorithm);
        assert_eq!(refused(|c| c.algo = 2), EnvelopeError::UnsupportedAlgorithm);
        assert_eq!(
            refused(|c| c.cipher_data = Some(Default::default())),
            EnvelopeError::Encrypted
        );
        assert_eq!(
            decode(b"\xff\xff\xff").unwrap_err(),
            EnvelopeError::Malformed
        );
    }

    #[test]
    fn sender_cert_is_base64_pem() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let container = rfc6979_signer(HashAlgorithm::Sha25632bytes)
            .with_sender_cert(pem)
            .seal(Vec::new());
        assert_eq!(
            cert::decode_base64_pem(&container.sender_cert).unwrap(),
            pem
        );
    }
}
