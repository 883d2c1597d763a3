//! What the drivers need from a transport: a byte stream, and a way to open a new one.

use core::{fmt, future::Future};

/// One connection: an ordered, reliable, bidirectional byte stream (a vchan, a pipe).
///
/// Dropping the stream closes it; the peer then reads the end of the stream.
pub trait ByteStream {
    /// Why the stream failed.
    type Error: fmt::Display;

    /// Reads at least one byte into `buf` (which is never empty), waiting for them. `Ok(0)`
    /// means the peer closed the stream, or is gone, and everything it sent was read.
    ///
    /// The future must be cancel-safe: dropped before it completes, it has consumed nothing.
    /// The drivers drop a pending read whenever they have something to write.
    fn read(&mut self, buf: &mut [u8]) -> impl Future<Output = Result<usize, Self::Error>>;

    /// Writes all of `buf`, waiting for room; an error once the peer is gone.
    fn write_all(&mut self, buf: &[u8]) -> impl Future<Output = Result<(), Self::Error>>;
}

/// Opens connections to one peer, again after each one ends.
pub trait Connector {
    /// The connections it opens.
    type Stream: ByteStream;
    /// Why a connection could not be opened.
    type Error: fmt::Display;

    /// Opens a connection, waiting for the peer as long as the connector sees fit. The drivers
    /// call it again after an error or after the connection ended, at once: a connector that
    /// fails fast must pace its retries itself.
    fn connect(&mut self) -> impl Future<Output = Result<Self::Stream, Self::Error>>;
}

/// What one [`Duplex::transfer`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transferred {
    /// Wrote this many bytes (at least one).
    Wrote(usize),
    /// Read this many bytes; 0: the peer closed the stream, or is gone, and everything it sent
    /// was read.
    Read(usize),
}

/// A byte stream that can wait for both directions at once: what a channel shared by many
/// conversations needs, since waiting to write while not reading could deadlock two peers that
/// both write.
pub trait Duplex: ByteStream {
    /// Writes some of `out` or reads some into `inp` (never empty), whichever the stream can do
    /// first, waiting until one of them made progress. With `out` empty, only reads.
    ///
    /// Cancel-safe: dropped before it completes, it has written and consumed nothing.
    fn transfer(
        &mut self,
        out: &[u8],
        inp: &mut [u8],
    ) -> impl Future<Output = Result<Transferred, Self::Error>>;
}
