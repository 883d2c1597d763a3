//! The config partition's files as lichen-devsim and OpenSSL-style tools write them (rcgen).

use alloc::collections::BTreeMap;

use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};

use super::*;
use x509_cert::der::pem;

fn files() -> BTreeMap<&'static str, Vec<u8>> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = CertificateParams::new(Vec::new())
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let root = CertificateParams::new(Vec::new())
        .unwrap()
        .self_signed(&root_key)
        .unwrap();
    let mut files = BTreeMap::new();
    files.insert("root-certificate.pem", root.pem().into_bytes());
    files.insert("onboard.cert.pem", cert.pem().into_bytes());
    files.insert("onboard.key.pem", key.serialize_pem().into_bytes());
    files.insert("server", b"10.0.2.2:8443\n".to_vec());
    files.insert("serial", b"node-1\n".to_vec());
    files
}

fn read(files: &BTreeMap<&'static str, Vec<u8>>) -> Result<Bootstrap, BootstrapError> {
    Bootstrap::read(|name| files.get(name).map(|v| v.as_slice()))
}

#[test]
fn a_complete_partition_reads() {
    let b = read(&files()).unwrap();
    assert_eq!(
        (b.host.as_str(), b.port, b.serial.as_str()),
        ("10.0.2.2", 8443, "node-1")
    );
    assert!(
        lichen_api::cert::decode_base64_pem(&b.onboarding.seal(Vec::new()).sender_cert)
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
}

#[test]
fn server_forms() {
    assert_eq!(server("ctl.example"), Ok(("ctl.example".into(), 443)));
    assert_eq!(server("ctl.example:9\n"), Ok(("ctl.example".into(), 9)));
    assert_eq!(server("[::1]:8443"), Ok(("::1".into(), 8443)));
    assert_eq!(server("[::1]"), Ok(("::1".into(), 443)));
    assert!(server("ctl:0").is_err());
    assert!(server("ctl:99999").is_err());
    assert!(server("").is_err());
    assert!(server("a b:1").is_err());
    assert!(server("[::1").is_err());
}

#[test]
fn each_bad_file_is_named() {
    let cases: &[(&str, Option<&[u8]>, &str)] = &[
        ("root-certificate.pem", None, "missing"),
        ("root-certificate.pem", Some(b"junk"), "no PEM block"),
        (
            "onboard.cert.pem",
            Some(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            "not a valid X.509 certificate",
        ),
        ("onboard.key.pem", Some(b"\xff"), "not text"),
        ("server", Some(b"host:0"), "port not 1..65535"),
        (
            "serial",
            Some(b"a serial with spaces"),
            "not up to 128 printable characters",
        ),
    ];
    for (file, contents, reason) in cases {
        let mut f = files();
        match contents {
            Some(c) => f.insert(file, c.to_vec()),
            None => f.remove(file),
        };
        assert_eq!(read(&f).err(), Some(bad(file, reason)), "{file}");
    }
    let mut f = files();
    let other = files();
    f.insert("onboard.key.pem", other["onboard.key.pem"].clone());
    assert_eq!(
        read(&f).err(),
        Some(bad("onboard.key.pem", "does not match onboard.cert.pem"))
    );
    let mut f = files();
    f.remove("serial");
    assert_eq!(read(&f).unwrap().serial, "");
}

#[test]
fn sec1_keys_after_ec_parameters_are_read() {
    let key = p256::SecretKey::from_slice(&[7; 32]).unwrap();
    let sec1 = key.to_sec1_der().unwrap();
    let pem = alloc::format!(
        "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{}",
        pem::encode_string("EC PRIVATE KEY", pem::LineEnding::LF, &sec1).unwrap()
    );
    assert_eq!(
        private_key(&pem).unwrap().to_bytes(),
        SigningKey::from(key).to_bytes()
    );
}
