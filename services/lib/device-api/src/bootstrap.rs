//! What the config partition tells a device before its first boot (EVE's `/config`):
//!
//! | file | what |
//! |---|---|
//! | `root-certificate.pem` | the controller's root certificate, the only one trusted |
//! | `onboard.cert.pem`, `onboard.key.pem` | the onboarding certificate and its key (PKCS#8 or SEC1 PEM, P-256) |
//! | `server` | the controller, `host[:port]` (port 443 if absent) |
//! | `serial` | the device's serial, as the controller admits it (optional: `soft_serial` then names it) |
//!
//! **The partition may hold anything**: each file is checked (PEM with the expected label, a
//! P-256 key that matches the onboarding certificate, a host name and a port in range, printable
//! serial); a missing or bad file is a [`BootstrapError`] naming it.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use lichen_api::common::HashAlgorithm;
use lichen_api::envelope::Signer;
use p256::ecdsa::SigningKey;
use p256::pkcs8::DecodePrivateKey;

use crate::x509::{self, first_pem};

/// Why the config partition cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapError {
    /// The file at fault.
    pub file: &'static str,
    /// What is wrong.
    pub reason: &'static str,
}

impl fmt::Display for BootstrapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config partition: {}: {}", self.file, self.reason)
    }
}

fn bad(file: &'static str, reason: &'static str) -> BootstrapError {
    BootstrapError { file, reason }
}

/// The device's bootstrap configuration.
#[derive(Clone)]
pub struct Bootstrap {
    /// The pinned root certificate, DER.
    pub root_der: Vec<u8>,
    /// Signs the register request with the onboarding key, the certificate attached.
    pub onboarding: Signer,
    /// The controller's host name or address.
    pub host: String,
    /// The controller's port.
    pub port: u16,
    /// The serial (may be empty).
    pub serial: String,
}

impl Bootstrap {
    /// Reads the files through `file` (the partition's contents by name).
    pub fn read<'a>(file: impl Fn(&str) -> Option<&'a [u8]>) -> Result<Bootstrap, BootstrapError> {
        const ROOT: &str = "root-certificate.pem";
        const CERT: &str = "onboard.cert.pem";
        const KEY: &str = "onboard.key.pem";
        const SERVER: &str = "server";
        const SERIAL: &str = "serial";
        let text = |name: &'static str| -> Result<&'a str, BootstrapError> {
            let bytes = file(name).ok_or(bad(name, "missing"))?;
            core::str::from_utf8(bytes).map_err(|_| bad(name, "not text"))
        };
        let root_der = x509::certificate_der(text(ROOT)?).map_err(|reason| bad(ROOT, reason))?;
        let cert_pem = text(CERT)?;
        let cert_der = x509::certificate_der(cert_pem).map_err(|reason| bad(CERT, reason))?;
        let key = private_key(text(KEY)?).map_err(|reason| bad(KEY, reason))?;
        let public =
            lichen_api::cert::public_key(&cert_der).map_err(|_| bad(CERT, "not a P-256 key"))?;
        if public != *key.verifying_key() {
            return Err(bad(KEY, "does not match onboard.cert.pem"));
        }
        let onboarding = Signer::new(key, &cert_der, HashAlgorithm::Sha25632bytes)
            .with_sender_cert(cert_pem.trim());
        let (host, port) = server(text(SERVER)?).map_err(|reason| bad(SERVER, reason))?;
        let serial = match file(SERIAL) {
            None => String::new(),
            Some(_) => {
                let serial = text(SERIAL)?.trim();
                if serial.len() > 128 || !serial.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(bad(SERIAL, "not up to 128 printable characters"));
                }
                serial.to_string()
            }
        };
        Ok(Bootstrap {
            root_der,
            onboarding,
            host,
            port,
            serial,
        })
    }
}

/// A P-256 private key from PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`) PEM.
fn private_key(text: &str) -> Result<SigningKey, &'static str> {
    let (label, der) = first_pem(text)?;
    match label.as_str() {
        "PRIVATE KEY" => SigningKey::from_pkcs8_der(&der).map_err(|_| "not a P-256 PKCS#8 key"),
        "EC PRIVATE KEY" => p256::SecretKey::from_sec1_der(&der)
            .map(SigningKey::from)
            .map_err(|_| "not a P-256 SEC1 key"),
        _ => Err("not a PEM private key"),
    }
}

/// `host[:port]`, the port 443 if absent; an IPv6 address in brackets.
fn server(text: &str) -> Result<(String, u16), &'static str> {
    let text = text.trim();
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("unclosed [")?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or("junk after ]")?)),
        }
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let port = match port {
        None => 443,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err("port not 1..65535"),
        },
    };
    let valid = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':';
    if host.is_empty() || host.len() > 253 || !host.bytes().all(valid) {
        return Err("not a host name or address");
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests;
