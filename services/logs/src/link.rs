//! The HTTPS connection to the controller: TCP from `kernel::net`, TLS 1.3 from `tls`
//! (verified against the pinned root), HTTP from `device_api::http`; kept alive between
//! uploads, dropped after any error, every call bounded by [`CALL_TIMEOUT`].
//!
//! zedagent has the same link (services/zedagent/src/link.rs, owned by another pillar's
//! author); both should move to one shared crate.

use alloc::format;
use alloc::string::String;
use core::net::{IpAddr, SocketAddr};

use device_api::http::{self, Response};
use kernel::net::{TcpOptions, TcpStream};
use kernel::Duration;
use tls::{TlsStream, Trust};

/// The longest one request may take, connecting included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest response body accepted (newlogs answers have none).
const MAX_BODY: usize = 64 * 1024;

/// The controller's address and the connection to it.
pub struct Link {
    trust: Trust,
    host: String,
    port: u16,
    stream: Option<TlsStream<TcpStream>>,
}

impl Link {
    /// A link to `host:port`, trusting `trust`.
    pub fn new(trust: Trust, host: String, port: u16) -> Link {
        Link {
            trust,
            host,
            port,
            stream: None,
        }
    }

    /// POSTs `body` (a signed envelope) to `path` under the device API.
    pub async fn post(&mut self, path: &str, body: &[u8]) -> Result<Response, String> {
        let request = http::request(
            "POST",
            &format!("{}:{}", self.host, self.port),
            &format!("{}/{path}", lichen_api::API_PREFIX),
            Some((lichen_api::CONTENT_TYPE, body)),
        );
        // A kept-alive connection may have been closed meanwhile: retry once on a new one
        // (a repeated newlogs upload is harmless).
        let reused = self.stream.is_some();
        match self.call(&request).await {
            Err(_) if reused => self.call(&request).await,
            result => result,
        }
    }

    async fn call(&mut self, request: &[u8]) -> Result<Response, String> {
        let result = kernel::timeout(CALL_TIMEOUT, async {
            if self.stream.is_none() {
                self.stream = Some(self.connect().await?);
            }
            let stream = self.stream.as_mut().expect("connected above");
            http::exchange(stream, request, MAX_BODY)
                .await
                .map_err(|e| format!("{e}"))
        })
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", CALL_TIMEOUT.as_secs())));
        match &result {
            Ok(response) if !response.close => {}
            _ => self.stream = None,
        }
        result
    }

    async fn connect(&mut self) -> Result<TlsStream<TcpStream>, String> {
        let addresses = kernel::net::resolve(&self.host)
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?;
        let ip: IpAddr = *addresses
            .iter()
            .find(|a| a.is_ipv4())
            .or(addresses.first())
            .ok_or_else(|| format!("{} has no address", self.host))?;
        let options = TcpOptions {
            timeout: Some(CALL_TIMEOUT),
            keep_alive: Some(Duration::from_secs(30)),
            ..TcpOptions::default()
        };
        let tcp = TcpStream::connect(SocketAddr::new(ip, self.port), options)
            .await
            .map_err(|e| format!("cannot connect to {ip}:{}: {e}", self.port))?;
        TlsStream::connect(&self.trust, &self.host, tcp)
            .await
            .map_err(|e| format!("TLS with {}: {e}", self.host))
    }
}
