//! How connections come and go, as the drivers report it.

use alloc::string::{String, ToString};
use core::{fmt, future::Future};

use bus::ProtocolError;

use crate::race::{race, First};
use crate::stream::{ByteStream, Connector};

/// Why a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The peer closed the stream or went away (its domain died): the read ended.
    PeerClosed,
    /// The stream failed (the transport's error, as text).
    Stream(String),
    /// The peer broke the bus protocol; the connection was dropped.
    Protocol(ProtocolError),
    /// The application closed the publication or subscription.
    Closed,
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PeerClosed => f.write_str("the peer closed the connection or is gone"),
            Self::Stream(error) => write!(f, "the stream failed: {error}"),
            Self::Protocol(error) => write!(f, "bus protocol error: {error}"),
            Self::Closed => f.write_str("closed by the application"),
        }
    }
}

/// A change of a driver's connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    /// A connection is open; the bus (re)synchronises over it.
    Connected,
    /// Opening a connection failed (the connector's error, as text); the driver tries again.
    ConnectFailed(String),
    /// The connection ended; unless the application closed it, the driver reconnects.
    Ended(EndReason),
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connected => f.write_str("connected"),
            Self::ConnectFailed(error) => write!(f, "cannot connect: {error}"),
            Self::Ended(reason) => write!(f, "connection ended: {reason}"),
        }
    }
}

/// A driver's life: until `is_closed`, connects through `connector` (giving up when `closing`
/// completes), runs `session` over each connection until it ends, and reports every change of
/// the connection to `on_link`.
pub(crate) async fn keep_connected<C: Connector, F: Future<Output = ()>>(
    connector: &mut C,
    is_closed: impl Fn() -> bool,
    closing: impl Fn() -> F,
    mut session: impl AsyncFnMut(&mut C::Stream) -> EndReason,
    mut on_link: impl FnMut(Link),
) {
    while !is_closed() {
        let connected = match race(connector.connect(), closing()).await {
            First::Left(connected) => connected,
            First::Right(()) => return,
        };
        match connected {
            Ok(mut stream) => {
                on_link(Link::Connected);
                let end = session(&mut stream).await;
                drop(stream);
                on_link(Link::Ended(end));
            }
            Err(error) => on_link(Link::ConnectFailed(error.to_string())),
        }
    }
}

/// Writes to `stream` everything `fill` puts into `out`, until it puts nothing; the connection
/// ends if the stream fails or `closing` completes first.
pub(crate) async fn send_filled<B: ByteStream, F: Future<Output = ()>>(
    stream: &mut B,
    out: &mut [u8],
    mut fill: impl FnMut(&mut [u8]) -> usize,
    closing: impl Fn() -> F,
) -> Result<(), EndReason> {
    loop {
        let n = fill(out);
        if n == 0 {
            return Ok(());
        }
        match race(stream.write_all(&out[..n]), closing()).await {
            First::Left(Ok(())) => {}
            First::Left(Err(error)) => return Err(EndReason::Stream(error.to_string())),
            First::Right(()) => return Err(EndReason::Closed),
        }
    }
}
