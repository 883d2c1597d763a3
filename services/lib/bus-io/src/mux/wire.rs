//! The multiplexer's frames: what travels on a channel shared by every topic two services
//! exchange.
//!
//! Every frame is a 5-byte header, then its payload; integers are little endian:
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0 | 1 | kind: 1 `Hello`, 2 `Open`, 3 `Data`, 4 `Credit`, 5 `Close` |
//! | 1 | 2 | stream: a topic's index in its publisher's `Hello`, bit 15 set when the frame's sender is that publisher |
//! | 3 | 2 | payload length |
//! | 5 | n | payload |
//!
//! - `Hello` (stream 0) opens the conversation, once per connection and each way: the postcard
//!   encoding of [`Hello`]: the sender's service name, the topics it publishes and those it
//!   subscribes to, each with its schema version.
//! - `Open` (no payload, bit 15 clear): a subscriber opens the stream of the receiver's topic.
//! - `Data`: at most [`MAX_DATA`] bytes of the stream's bus conversation, within the receiver's
//!   credit.
//! - `Credit`: a `u32`: the receiver of the stream's data read that many more bytes.
//! - `Close` (no payload): the stream ends; a `Close` answers a `Close`.
//!
//! The peer may send any bytes: the decoder refuses an unknown kind, a payload longer than its
//! kind allows, a stream id or payload that does not fit the kind, as soon as the header or
//! payload is complete. The first error ends the connection (a byte stream has no resync point).

use alloc::{string::String, vec::Vec};
use core::fmt;

use serde::{Deserialize, Serialize};

/// The header's size.
pub const HEADER: usize = 5;
/// The most bytes one `Data` frame carries.
pub const MAX_DATA: usize = 4096;
/// The largest `Hello` payload.
pub const MAX_HELLO: usize = 32 * 1024;
/// Bit 15 of a stream id: the frame's sender publishes the topic.
const SENDER_PUBLISHES: u16 = 0x8000;
/// The most topics one service may publish (stream indices are 15 bits).
pub const MAX_TOPICS: usize = 0x8000;

/// What a service says about itself when a channel opens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The service's name (from the manifest).
    pub service: String,
    /// The topics it publishes: name and schema version.
    pub publishes: Vec<(String, u32)>,
    /// The topics it subscribes to: name and schema version.
    pub subscribes: Vec<(String, u32)>,
}

/// Which stream a frame is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamRef {
    /// The topic's index in its publisher's `Hello`.
    pub index: u16,
    /// Whether the frame's sender is the topic's publisher.
    pub sender_publishes: bool,
}

impl StreamRef {
    fn encode(self) -> u16 {
        self.index
            | if self.sender_publishes {
                SENDER_PUBLISHES
            } else {
                0
            }
    }

    fn decode(id: u16) -> Self {
        Self {
            index: id & !SENDER_PUBLISHES,
            sender_publishes: id & SENDER_PUBLISHES != 0,
        }
    }
}

/// One frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// The sender's hello (postcard-encoded [`Hello`]).
    Hello(&'a [u8]),
    /// The sender subscribes to the receiver's topic `index`.
    Open(u16),
    /// Bytes of a stream.
    Data(StreamRef, &'a [u8]),
    /// The sender read this many more bytes of the stream.
    Credit(StreamRef, u32),
    /// The stream ends.
    Close(StreamRef),
}

/// Why the peer's bytes are refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// An unknown frame kind.
    Kind(u8),
    /// A payload longer than the kind allows.
    Oversized {
        /// The frame kind.
        kind: u8,
        /// The announced length.
        len: usize,
    },
    /// A frame whose stream id or payload does not fit its kind.
    Malformed(&'static str),
    /// The hello does not decode.
    BadHello,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Kind(kind) => write!(f, "unknown mux frame kind {kind}"),
            WireError::Oversized { kind, len } => {
                write!(f, "mux frame of kind {kind} announces {len} bytes")
            }
            WireError::Malformed(what) => write!(f, "malformed mux frame: {what}"),
            WireError::BadHello => f.write_str("the peer's hello does not decode"),
        }
    }
}

const HELLO: u8 = 1;
const OPEN: u8 = 2;
const DATA: u8 = 3;
const CREDIT: u8 = 4;
const CLOSE: u8 = 5;

/// Appends `frame` to `out`.
pub fn encode(frame: &Frame<'_>, out: &mut Vec<u8>) {
    let (kind, stream, payload): (u8, u16, &[u8]) = match frame {
        Frame::Hello(hello) => (HELLO, 0, hello),
        Frame::Open(index) => (OPEN, *index, &[]),
        Frame::Data(stream, data) => (DATA, stream.encode(), data),
        Frame::Credit(stream, _) => (CREDIT, stream.encode(), &[]),
        Frame::Close(stream) => (CLOSE, stream.encode(), &[]),
    };
    let credit;
    let payload = match frame {
        Frame::Credit(_, n) => {
            credit = n.to_le_bytes();
            &credit[..]
        }
        _ => payload,
    };
    debug_assert!(payload.len() <= max_payload(kind));
    out.push(kind);
    out.extend_from_slice(&stream.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u16).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Appends a `Data` frame whose payload is `first` then `second` (a ring buffer's two halves),
/// at most [`MAX_DATA`] bytes and not empty.
pub fn encode_data(stream: StreamRef, first: &[u8], second: &[u8], out: &mut Vec<u8>) {
    let len = first.len() + second.len();
    debug_assert!(len > 0 && len <= MAX_DATA);
    out.push(DATA);
    out.extend_from_slice(&stream.encode().to_le_bytes());
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(first);
    out.extend_from_slice(second);
}

/// Encodes `hello` as a `Hello` frame's payload.
pub fn encode_hello(hello: &Hello) -> Vec<u8> {
    postcard::to_allocvec(hello).unwrap_or_default()
}

/// Decodes a `Hello` frame's payload.
pub fn decode_hello(payload: &[u8]) -> Result<Hello, WireError> {
    let hello: Hello = postcard::from_bytes(payload).map_err(|_| WireError::BadHello)?;
    if hello.publishes.len() > MAX_TOPICS {
        return Err(WireError::BadHello);
    }
    Ok(hello)
}

/// Checks a frame header's kind and length.
fn check_header(kind: u8, len: usize) -> Result<(), WireError> {
    if !(HELLO..=CLOSE).contains(&kind) {
        return Err(WireError::Kind(kind));
    }
    if len > max_payload(kind) {
        return Err(WireError::Oversized { kind, len });
    }
    Ok(())
}

/// The first frame of `bytes` and its size, `None` when `bytes` holds only part of it.
fn parse(bytes: &[u8]) -> Result<Option<(Frame<'_>, usize)>, WireError> {
    let Some(header) = bytes.get(..HEADER) else {
        return Ok(None);
    };
    let kind = header[0];
    let stream = u16::from_le_bytes([header[1], header[2]]);
    let len = usize::from(u16::from_le_bytes([header[3], header[4]]));
    check_header(kind, len)?;
    let Some(payload) = bytes.get(HEADER..HEADER + len) else {
        return Ok(None);
    };
    let stream_ref = StreamRef::decode(stream);
    let frame = match kind {
        HELLO if stream != 0 => return Err(WireError::Malformed("hello on a stream")),
        HELLO => Frame::Hello(payload),
        OPEN if stream & SENDER_PUBLISHES != 0 => {
            return Err(WireError::Malformed("open sent by the publisher"))
        }
        OPEN => Frame::Open(stream),
        DATA if len == 0 => return Err(WireError::Malformed("empty data")),
        DATA => Frame::Data(stream_ref, payload),
        CREDIT if len != 4 => return Err(WireError::Malformed("credit is 4 bytes")),
        CREDIT => {
            let n = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]);
            Frame::Credit(stream_ref, n)
        }
        _ => Frame::Close(stream_ref),
    };
    Ok(Some((frame, HEADER + len)))
}

fn max_payload(kind: u8) -> usize {
    match kind {
        HELLO => MAX_HELLO,
        DATA => MAX_DATA,
        CREDIT => 4,
        _ => 0,
    }
}

/// Reassembles frames from a byte stream taken in chunks of any size.
///
/// It holds at most one frame and one chunk; [`Decoder::next_frame`] hands out each complete frame.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    start: usize,
}

impl Decoder {
    /// Takes bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > MAX_HELLO {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, `None` when more bytes are needed, or the peer's error.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, WireError> {
        match parse(&self.buf[self.start..])? {
            Some((frame, used)) => {
                self.start += used;
                Ok(Some(frame))
            }
            None => Ok(None),
        }
    }

    /// Takes bytes read from the stream and hands every frame they complete to `apply`, in
    /// order: frames that lie whole in `input` are parsed where they are, and only a frame cut
    /// by the chunk's end is copied. The first error (the peer's, or `apply`'s) stops it.
    pub fn feed<E: From<WireError>>(
        &mut self,
        mut input: &[u8],
        mut apply: impl FnMut(Frame<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        // First finish the frame a previous chunk left, taking only the bytes it lacks.
        while self.start < self.buf.len() {
            let pending = self.buf.len() - self.start;
            let want = match self.buf.get(self.start..self.start + HEADER) {
                None => HEADER - pending,
                Some(header) => {
                    let (kind, len) = (
                        header[0],
                        usize::from(u16::from_le_bytes([header[3], header[4]])),
                    );
                    check_header(kind, len)?;
                    HEADER + len - pending
                }
            };
            let take = want.min(input.len());
            self.buf.extend_from_slice(&input[..take]);
            input = &input[take..];
            if take < want {
                return Ok(());
            }
            if let Some(frame) = self.next_frame()? {
                apply(frame)?;
            }
        }
        self.buf.clear();
        self.start = 0;
        while let Some((frame, used)) = parse(input)? {
            apply(frame)?;
            input = &input[used..];
        }
        self.buf.extend_from_slice(input);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use std::format;

    fn frames() -> Vec<Frame<'static>> {
        let s = |index, sender_publishes| StreamRef {
            index,
            sender_publishes,
        };
        vec![
            Frame::Hello(b"hi"),
            Frame::Open(7),
            Frame::Data(s(7, true), b"bytes"),
            Frame::Data(s(0x7fff, false), &[0; MAX_DATA]),
            Frame::Credit(s(3, false), 4096),
            Frame::Close(s(2, true)),
        ]
    }

    #[test]
    fn frames_round_trip_in_any_chunking() {
        let mut bytes = Vec::new();
        for frame in frames() {
            encode(&frame, &mut bytes);
        }
        for chunk in [1, 2, 3, 5, 7, 64, bytes.len()] {
            let mut decoder = Decoder::default();
            let mut seen = Vec::new();
            for piece in bytes.chunks(chunk) {
                decoder.push(piece);
                while let Some(frame) = decoder.next_frame().unwrap() {
                    seen.push(format!("{frame:?}"));
                }
            }
            let expected: Vec<_> = frames().iter().map(|f| format!("{f:?}")).collect();
            assert_eq!(seen, expected, "chunks of {chunk}");
        }
    }

    #[test]
    fn feeding_in_any_chunking_gives_the_same_frames() {
        let mut bytes = Vec::new();
        for frame in frames() {
            encode(&frame, &mut bytes);
        }
        let expected: Vec<_> = frames().iter().map(|f| format!("{f:?}")).collect();
        for chunk in [1, 2, 3, 4, 5, 6, 7, 64, 4096, bytes.len()] {
            let mut decoder = Decoder::default();
            let mut seen = Vec::new();
            for piece in bytes.chunks(chunk) {
                decoder
                    .feed(piece, |frame| {
                        seen.push(format!("{frame:?}"));
                        Ok::<(), WireError>(())
                    })
                    .unwrap();
            }
            assert_eq!(seen, expected, "chunks of {chunk}");
        }
        // A bad header is refused whether it arrives whole or cut.
        for bad in [&[9u8, 0, 0, 0, 0][..], &[DATA, 0, 0, 0x01, 0x10]] {
            for cut in 1..bad.len() {
                let mut decoder = Decoder::default();
                let first = decoder.feed(&bad[..cut], |_| Ok::<(), WireError>(()));
                let second = decoder.feed(&bad[cut..], |_| Ok::<(), WireError>(()));
                assert!(first.is_err() || second.is_err(), "{bad:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn hostile_headers_are_refused_before_their_payload() {
        for (bytes, error) in [
            (vec![9, 0, 0, 0, 0], WireError::Kind(9)),
            (vec![0, 0, 0, 0, 0], WireError::Kind(0)),
            (
                vec![DATA, 0, 0, 0x01, 0x10],
                WireError::Oversized {
                    kind: DATA,
                    len: 4097,
                },
            ),
            (
                vec![OPEN, 0, 0, 1, 0],
                WireError::Oversized { kind: OPEN, len: 1 },
            ),
            (
                vec![HELLO, 0, 0, 0xff, 0xff],
                WireError::Oversized {
                    kind: HELLO,
                    len: 65535,
                },
            ),
            (
                vec![HELLO, 1, 0, 0, 0],
                WireError::Malformed("hello on a stream"),
            ),
            (
                vec![OPEN, 0, 0x80, 0, 0],
                WireError::Malformed("open sent by the publisher"),
            ),
            (vec![DATA, 0, 0, 0, 0], WireError::Malformed("empty data")),
            (
                vec![CREDIT, 0, 0, 2, 0, 1, 2],
                WireError::Malformed("credit is 4 bytes"),
            ),
        ] {
            let mut decoder = Decoder::default();
            decoder.push(&bytes);
            assert_eq!(decoder.next_frame(), Err(error), "{bytes:?}");
        }
    }

    #[test]
    fn hellos_round_trip_and_garbage_is_refused() {
        let hello = Hello {
            service: "diag".into(),
            publishes: vec![("diag/Summary".into(), 1)],
            subscribes: vec![("ping/Seq".into(), 2)],
        };
        assert_eq!(decode_hello(&encode_hello(&hello)), Ok(hello));
        assert_eq!(decode_hello(&[0xff; 8]), Err(WireError::BadHello));
    }
}
