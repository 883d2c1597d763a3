//! Certificates as the device handles them, through webpki (which rustls links anyway, so no
//! second X.509 parser goes into the image): PEM to DER and back, a certificate's P-256 key,
//! and RFC 5280 path validation to the pinned root.
//!
//! **A certificate may be anything**: webpki parses it strictly (DER, v3, known critical
//! extensions); anything it refuses, or a key other than P-256, is an error.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

use p256::ecdsa::VerifyingKey;
use rustls::pki_types::{CertificateDer, UnixTime};
use x509_cert::der::pem;

/// The SubjectPublicKeyInfo of every P-256 key, up to the point: SEQUENCE { SEQUENCE {
/// id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) of 66 bytes }.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The DER of the first PEM block in `text`, which must be labelled `label` (OpenSSL may put
/// an `EC PARAMETERS` block first: it is skipped).
pub fn pem_block(text: &str, label: &str) -> Result<Vec<u8>, &'static str> {
    let (found, der) = first_pem(text)?;
    if found != label {
        return Err("not the expected PEM block");
    }
    Ok(der)
}

/// The label and contents of the first PEM block in `text`, skipping `EC PARAMETERS`.
pub fn first_pem(text: &str) -> Result<(String, Vec<u8>), &'static str> {
    let mut rest = text;
    loop {
        let start = rest.find("-----BEGIN ").ok_or("no PEM block")?;
        let block = &rest[start..];
        let label_end = block[11..].find("-----").ok_or("bad PEM")? + 11;
        let label = &block[11..label_end];
        let end_marker = alloc::format!("-----END {label}-----");
        let end = block.find(&end_marker).ok_or("unterminated PEM block")? + end_marker.len();
        if label != "EC PARAMETERS" {
            let (label, der) = pem::decode_vec(&block.as_bytes()[..end]).map_err(|_| "bad PEM")?;
            return Ok((label.to_string(), der));
        }
        rest = &block[end..];
    }
}

/// The DER of a PEM certificate, checked to parse.
pub fn certificate_der(pem: &str) -> Result<Vec<u8>, &'static str> {
    let der = pem_block(pem, "CERTIFICATE")?;
    webpki::EndEntityCert::try_from(&CertificateDer::from(&der[..]))
        .map_err(|_| "not a valid X.509 certificate")?;
    Ok(der)
}

/// The PEM text of a DER certificate.
pub fn certificate_pem(der: &[u8]) -> String {
    pem::encode_string("CERTIFICATE", pem::LineEnding::LF, der)
        .expect("a PEM of a few KiB always encodes")
}

/// The P-256 public key of a DER certificate.
pub fn p256_key(der: &[u8]) -> Result<VerifyingKey, &'static str> {
    let der = CertificateDer::from(der);
    let cert =
        webpki::EndEntityCert::try_from(&der).map_err(|_| "not a valid X.509 certificate")?;
    let spki = cert.subject_public_key_info();
    let point = spki
        .as_ref()
        .strip_prefix(&P256_SPKI_PREFIX[..])
        .ok_or("the key is not ECDSA P-256")?;
    VerifyingKey::from_sec1_bytes(point).map_err(|_| "not a valid P-256 point")
}

/// Checks that DER certificate `der` chains to `root_der` (path validation: signatures with
/// ECDSA P-256/SHA-256, validity at `now_unix` for every certificate, the root's constraints)
/// and returns why not.
pub fn verify_chain(der: &[u8], root_der: &[u8], now_unix: u64) -> Result<(), String> {
    let root = CertificateDer::from(root_der);
    let anchor =
        webpki::anchor_from_trusted_cert(&root).map_err(|e| alloc::format!("root: {e}"))?;
    let cert = CertificateDer::from(der);
    let ee = webpki::EndEntityCert::try_from(&cert).map_err(|e| alloc::format!("{e}"))?;
    ee.verify_for_usage(
        &[tls::provider::ECDSA_P256_SHA256],
        &[anchor],
        &[],
        UnixTime::since_unix_epoch(Duration::from_secs(now_unix)),
        // A signing certificate carries no extended key usage; one that names some must name
        // server authentication (as the controller's TLS certificate does).
        webpki::KeyUsage::required_if_present(&[43, 6, 1, 5, 5, 7, 3, 1]),
        None,
        None,
    )
    .map(drop)
    .map_err(|e| alloc::format!("{e}"))
}
