//! UDP sockets.

use alloc::vec;
use core::fmt;
use core::future::poll_fn;
use core::net::SocketAddr;
use core::task::Poll;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp;
use smoltcp::wire::IpAddress;

use super::stack::{with_stack, NotStarted};

/// Socket settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpOptions {
    /// Payload bytes buffered in each direction.
    pub buffer: usize,
    /// Datagrams buffered in each direction.
    pub datagrams: usize,
}

impl Default for UdpOptions {
    fn default() -> Self {
        UdpOptions {
            buffer: 16 * 1024,
            datagrams: 32,
        }
    }
}

/// What went wrong with a UDP operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpError {
    /// The network stack is not running.
    NotStarted,
    /// The port is 0 or already bound.
    BadPort(u16),
    /// The datagram is larger than the socket's buffer.
    TooLarge(usize),
    /// The destination is unusable (unspecified, port 0, no route).
    BadAddress,
    /// A datagram was larger than the buffer given to `recv_from` (it is dropped).
    Truncated,
}

impl fmt::Display for UdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UdpError::NotStarted => NotStarted.fmt(f),
            UdpError::BadPort(p) => write!(f, "UDP port {p} is 0 or already bound"),
            UdpError::TooLarge(n) => {
                write!(f, "a {n}-byte datagram does not fit the socket buffer")
            }
            UdpError::BadAddress => f.write_str("unusable destination"),
            UdpError::Truncated => f.write_str("datagram larger than the receive buffer"),
        }
    }
}

impl From<NotStarted> for UdpError {
    fn from(_: NotStarted) -> Self {
        UdpError::NotStarted
    }
}

/// A bound UDP socket.
pub struct UdpSocket {
    handle: SocketHandle,
    port: u16,
}

impl UdpSocket {
    /// Binds `port` on every address.
    pub fn bind(port: u16, options: UdpOptions) -> Result<UdpSocket, UdpError> {
        let handle = with_stack(|s| {
            let taken = s
                .sockets
                .iter()
                .any(|(_, socket)| {
                    matches!(socket, smoltcp::socket::Socket::Udp(u) if u.endpoint().port == port)
                });
            if port == 0 || taken {
                return Err(UdpError::BadPort(port));
            }
            let buffer = || {
                udp::PacketBuffer::new(
                    vec![udp::PacketMetadata::EMPTY; options.datagrams.max(1)],
                    vec![0u8; options.buffer.max(1)],
                )
            };
            let mut socket = udp::Socket::new(buffer(), buffer());
            socket.bind(port).map_err(|_| UdpError::BadPort(port))?;
            Ok(s.sockets.add(socket))
        })??;
        Ok(UdpSocket { handle, port })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits for a datagram; copies it into `buf` and returns its length and
    /// sender.
    pub async fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, SocketAddr), UdpError> {
        poll_fn(|cx| {
            let result = with_stack(|s| {
                let socket = s.sockets.get_mut::<udp::Socket>(self.handle);
                match socket.recv_slice(buf) {
                    Ok((n, meta)) => Poll::Ready(Ok((
                        n,
                        SocketAddr::new(meta.endpoint.addr.into(), meta.endpoint.port),
                    ))),
                    Err(udp::RecvError::Truncated) => Poll::Ready(Err(UdpError::Truncated)),
                    Err(udp::RecvError::Exhausted) => {
                        socket.register_recv_waker(cx.waker());
                        Poll::Pending
                    }
                }
            });
            result.unwrap_or(Poll::Ready(Err(UdpError::NotStarted)))
        })
        .await
    }

    /// Sends `data` to `to`, waiting for buffer space.
    pub async fn send_to(&self, data: &[u8], to: SocketAddr) -> Result<(), UdpError> {
        if to.port() == 0 || to.ip().is_unspecified() {
            return Err(UdpError::BadAddress);
        }
        poll_fn(|cx| {
            let result = with_stack(|s| {
                let socket = s.sockets.get_mut::<udp::Socket>(self.handle);
                if data.len() > socket.payload_send_capacity() {
                    return Poll::Ready(Err(UdpError::TooLarge(data.len())));
                }
                match socket.send_slice(data, (IpAddress::from(to.ip()), to.port())) {
                    Ok(()) => {
                        s.kick();
                        Poll::Ready(Ok(()))
                    }
                    Err(udp::SendError::BufferFull) => {
                        socket.register_send_waker(cx.waker());
                        Poll::Pending
                    }
                    Err(udp::SendError::Unaddressable) => Poll::Ready(Err(UdpError::BadAddress)),
                }
            });
            result.unwrap_or(Poll::Ready(Err(UdpError::NotStarted)))
        })
        .await
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        let _ = with_stack(|s| s.sockets.remove(self.handle));
    }
}
