//! One Modbus TCP connection with request/response matching: reconnects when needed, skips
//! late answers to abandoned requests, drops the connection when the stream cannot be framed.

use crate::stats::STATS;
use alloc::vec::Vec;
use core::fmt;
use core::net::SocketAddr;
use core::sync::atomic::Ordering::Relaxed;
use kernel::net::{TcpError, TcpOptions, TcpStream};
use kernel::Duration;
use modbus::{Request, Response};

/// Why a transaction failed.
pub enum ClientError {
    /// Connecting, writing or reading failed (or timed out).
    Io(TcpError),
    /// The server's answer was wrong or an exception.
    Modbus(modbus::Error),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "{e}"),
            ClientError::Modbus(e) => write!(f, "{e}"),
        }
    }
}

/// A client for one server.
pub struct ModbusClient {
    address: SocketAddr,
    unit: u8,
    timeout: Duration,
    stream: Option<TcpStream>,
    transaction: u16,
    buffer: Vec<u8>,
}

impl ModbusClient {
    /// A client for `address`, unit `unit`; each transaction may take `timeout`.
    pub fn new(address: SocketAddr, unit: u8, timeout: Duration) -> ModbusClient {
        ModbusClient {
            address,
            unit,
            timeout,
            stream: None,
            transaction: 0,
            buffer: Vec::with_capacity(modbus::MAX_FRAME),
        }
    }

    /// Sends `request` and returns the checked answer.
    pub async fn transact(&mut self, request: &Request) -> Result<Response, ClientError> {
        let result = self.try_transact(request).await;
        match &result {
            Ok(_) => {}
            Err(ClientError::Modbus(modbus::Error::Exception(_))) => {
                STATS.exceptions.fetch_add(1, Relaxed);
            }
            Err(ClientError::Modbus(_)) => {
                STATS.malformed.fetch_add(1, Relaxed);
            }
            Err(ClientError::Io(TcpError::TimedOut)) => {
                STATS.timeouts.fetch_add(1, Relaxed);
                self.stream = None;
            }
            Err(ClientError::Io(_)) => {
                STATS.io_errors.fetch_add(1, Relaxed);
                self.stream = None;
            }
        }
        result
    }

    async fn try_transact(&mut self, request: &Request) -> Result<Response, ClientError> {
        self.transaction = self.transaction.wrapping_add(1);
        let tid = self.transaction;
        let frame = modbus::encode(tid, self.unit, request).map_err(ClientError::Modbus)?;
        if self.stream.is_none() {
            let options = TcpOptions {
                rx_buffer: 2048,
                tx_buffer: 2048,
                timeout: Some(self.timeout),
                ..TcpOptions::default()
            };
            let stream = TcpStream::connect(self.address, options)
                .await
                .map_err(ClientError::Io)?;
            STATS.modbus_connects.fetch_add(1, Relaxed);
            self.buffer.clear();
            self.stream = Some(stream);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(ClientError::Io(TcpError::NotStarted));
        };
        // Each read below narrows the timeout to what is left; the write gets the whole of it.
        stream.set_timeout(Some(self.timeout));
        stream.write_all(&frame).await.map_err(ClientError::Io)?;
        let deadline = kernel::now() + self.timeout;
        loop {
            match modbus::frame_len(&self.buffer) {
                Err(e) => {
                    // Lost framing: nothing later on this connection can be trusted.
                    self.stream = None;
                    return Err(ClientError::Modbus(e));
                }
                Ok(Some(len)) if self.buffer.len() >= len => {
                    let frame: Vec<u8> = self.buffer.drain(..len).collect();
                    let got = modbus::transaction_of(&frame);
                    if got.is_some_and(|t| t != tid && tid.wrapping_sub(t) < 0x8000) {
                        // A late answer to a request that timed out: skip it.
                        STATS.stale.fetch_add(1, Relaxed);
                        continue;
                    }
                    return modbus::decode(&frame, tid, self.unit, request)
                        .map_err(ClientError::Modbus);
                }
                Ok(_) => {}
            }
            let left = deadline.saturating_duration_since(kernel::now());
            if left == Duration::ZERO {
                return Err(ClientError::Io(TcpError::TimedOut));
            }
            let mut chunk = [0u8; 512];
            stream.set_timeout(Some(left));
            let n = stream.read(&mut chunk).await.map_err(ClientError::Io)?;
            if n == 0 {
                return Err(ClientError::Io(TcpError::Closed));
            }
            if self.buffer.len() + n > 4 * modbus::MAX_FRAME {
                self.stream = None;
                return Err(ClientError::Modbus(modbus::Error::Malformed(
                    "flood of bytes",
                )));
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }
}
