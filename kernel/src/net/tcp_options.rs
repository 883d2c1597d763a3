//! TCP socket settings, shared by the stack (which fills listeners' pools with sockets made
//! from them) and by the sockets themselves.

use alloc::vec;

use smoltcp::socket::tcp;
use smoltcp::storage::RingBuffer;

use crate::time::Duration;

/// Socket settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpOptions {
    /// Receive buffer bytes (the most the peer may send unacknowledged by the reader).
    pub rx_buffer: usize,
    /// Transmit buffer bytes (the most written but not yet acknowledged).
    pub tx_buffer: usize,
    /// Send small segments at once instead of coalescing them (Nagle off).
    pub nodelay: bool,
    /// Default timeout of each read, write, connect and close; `None` waits forever.
    pub timeout: Option<Duration>,
    /// Keep-alive probe interval; `None` sends none.
    pub keep_alive: Option<Duration>,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            rx_buffer: 16 * 1024,
            tx_buffer: 16 * 1024,
            nodelay: true,
            timeout: None,
            keep_alive: None,
        }
    }
}

impl TcpOptions {
    /// A fresh smoltcp socket with these settings.
    pub(super) fn new_socket(&self) -> tcp::Socket<'static> {
        let mut socket = tcp::Socket::new(
            RingBuffer::new(vec![0u8; self.rx_buffer.max(1)]),
            RingBuffer::new(vec![0u8; self.tx_buffer.max(1)]),
        );
        socket.set_nagle_enabled(!self.nodelay);
        // Acknowledge at the end of each stack round rather than after a fixed delay: rounds
        // already batch everything that arrived together, and a delayed ACK stalls peers in
        // slow start.
        socket.set_ack_delay(None);
        socket.set_keep_alive(self.keep_alive.map(to_smol_duration));
        socket
    }
}

/// A kernel duration as smoltcp's.
fn to_smol_duration(d: Duration) -> smoltcp::time::Duration {
    smoltcp::time::Duration::from_micros(d.as_micros() as u64)
}
