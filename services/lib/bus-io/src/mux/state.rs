//! One channel's multiplexer as a sans-IO state machine: the streams of every topic two services
//! exchange, their flow control and their opening and closing.
//!
//! Each topic a side publishes has one stream slot on the channel, and so does each topic the
//! peer publishes (known from its hello). A stream goes `Idle` -> `Open` (the subscriber sent
//! `Open`) -> `Idle` again through a `Close` answered by a `Close`; a side that sent `Close`
//! (`CloseSent`) ignores what still arrives for the stream until the answer, so that bytes of
//! an old conversation never reach a new one.
//!
//! Flow control is per stream, by credit: each side may have at most [`WINDOW`] bytes of a
//! stream in flight or unread at the other side, and grants more as the application reads. A
//! slow reader of one topic therefore never blocks the others on the same channel, and nothing
//! here holds more than `WINDOW` bytes per stream and direction.
//!
//! The peer may send anything: data beyond its credit, frames for streams that do not exist or
//! are not open, a second hello, an `Open` of an open stream are [`MuxError`]s, after which the
//! channel must be dropped and reopened.

use alloc::{collections::VecDeque, format, string::String, vec::Vec};
use core::fmt;

use super::wire::{self, Frame, Hello, StreamRef, WireError, MAX_DATA};

/// How many bytes of one stream may be in flight or unread, each way. The derived channel's
/// rings are as large (2^16 bytes each way): a smaller window left the stream waiting for
/// credit under Xen (16 KiB gave 0.06 to 0.16 times a dedicated channel's messages per second,
/// 64 KiB 0.5 to 0.8 times, docs/BENCHMARKS.md).
pub const WINDOW: u32 = 64 * 1024;

/// A stream buffer emptied after a burst gives back memory above this capacity.
const KEEP_CAPACITY: usize = 4096;

/// Which of the channel's stream slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    /// The stream of this side's published topic `n` (this side serves it).
    Serving(u16),
    /// The stream of the peer's published topic `n` (this side subscribes to it).
    Subscribed(u16),
}

/// Why the peer's frames are refused; the channel must be reopened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MuxError {
    /// The frames do not decode.
    Wire(WireError),
    /// The peer said something that does not fit the conversation.
    Protocol(String),
}

impl fmt::Display for MuxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MuxError::Wire(e) => write!(f, "{e}"),
            MuxError::Protocol(e) => write!(f, "mux protocol error: {e}"),
        }
    }
}

impl From<WireError> for MuxError {
    fn from(e: WireError) -> Self {
        MuxError::Wire(e)
    }
}

/// What a stream's reader gets.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// This many bytes.
    Data(usize),
    /// Nothing yet.
    Empty,
    /// The stream ended (the peer closed it, or the channel went down) and everything was read.
    End,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Open,
    CloseSent,
}

#[derive(Debug)]
struct Stream {
    phase: Phase,
    /// Counts openings; a handle of an earlier one sees its stream ended.
    generation: u32,
    /// Whether a local handle holds the current opening.
    attached: bool,
    /// Publisher side: the subscriber opened the stream and no handle took it yet.
    awaiting_accept: bool,
    rx: VecDeque<u8>,
    /// The peer closed its side: what `rx` holds is all there is.
    rx_end: bool,
    /// How many more bytes the peer may send.
    rx_allowance: u32,
    /// Bytes read by the application and not granted back yet.
    to_grant: u32,
    /// How many more bytes we may send.
    send_credit: u32,
}

impl Stream {
    fn new() -> Self {
        Stream {
            phase: Phase::Idle,
            generation: 0,
            attached: false,
            awaiting_accept: false,
            rx: VecDeque::new(),
            rx_end: false,
            rx_allowance: 0,
            to_grant: 0,
            send_credit: 0,
        }
    }

    /// A new opening: fresh buffers and credits, old handles cut off.
    fn open(&mut self) {
        self.phase = Phase::Open;
        self.generation = self.generation.wrapping_add(1);
        self.attached = false;
        self.awaiting_accept = false;
        self.rx.clear();
        self.rx_end = false;
        self.rx_allowance = WINDOW;
        self.to_grant = 0;
        self.send_credit = WINDOW;
    }

    /// The conversation is over on both sides.
    fn idle(&mut self) {
        self.phase = Phase::Idle;
        self.awaiting_accept = false;
        self.rx_end = true;
        if !self.attached {
            self.rx.clear();
        }
    }
}

/// One channel's multiplexer, for the life of one connection.
#[derive(Debug)]
pub struct Mux {
    local: Hello,
    peer: Option<Hello>,
    serving: Vec<Stream>,
    subscribed: Vec<Stream>,
    /// Frames ready to send, in order: the hello, then whatever the streams and the protocol
    /// produce, each stream's data within its credit (so this holds at most a window per stream
    /// plus small control frames). [`Mux::fill`] hands it over whole.
    outgoing: Vec<u8>,
}

impl Mux {
    /// A new connection's multiplexer for a side that says `local` about itself.
    pub fn new(local: Hello) -> Self {
        let serving = local.publishes.iter().map(|_| Stream::new()).collect();
        let mut outgoing = Vec::new();
        wire::encode(&Frame::Hello(&wire::encode_hello(&local)), &mut outgoing);
        Mux {
            local,
            peer: None,
            serving,
            subscribed: Vec::new(),
            outgoing,
        }
    }

    /// What the peer said about itself, once its hello arrived.
    pub fn peer(&self) -> Option<&Hello> {
        self.peer.as_ref()
    }

    /// This side's hello.
    pub fn local(&self) -> &Hello {
        &self.local
    }

    fn stream(&mut self, slot: Slot) -> Option<&mut Stream> {
        match slot {
            Slot::Serving(i) => self.serving.get_mut(usize::from(i)),
            Slot::Subscribed(i) => self.subscribed.get_mut(usize::from(i)),
        }
    }

    /// Applies everything `decoder` holds.
    pub fn receive_all(&mut self, decoder: &mut wire::Decoder) -> Result<(), MuxError> {
        while let Some(frame) = decoder.next_frame()? {
            self.receive(frame)?;
        }
        Ok(())
    }

    /// Applies the frames `input` completes (see [`wire::Decoder::feed`]).
    pub fn receive_bytes(
        &mut self,
        decoder: &mut wire::Decoder,
        input: &[u8],
    ) -> Result<(), MuxError> {
        decoder.feed(input, |frame| self.receive(frame))
    }

    /// Applies one frame from the peer.
    pub fn receive(&mut self, frame: Frame<'_>) -> Result<(), MuxError> {
        let protocol = |what: String| Err(MuxError::Protocol(what));
        if let Frame::Hello(payload) = frame {
            if self.peer.is_some() {
                return protocol("a second hello".into());
            }
            let hello = wire::decode_hello(payload)?;
            self.subscribed = hello.publishes.iter().map(|_| Stream::new()).collect();
            self.peer = Some(hello);
            return Ok(());
        }
        if self.peer.is_none() {
            return protocol("a frame before the hello".into());
        }
        let slot = |stream: StreamRef| {
            if stream.sender_publishes {
                Slot::Subscribed(stream.index)
            } else {
                Slot::Serving(stream.index)
            }
        };
        match frame {
            Frame::Hello(_) => unreachable!("handled above"),
            Frame::Open(index) => {
                let Some(stream) = self.serving.get_mut(usize::from(index)) else {
                    return protocol(format!(
                        "open of topic {index}, which this side does not publish"
                    ));
                };
                // A handle of the previous opening may still be attached: its generation is now
                // stale, and it reads the end.
                if stream.phase != Phase::Idle {
                    return protocol(format!("open of topic {index}, which is open"));
                }
                stream.open();
                stream.awaiting_accept = true;
            }
            Frame::Data(at, data) => {
                let Some(stream) = self.stream(slot(at)) else {
                    return protocol(format!("data for a stream that does not exist ({at:?})"));
                };
                match stream.phase {
                    Phase::CloseSent => {}
                    Phase::Idle => return protocol(format!("data for a closed stream ({at:?})")),
                    Phase::Open => {
                        let len = data.len() as u32;
                        if len > stream.rx_allowance {
                            return protocol(format!("{len} bytes beyond the credit ({at:?})"));
                        }
                        stream.rx_allowance -= len;
                        stream.rx.extend(data);
                    }
                }
            }
            Frame::Credit(at, n) => {
                let Some(stream) = self.stream(slot(at)) else {
                    return protocol(format!("credit for a stream that does not exist ({at:?})"));
                };
                match stream.phase {
                    Phase::CloseSent => {}
                    Phase::Idle => return protocol(format!("credit for a closed stream ({at:?})")),
                    Phase::Open => match stream.send_credit.checked_add(n) {
                        Some(c) if c <= WINDOW => stream.send_credit = c,
                        _ => return protocol(format!("credit beyond the window ({at:?})")),
                    },
                }
            }
            Frame::Close(at) => {
                let slot = slot(at);
                let Some(stream) = self.stream(slot) else {
                    return protocol(format!("close of a stream that does not exist ({at:?})"));
                };
                match stream.phase {
                    Phase::Idle => return protocol(format!("close of a closed stream ({at:?})")),
                    Phase::CloseSent => stream.idle(),
                    Phase::Open => {
                        stream.idle();
                        wire::encode(&Frame::Close(stream_ref(slot)), &mut self.outgoing);
                    }
                }
            }
        }
        Ok(())
    }

    /// Subscriber side: opens the stream of the peer's topic `index` and returns its generation.
    /// `None` while the slot is still in use (a previous opening is closing).
    pub fn open(&mut self, index: u16) -> Option<u32> {
        let stream = self.subscribed.get_mut(usize::from(index))?;
        if stream.phase != Phase::Idle {
            return None;
        }
        stream.open();
        stream.attached = true;
        wire::encode(&Frame::Open(index), &mut self.outgoing);
        Some(stream.generation)
    }

    /// Publisher side: takes the stream of this side's topic `index` if its subscriber opened it
    /// and nobody took it yet; returns its generation.
    pub fn accept(&mut self, index: u16) -> Option<u32> {
        let stream = self.serving.get_mut(usize::from(index))?;
        if !stream.awaiting_accept {
            return None;
        }
        stream.awaiting_accept = false;
        stream.attached = true;
        Some(stream.generation)
    }

    fn current(&mut self, slot: Slot, generation: u32) -> Option<&mut Stream> {
        self.stream(slot)
            .filter(|s| s.attached && s.generation == generation)
    }

    /// Reads the stream's received bytes into `buf`, granting credit back as they are taken.
    pub fn read(&mut self, slot: Slot, generation: u32, buf: &mut [u8]) -> Read {
        let Some(stream) = self.current(slot, generation) else {
            return Read::End;
        };
        if stream.rx.is_empty() {
            return if stream.rx_end {
                Read::End
            } else {
                Read::Empty
            };
        }
        let n = buf.len().min(stream.rx.len());
        let (front, back) = stream.rx.as_slices();
        let from_front = n.min(front.len());
        buf[..from_front].copy_from_slice(&front[..from_front]);
        buf[from_front..n].copy_from_slice(&back[..n - from_front]);
        stream.rx.drain(..n);
        if stream.rx.is_empty() {
            stream.rx.shrink_to(KEEP_CAPACITY);
        }
        if stream.phase == Phase::Open {
            stream.to_grant += n as u32;
            if stream.to_grant >= WINDOW / 4 {
                let grant = core::mem::take(&mut stream.to_grant);
                stream.rx_allowance += grant;
                wire::encode(&Frame::Credit(stream_ref(slot), grant), &mut self.outgoing);
            }
        }
        Read::Data(n)
    }

    /// Sends as much of `buf` as the stream's credit allows (the data frames go straight into
    /// the outgoing buffer); `None` once the stream ended.
    pub fn write(&mut self, slot: Slot, generation: u32, buf: &[u8]) -> Option<usize> {
        let stream = self.current(slot, generation)?;
        if stream.phase != Phase::Open {
            return None;
        }
        let n = (stream.send_credit as usize).min(buf.len());
        stream.send_credit -= n as u32;
        for chunk in buf[..n].chunks(MAX_DATA) {
            wire::encode_data(stream_ref(slot), chunk, &[], &mut self.outgoing);
        }
        Some(n)
    }

    /// The handle of an opening went away: its stream closes after what it wrote.
    pub fn detach(&mut self, slot: Slot, generation: u32) {
        let Some(stream) = self.current(slot, generation) else {
            return;
        };
        stream.attached = false;
        match stream.phase {
            Phase::Open => {
                stream.phase = Phase::CloseSent;
                wire::encode(&Frame::Close(stream_ref(slot)), &mut self.outgoing);
            }
            Phase::Idle | Phase::CloseSent => stream.rx.clear(),
        }
    }

    /// Whether a local handle still holds a stream (an open publication or subscription).
    pub fn has_attached(&self) -> bool {
        self.serving
            .iter()
            .chain(&self.subscribed)
            .any(|s| s.attached)
    }

    /// Whether [`fill`](Self::fill) has something to send.
    pub fn wants_to_send(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Hands over the frames ready to send, in order, when `out` is empty (the two buffers are
    /// swapped, nothing is copied); otherwise appends them.
    pub fn fill(&mut self, out: &mut Vec<u8>) {
        if out.is_empty() {
            core::mem::swap(out, &mut self.outgoing);
            if self.outgoing.capacity() > KEEP_CAPACITY {
                self.outgoing = Vec::new();
            }
        } else {
            out.append(&mut self.outgoing);
        }
    }
}

/// How this side names a slot's stream in the frames it sends.
fn stream_ref(slot: Slot) -> StreamRef {
    match slot {
        Slot::Serving(index) => StreamRef {
            index,
            sender_publishes: true,
        },
        Slot::Subscribed(index) => StreamRef {
            index,
            sender_publishes: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mux::wire::{encode, encode_hello, Decoder};
    use alloc::vec;

    fn hello(service: &str, publishes: &[&str], subscribes: &[&str]) -> Hello {
        Hello {
            service: service.into(),
            publishes: publishes.iter().map(|t| ((*t).into(), 1)).collect(),
            subscribes: subscribes.iter().map(|t| ((*t).into(), 1)).collect(),
        }
    }

    /// Moves everything `from` has to send into `to`.
    fn pump(from: &mut Mux, to: &mut Mux) -> Result<(), MuxError> {
        let mut decoder = Decoder::default();
        while from.wants_to_send() {
            let mut out = Vec::new();
            from.fill(&mut out);
            decoder.push(&out);
            to.receive_all(&mut decoder)?;
        }
        Ok(())
    }

    fn pair() -> (Mux, Mux) {
        let mut publisher = Mux::new(hello("pub", &["pub/T"], &[]));
        let mut subscriber = Mux::new(hello("sub", &[], &["pub/T"]));
        pump(&mut publisher, &mut subscriber).unwrap();
        pump(&mut subscriber, &mut publisher).unwrap();
        (publisher, subscriber)
    }

    fn peer_says(mux: &mut Mux, frames: &[Frame<'_>]) -> Result<(), MuxError> {
        let mut bytes = Vec::new();
        for frame in frames {
            encode(frame, &mut bytes);
        }
        let mut decoder = Decoder::default();
        decoder.push(&bytes);
        mux.receive_all(&mut decoder)
    }

    const TO_SUBSCRIBER: StreamRef = StreamRef {
        index: 0,
        sender_publishes: true,
    };

    #[test]
    fn a_stream_opens_carries_bytes_both_ways_and_closes() {
        let (mut publisher, mut subscriber) = pair();
        let sub_gen = subscriber.open(0).unwrap();
        pump(&mut subscriber, &mut publisher).unwrap();
        let pub_gen = publisher.accept(0).unwrap();
        assert_eq!(
            subscriber.write(Slot::Subscribed(0), sub_gen, b"subscribe"),
            Some(9)
        );
        assert_eq!(
            publisher.write(Slot::Serving(0), pub_gen, b"objects"),
            Some(7)
        );
        pump(&mut subscriber, &mut publisher).unwrap();
        pump(&mut publisher, &mut subscriber).unwrap();
        let mut buf = [0; 16];
        assert_eq!(
            publisher.read(Slot::Serving(0), pub_gen, &mut buf),
            Read::Data(9)
        );
        assert_eq!(&buf[..9], b"subscribe");
        assert_eq!(
            subscriber.read(Slot::Subscribed(0), sub_gen, &mut buf),
            Read::Data(7)
        );
        // The subscriber goes: the publisher reads the end, and the slot can open again.
        subscriber.detach(Slot::Subscribed(0), sub_gen);
        pump(&mut subscriber, &mut publisher).unwrap();
        assert_eq!(
            publisher.read(Slot::Serving(0), pub_gen, &mut buf),
            Read::End
        );
        assert_eq!(publisher.write(Slot::Serving(0), pub_gen, b"late"), None);
        assert_eq!(subscriber.open(0), None, "not before the close is answered");
        pump(&mut publisher, &mut subscriber).unwrap();
        let again = subscriber.open(0).unwrap();
        assert_ne!(again, sub_gen);
        pump(&mut subscriber, &mut publisher).unwrap();
        assert!(publisher.accept(0).is_some());
        // The publisher's handle of the first opening is stale: it reads the end.
        assert_eq!(
            publisher.read(Slot::Serving(0), pub_gen, &mut buf),
            Read::End
        );
        assert!(subscriber.has_attached());
    }

    #[test]
    fn credit_bounds_what_is_in_flight_and_grows_as_the_reader_reads() {
        let (mut publisher, mut subscriber) = pair();
        let sub_gen = subscriber.open(0).unwrap();
        pump(&mut subscriber, &mut publisher).unwrap();
        let pub_gen = publisher.accept(0).unwrap();
        let big = vec![7u8; 3 * WINDOW as usize];
        let first = publisher.write(Slot::Serving(0), pub_gen, &big).unwrap();
        assert_eq!(first, WINDOW as usize, "queued up to the window");
        assert_eq!(publisher.write(Slot::Serving(0), pub_gen, &big), Some(0));
        pump(&mut publisher, &mut subscriber).unwrap();
        let mut buf = vec![0; WINDOW as usize];
        assert_eq!(
            subscriber.read(Slot::Subscribed(0), sub_gen, &mut buf),
            Read::Data(WINDOW as usize)
        );
        pump(&mut subscriber, &mut publisher).unwrap();
        assert_eq!(
            publisher.write(Slot::Serving(0), pub_gen, &big),
            Some(WINDOW as usize),
            "the reader's credit came back"
        );
    }

    #[test]
    fn a_peer_that_breaks_the_rules_is_refused() {
        let cases: Vec<(&str, Vec<Frame<'_>>)> = vec![
            ("frame before the hello", vec![Frame::Open(0)]),
            ("open of a topic not published", vec![Frame::Open(5)]),
            (
                "data for a closed stream",
                vec![Frame::Data(TO_SUBSCRIBER, b"x")],
            ),
            (
                "credit for a closed stream",
                vec![Frame::Credit(TO_SUBSCRIBER, 1)],
            ),
            (
                "close of a closed stream",
                vec![Frame::Close(TO_SUBSCRIBER)],
            ),
            (
                "data for a stream that does not exist",
                vec![Frame::Data(
                    StreamRef {
                        index: 9,
                        sender_publishes: true,
                    },
                    b"x",
                )],
            ),
        ];
        for (what, frames) in cases {
            let (_, mut subscriber) = pair();
            let mut fresh = Mux::new(hello("sub", &["sub/Own"], &["pub/T"]));
            let target = if what == "frame before the hello" {
                &mut fresh
            } else {
                &mut subscriber
            };
            assert!(peer_says(target, &frames).is_err(), "{what} accepted");
        }
        // A second hello, and data beyond the credit.
        let (mut publisher, mut subscriber) = pair();
        let again = encode_hello(&hello("pub", &["pub/T"], &[]));
        assert!(peer_says(&mut subscriber, &[Frame::Hello(&again)]).is_err());
        let (mut publisher2, mut subscriber2) = pair();
        let generation = subscriber2.open(0).unwrap();
        pump(&mut subscriber2, &mut publisher2).unwrap();
        let flood = vec![0u8; MAX_DATA];
        let frames: Vec<Frame<'_>> = (0..=WINDOW as usize / MAX_DATA)
            .map(|_| Frame::Data(TO_SUBSCRIBER, &flood))
            .collect();
        let refused = peer_says(&mut subscriber2, &frames).unwrap_err();
        assert!(
            format!("{refused}").contains("beyond the credit"),
            "{refused}"
        );
        let _ = (generation, &mut publisher);
        // Credit that would take the window past its size.
        let (mut p3, mut s3) = pair();
        s3.open(0).unwrap();
        pump(&mut s3, &mut p3).unwrap();
        let refused = peer_says(
            &mut p3,
            &[Frame::Credit(
                StreamRef {
                    index: 0,
                    sender_publishes: false,
                },
                1,
            )],
        );
        assert!(refused.is_err(), "credit beyond the window accepted");
    }
}
