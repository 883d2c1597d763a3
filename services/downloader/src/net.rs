//! The downloader's network: TCP from `kernel::net`, TLS 1.3 from `tls` for HTTPS datastores
//! (verified against the pinned root of the config partition), and the kernel's clock and
//! randomness for the engine's pauses and jitter.
//!
//! Every connect and read is bounded by the timeout given: a datastore that stalls fails the
//! attempt (which the engine retries) instead of holding the download forever.

use alloc::format;
use alloc::string::String;
use core::net::{IpAddr, SocketAddr};

use download::{Source, Stream};
use kernel::net::{TcpOptions, TcpStream};
use kernel::Duration;
use tls::{TlsStream, Trust};

/// TCP receive buffer (the window offered) by default: large enough to keep a LAN datastore
/// streaming.
pub const RX_BUFFER: usize = 64 * 1024;

/// A connection to a datastore.
pub enum Conn {
    /// Plain HTTP.
    Plain(TcpStream),
    /// HTTPS (boxed: the TLS state is large, and there is one connection at a time).
    Tls(alloc::boxed::Box<TlsStream<TcpStream>>),
}

impl Stream for Conn {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        match self {
            Conn::Plain(tcp) => tcp.read(buf).await.map_err(|e| format!("{e}")),
            Conn::Tls(tls) => tls.read(buf).await.map_err(|e| format!("{e}")),
        }
    }

    async fn write_all(&mut self, data: &[u8]) -> Result<(), String> {
        match self {
            Conn::Plain(tcp) => tcp.write_all(data).await.map_err(|e| format!("{e}")),
            Conn::Tls(tls) => tls.write_all(data).await.map_err(|e| format!("{e}")),
        }
    }
}

/// The network as the engine sees it.
pub struct KernelNet {
    /// The pinned root for HTTPS datastores (`None`: HTTPS is refused).
    pub trust: Option<Trust>,
    /// Bound on each connect, read and write.
    pub timeout: Duration,
    /// TCP receive buffer bytes (above 64 KiB the window is scaled).
    pub rx_buffer: usize,
    /// Whether the download running is still wanted (`None`: always).
    pub still_wanted: Option<alloc::boxed::Box<dyn FnMut() -> bool>>,
}

impl download::Net for KernelNet {
    type Stream = Conn;

    async fn connect(&mut self, source: &Source) -> Result<Conn, String> {
        let addresses = kernel::net::resolve(&source.host)
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", source.host))?;
        let ip: IpAddr = *addresses
            .iter()
            .find(|a| a.is_ipv4())
            .or(addresses.first())
            .ok_or_else(|| format!("{} has no address", source.host))?;
        let options = TcpOptions {
            rx_buffer: self.rx_buffer,
            timeout: Some(self.timeout),
            ..TcpOptions::default()
        };
        let tcp = TcpStream::connect(SocketAddr::new(ip, source.port), options)
            .await
            .map_err(|e| format!("{e}"))?;
        if !source.tls {
            return Ok(Conn::Plain(tcp));
        }
        let trust = self
            .trust
            .as_ref()
            .ok_or("an HTTPS datastore, but no root-certificate.pem to verify it against")?;
        let tls = kernel::timeout(self.timeout, TlsStream::connect(trust, &source.host, tcp))
            .await
            .map_err(|_| String::from("TLS handshake timed out"))?
            .map_err(|e| format!("TLS with {}: {e}", source.host))?;
        Ok(Conn::Tls(alloc::boxed::Box::new(tls)))
    }

    async fn sleep(&mut self, ms: u64) {
        kernel::sleep(Duration::from_millis(ms)).await;
    }

    fn cancelled(&mut self) -> bool {
        self.still_wanted.as_mut().is_some_and(|still| !still())
    }

    fn random(&mut self) -> u32 {
        kernel::random::word().map_or(0, |w| w as u32)
    }
}

/// The wall clock in seconds since the Unix epoch, for certificate validity.
pub fn unix_now() -> Option<u64> {
    kernel::wall_clock().and_then(|t| u64::try_from(t.as_secs()).ok())
}
