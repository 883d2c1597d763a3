//! Onboarding: which (onboarding certificate, serial) pairs may register, and the register
//! decision (201 new, 200 repeat, 409 conflict, 403 not allowed) as EVE controllers make it.

use std::time::{SystemTime, UNIX_EPOCH};

use lichen_api::register::ZRegisterMsg;
use sha2::{Digest, Sha256};

use crate::store::{Device, Onboarding, Store, StoreError};

/// The id of an onboarding certificate: hex of the first 16 bytes of the SHA-256 of its DER.
pub fn onboarding_id(cert_der: &[u8]) -> String {
    Sha256::digest(cert_der)[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Whether `serial` matches `pattern`, where `*` stands for any run of characters.
pub fn serial_matches(pattern: &str, serial: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = serial.strip_prefix(first) else {
        return false;
    };
    let middle: Vec<&str> = parts.collect();
    let Some((last, middle)) = middle.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The result of a successful register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// A new device (HTTP 201).
    Created(String),
    /// The same device registering again (HTTP 200).
    Again(String),
}

/// Why a register was refused.
#[derive(Debug)]
pub enum RegisterError {
    /// The onboarding certificate is unknown or the serial is not admitted (HTTP 403).
    NotAllowed,
    /// Another device certificate holds this onboarding certificate and serial (HTTP 409).
    Conflict,
    /// The device certificate is unusable (HTTP 400).
    BadDeviceCert(String),
    /// Storage failed (HTTP 500/503).
    Store(StoreError),
}

/// Registers the device described by `message`, which was signed with the onboarding
/// certificate `onboarding_der` (the signature is checked by the caller).
pub async fn register(
    store: &dyn Store,
    onboarding_der: &[u8],
    message: &ZRegisterMsg,
) -> Result<Registered, RegisterError> {
    let id = onboarding_id(onboarding_der);
    let entries = store.onboarding().await.map_err(RegisterError::Store)?;
    let entry = entries
        .iter()
        .find(|entry| entry.id == id)
        .ok_or(RegisterError::NotAllowed)?;
    let serial = admitted_serial(entry, message).ok_or(RegisterError::NotAllowed)?;
    let cert_der = device_cert(message)?;

    loop {
        if let Some(existing) = store
            .device_by_serial(&id, serial)
            .await
            .map_err(RegisterError::Store)?
        {
            return if existing.cert_der == cert_der {
                Ok(Registered::Again(existing.uuid))
            } else {
                Err(RegisterError::Conflict)
            };
        }
        let hash = Sha256::digest(&cert_der);
        if store
            .device_by_cert_hash(&hash)
            .await
            .map_err(RegisterError::Store)?
            .is_some()
        {
            // The same device certificate under another onboarding certificate or serial.
            return Err(RegisterError::Conflict);
        }
        let device = Device {
            uuid: uuid::Uuid::new_v4().to_string(),
            serial: serial.to_owned(),
            onboarding_id: id.clone(),
            cert_der: cert_der.clone(),
            registered_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            last_seen_ms: 0,
        };
        match store.insert_device(device.clone()).await {
            Ok(()) => return Ok(Registered::Created(device.uuid)),
            // Lost a race with a concurrent register: look again.
            Err(StoreError::Conflict) => continue,
            Err(error) => return Err(RegisterError::Store(error)),
        }
    }
}

/// The serial the device registers with: its hardware serial, else its soft serial, if admitted.
fn admitted_serial<'a>(entry: &Onboarding, message: &'a ZRegisterMsg) -> Option<&'a str> {
    [message.serial.as_str(), message.soft_serial.as_str()]
        .into_iter()
        .filter(|serial| !serial.is_empty())
        .find(|serial| {
            entry
                .serials
                .iter()
                .any(|pattern| serial_matches(pattern, serial))
        })
}

/// The device certificate (DER) in a register message, checked to carry a P-256 key.
fn device_cert(message: &ZRegisterMsg) -> Result<Vec<u8>, RegisterError> {
    let bad = |error: lichen_api::cert::CertError| RegisterError::BadDeviceCert(error.to_string());
    let pem = lichen_api::cert::decode_base64_pem(&message.pem_cert).map_err(bad)?;
    let der = lichen_api::cert::pem_to_der(&pem).map_err(bad)?;
    lichen_api::cert::public_key(&der).map_err(bad)?;
    Ok(der)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_patterns() {
        assert!(serial_matches("*", ""));
        assert!(serial_matches("*", "anything"));
        assert!(serial_matches("abc", "abc"));
        assert!(!serial_matches("abc", "abcd"));
        assert!(serial_matches("sim-*", "sim-42"));
        assert!(!serial_matches("sim-*", "dev-42"));
        assert!(serial_matches("*-eu", "node7-eu"));
        assert!(!serial_matches("*-eu", "node7-us"));
        assert!(serial_matches("a*b*c", "a-b-b-c"));
        assert!(!serial_matches("a*b*c", "a-c-b"));
        assert!(!serial_matches("ab*ba", "aba"));
    }
}
