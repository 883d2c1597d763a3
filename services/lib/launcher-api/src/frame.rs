//! Frames: `4c 44` (`"LD"`), the payload's length as a little-endian `u16` (at most
//! [`MAX_PAYLOAD`]), then the payload, a postcard-encoded [`crate::Request`] or
//! [`crate::FromLauncher`].
//!
//! What the peer may corrupt: anything. A wrong magic or an oversized length is a
//! [`FrameError`] (the stream cannot go on: close it); a payload that does not decode is only
//! that message's error ([`decode`]), the frames around it stay delimited.

use alloc::vec::Vec;
use serde::{de::DeserializeOwned, Serialize};

/// The frame's first two bytes.
pub const MAGIC: [u8; 2] = *b"LD";

/// The header's size.
pub const HEADER: usize = 4;

/// The largest payload.
pub const MAX_PAYLOAD: usize = 8192;

/// Why a byte stream cannot go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The frame does not start with [`MAGIC`].
    BadMagic,
    /// The frame says its payload is longer than [`MAX_PAYLOAD`].
    Oversized(usize),
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FrameError::BadMagic => f.write_str("bad frame magic"),
            FrameError::Oversized(n) => write!(f, "frame of {n} bytes, above {MAX_PAYLOAD}"),
        }
    }
}

/// Why a message could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// It encodes to more than [`MAX_PAYLOAD`] bytes.
    TooLarge,
    /// postcard refused it.
    Serialize,
}

/// `message` as one frame.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, EncodeError> {
    let header = Vec::from([MAGIC[0], MAGIC[1], 0, 0]);
    let mut frame = postcard::to_extend(message, header).map_err(|_| EncodeError::Serialize)?;
    let n = frame.len() - HEADER;
    if n > MAX_PAYLOAD {
        return Err(EncodeError::TooLarge);
    }
    frame[2..4].copy_from_slice(&(n as u16).to_le_bytes());
    Ok(frame)
}

/// A payload decoded as `T`; `None` when it is not one (trailing bytes included).
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Option<T> {
    match postcard::take_from_bytes::<T>(payload) {
        Ok((value, [])) => Some(value),
        _ => None,
    }
}

/// Cuts a byte stream, fed in chunks of any size, into payloads. It holds at most one frame
/// and the chunk being fed.
#[derive(Debug, Default)]
pub struct Decoder {
    buffer: Vec<u8>,
    failed: Option<FrameError>,
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Takes `bytes` and returns every complete payload in them, in order, or the error that
    /// ends the stream (final: later calls return it again).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        self.buffer.extend_from_slice(bytes);
        let mut payloads = Vec::new();
        loop {
            match self.next_payload() {
                Ok(Some(payload)) => payloads.push(payload),
                Ok(None) => return Ok(payloads),
                Err(e) => {
                    self.failed = Some(e);
                    self.buffer = Vec::new();
                    return Err(e);
                }
            }
        }
    }

    fn next_payload(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if self.buffer.len() >= 2 && self.buffer[..2] != MAGIC {
            return Err(FrameError::BadMagic);
        }
        if self.buffer.len() < HEADER {
            // A lone first byte that is not the magic's is wrong already.
            if self.buffer.first().is_some_and(|b| *b != MAGIC[0]) {
                return Err(FrameError::BadMagic);
            }
            return Ok(None);
        }
        let n = u16::from_le_bytes([self.buffer[2], self.buffer[3]]) as usize;
        if n > MAX_PAYLOAD {
            return Err(FrameError::Oversized(n));
        }
        if self.buffer.len() < HEADER + n {
            return Ok(None);
        }
        let rest = self.buffer.split_off(HEADER + n);
        let frame = core::mem::replace(&mut self.buffer, rest);
        Ok(Some(frame[HEADER..].to_vec()))
    }
}
