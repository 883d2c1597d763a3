//! The controller's certificates, created on first start in the state directory:
//! - `ca.pem`/`ca.key`: the root that devices and the admin CLI trust;
//! - `server.pem`/`server.key`: the TLS server certificate, issued by the root;
//! - `signing.pem`/`signing.key`: the certificate whose key signs every response envelope,
//!   issued by the root and served by the `certs` route.
//!
//! All keys are ECDSA P-256; key files are readable by their owner only.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use p256::ecdsa::SigningKey;
use p256::pkcs8::DecodePrivateKey;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

/// A certificate with its private key.
#[derive(Clone)]
pub struct Identity {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The private key, for signing envelopes.
    pub key: SigningKey,
}

impl Identity {
    /// A new key with a self-signed certificate for `common_name` (as devices and onboarding
    /// certificates are).
    pub fn self_signed(common_name: &str) -> io::Result<Self> {
        let key = new_key()?;
        let cert = leaf_params(common_name, &[])?
            .self_signed(&key)
            .map_err(other)?;
        Self::from_parts(cert.pem(), &key.serialize_pem())
    }

    /// A new key with a certificate for `common_name` issued by this identity, whose own
    /// self-signed certificate is for `own_common_name` (as a device issues its attestation
    /// key's certificate).
    pub fn issue(&self, own_common_name: &str, common_name: &str) -> io::Result<Self> {
        let issuer_key = KeyPair::from_pem(&self.key_pem).map_err(other)?;
        // The same subject and key as our certificate: what the issued one names as issuer.
        let issuer = leaf_params(own_common_name, &[])?
            .self_signed(&issuer_key)
            .map_err(other)?;
        let key = new_key()?;
        let cert = leaf_params(common_name, &[])?
            .signed_by(&key, &issuer, &issuer_key)
            .map_err(other)?;
        Self::from_parts(cert.pem(), &key.serialize_pem())
    }

    /// An identity from PEM files' contents.
    pub fn from_parts(cert_pem: String, key_pem: &str) -> io::Result<Self> {
        let cert_der = lichen_api::cert::pem_to_der(&cert_pem).map_err(other)?;
        let key = SigningKey::from_pkcs8_pem(key_pem).map_err(other)?;
        Ok(Self {
            cert_pem,
            cert_der,
            key_pem: key_pem.to_owned(),
            key,
        })
    }

    /// Reads `dir/{name}.pem` and `dir/{name}.key`.
    pub fn load(dir: &Path, name: &str) -> io::Result<Self> {
        let cert_pem = fs::read_to_string(dir.join(format!("{name}.pem")))?;
        let key_pem = fs::read_to_string(dir.join(format!("{name}.key")))?;
        Self::from_parts(cert_pem, &key_pem)
    }

    /// Writes `dir/{name}.pem` and `dir/{name}.key` (owner-only), creating them.
    pub fn save(&self, dir: &Path, name: &str) -> io::Result<()> {
        fs::write(dir.join(format!("{name}.pem")), &self.cert_pem)?;
        write_private(&dir.join(format!("{name}.key")), self.key_pem.as_bytes())
    }
}

/// The controller's root, TLS and signing identities.
pub struct Pki {
    /// The root certificate authority.
    pub ca: Identity,
    /// The TLS server certificate.
    pub server: Identity,
    /// The envelope signing certificate.
    pub signing: Identity,
}

impl Pki {
    /// Loads the identities from `dir`, creating all of them if none exists yet. `server_names`
    /// (DNS names or IP addresses) go into a new server certificate, besides `localhost`,
    /// `127.0.0.1` and `::1`.
    pub fn load_or_create(dir: &Path, server_names: &[String]) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        if !dir.join("ca.pem").exists() {
            Self::create(server_names)?.save(dir)?;
        }
        Ok(Self {
            ca: Identity::load(dir, "ca")?,
            server: Identity::load(dir, "server")?,
            signing: Identity::load(dir, "signing")?,
        })
    }

    fn create(server_names: &[String]) -> io::Result<Self> {
        let ca_key = new_key()?;
        let mut ca_params = CertificateParams::new(Vec::new()).map_err(other)?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "lichen controller root");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).map_err(other)?;

        let mut names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        names.extend(server_names.iter().cloned());
        let server_key = new_key()?;
        let mut server_params = leaf_params("lichen controller", &names)?;
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server_params
            .signed_by(&server_key, &ca_cert, &ca_key)
            .map_err(other)?;

        let signing_key = new_key()?;
        let signing_cert = leaf_params("lichen controller signing", &[])?
            .signed_by(&signing_key, &ca_cert, &ca_key)
            .map_err(other)?;

        let identity = |cert: rcgen::Certificate, key: &KeyPair| {
            Identity::from_parts(cert.pem(), &key.serialize_pem())
        };
        Ok(Self {
            ca: identity(ca_cert, &ca_key)?,
            server: identity(server_cert, &server_key)?,
            signing: identity(signing_cert, &signing_key)?,
        })
    }

    fn save(&self, dir: &Path) -> io::Result<()> {
        // The root goes last: its presence marks a complete set.
        self.server.save(dir, "server")?;
        self.signing.save(dir, "signing")?;
        self.ca.save(dir, "ca")
    }
}

fn new_key() -> io::Result<KeyPair> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(other)
}

fn leaf_params(common_name: &str, names: &[String]) -> io::Result<CertificateParams> {
    let mut params = CertificateParams::new(names.to_vec()).map_err(other)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    Ok(params)
}

/// Creates `path` with owner-only permissions and writes `contents`.
pub fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

fn other(error: impl std::fmt::Display) -> io::Error {
    io::Error::other(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lichen_api::cert::{public_key, verify_issued_by};

    #[test]
    fn creates_a_chain_once_and_reloads_it() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &["ctl.example".into()]).unwrap();
        verify_issued_by(&pki.server.cert_der, &pki.ca.cert_der).unwrap();
        verify_issued_by(&pki.signing.cert_der, &pki.ca.cert_der).unwrap();
        assert_eq!(
            public_key(&pki.signing.cert_der).unwrap(),
            *pki.signing.key.verifying_key()
        );

        let again = Pki::load_or_create(dir.path(), &[]).unwrap();
        assert_eq!(again.ca.cert_pem, pki.ca.cert_pem);
        assert_eq!(again.signing.key_pem, pki.signing.key_pem);
        let mode = fs::metadata(dir.path().join("signing.key"))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }
}
