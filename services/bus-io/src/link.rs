//! How connections come and go, as the drivers report it.

use alloc::string::String;
use core::fmt;

use bus::ProtocolError;

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
