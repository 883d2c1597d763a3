//! The link to the controller: one kept-alive HTTPS connection (TCP from `kernel::net`, TLS
//! 1.3 from `tls`), opened when needed and dropped after any error.
//!
//! Every call is bounded by [`CALL_TIMEOUT`]: a controller that hangs, or a network that loses
//! the connection, costs one timeout and a reconnection, never a stuck agent.

use alloc::format;
use alloc::string::String;
use core::net::{IpAddr, SocketAddr};

use device_api::http::{self, Response};
use kernel::net::{TcpOptions, TcpStream};
use kernel::{info, Duration};
use tls::{TlsStream, Trust};

/// The longest one request may take, connecting included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest response body accepted (a configuration).
pub const MAX_BODY: usize = 1 << 20;

/// The controller's address and the connection to it.
pub struct Link {
    trust: Trust,
    host: String,
    port: u16,
    stream: Option<TlsStream<TcpStream>>,
    /// Handshakes done, and the time the last one took.
    pub handshakes: u64,
    /// The duration of the last TLS handshake.
    pub last_handshake: Duration,
    /// The most heap in use seen after a call (bytes).
    pub heap_peak: u64,
}

impl Link {
    /// A link to `host:port`, trusting `trust`.
    pub fn new(trust: Trust, host: String, port: u16) -> Link {
        Link {
            trust,
            host,
            port,
            stream: None,
            handshakes: 0,
            last_handshake: Duration::ZERO,
            heap_peak: 0,
        }
    }

    /// Sends `method path` with `body` (a signed envelope, or none) and returns the response.
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
                info!("zedagent: connection lost ({e}); reconnecting");
                self.try_call(&request).await
            }
            result => result,
        }
    }

    async fn try_call(&mut self, request: &[u8]) -> Result<Response, String> {
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
            "zedagent: TLS 1.3 with {}:{} in {} ms (server verified against the pinned root)",
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
