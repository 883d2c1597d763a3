//! TCP: listeners with a backlog, streams with timeouts.
//!
//! smoltcp has no listen queue, only sockets that each accept one connection; a
//! [`TcpListener`] keeps a pool of listening sockets in the stack, which the stack task tops up
//! after every packet, and a queue of established connections for [`TcpListener::accept`].
//! Every operation waits on smoltcp's socket wakers; none polls.

use alloc::vec;
use core::fmt;
use core::future::{poll_fn, Future};
use core::net::SocketAddr;
use core::task::Poll;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::wire::IpAddress;

use super::stack::{with_stack, Listener, NotStarted};
pub use super::tcp_options::TcpOptions;
use crate::time::Duration;

/// What went wrong with a TCP operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpError {
    /// The network stack is not running.
    NotStarted,
    /// The operation's timeout ran out.
    TimedOut,
    /// The peer reset the connection (or it was never established).
    Reset,
    /// The connection is closed for writing.
    Closed,
    /// The address or port is unusable (port 0, unspecified address, no route).
    BadAddress,
    /// The listening port is already taken by another listener.
    PortInUse(u16),
}

impl fmt::Display for TcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TcpError::NotStarted => NotStarted.fmt(f),
            TcpError::TimedOut => f.write_str("timed out"),
            TcpError::Reset => f.write_str("connection reset"),
            TcpError::Closed => f.write_str("connection closed"),
            TcpError::BadAddress => f.write_str("unusable address or port"),
            TcpError::PortInUse(p) => write!(f, "TCP port {p} is already listening"),
        }
    }
}

impl From<NotStarted> for TcpError {
    fn from(_: NotStarted) -> Self {
        TcpError::NotStarted
    }
}

/// Runs `future` under `limit`, if any.
async fn limited<T>(
    limit: Option<Duration>,
    future: impl Future<Output = Result<T, TcpError>>,
) -> Result<T, TcpError> {
    match limit {
        None => future.await,
        Some(d) => crate::timeout(d, future)
            .await
            .unwrap_or(Err(TcpError::TimedOut)),
    }
}

/// Accepts TCP connections on a port.
pub struct TcpListener {
    index: usize,
    port: u16,
}

impl TcpListener {
    /// Listens on `port` (every address) with up to `backlog` connections waiting for
    /// [`accept`](Self::accept); each connection gets `options`.
    pub fn bind(port: u16, backlog: usize, options: TcpOptions) -> Result<TcpListener, TcpError> {
        if port == 0 {
            return Err(TcpError::BadAddress);
        }
        let index = with_stack(|s| {
            if s.listeners.iter().flatten().any(|l| l.port == port) {
                return Err(TcpError::PortInUse(port));
            }
            let listener = Listener {
                port,
                options,
                backlog: backlog.max(1),
                pending: vec![],
                ready: Default::default(),
                waker: None,
            };
            let index = match s.listeners.iter().position(Option::is_none) {
                Some(i) => {
                    s.listeners[i] = Some(listener);
                    i
                }
                None => {
                    s.listeners.push(Some(listener));
                    s.listeners.len() - 1
                }
            };
            s.kick();
            Ok(index)
        })??;
        Ok(TcpListener { index, port })
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits for the next connection.
    pub async fn accept(&self) -> Result<TcpStream, TcpError> {
        let (handle, options) = poll_fn(|cx| {
            let result = with_stack(|s| {
                let listener = s.listeners[self.index]
                    .as_mut()
                    .expect("a live TcpListener keeps its slot");
                match listener.ready.pop_front() {
                    Some(handle) => {
                        let options = listener.options;
                        s.counters.tcp_accepted += 1;
                        // Room in the backlog again: the pool may grow back.
                        s.kick();
                        Some((handle, options))
                    }
                    None => {
                        listener.waker = Some(cx.waker().clone());
                        None
                    }
                }
            });
            match result {
                Err(e) => Poll::Ready(Err(TcpError::from(e))),
                Ok(Some(accepted)) => Poll::Ready(Ok(accepted)),
                Ok(None) => Poll::Pending,
            }
        })
        .await?;
        Ok(TcpStream {
            handle,
            timeout: options.timeout,
        })
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        let _ = with_stack(|s| {
            if let Some(listener) = s.listeners[self.index].take() {
                for handle in listener.pending {
                    s.sockets.remove(handle);
                }
                for handle in listener.ready {
                    s.release_tcp(handle);
                }
            }
        });
    }
}

/// One TCP connection. Dropping it closes it gracefully (in the background).
pub struct TcpStream {
    handle: SocketHandle,
    timeout: Option<Duration>,
}

impl TcpStream {
    /// Connects to `remote` with `options`; gives up after `options.timeout`, if set.
    pub async fn connect(remote: SocketAddr, options: TcpOptions) -> Result<TcpStream, TcpError> {
        if remote.port() == 0 || remote.ip().is_unspecified() {
            return Err(TcpError::BadAddress);
        }
        let handle = with_stack(|s| {
            let mut socket = options.new_socket();
            let port = s.ephemeral_port();
            socket
                .connect(
                    s.iface.context(),
                    (IpAddress::from(remote.ip()), remote.port()),
                    port,
                )
                .map_err(|_| TcpError::BadAddress)?;
            let handle = s.sockets.add(socket);
            s.kick();
            Ok::<_, TcpError>(handle)
        })??;
        // From here the stream owns the socket: dropping it (on error too) releases it.
        let stream = TcpStream {
            handle,
            timeout: options.timeout,
        };
        limited(
            options.timeout,
            poll_fn(|cx| {
                stream.with_socket(|socket| match socket.state() {
                    tcp::State::SynSent | tcp::State::SynReceived => {
                        socket.register_send_waker(cx.waker());
                        Poll::Pending
                    }
                    tcp::State::Closed => Poll::Ready(Err(TcpError::Reset)),
                    _ => Poll::Ready(Ok(())),
                })?
            }),
        )
        .await?;
        let _ = with_stack(|s| s.counters.tcp_connected += 1);
        Ok(stream)
    }

    fn with_socket<R>(
        &self,
        f: impl FnOnce(&mut tcp::Socket<'static>) -> R,
    ) -> Result<R, TcpError> {
        Ok(with_stack(|s| {
            f(s.sockets.get_mut::<tcp::Socket>(self.handle))
        })?)
    }

    /// Sets the timeout of later reads, writes and closes (`None`: wait forever).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.with_socket(|s| s.remote_endpoint())
            .ok()
            .flatten()
            .map(|e| SocketAddr::new(e.addr.into(), e.port))
    }

    /// Reads into `buf`; `Ok(0)` when the peer has closed its side (or `buf` is empty).
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, TcpError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let handle = self.handle;
        limited(
            self.timeout,
            poll_fn(|cx| {
                let result = with_stack(|s| {
                    let socket = s.sockets.get_mut::<tcp::Socket>(handle);
                    let result = match socket.recv_slice(buf) {
                        Ok(0) => {
                            socket.register_recv_waker(cx.waker());
                            return Poll::Pending;
                        }
                        Ok(n) => Ok(n),
                        Err(tcp::RecvError::Finished) => Ok(0),
                        Err(tcp::RecvError::InvalidState) => Err(TcpError::Reset),
                    };
                    // Reading opened the receive window: let the stack tell the peer.
                    s.kick();
                    Poll::Ready(result)
                });
                result.unwrap_or(Poll::Ready(Err(TcpError::NotStarted)))
            }),
        )
        .await
    }

    /// Writes some of `buf`; returns how much was queued.
    pub async fn write(&mut self, buf: &[u8]) -> Result<usize, TcpError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let handle = self.handle;
        limited(
            self.timeout,
            poll_fn(|cx| {
                let result = with_stack(|s| {
                    let socket = s.sockets.get_mut::<tcp::Socket>(handle);
                    if !socket.may_send() {
                        return Poll::Ready(Err(if socket.state() == tcp::State::Closed {
                            TcpError::Reset
                        } else {
                            TcpError::Closed
                        }));
                    }
                    match socket.send_slice(buf) {
                        Ok(0) => {
                            socket.register_send_waker(cx.waker());
                            Poll::Pending
                        }
                        Ok(n) => {
                            s.kick();
                            Poll::Ready(Ok(n))
                        }
                        Err(tcp::SendError::InvalidState) => Poll::Ready(Err(TcpError::Closed)),
                    }
                });
                result.unwrap_or(Poll::Ready(Err(TcpError::NotStarted)))
            }),
        )
        .await
    }

    /// Writes all of `buf` (under one timeout per partial write).
    pub async fn write_all(&mut self, mut buf: &[u8]) -> Result<(), TcpError> {
        while !buf.is_empty() {
            let n = self.write(buf).await?;
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Closes the connection: sends what is queued and a FIN, then waits until the peer has
    /// acknowledged everything (or the timeout runs out, or the peer resets).
    pub async fn close(self) -> Result<(), TcpError> {
        let handle = self.handle;
        with_stack(|s| {
            s.sockets.get_mut::<tcp::Socket>(handle).close();
            s.kick();
        })?;
        limited(
            self.timeout,
            poll_fn(|cx| {
                self.with_socket(|socket| match socket.state() {
                    tcp::State::FinWait1
                    | tcp::State::Closing
                    | tcp::State::LastAck
                    | tcp::State::SynSent
                    | tcp::State::SynReceived => {
                        socket.register_send_waker(cx.waker());
                        Poll::Pending
                    }
                    _ => Poll::Ready(Ok(())),
                })?
            }),
        )
        .await
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        let _ = with_stack(|s| s.release_tcp(self.handle));
    }
}
