//! Messages: what a frame's payload says, and the errors of the conversation.
//!
//! A payload is a postcard-encoded [`Envelope`]: a sequence number, counting the frames sent in
//! one direction of one connection from 0, then a [`Message`]. Object values travel as the
//! postcard encoding of the user's type, as opaque bytes, so the protocol itself is not generic.

use alloc::{string::String, vec::Vec};
use core::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::frame::{encode_frame, FrameError};

/// One frame's payload.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Envelope<'a> {
    /// The frame's position in its direction of the connection, from 0, wrapping.
    pub(crate) seq: u32,
    /// What the frame says.
    #[serde(borrow)]
    pub(crate) message: Message<'a>,
}

/// What one side tells the other. The variant order is the wire encoding: append, never reorder.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Message<'a> {
    /// Subscriber to publisher, first and only: which table it wants, of which schema.
    Subscribe {
        /// The topic name.
        topic: &'a str,
        /// The schema version of the object type.
        schema: u32,
    },
    /// Publisher to subscriber: the subscription is refused and the connection will be closed.
    Refused(Refusal),
    /// A full synchronisation starts: every current object follows, then [`Message::Complete`].
    SyncStart,
    /// The object at `key` is now `value` (created or modified).
    Update {
        /// The object's key.
        key: &'a str,
        /// The object's postcard encoding.
        #[serde(borrow)]
        value: Bytes<'a>,
    },
    /// The object at `key` no longer exists.
    Delete {
        /// The object's key.
        key: &'a str,
    },
    /// The synchronisation is complete: objects not sent since [`Message::SyncStart`] are gone.
    Complete {
        /// Whether the publisher has signalled that it restarted.
        restarted: bool,
    },
    /// The publisher signals that it restarted and has republished its objects.
    Restarted,
}

impl<'a> Message<'a> {
    /// The message telling that the object at `key` now has the encoded `value`, or is gone.
    pub(crate) const fn object(key: &'a str, value: Option<&'a [u8]>) -> Self {
        match value {
            Some(value) => Self::Update {
                key,
                value: Bytes(value),
            },
            None => Self::Delete { key },
        }
    }

    /// The message's name, for errors.
    pub(crate) const fn name(&self) -> &'static str {
        match self {
            Self::Subscribe { .. } => "Subscribe",
            Self::Refused(_) => "Refused",
            Self::SyncStart => "SyncStart",
            Self::Update { .. } => "Update",
            Self::Delete { .. } => "Delete",
            Self::Complete { .. } => "Complete",
            Self::Restarted => "Restarted",
        }
    }
}

/// Borrowed bytes, encoded as a postcard byte array (length, then the bytes).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Bytes<'a>(pub(crate) &'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Bytes<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <&'a [u8]>::deserialize(deserializer).map(Bytes)
    }
}

/// The most bytes an [`Message::Update`] adds to its key and value: the sequence number (a varint
/// of at most 5 bytes), the message tag (one byte) and the two lengths (varints of at most 5).
pub(crate) const UPDATE_OVERHEAD: usize = 5 + 1 + 5 + 5;

/// Why a publisher refused a subscription.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// The publisher at the other end publishes another topic.
    WrongTopic {
        /// The topic it publishes.
        published: String,
    },
    /// The publisher publishes the topic with another schema version of its object type.
    WrongSchema {
        /// The schema version it publishes.
        published: u32,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongTopic { published } => {
                write!(f, "the publisher publishes topic {published:?}")
            }
            Self::WrongSchema { published } => {
                write!(f, "the publisher publishes schema version {published}")
            }
        }
    }
}

/// Why a connection cannot go on. The transport should close it; a subscriber then reconnects
/// and resynchronises.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// The byte stream is not a valid sequence of frames.
    Frame(FrameError),
    /// A frame's payload is not a valid message.
    Malformed,
    /// A frame arrived out of order: frames were lost, repeated or reordered on the way.
    OutOfSequence {
        /// The sequence number due.
        expected: u32,
        /// The sequence number received.
        found: u32,
    },
    /// A valid message that the other side may not send at this point.
    Unexpected {
        /// The message's name.
        message: &'static str,
    },
    /// An object's value does not decode as the subscriber's type.
    BadValue {
        /// The object's key.
        key: String,
    },
    /// The publisher refused the subscription.
    Refused(Refusal),
    /// Bytes arrived for a connection that is not open (never connected, or failed).
    NotConnected,
}

impl From<FrameError> for ProtocolError {
    fn from(error: FrameError) -> Self {
        Self::Frame(error)
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Frame(error) => error.fmt(f),
            Self::Malformed => f.write_str("a frame does not hold a valid bus message"),
            Self::OutOfSequence { expected, found } => {
                write!(f, "frame {found} arrived where frame {expected} was due")
            }
            Self::Unexpected { message } => write!(f, "unexpected {message} message"),
            Self::BadValue { key } => write!(
                f,
                "the value of {key:?} does not decode as the subscribed type"
            ),
            Self::Refused(refusal) => write!(f, "subscription refused: {refusal}"),
            Self::NotConnected => f.write_str("the connection is not open"),
        }
    }
}

/// Appends `message` as the next frame of a direction whose next sequence number is `*seq`.
pub(crate) fn seal(seq: &mut u32, message: Message<'_>, out: &mut Vec<u8>) {
    let envelope = Envelope { seq: *seq, message };
    // Bus messages hold only integers, strings and bytes, which postcard always serializes, and
    // every sender checks sizes against MAX_PAYLOAD before it queues an object.
    encode_frame(&envelope, out).expect("bus messages always encode");
    *seq = seq.wrapping_add(1);
}

/// Reads the message in `payload`, which must be frame number `*seq` of its direction.
pub(crate) fn open<'a>(seq: &mut u32, payload: &'a [u8]) -> Result<Message<'a>, ProtocolError> {
    let envelope = match postcard::take_from_bytes::<Envelope<'a>>(payload) {
        Ok((envelope, [])) => envelope,
        _ => return Err(ProtocolError::Malformed),
    };
    if envelope.seq != *seq {
        return Err(ProtocolError::OutOfSequence {
            expected: *seq,
            found: envelope.seq,
        });
    }
    *seq = seq.wrapping_add(1);
    Ok(envelope.message)
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::*;
    use crate::frame::FrameDecoder;

    fn round_trip(message: Message<'_>) {
        let mut bytes = Vec::new();
        seal(&mut 7, message, &mut bytes);
        let mut decoder = FrameDecoder::new();
        let payload = decoder.decode(&mut &bytes[..]).unwrap().unwrap().to_vec();
        let mut seq = 7;
        let decoded = open(&mut seq, &payload).unwrap();
        assert_eq!(seq, 8);
        let mut again = Vec::new();
        seal(&mut 7, decoded, &mut again);
        assert_eq!(again, bytes);
    }

    #[test]
    fn every_message_round_trips() {
        round_trip(Message::Subscribe {
            topic: "zedagent/config",
            schema: 3,
        });
        round_trip(Message::Refused(Refusal::WrongTopic {
            published: "x".into(),
        }));
        round_trip(Message::Refused(Refusal::WrongSchema { published: 9 }));
        round_trip(Message::SyncStart);
        round_trip(Message::Update {
            key: "k",
            value: Bytes(&[1, 2, 3]),
        });
        round_trip(Message::Delete { key: "k" });
        round_trip(Message::Complete { restarted: true });
        round_trip(Message::Restarted);
    }

    #[test]
    fn update_overhead_covers_the_largest_header_fields() {
        let key = "k".repeat(1000);
        let value = [0u8; 1000];
        let mut bytes = Vec::new();
        let mut largest_seq = u32::MAX;
        seal(
            &mut largest_seq,
            Message::Update {
                key: &key,
                value: Bytes(&value),
            },
            &mut bytes,
        );
        let payload_len = bytes.len() - crate::frame::HEADER_LEN;
        assert!(payload_len <= key.len() + value.len() + UPDATE_OVERHEAD);
    }

    /// The example frames of docs/bus.md.
    #[test]
    fn encodes_the_documented_examples() {
        let mut sync_start = Vec::new();
        seal(&mut 0, Message::SyncStart, &mut sync_start);
        assert_eq!(
            sync_start,
            [0x4c, 0x42, 1, 2, 0, 0, 0, 0xbe, 0xea, 0xa6, 0xb0, 0, 2]
        );
        let mut update = Vec::new();
        let value = postcard::to_allocvec(&(42u8, true)).unwrap();
        seal(
            &mut 5,
            Message::Update {
                key: "eth0",
                value: Bytes(&value),
            },
            &mut update,
        );
        let header = [0x4c, 0x42, 1, 10, 0, 0, 0, 0xe1, 0x17, 0xf1, 0x93];
        assert_eq!(
            update,
            [&header[..], &[5, 3, 4], b"eth0", &[2, 0x2a, 1]].concat()
        );
    }

    #[test]
    fn rejects_trailing_bytes_and_gaps() {
        let mut payload = postcard::to_allocvec(&Envelope {
            seq: 0,
            message: Message::SyncStart,
        })
        .unwrap();
        assert_eq!(
            open(&mut 1, &payload),
            Err(ProtocolError::OutOfSequence {
                expected: 1,
                found: 0
            })
        );
        payload.push(0);
        assert_eq!(open(&mut 0, &payload), Err(ProtocolError::Malformed));
    }
}
