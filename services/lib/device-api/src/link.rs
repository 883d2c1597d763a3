//! The link to the controller, shared by every pillar that speaks the device API (zedagent,
//! logs): one kept-alive HTTPS connection (TCP from `kernel::net`, TLS 1.3 from `tls`, verified
//! against the pinned root), opened when needed and dropped after any error.
//!
//! Every call is bounded by [`CALL_TIMEOUT`]: a controller that hangs, or a network that loses
//! the connection, costs one timeout and a reconnection, never a stuck pillar. A response body
//! larger than the link's limit is an error, never an allocation the controller chose.
//!
//! Only in a guest (`target_os = "none"`): it needs the kernel's network and clock.

use alloc::format;
use alloc::string::String;
use core::net::{IpAddr, SocketAddr};

use kernel::net::{TcpOptions, TcpStream};
use kernel::{info, Duration};
use tls::{TlsStream, Trust};

use crate::http::{self, Response};

/// The longest one request may take, connecting included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The controller's address and the connection to it.
pub struct Link {
    /// Who uses the link, for its console lines ("zedagent", "logs").
    owner: &'static str,
    trust: Trust,
    host: String,
    port: u16,
    /// The largest response body accepted.
    max_body: usize,
    stream: Option<TlsStream<TcpStream>>,
    /// Handshakes done.
    pub handshakes: u64,
    /// The duration of the last TLS handshake.
    pub last_handshake: Duration,
    /// The most heap in use seen after a call (bytes).
    pub heap_peak: u64,
}

impl Link {
    /// A link for `owner` to `host:port`, trusting `trust`, accepting response bodies of at
    /// most `max_body` bytes.
    pub fn new(
        owner: &'static str,
        trust: Trust,
        host: String,
        port: u16,
        max_body: usize,
    ) -> Link {
        Link {
            owner,
            trust,
            host,
            port,
            max_body,
            stream: None,
            handshakes: 0,
            last_handshake: Duration::ZERO,
            heap_peak: 0,
        }
    }

    /// Sends `method path` with `body` (a signed envelope, or none) and returns the response.
    /// `path` is the whole request path (see [`route`]).
    pub async fn call(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, String> {
        let authority = format!("{}:{}", self.host, self.port);
        let request = http::request(
            method,
            &authority,
            path,
            body.map(|b| (lichen_api::CONTENT_TYPE, b)),
        );
        // A kept-alive connection may have been closed by the controller meanwhile: a failure
        // on a reused connection is retried once on a new one (every route may be repeated).
        let reused = self.stream.is_some();
        match self.try_call(&request).await {
            Err(e) if reused => {
                info!("{}: connection lost ({e}); reconnecting", self.owner);
                self.try_call(&request).await
            }
            result => result,
        }
    }

    /// POSTs `body` (a signed envelope) to `path` under the device API.
    pub async fn post(&mut self, path: &str, body: &[u8]) -> Result<Response, String> {
        self.call("POST", &route(path), Some(body)).await
    }

    async fn try_call(&mut self, request: &[u8]) -> Result<Response, String> {
        let max_body = self.max_body;
        let result = kernel::timeout(CALL_TIMEOUT, async {
            if self.stream.is_none() {
                self.stream = Some(self.connect().await?);
            }
            let stream = self.stream.as_mut().expect("connected above");
            http::exchange(stream, request, max_body)
                .await
                .map_err(|e| format!("{e}"))
        })
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", CALL_TIMEOUT.as_secs())));
        self.heap_peak = self.heap_peak.max(kernel::mem::heap_used());
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
        let started = kernel::now();
        let tls = TlsStream::connect(&self.trust, &self.host, tcp)
            .await
            .map_err(|e| format!("TLS with {}: {e}", self.host))?;
        self.last_handshake = started.elapsed();
        self.handshakes += 1;
        info!(
            "{}: TLS 1.3 with {}:{} in {} ms (server verified against the pinned root)",
            self.owner,
            self.host,
            self.port,
            self.last_handshake.as_millis()
        );
        Ok(tls)
    }
}

/// A request path under the device API.
pub fn route(path: &str) -> String {
    format!("{}/{path}", lichen_api::API_PREFIX)
}

/// What a refused request tells: its status and the controller's reason, if any.
pub fn refusal(response: &Response) -> String {
    match &response.reason {
        Some(reason) => format!("HTTP {}: {reason}", response.status),
        None => format!("HTTP {}", response.status),
    }
}
