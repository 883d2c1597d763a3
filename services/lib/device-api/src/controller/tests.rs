//! The controller's certificates as lichen's controller makes them (rcgen: a root, a signing
//! certificate it issued), and envelopes signed with lichen-api's `Signer`.

use alloc::vec;
use lichen_api::certs::ZCert;
use lichen_api::envelope::Signer;
use p256::pkcs8::DecodePrivateKey;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, PKCS_ECDSA_P256_SHA256};

use super::*;

pub(crate) const NOW: Option<u64> = Some(1_796_000_000);

/// A root and a signing certificate.
pub(crate) struct Controller {
    pub root_der: Vec<u8>,
    pub signing_pem: String,
    pub signer: Signer,
}

pub(crate) fn controller() -> Controller {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca = CertificateParams::new(Vec::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = CertificateParams::new(Vec::new())
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let signing_key = p256::ecdsa::SigningKey::from_pkcs8_der(&key.serialize_der()).unwrap();
    let signing_pem = cert.pem();
    Controller {
        root_der: ca.der().to_vec(),
        signer: Signer::new(
            signing_key,
            signing_pem.as_bytes(),
            HashAlgorithm::Sha25632bytes,
        ),
        signing_pem,
    }
}

/// A `certs` answer carrying `pem`, signed by `signer`.
pub(crate) fn certs_body(pem: &str, signer: &Signer) -> Vec<u8> {
    let certs = ZControllerCert {
        certs: vec![ZCert {
            hash_algo: HashAlgorithm::Sha25632bytes as i32,
            cert_hash: lichen_api::cert::cert_hash(pem.as_bytes(), HashAlgorithm::Sha25632bytes)
                .unwrap(),
            r#type: ZCertType::CertTypeControllerSigning as i32,
            cert: pem.as_bytes().to_vec(),
            ..Default::default()
        }],
    };
    signer.seal_to_bytes(&certs)
}

#[test]
fn the_signing_certificate_is_trusted_and_opens_its_envelopes() {
    let c = controller();
    let signing =
        SigningCert::from_certs(&certs_body(&c.signing_pem, &c.signer), &c.root_der, NOW).unwrap();
    let body = c.signer.seal_to_bytes(&lichen_api::uuid::UuidResponse {
        uuid: "u-1".into(),
        ..Default::default()
    });
    let uuid: lichen_api::uuid::UuidResponse = signing.open_message(&body, "uuid").unwrap();
    assert_eq!(uuid.uuid, "u-1");

    // A byte flipped anywhere in the payload or signature: refused.
    let (container, _) = envelope::decode(&body).unwrap();
    let mut tampered = container.clone();
    tampered.protected_payload.as_mut().unwrap().payload[0] ^= 0x80;
    assert_eq!(
        signing.open(&tampered),
        Err(ControllerError::Envelope(EnvelopeError::BadSignature))
    );
    let mut tampered = container.clone();
    tampered.signature_hash[5] ^= 1;
    assert!(signing.open(&tampered).is_err());
    let mut other = container;
    other.sender_cert_hash = vec![0; 32];
    assert_eq!(signing.open(&other), Err(ControllerError::UnknownSigner));
}

#[test]
fn certs_from_another_root_or_out_of_time_are_refused() {
    let c = controller();
    let other = controller();
    let body = certs_body(&c.signing_pem, &c.signer);
    assert!(matches!(
        SigningCert::from_certs(&body, &other.root_der, NOW),
        Err(ControllerError::Untrusted(_))
    ));
    assert_eq!(
        SigningCert::from_certs(&body, &c.root_der, None).err(),
        Some(ControllerError::Expired)
    );
    assert_eq!(
        SigningCert::from_certs(&body, &c.root_der, Some(100)).err(),
        Some(ControllerError::Expired)
    );
    // Signed by someone else than the certificate it carries.
    let forged = certs_body(&c.signing_pem, &other.signer);
    assert!(SigningCert::from_certs(&forged, &c.root_der, NOW).is_err());
    // A hash that does not match.
    let mut certs = ZControllerCert::decode(
        envelope::decode(&body)
            .unwrap()
            .0
            .protected_payload
            .unwrap()
            .payload
            .as_slice(),
    )
    .unwrap();
    certs.certs[0].cert_hash[0] ^= 1;
    assert_eq!(
        SigningCert::from_certs(&c.signer.seal_to_bytes(&certs), &c.root_der, NOW).err(),
        Some(ControllerError::HashMismatch)
    );
    certs.certs.clear();
    assert_eq!(
        SigningCert::from_certs(&c.signer.seal_to_bytes(&certs), &c.root_der, NOW).err(),
        Some(ControllerError::NoSigningCert)
    );
}
