//! One channel per pair of services, carrying every topic they exchange.
//!
//! The launcher wires one channel between two services that talk, whatever the number of
//! topics either publishes to the other. On it, each side first says who it is and what it
//! publishes and subscribes to (a hello), then every subscription runs the ordinary bus
//! conversation (docs/bus.md) in its own stream, with its own flow control, so that one slow
//! subscriber never holds back the others ([`state`]). [`wire`] is the frame format.
//!
//! [`run_channel`] drives a channel: it connects, exchanges hellos, moves frames both ways and
//! reconnects when the connection ends. [`MuxStream`] is one stream as a [`ByteStream`] for the
//! publication and subscription drivers.

pub mod state;
pub mod wire;

use alloc::{rc::Rc, string::String, string::ToString, vec, vec::Vec};
use core::cell::{Cell, RefCell};
use core::fmt;

use crate::notify::Notify;
use crate::race::{race, First};
use crate::stream::{ByteStream, Connector, Duplex, Transferred};
use crate::CHUNK;
use state::{Mux, Read, Slot};
use wire::{Decoder, Hello};

/// A channel to one peer, shared by its driver and the streams that use it.
pub struct Channel {
    /// The channel's name (the peer service's name, as the launcher wires it).
    pub name: String,
    /// The state of the current connection; `None` while there is none.
    mux: RefCell<Option<Mux>>,
    /// Counts connections, so that a stream of an earlier one sees its end.
    connection: Cell<u64>,
    /// Why the last connection ended, for reports.
    last_end: RefCell<Option<String>>,
    /// Whether the driver holds frames it has not written yet.
    unsent: Cell<bool>,
}

impl Channel {
    /// A channel called `name`, not connected yet.
    pub fn new(name: impl Into<String>) -> Self {
        Channel {
            name: name.into(),
            mux: RefCell::new(None),
            connection: Cell::new(0),
            last_end: RefCell::new(None),
            unsent: Cell::new(false),
        }
    }

    /// Whether every stream of the current connection was closed by its handle and everything
    /// queued was written (or there is no connection).
    pub fn is_closed_and_flushed(&self) -> bool {
        !self.unsent.get()
            && self
                .with_mux(|mux| !mux.has_attached() && !mux.wants_to_send())
                .unwrap_or(true)
    }

    /// Runs `f` on the current connection's multiplexer, if connected.
    pub fn with_mux<R>(&self, f: impl FnOnce(&mut Mux) -> R) -> Option<R> {
        self.mux.borrow_mut().as_mut().map(f)
    }

    /// The current connection's number (0: never connected).
    pub fn connection(&self) -> u64 {
        self.connection.get()
    }

    /// What the peer said in its hello on the current connection.
    pub fn peer(&self) -> Option<Hello> {
        self.mux.borrow().as_ref().and_then(|m| m.peer().cloned())
    }
}

/// Why a channel's connection ended.
#[derive(Debug)]
pub enum ChannelEnd {
    /// The peer closed it or is gone.
    PeerClosed,
    /// The transport failed.
    Stream(String),
    /// The peer broke the multiplexing protocol.
    Protocol(state::MuxError),
}

impl fmt::Display for ChannelEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelEnd::PeerClosed => f.write_str("the peer closed the channel or is gone"),
            ChannelEnd::Stream(e) => write!(f, "the channel failed: {e}"),
            ChannelEnd::Protocol(e) => write!(f, "{e}"),
        }
    }
}

/// What happens to a channel, for the application's log.
#[derive(Debug)]
pub enum ChannelEvent<'a> {
    /// Connected; hellos are being exchanged.
    Connected,
    /// The peer's hello arrived.
    PeerSaid(&'a Hello),
    /// Connecting failed (the connector's error); it tries again.
    ConnectFailed(String),
    /// The connection ended; it reconnects.
    Ended(&'a ChannelEnd),
}

/// Keeps `channel` connected through `connector`, saying `local` about this side on every
/// connection, until `stop` completes. `changed` is notified on every change of its state.
pub(crate) async fn run_channel<C>(
    channel: &Channel,
    mut connector: C,
    local: &Hello,
    changed: &Notify,
    mut on_event: impl FnMut(&Channel, ChannelEvent<'_>),
) where
    C: Connector,
    C::Stream: Duplex,
{
    loop {
        let mut stream = match connector.connect().await {
            Ok(stream) => stream,
            Err(e) => {
                on_event(channel, ChannelEvent::ConnectFailed(e.to_string()));
                continue;
            }
        };
        channel.connection.set(channel.connection.get() + 1);
        *channel.mux.borrow_mut() = Some(Mux::new(local.clone()));
        changed.notify();
        on_event(channel, ChannelEvent::Connected);
        let end = pump(channel, &mut stream, changed, &mut on_event).await;
        drop(stream);
        channel.unsent.set(false);
        *channel.mux.borrow_mut() = None;
        *channel.last_end.borrow_mut() = Some(end.to_string());
        changed.notify();
        on_event(channel, ChannelEvent::Ended(&end));
    }
}

/// Moves frames both ways over one connection until it ends.
async fn pump<S: Duplex>(
    channel: &Channel,
    stream: &mut S,
    changed: &Notify,
    on_event: &mut impl FnMut(&Channel, ChannelEvent<'_>),
) -> ChannelEnd {
    let (mut out, mut sent) = (Vec::new(), 0);
    let mut input = vec![0; CHUNK];
    let mut decoder = Decoder::default();
    let mut greeted = false;
    loop {
        let seen = changed.generation();
        if sent == out.len() {
            out.clear();
            sent = 0;
            channel.with_mux(|mux| mux.fill(&mut out));
        }
        channel.unsent.set(sent < out.len());
        let transfer = stream.transfer(&out[sent..], &mut input);
        match race(transfer, changed.changed_since(seen)).await {
            First::Left(Ok(Transferred::Wrote(n))) => {
                sent += n;
                if sent == out.len() {
                    changed.notify();
                }
            }
            First::Left(Ok(Transferred::Read(0))) => return ChannelEnd::PeerClosed,
            First::Left(Ok(Transferred::Read(n))) => {
                let received = channel.with_mux(|mux| mux.receive_bytes(&mut decoder, &input[..n]));
                if let Some(Err(e)) = received {
                    return ChannelEnd::Protocol(e);
                }
                if !greeted {
                    if let Some(peer) = channel.peer() {
                        greeted = true;
                        on_event(channel, ChannelEvent::PeerSaid(&peer));
                    }
                }
                changed.notify();
            }
            First::Left(Err(e)) => return ChannelEnd::Stream(e.to_string()),
            First::Right(()) => {}
        }
    }
}

/// One stream of a channel: a topic's bus conversation, as a [`ByteStream`].
pub struct MuxStream {
    channel: Rc<Channel>,
    changed: Rc<Notify>,
    connection: u64,
    slot: Slot,
    generation: u32,
}

impl MuxStream {
    fn is_current(&self) -> bool {
        self.channel.connection() == self.connection
    }
}

/// The error of a stream whose channel connection or peer ended it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamEnded;

impl fmt::Display for StreamEnded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the stream ended")
    }
}

impl ByteStream for MuxStream {
    type Error = StreamEnded;

    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, StreamEnded> {
        loop {
            let seen = self.changed.generation();
            if !self.is_current() {
                return Ok(0);
            }
            let read = self
                .channel
                .with_mux(|mux| mux.read(self.slot, self.generation, buf));
            match read {
                None | Some(Read::End) => return Ok(0),
                Some(Read::Data(n)) => {
                    self.changed.notify();
                    return Ok(n);
                }
                Some(Read::Empty) => self.changed.changed_since(seen).await,
            }
        }
    }

    async fn write_all(&mut self, mut buf: &[u8]) -> Result<(), StreamEnded> {
        while !buf.is_empty() {
            let seen = self.changed.generation();
            if !self.is_current() {
                return Err(StreamEnded);
            }
            let wrote = self
                .channel
                .with_mux(|mux| mux.write(self.slot, self.generation, buf))
                .flatten();
            match wrote {
                None => return Err(StreamEnded),
                Some(0) => self.changed.changed_since(seen).await,
                Some(n) => {
                    buf = &buf[n..];
                    self.changed.notify();
                }
            }
        }
        Ok(())
    }
}

impl Drop for MuxStream {
    fn drop(&mut self) {
        if self.is_current() {
            self.channel
                .with_mux(|mux| mux.detach(self.slot, self.generation));
            self.changed.notify();
        }
    }
}

/// Opens a stream `slot` of `channel` on its current connection, if `open` says so.
pub(crate) fn stream_of(
    channel: &Rc<Channel>,
    changed: &Rc<Notify>,
    slot: Slot,
    generation: u32,
) -> MuxStream {
    changed.notify();
    MuxStream {
        channel: channel.clone(),
        changed: changed.clone(),
        connection: channel.connection(),
        slot,
        generation,
    }
}

/// Serves this side's topic `index` on one channel: each connection is a subscriber's `Open`.
pub struct Accept {
    /// The channel.
    pub(crate) channel: Rc<Channel>,
    /// Notified on every change of the node's channels.
    pub(crate) changed: Rc<Notify>,
    /// The topic's index in this side's hello.
    pub(crate) index: u16,
}

impl Connector for Accept {
    type Stream = MuxStream;
    type Error = StreamEnded;

    async fn connect(&mut self) -> Result<MuxStream, StreamEnded> {
        loop {
            let seen = self.changed.generation();
            let accepted = self
                .channel
                .with_mux(|mux| mux.accept(self.index))
                .flatten();
            if let Some(generation) = accepted {
                return Ok(stream_of(
                    &self.channel,
                    &self.changed,
                    Slot::Serving(self.index),
                    generation,
                ));
            }
            self.changed.changed_since(seen).await;
        }
    }
}
