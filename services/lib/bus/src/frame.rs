//! Frames: how one message is delimited and checked on a byte stream.
//!
//! Every frame is an 11-byte header followed by a payload:
//!
//! | offset | size | field                                                             |
//! |-------:|-----:|-------------------------------------------------------------------|
//! | 0      | 2    | magic, `b"LB"`                                                    |
//! | 2      | 1    | wire schema version, [`VERSION`]                                  |
//! | 3      | 4    | payload length in bytes, little endian, at most the decoder's max |
//! | 7      | 4    | CRC-32 of header bytes 0..7 then the payload, little endian       |
//! | 11     | n    | payload (a postcard-encoded message)                              |
//!
//! [`FrameDecoder`] takes the stream in chunks of any size and hands out whole, checked payloads.
//! A byte stream carries no resynchronisation points, so the first bad frame ends the stream: the
//! decoder reports the error from then on and the transport is expected to reconnect.

use alloc::vec::Vec;
use core::fmt;

use serde::Serialize;

use crate::crc32::Crc32;

/// The first two bytes of every frame.
pub const MAGIC: [u8; 2] = *b"LB";

/// The wire schema version this crate speaks; frames with any other version are rejected.
pub const VERSION: u8 = 1;

/// The size of the frame header that precedes every payload.
pub const HEADER_LEN: usize = 11;

/// The largest payload the bus sends or accepts by default (64 KiB).
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// Where the fields sit in the header.
const VERSION_AT: usize = 2;
const LENGTH_AT: usize = 3;
const CHECKSUM_AT: usize = 7;

/// Why a byte stream is not a valid sequence of frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The stream does not start a frame with [`MAGIC`]: it is not a lichen bus stream, or it
    /// lost its alignment.
    BadMagic {
        /// The two bytes found where the magic belongs.
        found: [u8; 2],
    },
    /// The frame uses a wire schema version this crate does not speak.
    UnsupportedVersion {
        /// The version byte found.
        found: u8,
    },
    /// The frame announces a payload larger than the receiver accepts (or, when encoding, the
    /// payload would be larger than [`MAX_PAYLOAD`]).
    Oversized {
        /// The announced payload length.
        length: u64,
        /// The largest payload accepted.
        max: usize,
    },
    /// The frame's checksum does not match its contents: the bytes were damaged.
    BadChecksum {
        /// The checksum carried in the header.
        expected: u32,
        /// The checksum of the bytes received.
        computed: u32,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadMagic { found } => {
                write!(f, "bad frame magic {found:02x?}, expected {MAGIC:02x?}")
            }
            Self::UnsupportedVersion { found } => {
                write!(f, "unsupported wire version {found}, this side speaks {VERSION}")
            }
            Self::Oversized { length, max } => {
                write!(f, "frame payload of {length} bytes exceeds the limit of {max} bytes")
            }
            Self::BadChecksum { expected, computed } => write!(
                f,
                "frame checksum mismatch: header says {expected:#010x}, payload gives {computed:#010x}"
            ),
        }
    }
}

/// Why a value could not be encoded as a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// postcard could not serialize the value (a serde feature postcard does not support).
    Serialize(postcard::Error),
    /// The encoded value is larger than [`MAX_PAYLOAD`].
    Frame(FrameError),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Serialize(error) => write!(f, "cannot serialize the value: {error}"),
            Self::Frame(error) => error.fmt(f),
        }
    }
}

/// Appends one frame carrying the postcard encoding of `value` to `out`.
///
/// On error `out` is left as it was.
pub fn encode_frame<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&[0; HEADER_LEN - LENGTH_AT]);
    if let Err(error) = postcard::serialize_with_flavor(value, AppendTo(out)) {
        out.truncate(start);
        return Err(EncodeError::Serialize(error));
    }
    let length = out.len() - start - HEADER_LEN;
    if length > MAX_PAYLOAD {
        out.truncate(start);
        let length = length as u64;
        return Err(EncodeError::Frame(FrameError::Oversized {
            length,
            max: MAX_PAYLOAD,
        }));
    }
    let frame = &mut out[start..];
    // Cannot truncate: MAX_PAYLOAD fits in a u32.
    frame[LENGTH_AT..CHECKSUM_AT].copy_from_slice(&(length as u32).to_le_bytes());
    let checksum = frame_checksum(&frame[..CHECKSUM_AT], &frame[HEADER_LEN..]);
    frame[CHECKSUM_AT..HEADER_LEN].copy_from_slice(&checksum.to_le_bytes());
    Ok(())
}

/// The checksum a frame carries: over the header up to the checksum field, then the payload.
fn frame_checksum(header: &[u8], payload: &[u8]) -> u32 {
    let mut crc = Crc32::new();
    crc.update(header);
    crc.update(payload);
    crc.finish()
}

/// A postcard output that appends to an existing vector.
struct AppendTo<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendTo<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Cuts a byte stream, arriving in chunks of any size, into checked frame payloads.
///
/// It holds at most one frame: its memory is bounded by the largest payload it accepts.
#[derive(Debug)]
pub struct FrameDecoder {
    max_payload: usize,
    header: [u8; HEADER_LEN],
    header_filled: usize,
    payload: Vec<u8>,
    /// The payload was handed out and is cleared on the next call.
    handed_out: bool,
    failure: Option<FrameError>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// A decoder accepting payloads of up to [`MAX_PAYLOAD`] bytes.
    pub const fn new() -> Self {
        Self::with_max_payload(MAX_PAYLOAD)
    }

    /// A decoder accepting payloads of up to `max_payload` bytes.
    pub const fn with_max_payload(max_payload: usize) -> Self {
        Self {
            max_payload,
            header: [0; HEADER_LEN],
            header_filled: 0,
            payload: Vec::new(),
            handed_out: false,
            failure: None,
        }
    }

    /// Takes bytes from the front of `input` until one frame is complete, and returns its payload.
    ///
    /// Returns `Ok(None)` once `input` is used up without completing a frame (the partial frame is
    /// kept for the next call), and `Ok(Some(payload))` as soon as a frame is complete, leaving
    /// the bytes after it in `input`. So a chunk is decoded with
    /// `while let Some(payload) = decoder.decode(&mut chunk)? { .. }`.
    ///
    /// After an error the stream is unusable and every later call returns the same error.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<&[u8]>, FrameError> {
        if let Some(failure) = self.failure {
            return Err(failure);
        }
        if self.handed_out {
            self.handed_out = false;
            self.header_filled = 0;
            self.payload.clear();
        }
        if self.header_filled < HEADER_LEN {
            let taken = take(input, HEADER_LEN - self.header_filled);
            self.header[self.header_filled..][..taken.len()].copy_from_slice(taken);
            self.header_filled += taken.len();
            if let Err(failure) = self.check_header() {
                self.failure = Some(failure);
                return Err(failure);
            }
            if self.header_filled < HEADER_LEN {
                return Ok(None);
            }
        }
        let missing = self.payload_len() - self.payload.len();
        self.payload.extend_from_slice(take(input, missing));
        if self.payload.len() < self.payload_len() {
            return Ok(None);
        }
        let expected = u32::from_le_bytes(field(&self.header, CHECKSUM_AT));
        let computed = frame_checksum(&self.header[..CHECKSUM_AT], &self.payload);
        if expected != computed {
            let failure = FrameError::BadChecksum { expected, computed };
            self.failure = Some(failure);
            return Err(failure);
        }
        self.handed_out = true;
        Ok(Some(&self.payload))
    }

    /// Checks the header fields received so far, as soon as each one is whole.
    fn check_header(&mut self) -> Result<(), FrameError> {
        let filled = self.header_filled;
        if filled >= VERSION_AT && self.header[..VERSION_AT] != MAGIC {
            return Err(FrameError::BadMagic {
                found: field(&self.header, 0),
            });
        }
        if filled > VERSION_AT && self.header[VERSION_AT] != VERSION {
            return Err(FrameError::UnsupportedVersion {
                found: self.header[VERSION_AT],
            });
        }
        if filled >= CHECKSUM_AT && self.payload_len() > self.max_payload {
            let length = self.payload_len() as u64;
            return Err(FrameError::Oversized {
                length,
                max: self.max_payload,
            });
        }
        if filled == HEADER_LEN {
            self.payload.reserve_exact(self.payload_len());
        }
        Ok(())
    }

    /// The payload length announced by the (complete) length field.
    fn payload_len(&self) -> usize {
        u32::from_le_bytes(field(&self.header, LENGTH_AT)) as usize
    }

    /// Whether the decoder is in the middle of a frame.
    pub fn is_mid_frame(&self) -> bool {
        !self.handed_out && self.header_filled > 0
    }
}

/// Removes up to `count` bytes from the front of `input` and returns them.
fn take<'a>(input: &mut &'a [u8], count: usize) -> &'a [u8] {
    let (taken, rest) = input.split_at(count.min(input.len()));
    *input = rest;
    taken
}

/// The `N` header bytes starting at `at`.
fn field<const N: usize>(header: &[u8; HEADER_LEN], at: usize) -> [u8; N] {
    let mut bytes = [0; N];
    bytes.copy_from_slice(&header[at..at + N]);
    bytes
}

/// Encoded bytes waiting to be written to the transport, refilled one frame at a time so that
/// whatever is not yet encoded can still be coalesced.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    bytes: Vec<u8>,
    written: usize,
}

impl Outbox {
    /// Copies waiting bytes into `out`, calling `refill` for the next frame whenever the waiting
    /// bytes run out, until `out` is full or `refill` has nothing more (returns `false`).
    /// Returns how many bytes were written.
    pub(crate) fn fill(
        &mut self,
        out: &mut [u8],
        mut refill: impl FnMut(&mut Vec<u8>) -> bool,
    ) -> usize {
        let mut written = 0;
        loop {
            let waiting = &self.bytes[self.written..];
            let count = waiting.len().min(out.len() - written);
            out[written..][..count].copy_from_slice(&waiting[..count]);
            self.written += count;
            written += count;
            if written == out.len() && self.written < self.bytes.len() {
                return written;
            }
            self.clear();
            if written == out.len() || !refill(&mut self.bytes) {
                return written;
            }
        }
    }

    /// The waiting bytes, to append frames to.
    pub(crate) fn queue(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// Whether no encoded bytes are waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.written == self.bytes.len()
    }

    /// Drops whatever is waiting.
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.written = 0;
    }
}

#[cfg(test)]
mod tests {
    use alloc::{string::ToString, vec, vec::Vec};

    use proptest::prelude::*;

    use super::*;

    fn frame_of(value: &[u32]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(value, &mut out).unwrap();
        out
    }

    /// Decodes every complete frame in `chunks`, fed in that order.
    fn decode_all<'a>(
        decoder: &mut FrameDecoder,
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut payloads = Vec::new();
        for mut chunk in chunks {
            while let Some(payload) = decoder.decode(&mut chunk)? {
                payloads.push(payload.to_vec());
            }
            assert!(chunk.is_empty());
        }
        Ok(payloads)
    }

    #[test]
    fn header_layout_is_as_documented() {
        let frame = frame_of(&[7, 300]);
        let payload = postcard::to_allocvec(&[7u32, 300][..]).unwrap();
        assert_eq!(frame[..2], *b"LB");
        assert_eq!(frame[2], VERSION);
        assert_eq!(frame[3..7], (payload.len() as u32).to_le_bytes());
        assert_eq!(
            frame[7..11],
            crate::crc32::checksum(&[&frame[..7], &payload[..]].concat()).to_le_bytes()
        );
        assert_eq!(frame[11..], payload);
    }

    #[test]
    fn round_trips_back_to_back_frames() {
        let mut stream = frame_of(&[1, 2, 3]);
        stream.extend(frame_of(&[]));
        stream.extend(frame_of(&[u32::MAX]));
        let payloads = decode_all(&mut FrameDecoder::new(), [&stream[..]]).unwrap();
        let values: Vec<Vec<u32>> = payloads
            .iter()
            .map(|p| postcard::from_bytes(p).unwrap())
            .collect();
        assert_eq!(values, [vec![1, 2, 3], vec![], vec![u32::MAX]]);
    }

    #[test]
    fn byte_by_byte_delivery_decodes_the_same() {
        let stream = [frame_of(&[5]), frame_of(&[6, 7])].concat();
        let mut decoder = FrameDecoder::new();
        let payloads = decode_all(&mut decoder, stream.chunks(1)).unwrap();
        assert_eq!(payloads.len(), 2);
        assert!(!decoder.is_mid_frame());
    }

    #[test]
    fn rejects_a_damaged_payload() {
        let mut frame = frame_of(&[1, 2, 3]);
        *frame.last_mut().unwrap() ^= 0x40;
        let error = decode_all(&mut FrameDecoder::new(), [&frame[..]]).unwrap_err();
        assert!(matches!(error, FrameError::BadChecksum { .. }), "{error}");
    }

    #[test]
    fn rejects_a_damaged_checksum_field() {
        for at in CHECKSUM_AT..HEADER_LEN {
            let mut frame = frame_of(&[1, 2, 3]);
            frame[at] ^= 0x01;
            let error = decode_all(&mut FrameDecoder::new(), [&frame[..]]).unwrap_err();
            assert!(
                matches!(error, FrameError::BadChecksum { .. }),
                "byte {at}: {error}"
            );
        }
    }

    #[test]
    fn rejects_a_shortened_length() {
        let mut frame = frame_of(&[1, 2, 3]);
        frame[LENGTH_AT] -= 1;
        let error = decode_all(&mut FrameDecoder::new(), [&frame[..]]).unwrap_err();
        assert!(matches!(error, FrameError::BadChecksum { .. }), "{error}");
    }

    #[test]
    fn rejects_bad_magic_at_once() {
        let error = decode_all(&mut FrameDecoder::new(), [&b"GE"[..]]).unwrap_err();
        assert_eq!(error, FrameError::BadMagic { found: *b"GE" });
        assert!(error.to_string().contains("magic"));
    }

    #[test]
    fn rejects_unknown_versions_at_once() {
        let error = decode_all(&mut FrameDecoder::new(), [&b"LB\x02"[..]]).unwrap_err();
        assert_eq!(error, FrameError::UnsupportedVersion { found: 2 });
        assert!(error.to_string().contains("version 2"));
    }

    #[test]
    fn rejects_oversized_lengths_before_the_payload_arrives() {
        let mut header = frame_of(&[])[..HEADER_LEN].to_vec();
        header[LENGTH_AT..CHECKSUM_AT].copy_from_slice(&101u32.to_le_bytes());
        let mut decoder = FrameDecoder::with_max_payload(100);
        let error = decode_all(&mut decoder, [&header[..CHECKSUM_AT]]).unwrap_err();
        assert_eq!(
            error,
            FrameError::Oversized {
                length: 101,
                max: 100
            }
        );
    }

    #[test]
    fn errors_are_sticky() {
        let mut decoder = FrameDecoder::new();
        assert!(decode_all(&mut decoder, [&b"XX"[..]]).is_err());
        let good = frame_of(&[1]);
        assert_eq!(
            decode_all(&mut decoder, [&good[..]]),
            Err(FrameError::BadMagic { found: *b"XX" })
        );
    }

    #[test]
    fn refuses_to_encode_oversized_payloads() {
        let mut out = vec![9];
        let huge = vec![0u8; MAX_PAYLOAD];
        let error = encode_frame(&huge[..], &mut out).unwrap_err();
        assert!(matches!(
            error,
            EncodeError::Frame(FrameError::Oversized { .. })
        ));
        assert_eq!(out, [9]);
    }

    #[test]
    fn outbox_hands_out_frames_across_small_buffers() {
        let mut outbox = Outbox::default();
        let mut frames = vec![vec![1, 2, 3], vec![4, 5]].into_iter();
        let mut received = Vec::new();
        let mut out = [0; 2];
        loop {
            let count = outbox.fill(&mut out, |bytes| {
                frames.next().map(|f| bytes.extend(f)).is_some()
            });
            if count == 0 {
                break;
            }
            received.extend_from_slice(&out[..count]);
        }
        assert_eq!(received, [1, 2, 3, 4, 5]);
        assert!(outbox.is_empty());
    }

    /// Splits `stream` into chunks whose lengths cycle through `cuts`.
    fn split<'a>(stream: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut chunks = Vec::new();
        let mut rest = stream;
        for &cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at(cut.min(rest.len()));
            chunks.push(chunk);
            rest = tail;
        }
        chunks
    }

    proptest! {
        #[test]
        fn any_split_decodes_to_the_same_frames(
            values in prop::collection::vec(prop::collection::vec(any::<u32>(), 0..40), 0..12),
            cuts in prop::collection::vec(1usize..64, 1..16),
        ) {
            let stream: Vec<u8> = values.iter().flat_map(|value| frame_of(value)).collect();
            let payloads = decode_all(&mut FrameDecoder::new(), split(&stream, &cuts)).unwrap();
            let decoded: Vec<Vec<u32>> =
                payloads.iter().map(|payload| postcard::from_bytes(payload).unwrap()).collect();
            prop_assert_eq!(decoded, values);
        }

        #[test]
        fn random_bytes_never_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..512),
            cuts in prop::collection::vec(1usize..32, 1..8),
        ) {
            let _ = decode_all(&mut FrameDecoder::with_max_payload(256), split(&bytes, &cuts));
        }

        #[test]
        /// A longer length only leaves the decoder waiting; everything else is an error.
        fn a_flipped_bit_never_yields_a_frame(
            value in prop::collection::vec(any::<u32>(), 0..40),
            position in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let mut frame = frame_of(&value);
            let at = position.index(frame.len());
            frame[at] ^= 1 << bit;
            let result = decode_all(&mut FrameDecoder::new(), [&frame[..]]);
            prop_assert!(result.map_or(true, |payloads| payloads.is_empty()));
        }
    }
}
