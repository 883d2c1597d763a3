//! The device's identity (EVE: tpmmgr's soft mode): a P-256 key made from the hardware
//! random generator on first boot and a self-signed certificate for it, valid 20 years, which
//! the device registers with and the controller knows it by (the SHA-256 of its DER).
//!
//! **A stored identity may be anything** (it comes back from the vault): [`Identity::restore`]
//! checks that the key is a valid P-256 scalar and that the certificate parses and carries that
//! key's public half; otherwise it is refused, never half-used.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use lichen_api::common::HashAlgorithm;
use lichen_api::envelope::Signer;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{DerSignature, SigningKey};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::der::asn1::{
    BitString, ObjectIdentifier, OctetString, SetOfVec, UtcTime, Utf8StringRef,
};
use x509_cert::der::{Any, Encode};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::ext::Extension;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, TbsCertificate, Version};

/// How long a device certificate is valid.
pub const VALIDITY: Duration = Duration::from_secs(20 * 365 * 24 * 3600 + 5 * 24 * 3600);

/// ecdsa-with-SHA256.
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
/// id-ecPublicKey.
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// The P-256 curve.
const PRIME256V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// id-at-commonName.
const COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

/// Why an identity could not be made or restored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityError {
    /// No randomness: a key must never come from predictable bytes.
    NoEntropy,
    /// The stored key is not a P-256 private key.
    BadKey,
    /// The stored certificate does not parse, or is not this key's certificate.
    BadCertificate(&'static str),
    /// Encoding the certificate failed (a name or time out of range).
    Encoding,
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityError::NoEntropy => f.write_str("no randomness for the device key"),
            IdentityError::BadKey => f.write_str("the stored device key is not a P-256 key"),
            IdentityError::BadCertificate(why) => write!(f, "the stored device certificate {why}"),
            IdentityError::Encoding => f.write_str("cannot encode the device certificate"),
        }
    }
}

/// The device's key and certificate.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
    cert_der: Vec<u8>,
    cert_pem: String,
}

impl Identity {
    /// Makes a new key and a self-signed certificate for `common_name`, valid from `now_unix`
    /// (seconds) for [`VALIDITY`].
    pub fn generate(common_name: &str, now_unix: u64) -> Result<Identity, IdentityError> {
        let scalar = tls::provider::random_scalar().map_err(|_| IdentityError::NoEntropy)?;
        let key = SigningKey::from(scalar);
        let mut serial = [0u8; 16];
        tls::random::fill(&mut serial).map_err(|_| IdentityError::NoEntropy)?;
        serial[0] &= 0x7f; // a positive INTEGER
        serial[0] |= 0x01; // of 16 bytes exactly
        let cert_der = self_signed(&key, common_name, &serial, now_unix)?;
        Identity::from_parts(key, cert_der)
    }

    /// An identity as stored: the key's 32-byte scalar and the certificate's DER; both are
    /// checked (see the module's documentation).
    pub fn restore(key: &[u8], cert_der: &[u8]) -> Result<Identity, IdentityError> {
        if key.len() != 32 {
            return Err(IdentityError::BadKey);
        }
        let key = SigningKey::from_slice(key).map_err(|_| IdentityError::BadKey)?;
        let public = crate::x509::p256_key(cert_der).map_err(IdentityError::BadCertificate)?;
        if public != *key.verifying_key() {
            return Err(IdentityError::BadCertificate("is for another key"));
        }
        Identity::from_parts(key, cert_der.to_vec())
    }

    fn from_parts(key: SigningKey, cert_der: Vec<u8>) -> Result<Identity, IdentityError> {
        let cert_pem = crate::x509::certificate_pem(&cert_der);
        Ok(Identity {
            key,
            cert_der,
            cert_pem,
        })
    }

    /// The key's 32-byte scalar, for storing.
    pub fn key_bytes(&self) -> Vec<u8> {
        self.key.to_bytes().to_vec()
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Signs the device's requests: identified by the SHA-256 of the certificate's DER.
    pub fn signer(&self) -> Signer {
        Signer::new(
            self.key.clone(),
            &self.cert_der,
            HashAlgorithm::Sha25632bytes,
        )
    }
}

/// The DER of a self-signed certificate for `key`.
fn self_signed(
    key: &SigningKey,
    common_name: &str,
    serial: &[u8],
    now_unix: u64,
) -> Result<Vec<u8>, IdentityError> {
    let e = |_| IdentityError::Encoding;
    let name = {
        let cn = AttributeTypeAndValue {
            oid: COMMON_NAME,
            value: Any::from(Utf8StringRef::new(common_name).map_err(e)?),
        };
        let rdn = RelativeDistinguishedName::from(SetOfVec::try_from([cn]).map_err(e)?);
        Name::from(RdnSequence::from(alloc::vec![rdn]))
    };
    let from = Duration::from_secs(now_unix);
    let validity = Validity {
        not_before: time(from)?,
        not_after: time(from + VALIDITY)?,
    };
    let spki = SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: EC_PUBLIC_KEY,
            parameters: Some(Any::from(&PRIME256V1)),
        },
        subject_public_key: BitString::from_bytes(
            key.verifying_key().to_encoded_point(false).as_bytes(),
        )
        .map_err(e)?,
    };
    let algorithm = AlgorithmIdentifierOwned {
        oid: ECDSA_WITH_SHA256,
        parameters: None,
    };
    let extensions = alloc::vec![
        extension(
            ObjectIdentifier::new_unwrap("2.5.29.19"),
            &BasicConstraints {
                ca: false,
                path_len_constraint: None,
            },
        )?,
        extension(
            ObjectIdentifier::new_unwrap("2.5.29.15"),
            &KeyUsage(KeyUsages::DigitalSignature.into()),
        )?,
    ];
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(serial).map_err(e)?,
        signature: algorithm.clone(),
        issuer: name.clone(),
        validity,
        subject: name,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    let signature: DerSignature = key.sign(&tbs.to_der().map_err(e)?);
    Certificate {
        tbs_certificate: tbs,
        signature_algorithm: algorithm,
        signature: BitString::from_bytes(signature.as_bytes()).map_err(e)?,
    }
    .to_der()
    .map_err(e)
}

/// A critical extension holding `value`.
fn extension(oid: ObjectIdentifier, value: &impl Encode) -> Result<Extension, IdentityError> {
    let der = value.to_der().map_err(|_| IdentityError::Encoding)?;
    Ok(Extension {
        extn_id: oid,
        critical: true,
        extn_value: OctetString::new(der).map_err(|_| IdentityError::Encoding)?,
    })
}

/// A certificate time: UTCTime until 2049, GeneralizedTime after (RFC 5280 4.1.2.5).
fn time(since_epoch: Duration) -> Result<Time, IdentityError> {
    match UtcTime::from_unix_duration(since_epoch) {
        Ok(t) => Ok(Time::UtcTime(t)),
        Err(_) => x509_cert::der::asn1::GeneralizedTime::from_unix_duration(since_epoch)
            .map(Time::GeneralTime)
            .map_err(|_| IdentityError::Encoding),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_cert::der::Decode;

    const NOW: u64 = 1_796_000_000; // 2026-11

    #[test]
    fn a_new_identity_is_self_signed_for_20_years_and_restores() {
        let id = Identity::generate("lichen device sn-1", NOW).unwrap();
        let cert = Certificate::from_der(id.cert_der()).unwrap();
        assert_eq!(
            lichen_api::cert::subject(id.cert_der()).unwrap(),
            "CN=lichen device sn-1"
        );
        let validity = cert.tbs_certificate.validity;
        let years = (validity.not_after.to_unix_duration()
            - validity.not_before.to_unix_duration())
        .as_secs()
            / (365 * 24 * 3600);
        assert_eq!(years, 20);
        assert_eq!(
            lichen_api::cert::public_key(id.cert_der()).unwrap(),
            *id.key.verifying_key()
        );
        let again = Identity::restore(&id.key_bytes(), id.cert_der()).unwrap();
        assert_eq!(again.cert_der(), id.cert_der());
        assert_eq!(again.signer().cert_hash(), id.signer().cert_hash());
        assert!(id.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    }

    #[test]
    fn a_damaged_or_mismatched_identity_is_refused() {
        let id = Identity::generate("a", NOW).unwrap();
        let other = Identity::generate("b", NOW).unwrap();
        assert_eq!(
            Identity::restore(&[0; 32], id.cert_der()).err(),
            Some(IdentityError::BadKey)
        );
        assert_eq!(
            Identity::restore(&id.key_bytes()[..31], id.cert_der()).err(),
            Some(IdentityError::BadKey)
        );
        assert_eq!(
            Identity::restore(&other.key_bytes(), id.cert_der()).err(),
            Some(IdentityError::BadCertificate("is for another key"))
        );
        // A byte of the public key changed: the certificate no longer matches the key.
        let mut cert = id.cert_der().to_vec();
        let point = cert
            .windows(4)
            .position(|w| w == [0x03, 0x42, 0x00, 0x04])
            .expect("the key's BIT STRING")
            + 10;
        cert[point] ^= 1;
        assert!(Identity::restore(&id.key_bytes(), &cert).is_err());
        assert_eq!(
            Identity::restore(&id.key_bytes(), b"junk").err(),
            Some(IdentityError::BadCertificate(
                "not a valid X.509 certificate"
            ))
        );
    }

    #[test]
    fn dates_after_2049_are_generalized_time() {
        assert!(matches!(
            time(Duration::from_secs(NOW)),
            Ok(Time::UtcTime(_))
        ));
        assert!(matches!(
            time(Duration::from_secs(2_600_000_000)),
            Ok(Time::GeneralTime(_))
        ));
    }
}
