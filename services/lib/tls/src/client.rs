//! A TLS 1.3 client connection over any byte stream, driven through rustls's unbuffered API.
//!
//! ```ignore
//! let trust = Trust::new(&root_der, clock)?;               // the pinned root, the wall clock
//! let tcp = kernel::net::TcpStream::connect(addr, options).await?;
//! let mut tls = TlsStream::connect(&trust, "controller.example", tcp).await?;
//! tls.write_all(b"GET / HTTP/1.1\r\n...").await?;
//! let n = tls.read(&mut buf).await?;                        // 0: the server closed
//! ```

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::future::Future;

use rustls::client::{UnbufferedClientConnection, WebPkiServerVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::time_provider::TimeProvider;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls::{ClientConfig, RootCertStore};

/// The byte stream under a TLS connection.
pub trait Transport {
    /// Reads some bytes; 0 means the peer closed its side.
    fn read(&mut self, buf: &mut [u8]) -> impl Future<Output = Result<usize, String>>;
    /// Writes all of `buf`.
    fn write_all(&mut self, buf: &[u8]) -> impl Future<Output = Result<(), String>>;
}

#[cfg(target_os = "none")]
impl Transport for kernel::net::TcpStream {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        kernel::net::TcpStream::read(self, buf)
            .await
            .map_err(|e| alloc::format!("{e}"))
    }

    async fn write_all(&mut self, buf: &[u8]) -> Result<(), String> {
        kernel::net::TcpStream::write_all(self, buf)
            .await
            .map_err(|e| alloc::format!("{e}"))
    }
}

/// Why a TLS connection failed.
#[derive(Clone, Debug, PartialEq)]
pub enum TlsError {
    /// The root certificate is not usable as a trust anchor.
    BadRoot(String),
    /// The server name is not a valid DNS name or IP address.
    BadName(String),
    /// rustls refused the peer or the protocol failed (the certificate did not verify, a
    /// record did not authenticate, an alert came).
    Tls(rustls::Error),
    /// The byte stream failed.
    Transport(String),
    /// The peer closed the stream during the handshake, or in the middle of a record.
    Truncated,
    /// A record larger than TLS allows.
    Oversized,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::BadRoot(why) => write!(f, "root certificate: {why}"),
            TlsError::BadName(name) => write!(f, "not a server name: {name:?}"),
            TlsError::Tls(e) => write!(f, "TLS: {e}"),
            TlsError::Transport(e) => write!(f, "connection: {e}"),
            TlsError::Truncated => f.write_str("connection closed before the TLS exchange ended"),
            TlsError::Oversized => f.write_str("TLS record too large"),
        }
    }
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        TlsError::Tls(e)
    }
}

/// The wall clock, as rustls asks for it: `None` (not set yet) fails every handshake.
pub struct Clock(pub fn() -> Option<u64>);

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

impl TimeProvider for Clock {
    fn current_time(&self) -> Option<UnixTime> {
        (self.0)().map(|secs| UnixTime::since_unix_epoch(core::time::Duration::from_secs(secs)))
    }
}

/// What a client trusts: one root certificate, and the clock it checks validity with.
#[derive(Clone)]
pub struct Trust {
    config: Arc<ClientConfig>,
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Trust")
    }
}

impl Trust {
    /// Trusts `root_der` (a DER certificate) alone; `unix_seconds` reads the wall clock.
    pub fn new(root_der: &[u8], unix_seconds: fn() -> Option<u64>) -> Result<Trust, TlsError> {
        let provider = Arc::new(crate::provider::provider());
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(root_der.to_vec()))
            .map_err(|e| TlsError::BadRoot(e.to_string()))?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| TlsError::BadRoot(e.to_string()))?;
        let config = ClientConfig::builder_with_details(provider, Arc::new(Clock(unix_seconds)))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_webpki_verifier(verifier)
            .with_no_client_auth();
        Ok(Trust {
            config: Arc::new(config),
        })
    }
}

/// Bytes of the incoming buffer: the largest TLS 1.3 record (2^14 + 256 bytes of ciphertext and
/// a 5-byte header) and room to start reading the next.
const INCOMING: usize = 16 * 1024 + 256 + 5 + 1024;
/// Plaintext per record written.
const MAX_FRAGMENT: usize = 16 * 1024;

/// A TLS client connection over `T`.
pub struct TlsStream<T> {
    conn: UnbufferedClientConnection,
    transport: T,
    incoming: Box<[u8]>,
    /// Bytes of `incoming` received and not yet consumed by rustls.
    received: usize,
    outgoing: Vec<u8>,
    /// Decrypted application data not yet read.
    plain: Vec<u8>,
    /// The peer sent close_notify or the stream ended cleanly after it.
    peer_closed: bool,
}

/// What [`TlsStream::drive`] runs until.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Goal<'a> {
    Handshake,
    Write(&'a [u8]),
    Read,
    Close,
}

impl<T: Transport> TlsStream<T> {
    /// Runs the handshake with `server_name` (a DNS name or an IP address) over `transport`.
    pub async fn connect(
        trust: &Trust,
        server_name: &str,
        transport: T,
    ) -> Result<TlsStream<T>, TlsError> {
        let name = ServerName::try_from(server_name.to_string())
            .map_err(|_| TlsError::BadName(server_name.to_string()))?;
        let conn = UnbufferedClientConnection::new(trust.config.clone(), name)?;
        let mut stream = TlsStream {
            conn,
            transport,
            incoming: vec![0; INCOMING].into_boxed_slice(),
            received: 0,
            outgoing: vec![0; 2048],
            plain: Vec::new(),
            peer_closed: false,
        };
        stream.drive(Goal::Handshake).await?;
        Ok(stream)
    }

    /// The byte stream under the connection (to set its timeouts, say).
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Sends all of `data`.
    pub async fn write_all(&mut self, data: &[u8]) -> Result<(), TlsError> {
        for chunk in data.chunks(MAX_FRAGMENT) {
            self.drive(Goal::Write(chunk)).await?;
        }
        Ok(())
    }

    /// Reads decrypted bytes; 0 means the server closed the connection (close_notify).
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, TlsError> {
        if self.plain.is_empty() && !self.peer_closed {
            self.drive(Goal::Read).await?;
        }
        let n = buf.len().min(self.plain.len());
        buf[..n].copy_from_slice(&self.plain[..n]);
        self.plain.drain(..n);
        Ok(n)
    }

    /// Sends close_notify and gives back the byte stream.
    pub async fn close(mut self) -> Result<T, TlsError> {
        if !self.peer_closed {
            self.drive(Goal::Close).await?;
        }
        Ok(self.transport)
    }

    /// Runs rustls's state machine until `goal` is met.
    async fn drive(&mut self, goal: Goal<'_>) -> Result<(), TlsError> {
        let TlsStream {
            conn,
            transport,
            incoming,
            received,
            outgoing,
            plain,
            peer_closed,
        } = self;
        let mut written = 0; // bytes of `outgoing` encoded and not yet sent
        loop {
            let UnbufferedStatus { mut discard, state } =
                conn.process_tls_records(&mut incoming[..*received]);
            let mut done = false;
            let mut need_input = false;
            match state? {
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        let record = record?;
                        discard += record.discard;
                        plain.extend_from_slice(record.payload);
                    }
                }
                ConnectionState::EncodeTlsData(mut encode) => loop {
                    match encode.encode(&mut outgoing[written..]) {
                        Ok(n) => {
                            written += n;
                            break;
                        }
                        Err(EncodeError::InsufficientSize(e)) => {
                            outgoing.resize(written + e.required_size, 0)
                        }
                        Err(e) => return Err(TlsError::Tls(rustls::Error::General(e.to_string()))),
                    }
                },
                ConnectionState::TransmitTlsData(transmit) => {
                    transport
                        .write_all(&outgoing[..written])
                        .await
                        .map_err(TlsError::Transport)?;
                    written = 0;
                    transmit.done();
                }
                ConnectionState::BlockedHandshake => need_input = true,
                ConnectionState::WriteTraffic(mut traffic) => match goal {
                    Goal::Handshake => done = true,
                    Goal::Read if !plain.is_empty() => done = true,
                    Goal::Read => need_input = true,
                    Goal::Write(data) => {
                        let n = loop {
                            match traffic.encrypt(data, &mut outgoing[written..]) {
                                Ok(n) => break n,
                                Err(EncryptError::InsufficientSize(e)) => {
                                    outgoing.resize(written + e.required_size, 0)
                                }
                                Err(e) => {
                                    return Err(TlsError::Tls(rustls::Error::General(
                                        e.to_string(),
                                    )))
                                }
                            }
                        };
                        send(transport, &outgoing[..written + n]).await?;
                        done = true;
                    }
                    Goal::Close => {
                        let n = loop {
                            match traffic.queue_close_notify(&mut outgoing[written..]) {
                                Ok(n) => break n,
                                Err(EncryptError::InsufficientSize(e)) => {
                                    outgoing.resize(written + e.required_size, 0)
                                }
                                Err(e) => {
                                    return Err(TlsError::Tls(rustls::Error::General(
                                        e.to_string(),
                                    )))
                                }
                            }
                        };
                        send(transport, &outgoing[..written + n]).await?;
                        done = true;
                    }
                },
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    *peer_closed = true;
                    if goal == Goal::Handshake {
                        return Err(TlsError::Truncated);
                    }
                    done = true;
                }
                _ => {
                    return Err(TlsError::Tls(rustls::Error::General(
                        "unexpected TLS state".into(),
                    )))
                }
            }
            if discard > 0 {
                incoming.copy_within(discard..*received, 0);
                *received -= discard;
            }
            if done {
                return Ok(());
            }
            if need_input {
                if *received == incoming.len() {
                    return Err(TlsError::Oversized);
                }
                let n = transport
                    .read(&mut incoming[*received..])
                    .await
                    .map_err(TlsError::Transport)?;
                if n == 0 {
                    // The stream ended without close_notify: whatever was cut is not trusted.
                    return Err(TlsError::Truncated);
                }
                *received += n;
            }
        }
    }
}

/// A TLS connection is a byte stream too (errors as text), so that code written for
/// [`Transport`] runs over TCP and TLS alike.
impl<T: Transport> Transport for TlsStream<T> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        TlsStream::read(self, buf).await.map_err(|e| e.to_string())
    }

    async fn write_all(&mut self, buf: &[u8]) -> Result<(), String> {
        TlsStream::write_all(self, buf)
            .await
            .map_err(|e| e.to_string())
    }
}

async fn send<T: Transport>(transport: &mut T, bytes: &[u8]) -> Result<(), TlsError> {
    transport
        .write_all(bytes)
        .await
        .map_err(TlsError::Transport)
}

#[cfg(test)]
mod tests;
