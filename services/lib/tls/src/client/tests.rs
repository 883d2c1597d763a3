//! The client against rustls's own server (with the ring provider: a peer this crate did not
//! write), over loopback TCP.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, PKCS_ECDSA_P256_SHA256};

use super::*;

/// A blocking std stream as a transport (its futures are ready at once).
struct Blocking(TcpStream);

impl Transport for Blocking {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        self.0.read(buf).map_err(|e| e.to_string())
    }
    async fn write_all(&mut self, buf: &[u8]) -> Result<(), String> {
        Write::write_all(&mut self.0, buf).map_err(|e| e.to_string())
    }
}

fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = core::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// A root and a server certificate it issued for `names`.
struct Pki {
    root_der: Vec<u8>,
    server: rustls::ServerConfig,
}

fn pki(names: &[&str]) -> Pki {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca = CertificateParams::new(Vec::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    Pki {
        root_der: ca.der().to_vec(),
        server,
    }
}

/// Serves one connection: echoes one line in upper case, then closes cleanly. Returns the
/// server thread (its result: whether the handshake succeeded) and the client's transport.
fn serve(server: rustls::ServerConfig) -> (std::thread::JoinHandle<bool>, Blocking) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        let mut conn = rustls::ServerConnection::new(Arc::new(server)).unwrap();
        let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
        let mut line = [0u8; 64];
        let Ok(n) = tls.read(&mut line) else {
            return false;
        };
        let upper = line[..n].to_ascii_uppercase();
        tls.write_all(&upper).unwrap();
        tls.conn.send_close_notify();
        tls.flush().unwrap();
        true
    });
    (thread, Blocking(TcpStream::connect(addr).unwrap()))
}

fn now() -> Option<u64> {
    Some(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
}

#[test]
fn a_handshake_with_the_pinned_root_carries_data_both_ways() {
    let pki = pki(&["controller.test"]);
    let (server, tcp) = serve(pki.server);
    let trust = Trust::new(&pki.root_der, now).unwrap();
    block_on(async {
        let mut tls = TlsStream::connect(&trust, "controller.test", tcp)
            .await
            .unwrap();
        tls.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 16];
        let n = tls.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"HELLO");
        assert_eq!(
            tls.read(&mut buf).await.unwrap(),
            0,
            "close_notify is end of stream"
        );
    });
    assert!(server.join().unwrap());
}

fn refused(
    pki_names: &[&str],
    dial: &str,
    root: Option<Vec<u8>>,
    clock: fn() -> Option<u64>,
) -> TlsError {
    let pki = pki(pki_names);
    let root = root.unwrap_or(pki.root_der.clone());
    let (server, tcp) = serve(pki.server);
    let trust = Trust::new(&root, clock).unwrap();
    let error = block_on(TlsStream::connect(&trust, dial, tcp))
        .err()
        .expect("refused");
    assert!(
        !server.join().unwrap(),
        "the server saw a handshake complete"
    );
    error
}

#[test]
fn another_root_is_refused() {
    let other = pki(&["controller.test"]).root_der;
    let error = refused(&["controller.test"], "controller.test", Some(other), now);
    // rcgen gives both roots the same name: webpki finds the issuer and refuses its signature.
    assert_eq!(
        error,
        TlsError::Tls(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadSignature
        ))
    );
}

#[test]
fn another_name_is_refused() {
    let error = refused(&["controller.test"], "evil.test", None, now);
    assert!(
        matches!(
            error,
            TlsError::Tls(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. }
            ))
        ),
        "{error:?}"
    );
}

#[test]
fn a_clock_that_is_not_set_refuses_everything() {
    let error = refused(&["controller.test"], "controller.test", None, || None);
    assert!(matches!(error, TlsError::Tls(_)), "{error:?}");
}

#[test]
fn a_certificate_not_yet_valid_is_refused() {
    // rcgen's certificates are valid from 1975; a clock in 1970 is before that.
    let error = refused(&["controller.test"], "controller.test", None, || Some(1000));
    assert!(
        matches!(
            error,
            TlsError::Tls(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidYetContext { .. }
            ))
        ),
        "{error:?}"
    );
}

#[test]
fn a_chain_through_a_leaf_is_refused() {
    // root (a CA) -> a leaf (not a CA) -> the server: the leaf may not issue certificates.
    let (root_der, root_cert, root_key) = {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        (cert.der().to_vec(), cert, key)
    };
    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut leaf = CertificateParams::new(vec!["leaf.test".to_string()]).unwrap();
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "a leaf");
    let leaf = leaf.signed_by(&leaf_key, &root_cert, &root_key).unwrap();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let server_cert = CertificateParams::new(vec!["controller.test".to_string()])
        .unwrap()
        .signed_by(&key, &leaf, &leaf_key)
        .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![server_cert.der().clone(), leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let (server, tcp) = serve(server);
    let trust = Trust::new(&root_der, now).unwrap();
    let error = block_on(TlsStream::connect(&trust, "controller.test", tcp))
        .err()
        .expect("refused");
    assert!(!server.join().unwrap());
    assert!(
        matches!(error, TlsError::Tls(rustls::Error::InvalidCertificate(_))),
        "{error:?}"
    );
}

#[test]
fn a_root_that_is_not_a_certificate_is_refused() {
    assert!(matches!(
        Trust::new(b"not a certificate", now),
        Err(TlsError::BadRoot(_))
    ));
}
