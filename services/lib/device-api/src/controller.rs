//! The controller as the device trusts it: its signing certificate, fetched from the `certs`
//! route and checked against the pinned root, and the envelopes it signs.
//!
//! **What a controller (or whoever answers in its place) may send, and what happens**: a
//! `certs` answer must be an envelope holding a `ZControllerCert` with a signing certificate
//! whose hash matches, issued by the pinned root (ECDSA P-256/SHA-256), valid at the wall
//! clock's time, and which signed that very envelope; every later response must be an envelope
//! signed by that certificate. Anything else is a [`ControllerError`] and nothing in it is used.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use lichen_api::auth::AuthContainer;
use lichen_api::certs::{ZCertType, ZControllerCert};
use lichen_api::common::HashAlgorithm;
use lichen_api::envelope::{self, EnvelopeError};
use p256::ecdsa::VerifyingKey;
use prost::Message;

use crate::x509;

/// Why a controller answer was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControllerError {
    /// The envelope is malformed, unsigned, or its signature does not verify.
    Envelope(EnvelopeError),
    /// The envelope was signed by a certificate other than the controller's signing one.
    UnknownSigner,
    /// The payload does not decode as the expected message.
    Decode(&'static str),
    /// The `certs` answer holds no signing certificate.
    NoSigningCert,
    /// The signing certificate's hash does not match its bytes.
    HashMismatch,
    /// The signing certificate does not chain to the pinned root (the reason).
    Untrusted(String),
    /// The signing certificate is not valid now (or the clock is not set).
    Expired,
}

impl fmt::Display for ControllerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControllerError::Envelope(e) => write!(f, "controller envelope: {e}"),
            ControllerError::UnknownSigner => {
                f.write_str("envelope signed by a certificate other than the controller's")
            }
            ControllerError::Decode(what) => write!(f, "controller sent a bad {what}"),
            ControllerError::NoSigningCert => f.write_str("controller sent no signing certificate"),
            ControllerError::HashMismatch => {
                f.write_str("controller signing certificate does not match its hash")
            }
            ControllerError::Untrusted(why) => {
                write!(
                    f,
                    "controller signing certificate not issued by the root: {why}"
                )
            }
            ControllerError::Expired => {
                f.write_str("controller signing certificate not valid now (or no clock)")
            }
        }
    }
}

impl From<EnvelopeError> for ControllerError {
    fn from(e: EnvelopeError) -> Self {
        ControllerError::Envelope(e)
    }
}

/// The controller's signing certificate, verified.
#[derive(Clone, Debug)]
pub struct SigningCert {
    pem: String,
    /// SHA-256 of the PEM: envelopes name their signer by it (16 or 32 bytes of it).
    hash: Vec<u8>,
    key: VerifyingKey,
}

impl SigningCert {
    /// Verifies the body of a `certs` answer against `root_der` at `now_unix` (seconds; `None`:
    /// no clock, refused) and returns the signing certificate.
    pub fn from_certs(
        body: &[u8],
        root_der: &[u8],
        now_unix: Option<u64>,
    ) -> Result<SigningCert, ControllerError> {
        let (container, _) = envelope::decode(body)?;
        let payload = payload(&container);
        let certs = ZControllerCert::decode(payload)
            .map_err(|_| ControllerError::Decode("ZControllerCert"))?;
        let cert = certs
            .certs
            .iter()
            .find(|c| c.r#type == ZCertType::CertTypeControllerSigning as i32)
            .ok_or(ControllerError::NoSigningCert)?;
        let algo =
            HashAlgorithm::try_from(cert.hash_algo).map_err(|_| ControllerError::HashMismatch)?;
        if !lichen_api::cert::hash_matches(&cert.cert, algo, &cert.cert_hash) {
            return Err(ControllerError::HashMismatch);
        }
        let pem =
            core::str::from_utf8(&cert.cert).map_err(|_| ControllerError::Decode("certificate"))?;
        let signing = SigningCert::verify(pem, root_der, now_unix)?;
        signing.open(&container)?;
        Ok(signing)
    }

    /// Checks that `pem` is a certificate issued by `root_der` and valid at `now_unix`.
    pub fn verify(
        pem: &str,
        root_der: &[u8],
        now_unix: Option<u64>,
    ) -> Result<SigningCert, ControllerError> {
        let der = x509::certificate_der(pem).map_err(ControllerError::Decode)?;
        let now = now_unix.ok_or(ControllerError::Expired)?;
        x509::verify_chain(&der, root_der, now).map_err(|e| {
            if e.contains("Expired") || e.contains("NotValidYet") {
                ControllerError::Expired
            } else {
                ControllerError::Untrusted(e)
            }
        })?;
        let key = x509::p256_key(&der).map_err(|e| ControllerError::Untrusted(e.to_string()))?;
        let hash = lichen_api::cert::cert_hash(pem.as_bytes(), HashAlgorithm::Sha25632bytes)
            .unwrap_or_default();
        Ok(SigningCert {
            pem: pem.to_string(),
            hash,
            key,
        })
    }

    /// The certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Verifies an envelope's signature by this certificate and returns its payload.
    pub fn open<'a>(&self, container: &'a AuthContainer) -> Result<&'a [u8], ControllerError> {
        if container.sender_cert_hash.is_empty()
            || !self.hash.starts_with(&container.sender_cert_hash)
        {
            return Err(ControllerError::UnknownSigner);
        }
        Ok(envelope::open(container, &self.key)?)
    }

    /// Decodes a response body (an envelope), verifies it, and decodes its payload as `M`.
    pub fn open_message<M: Message + Default>(
        &self,
        body: &[u8],
        what: &'static str,
    ) -> Result<M, ControllerError> {
        let (container, _) = envelope::decode(body)?;
        M::decode(self.open(&container)?).map_err(|_| ControllerError::Decode(what))
    }
}

fn payload(container: &AuthContainer) -> &[u8] {
    container
        .protected_payload
        .as_ref()
        .map(|body| &body.payload[..])
        .unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests;
