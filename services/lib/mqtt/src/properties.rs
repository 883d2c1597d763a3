//! MQTT 5 properties: the typed, optional fields that follow a v5 packet's variable header.
//!
//! The broker may send any bytes here: an identifier that does not exist or does not belong in
//! that packet, a value of the wrong width or out of its range, an identifier given twice that
//! may appear once, a length that runs past the packet, strings that are not UTF-8, more
//! properties than [`MAX_PROPERTIES`]. [`Properties::decode`] turns each into an
//! [`Error`](crate::Error); what it returns is known to be well formed.

use crate::codec::{Error, Reader};
use alloc::string::String;
use alloc::vec::Vec;

/// The most properties one packet may carry here (user properties included); more is an error.
pub const MAX_PROPERTIES: usize = 64;

/// Property identifiers (MQTT 5.0 §2.2.2.2).
pub mod id {
    /// Byte: the payload is UTF-8 (1) or unspecified bytes (0).
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    /// Four bytes: seconds the message lives.
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    /// String: the payload's MIME type.
    pub const CONTENT_TYPE: u8 = 0x03;
    /// String: where a response goes.
    pub const RESPONSE_TOPIC: u8 = 0x08;
    /// Binary: ties a response to its request.
    pub const CORRELATION_DATA: u8 = 0x09;
    /// Variable integer 1..=268435455: the subscription a message matched.
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0b;
    /// Four bytes: seconds the session outlives the connection.
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    /// String: the client id the server chose.
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    /// Two bytes: the keep-alive the server wants.
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    /// String: enhanced authentication's method.
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    /// Binary: enhanced authentication's data.
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    /// Byte 0/1.
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    /// Four bytes (will properties only).
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    /// Byte 0/1.
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    /// String.
    pub const RESPONSE_INFORMATION: u8 = 0x1a;
    /// String: another server to use.
    pub const SERVER_REFERENCE: u8 = 0x1c;
    /// String: a human-readable reason.
    pub const REASON_STRING: u8 = 0x1f;
    /// Two bytes, nonzero: QoS 1 and 2 publishes the sender may have unacknowledged.
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    /// Two bytes: topic aliases the sender accepts.
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    /// Two bytes, nonzero.
    pub const TOPIC_ALIAS: u8 = 0x23;
    /// Byte 0/1: the highest QoS the server takes.
    pub const MAXIMUM_QOS: u8 = 0x24;
    /// Byte 0/1.
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    /// String pair; may repeat.
    pub const USER_PROPERTY: u8 = 0x26;
    /// Four bytes, nonzero: the largest packet the sender accepts.
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    /// Byte 0/1.
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    /// Byte 0/1.
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    /// Byte 0/1.
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2a;
}

/// A property's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// One byte.
    Byte(u8),
    /// Two bytes.
    U16(u16),
    /// Four bytes.
    U32(u32),
    /// A variable byte integer.
    VarInt(u32),
    /// A UTF-8 string.
    Str(String),
    /// Binary data.
    Bin(Vec<u8>),
    /// A UTF-8 string pair (user property).
    Pair(String, String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Byte,
    U16,
    U32,
    VarInt,
    Str,
    Bin,
    Pair,
}

/// Packet types as bits of a mask (`1 << type`); bit 0 stands for will properties (user
/// properties may appear anywhere, UNSUBSCRIBE takes no other).
const WILL: u16 = 1;
const CONNECT: u16 = 1 << 1;
const CONNACK: u16 = 1 << 2;
const PUBLISH: u16 = 1 << 3;
const ACKS: u16 = (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7);
const SUBSCRIBE: u16 = 1 << 8;
const SUBACK: u16 = 1 << 9;
const UNSUBACK: u16 = 1 << 11;
const DISCONNECT: u16 = 1 << 14;
const AUTH: u16 = 1 << 15;

/// The value's kind and the packets a property may appear in.
fn spec(property: u8) -> Option<(Kind, u16)> {
    use id::*;
    Some(match property {
        PAYLOAD_FORMAT_INDICATOR => (Kind::Byte, PUBLISH | WILL),
        MESSAGE_EXPIRY_INTERVAL => (Kind::U32, PUBLISH | WILL),
        CONTENT_TYPE | RESPONSE_TOPIC => (Kind::Str, PUBLISH | WILL),
        CORRELATION_DATA => (Kind::Bin, PUBLISH | WILL),
        SUBSCRIPTION_IDENTIFIER => (Kind::VarInt, PUBLISH | SUBSCRIBE),
        SESSION_EXPIRY_INTERVAL => (Kind::U32, CONNECT | CONNACK | DISCONNECT),
        ASSIGNED_CLIENT_IDENTIFIER | RESPONSE_INFORMATION => (Kind::Str, CONNACK),
        SERVER_KEEP_ALIVE => (Kind::U16, CONNACK),
        AUTHENTICATION_METHOD => (Kind::Str, CONNECT | CONNACK | AUTH),
        AUTHENTICATION_DATA => (Kind::Bin, CONNECT | CONNACK | AUTH),
        REQUEST_PROBLEM_INFORMATION | REQUEST_RESPONSE_INFORMATION => (Kind::Byte, CONNECT),
        WILL_DELAY_INTERVAL => (Kind::U32, WILL),
        SERVER_REFERENCE => (Kind::Str, CONNACK | DISCONNECT),
        REASON_STRING => (
            Kind::Str,
            CONNACK | ACKS | SUBACK | UNSUBACK | DISCONNECT | AUTH,
        ),
        RECEIVE_MAXIMUM | TOPIC_ALIAS_MAXIMUM => (Kind::U16, CONNECT | CONNACK),
        TOPIC_ALIAS => (Kind::U16, PUBLISH),
        MAXIMUM_QOS
        | RETAIN_AVAILABLE
        | WILDCARD_SUBSCRIPTION_AVAILABLE
        | SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | SHARED_SUBSCRIPTION_AVAILABLE => (Kind::Byte, CONNACK),
        USER_PROPERTY => (Kind::Pair, u16::MAX),
        MAXIMUM_PACKET_SIZE => (Kind::U32, CONNECT | CONNACK),
        _ => return None,
    })
}

/// Checks a value against its property's range (booleans 0/1, nonzero maxima).
fn check_value(property: u8, value: &Value) -> Result<(), Error> {
    use id::*;
    let ok = match (property, value) {
        (
            PAYLOAD_FORMAT_INDICATOR
            | REQUEST_PROBLEM_INFORMATION
            | REQUEST_RESPONSE_INFORMATION
            | MAXIMUM_QOS
            | RETAIN_AVAILABLE
            | WILDCARD_SUBSCRIPTION_AVAILABLE
            | SUBSCRIPTION_IDENTIFIER_AVAILABLE
            | SHARED_SUBSCRIPTION_AVAILABLE,
            Value::Byte(b),
        ) => *b <= 1,
        (RECEIVE_MAXIMUM | TOPIC_ALIAS, Value::U16(v)) => *v != 0,
        (MAXIMUM_PACKET_SIZE, Value::U32(v)) => *v != 0,
        (SUBSCRIPTION_IDENTIFIER, Value::VarInt(v)) => *v != 0,
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::Malformed("property value out of range"))
    }
}

/// The properties of one packet, in the order they came.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Properties(pub Vec<(u8, Value)>);

impl Properties {
    /// No properties.
    pub const fn new() -> Properties {
        Properties(Vec::new())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds a property (checked when encoded).
    pub fn with(mut self, property: u8, value: Value) -> Properties {
        self.0.push((property, value));
        self
    }

    /// The first value of `property`.
    pub fn get(&self, property: u8) -> Option<&Value> {
        self.0.iter().find(|(p, _)| *p == property).map(|(_, v)| v)
    }

    /// A one-byte property.
    pub fn byte(&self, property: u8) -> Option<u8> {
        match self.get(property) {
            Some(Value::Byte(v)) => Some(*v),
            _ => None,
        }
    }

    /// A two-byte property.
    pub fn u16(&self, property: u8) -> Option<u16> {
        match self.get(property) {
            Some(Value::U16(v)) => Some(*v),
            _ => None,
        }
    }

    /// A four-byte property.
    pub fn u32(&self, property: u8) -> Option<u32> {
        match self.get(property) {
            Some(Value::U32(v)) => Some(*v),
            _ => None,
        }
    }

    /// A string property.
    pub fn str(&self, property: u8) -> Option<&str> {
        match self.get(property) {
            Some(Value::Str(v)) => Some(v),
            _ => None,
        }
    }

    /// Checks every property belongs in packet `kind` (a packet type, 0 for will properties)
    /// with a value of its kind and range, each at most once where the standard says so.
    fn check(&self, kind: u8) -> Result<(), Error> {
        if self.0.len() > MAX_PROPERTIES {
            return Err(Error::Malformed("too many properties"));
        }
        for (i, (property, value)) in self.0.iter().enumerate() {
            let (expected, packets) =
                spec(*property).ok_or(Error::Malformed("unknown property identifier"))?;
            if packets & (1 << kind) == 0 {
                return Err(Error::Protocol("property not allowed in this packet"));
            }
            let matches = matches!(
                (expected, value),
                (Kind::Byte, Value::Byte(_))
                    | (Kind::U16, Value::U16(_))
                    | (Kind::U32, Value::U32(_))
                    | (Kind::VarInt, Value::VarInt(_))
                    | (Kind::Str, Value::Str(_))
                    | (Kind::Bin, Value::Bin(_))
                    | (Kind::Pair, Value::Pair(..))
            );
            if !matches {
                return Err(Error::Malformed("property value of the wrong type"));
            }
            check_value(*property, value)?;
            let repeatable = *property == id::USER_PROPERTY
                || (*property == id::SUBSCRIPTION_IDENTIFIER && kind == 3);
            if !repeatable && self.0[..i].iter().any(|(p, _)| p == property) {
                return Err(Error::Protocol("property given twice"));
            }
        }
        Ok(())
    }

    /// Appends the property length and the properties, checked for packet type `kind`.
    pub(crate) fn encode(&self, kind: u8, out: &mut Vec<u8>) -> Result<(), Error> {
        self.check(kind)?;
        let mut body = Vec::new();
        for (property, value) in &self.0 {
            body.push(*property);
            match value {
                Value::Byte(b) => body.push(*b),
                Value::U16(v) => body.extend_from_slice(&v.to_be_bytes()),
                Value::U32(v) => body.extend_from_slice(&v.to_be_bytes()),
                Value::VarInt(v) => put_varint(&mut body, *v as usize)?,
                Value::Str(s) => crate::codec::put_str(&mut body, s.as_bytes())?,
                Value::Bin(b) => crate::codec::put_str(&mut body, b)?,
                Value::Pair(k, v) => {
                    crate::codec::put_str(&mut body, k.as_bytes())?;
                    crate::codec::put_str(&mut body, v.as_bytes())?;
                }
            }
        }
        put_varint(out, body.len())?;
        out.extend_from_slice(&body);
        Ok(())
    }

    /// Reads the property length and the properties of packet type `kind` from `r`.
    pub(crate) fn decode(r: &mut Reader<'_>, kind: u8) -> Result<Properties, Error> {
        let len = r.varint()?;
        let mut inner = Reader { data: r.take(len)? };
        let mut properties = Vec::new();
        while !inner.data.is_empty() {
            if properties.len() == MAX_PROPERTIES {
                return Err(Error::Malformed("too many properties"));
            }
            let property = inner.take(1)?[0];
            let (kind_of_value, _) =
                spec(property).ok_or(Error::Malformed("unknown property identifier"))?;
            let value = match kind_of_value {
                Kind::Byte => Value::Byte(inner.take(1)?[0]),
                Kind::U16 => Value::U16(inner.u16()?),
                Kind::U32 => {
                    let b = inner.take(4)?;
                    Value::U32(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                }
                Kind::VarInt => Value::VarInt(inner.varint()? as u32),
                Kind::Str => Value::Str(inner.string()?),
                Kind::Bin => Value::Bin(inner.binary()?),
                Kind::Pair => Value::Pair(inner.string()?, inner.string()?),
            };
            properties.push((property, value));
        }
        let properties = Properties(properties);
        properties.check(kind)?;
        Ok(properties)
    }
}

/// Appends a variable byte integer (at most 268,435,455).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: usize) -> Result<(), Error> {
    if value > 268_435_455 {
        return Err(Error::TooLarge(value));
    }
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if value == 0 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn decode(bytes: &[u8], kind: u8) -> Result<Properties, Error> {
        let mut r = Reader { data: bytes };
        let p = Properties::decode(&mut r, kind)?;
        r.end()?;
        Ok(p)
    }

    #[test]
    fn round_trip() {
        let p = Properties::new()
            .with(id::RECEIVE_MAXIMUM, Value::U16(20))
            .with(id::MAXIMUM_PACKET_SIZE, Value::U32(1 << 20))
            .with(id::ASSIGNED_CLIENT_IDENTIFIER, Value::Str("x".into()))
            .with(id::AUTHENTICATION_DATA, Value::Bin(vec![1, 2]))
            .with(id::USER_PROPERTY, Value::Pair("a".into(), "b".into()))
            .with(id::USER_PROPERTY, Value::Pair("a".into(), "c".into()))
            .with(id::MAXIMUM_QOS, Value::Byte(1));
        let mut out = Vec::new();
        p.encode(2, &mut out).unwrap();
        assert_eq!(decode(&out, 2), Ok(p.clone()));
        assert_eq!(p.u16(id::RECEIVE_MAXIMUM), Some(20));
        assert_eq!(p.str(id::ASSIGNED_CLIENT_IDENTIFIER), Some("x"));
        assert_eq!(p.byte(id::MAXIMUM_QOS), Some(1));
        assert_eq!(p.u32(id::SESSION_EXPIRY_INTERVAL), None);
        let mut out = Vec::new();
        Properties::new()
            .with(id::SUBSCRIPTION_IDENTIFIER, Value::VarInt(300))
            .with(id::SUBSCRIPTION_IDENTIFIER, Value::VarInt(1))
            .encode(3, &mut out)
            .unwrap();
        assert_eq!(out, [5, 0x0b, 0xac, 0x02, 0x0b, 0x01]);
        assert!(decode(&out, 3).is_ok());
    }

    #[test]
    fn hostile_properties_are_errors() {
        let cases: &[(&[u8], u8, Error)] = &[
            (
                &[2, 0x7f, 0],
                2,
                Error::Malformed("unknown property identifier"),
            ),
            (
                &[3, 0x23, 0, 1],
                2,
                Error::Protocol("property not allowed in this packet"),
            ),
            (
                &[6, 0x21, 0, 1, 0x21, 0, 2],
                2,
                Error::Protocol("property given twice"),
            ),
            (
                &[3, 0x21, 0, 0],
                2,
                Error::Malformed("property value out of range"),
            ),
            (
                &[2, 0x24, 2],
                2,
                Error::Malformed("property value out of range"),
            ),
            (
                &[5, 0x27, 0, 0, 0, 0],
                2,
                Error::Malformed("property value out of range"),
            ),
            (
                &[9, 0x21, 0],
                2,
                Error::Malformed("field runs past the packet"),
            ),
            (
                &[2, 0x21, 0],
                2,
                Error::Malformed("field runs past the packet"),
            ),
            (
                &[5, 0x1f, 0, 2, 0xc3, 0x28],
                2,
                Error::Malformed("string is not UTF-8"),
            ),
            (&[0xff, 0xff, 0xff, 0xff, 0x7f], 2, Error::LengthEncoding),
            (
                &[4, 0x0b, 1, 0x0b, 2],
                8,
                Error::Protocol("property given twice"),
            ),
        ];
        for (bytes, kind, e) in cases {
            assert_eq!(decode(bytes, *kind), Err(e.clone()), "{bytes:?}");
        }
        // More than MAX_PROPERTIES user properties (each 5 bytes: two empty strings).
        let mut many = Vec::new();
        for _ in 0..=MAX_PROPERTIES {
            many.extend_from_slice(&[0x26, 0, 0, 0, 0]);
        }
        let mut bytes = Vec::new();
        put_varint(&mut bytes, many.len()).unwrap();
        bytes.extend_from_slice(&many);
        assert_eq!(
            decode(&bytes, 2),
            Err(Error::Malformed("too many properties"))
        );
        // Encoding checks the same rules.
        assert!(Properties::new()
            .with(id::TOPIC_ALIAS, Value::U16(1))
            .encode(1, &mut Vec::new())
            .is_err());
        assert!(Properties::new()
            .with(id::RECEIVE_MAXIMUM, Value::U32(1))
            .encode(1, &mut Vec::new())
            .is_err());
    }
}
