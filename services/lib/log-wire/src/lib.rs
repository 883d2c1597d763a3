//! The log channel between a service and the logs pillar (docs/logs.md): the service's kernel
//! sends its log lines, the logs pillar acknowledges those it has kept.
//!
//! Every message is one frame, integers little endian:
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0 | 1 | kind: 1 [`Hello`](Message::Hello), 2 [`Line`](Message::Line), 3 [`Ack`](Message::Ack) |
//! | 1 | 2 | payload length `n` (at most [`MAX_PAYLOAD`]) |
//! | 3 | n | payload |
//!
//! Payloads:
//! - `Hello` (service to pillar, first on every connection): `boot: u64` (random, one per boot
//!   of the service), `first: u64` (every line numbered below it was acknowledged: a first
//!   line numbered above it means lines lost), then the service's name (the rest, UTF-8, at
//!   most [`MAX_NAME`] bytes).
//! - `Line` (service to pillar): `seq: u64` (0, 1, 2, ... per boot: a gap is lines the service
//!   had to drop), `at_ns: u64` (since the service's boot), `wall_ms: u64` (Unix time in ms; 0
//!   when the clock is not set), `level: u8` (1 error to 5 trace), then the text (the rest, at
//!   most [`MAX_TEXT`] bytes; a cut line may end inside a UTF-8 sequence).
//! - `Ack` (pillar to service): `boot: u64`, `seq: u64`: every line of that boot up to `seq`
//!   is kept; the service may forget them.
//!
//! A service keeps every line until it is acknowledged and sends again, after a reconnection,
//! those that were not: a line is lost only when the service's buffer overflows, and that shows
//! as a gap in `seq`.
//!
//! What the peer may corrupt: anything. [`Decoder`] refuses an unknown kind, a length above
//! [`MAX_PAYLOAD`], a payload of the wrong size for its kind, a name that is not UTF-8 and a
//! level outside 1..=5, each as soon as the frame is complete; a byte stream has no resync
//! point, so the first error is final for that connection.
#![no_std]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// The longest line text carried, in bytes (the kernel's `log::MAX_LINE`).
pub const MAX_TEXT: usize = 512;
/// The longest service name, in bytes.
pub const MAX_NAME: usize = 64;
/// The largest payload of any frame.
pub const MAX_PAYLOAD: usize = LINE_FIXED + MAX_TEXT;
/// Bytes of a frame's header.
pub const HEADER: usize = 3;

const LINE_FIXED: usize = 8 + 8 + 8 + 1;
const KIND_HELLO: u8 = 1;
const KIND_LINE: u8 = 2;
const KIND_ACK: u8 = 3;

/// One message of the log channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// The service introduces itself (first on every connection).
    Hello {
        /// This boot of the service.
        boot: u64,
        /// Every line numbered below this was acknowledged.
        first: u64,
        /// The service's name.
        service: Cow<'a, str>,
    },
    /// One log line.
    Line(Line<'a>),
    /// Every line of `boot` up to `seq` is kept.
    Ack {
        /// The boot the lines belong to.
        boot: u64,
        /// The last line kept.
        seq: u64,
    },
}

/// One log line as the service's kernel recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line<'a> {
    /// Its number in this boot of the service, from 0.
    pub seq: u64,
    /// Nanoseconds since the service booted.
    pub at_ns: u64,
    /// Unix time in milliseconds, 0 when the service's clock was not set.
    pub wall_ms: u64,
    /// 1 error, 2 warning, 3 info, 4 debug, 5 trace.
    pub level: u8,
    /// The text, without the console's prefix and newline (bytes: a cut line may end inside a
    /// UTF-8 sequence).
    pub text: Cow<'a, [u8]>,
}

impl Line<'_> {
    /// The text, with anything that is not UTF-8 replaced.
    pub fn text_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.text)
    }

    /// An owned copy.
    pub fn into_owned(self) -> Line<'static> {
        Line {
            text: Cow::Owned(self.text.into_owned()),
            ..self
        }
    }
}

/// Appends the frame of `message` to `out`; a name or text beyond its limit is cut.
pub fn encode(message: &Message<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0]);
    let kind = match message {
        Message::Hello {
            boot,
            first,
            service,
        } => {
            out.extend_from_slice(&boot.to_le_bytes());
            out.extend_from_slice(&first.to_le_bytes());
            out.extend_from_slice(cut_str(service, MAX_NAME).as_bytes());
            KIND_HELLO
        }
        Message::Line(line) => {
            out.extend_from_slice(&line.seq.to_le_bytes());
            out.extend_from_slice(&line.at_ns.to_le_bytes());
            out.extend_from_slice(&line.wall_ms.to_le_bytes());
            out.push(line.level);
            out.extend_from_slice(&line.text[..line.text.len().min(MAX_TEXT)]);
            KIND_LINE
        }
        Message::Ack { boot, seq } => {
            out.extend_from_slice(&boot.to_le_bytes());
            out.extend_from_slice(&seq.to_le_bytes());
            KIND_ACK
        }
    };
    let len = (out.len() - start - HEADER) as u16;
    out[start] = kind;
    out[start + 1..start + 3].copy_from_slice(&len.to_le_bytes());
}

/// `text` cut to at most `max` bytes at a character boundary.
fn cut_str(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Why a stream is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// A kind this version does not know.
    UnknownKind(u8),
    /// A payload longer than [`MAX_PAYLOAD`].
    Oversized(usize),
    /// A payload of the wrong size for its kind.
    BadLength {
        /// The frame's kind.
        kind: u8,
        /// Its payload length.
        len: usize,
    },
    /// A service name that is not UTF-8.
    BadName,
    /// A level outside 1..=5.
    BadLevel(u8),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnknownKind(kind) => write!(f, "unknown frame kind {kind}"),
            Error::Oversized(len) => write!(f, "payload of {len} bytes (at most {MAX_PAYLOAD})"),
            Error::BadLength { kind, len } => {
                write!(f, "a frame of kind {kind} with {len} payload bytes")
            }
            Error::BadName => f.write_str("a service name that is not UTF-8"),
            Error::BadLevel(level) => write!(f, "log level {level} (expected 1 to 5)"),
        }
    }
}

/// Turns a byte stream, in chunks of any size, into messages; holds at most one frame.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    failed: Option<Error>,
}

impl Decoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes `input` and calls `on_message` for every complete frame. After an error nothing
    /// more is taken: every later call returns the same error.
    pub fn push(
        &mut self,
        mut input: &[u8],
        mut on_message: impl FnMut(Message<'_>),
    ) -> Result<(), Error> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        while !input.is_empty() {
            let wanted = self.frame_len().unwrap_or(HEADER);
            let take = (wanted - self.buf.len()).min(input.len());
            self.buf.extend_from_slice(&input[..take]);
            input = &input[take..];
            if let Err(error) = self.step(&mut on_message) {
                self.failed = Some(error);
                return Err(error);
            }
        }
        Ok(())
    }

    /// The whole frame's length, once its header is in.
    fn frame_len(&self) -> Option<usize> {
        (self.buf.len() >= HEADER)
            .then(|| HEADER + usize::from(u16::from_le_bytes([self.buf[1], self.buf[2]])))
    }

    /// Checks a header just completed; decodes a frame just completed.
    fn step(&mut self, on_message: &mut impl FnMut(Message<'_>)) -> Result<(), Error> {
        let Some(len) = self.frame_len() else {
            return Ok(());
        };
        if self.buf.len() == HEADER {
            let kind = self.buf[0];
            if !(KIND_HELLO..=KIND_ACK).contains(&kind) {
                return Err(Error::UnknownKind(kind));
            }
            if len - HEADER > MAX_PAYLOAD {
                return Err(Error::Oversized(len - HEADER));
            }
        }
        if self.buf.len() == len {
            on_message(decode_payload(self.buf[0], &self.buf[HEADER..])?);
            self.buf.clear();
        }
        Ok(())
    }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

fn decode_payload(kind: u8, payload: &[u8]) -> Result<Message<'_>, Error> {
    let bad = Error::BadLength {
        kind,
        len: payload.len(),
    };
    match kind {
        KIND_HELLO => {
            if payload.len() < 16 || payload.len() > 16 + MAX_NAME {
                return Err(bad);
            }
            let service = core::str::from_utf8(&payload[16..]).map_err(|_| Error::BadName)?;
            Ok(Message::Hello {
                boot: u64_at(payload, 0),
                first: u64_at(payload, 8),
                service: Cow::Borrowed(service),
            })
        }
        KIND_LINE => {
            if payload.len() < LINE_FIXED {
                return Err(bad);
            }
            let level = payload[24];
            if !(1..=5).contains(&level) {
                return Err(Error::BadLevel(level));
            }
            Ok(Message::Line(Line {
                seq: u64_at(payload, 0),
                at_ns: u64_at(payload, 8),
                wall_ms: u64_at(payload, 16),
                level,
                text: Cow::Borrowed(&payload[LINE_FIXED..]),
            }))
        }
        KIND_ACK => {
            if payload.len() != 16 {
                return Err(bad);
            }
            Ok(Message::Ack {
                boot: u64_at(payload, 0),
                seq: u64_at(payload, 8),
            })
        }
        other => Err(Error::UnknownKind(other)),
    }
}

#[cfg(test)]
mod tests;
