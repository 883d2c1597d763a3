//! The MQTT client codec, sans-IO, for protocol levels 4 (MQTT 3.1.1) and 5 (MQTT 5.0):
//! packets to bytes and bytes to packets. The level is chosen per connection and passed to
//! [`encode`] and [`decode`].
//!
//! The broker is a peer on the network and may send anything: a remaining length of more than
//! four bytes or beyond the caller's limit, reserved flag bits set, a packet type a client
//! never receives, a topic that is not UTF-8 or carries wildcards, a QoS of 3, a packet id of
//! 0, fields running past the packet's end, and in MQTT 5 properties that are unknown,
//! misplaced, repeated or out of range ([`crate::properties`]), reason codes a packet may not
//! carry ([`crate::reason`]) and topic aliases it was never allowed. [`decode`] turns each into
//! an [`Error`] and never panics; `Ok(None)` means "not all here yet".

use crate::properties::{self, Properties};
use crate::reason;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// The protocol level of a connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    #[default]
    V311,
    /// MQTT 5.0 (protocol level 5): properties and reason codes.
    V5,
}

impl Version {
    /// `4` or `3.1.1`, `5` or `5.0`.
    pub fn parse(text: &str) -> Option<Version> {
        match text {
            "4" | "3.1.1" | "311" => Some(Version::V311),
            "5" | "5.0" => Some(Version::V5),
            _ => None,
        }
    }

    /// The value of command-line word `key=` (`mqtt=5`, say), `default` when absent; an error
    /// naming the word otherwise.
    pub fn from_arg(key: &str, value: Option<&str>, default: Version) -> Result<Version, String> {
        match value {
            None => Ok(default),
            Some(text) => Version::parse(text).ok_or_else(|| {
                alloc::format!("bad `{key}={text}`: the MQTT protocol level is 4 (3.1.1) or 5")
            }),
        }
    }
}

/// Delivery guarantee.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum QoS {
    /// At most once.
    AtMostOnce = 0,
    /// At least once (PUBACK).
    AtLeastOnce = 1,
    /// Exactly once (PUBREC/PUBREL/PUBCOMP).
    ExactlyOnce = 2,
}

impl QoS {
    /// The value of command-line word `key=` (`qos=1`, say): 0, 1 or 2, `default` when
    /// absent; an error naming the word otherwise.
    pub fn from_arg(key: &str, value: Option<&str>, default: QoS) -> Result<QoS, String> {
        match value {
            None => Ok(default),
            Some("0") => Ok(QoS::AtMostOnce),
            Some("1") => Ok(QoS::AtLeastOnce),
            Some("2") => Ok(QoS::ExactlyOnce),
            Some(text) => Err(alloc::format!("bad `{key}={text}`: QoS 0, 1 or 2")),
        }
    }

    /// The QoS of bits 0..=2; 3 is malformed.
    pub fn from_bits(bits: u8) -> Result<QoS, Error> {
        match bits {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            2 => Ok(QoS::ExactlyOnce),
            _ => Err(Error::Malformed("QoS 3")),
        }
    }
}

/// CONNECT's contents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Connect {
    /// Client identifier (1..=23 characters is what every broker must take).
    pub client_id: String,
    /// Keep-alive in seconds (0: none).
    pub keep_alive: u16,
    /// Start a fresh session (MQTT 5: "clean start").
    pub clean_session: bool,
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<Vec<u8>>,
    /// MQTT 5 properties (session expiry, receive maximum, ...); empty for 3.1.1.
    pub properties: Properties,
}

/// A PUBLISH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    /// Topic name (no wildcards).
    pub topic: String,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// QoS.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// Redelivery flag.
    pub dup: bool,
    /// Packet id (QoS 1 and 2 only, nonzero).
    pub packet_id: Option<u16>,
    /// MQTT 5 properties; empty for 3.1.1.
    pub properties: Properties,
}

impl Publish {
    /// A QoS 0 message without properties.
    pub fn new(topic: String, payload: Vec<u8>) -> Publish {
        Publish {
            topic,
            payload,
            qos: QoS::AtMostOnce,
            retain: false,
            dup: false,
            packet_id: None,
            properties: Properties::new(),
        }
    }
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The packet acknowledged.
    pub packet_id: u16,
    /// MQTT 5 reason code (0 success; 0x80 and above: refused); 0 for 3.1.1.
    pub reason: u8,
    /// MQTT 5 properties (a reason string, user properties).
    pub properties: Properties,
}

impl Ack {
    /// A successful acknowledgement of `packet_id`.
    pub fn new(packet_id: u16) -> Ack {
        Ack {
            packet_id,
            reason: reason::SUCCESS,
            properties: Properties::new(),
        }
    }
}

/// The packets a client sends or receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// Client: open a session.
    Connect(Connect),
    /// Broker: session opened (`code` 0) or refused.
    ConnAck {
        /// The broker kept a session.
        session_present: bool,
        /// 3.1.1: 0 accepted, 1..=5 refused; 5: a reason code (see [`connack_reason`]).
        code: u8,
        /// MQTT 5 properties (receive maximum, maximum QoS, maximum packet size, ...).
        properties: Properties,
    },
    /// Either direction.
    Publish(Publish),
    /// QoS 1 acknowledgement.
    PubAck(Ack),
    /// QoS 2, step 1.
    PubRec(Ack),
    /// QoS 2, step 2.
    PubRel(Ack),
    /// QoS 2, step 3.
    PubComp(Ack),
    /// Client: subscribe to filters at a maximum QoS.
    Subscribe {
        /// Packet id.
        packet_id: u16,
        /// Filters and the QoS asked.
        filters: Vec<(String, QoS)>,
        /// MQTT 5 properties.
        properties: Properties,
    },
    /// Broker: granted QoS (or a failure code) per filter.
    SubAck {
        /// Packet id.
        packet_id: u16,
        /// Return codes (3.1.1: 0..=2, 0x80) or reason codes (5).
        codes: Vec<u8>,
        /// MQTT 5 properties.
        properties: Properties,
    },
    /// Client: unsubscribe.
    Unsubscribe {
        /// Packet id.
        packet_id: u16,
        /// Filters.
        filters: Vec<String>,
        /// MQTT 5 properties.
        properties: Properties,
    },
    /// Broker: unsubscribed.
    UnsubAck {
        /// Packet id.
        packet_id: u16,
        /// MQTT 5 reason codes, one per filter; empty for 3.1.1.
        codes: Vec<u8>,
        /// MQTT 5 properties.
        properties: Properties,
    },
    /// Client: are you there?
    PingReq,
    /// Broker: yes.
    PingResp,
    /// Client: goodbye; MQTT 5 broker: why it closes the connection.
    Disconnect {
        /// MQTT 5 reason code (0 for 3.1.1).
        reason: u8,
        /// MQTT 5 properties (a reason string, a server reference).
        properties: Properties,
    },
}

/// What is wrong with bytes from the broker (or a packet to encode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The remaining length takes more than four bytes.
    LengthEncoding,
    /// The packet is larger than the caller's limit.
    TooLarge(usize),
    /// A packet type or flags a client must not receive, or a reserved value.
    Protocol(&'static str),
    /// A field is cut short, too long, or invalid.
    Malformed(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::LengthEncoding => write!(f, "variable length longer than four bytes"),
            Error::TooLarge(n) => write!(f, "packet of {n} bytes is over the limit"),
            Error::Protocol(m) => write!(f, "protocol violation: {m}"),
            Error::Malformed(m) => write!(f, "malformed packet: {m}"),
        }
    }
}

/// Why a broker refused a connection: CONNACK return codes 1..=5 (3.1.1) or reason codes (5).
pub fn connack_reason(version: Version, code: u8) -> &'static str {
    match (version, code) {
        (_, 0) => "accepted",
        (Version::V311, 1) => "unacceptable protocol version",
        (Version::V311, 2) => "identifier rejected",
        (Version::V311, 3) => "server unavailable",
        (Version::V311, 4) => "bad user name or password",
        (Version::V311, 5) => "not authorized",
        (Version::V311, _) => "unknown return code",
        (Version::V5, c) => reason::describe(c),
    }
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &[u8]) -> Result<(), Error> {
    let len = u16::try_from(s.len()).map_err(|_| Error::Malformed("string over 65535 bytes"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s);
    Ok(())
}

fn check_topic_name(topic: &str) -> Result<(), Error> {
    if topic.is_empty() || topic.contains(['+', '#', '\0']) {
        return Err(Error::Malformed("topic name empty or with wildcards"));
    }
    Ok(())
}

/// In 3.1.1 a packet has no properties and no reason codes.
fn v311_plain(properties: &Properties, reason: u8) -> Result<(), Error> {
    if !properties.is_empty() || reason != 0 {
        return Err(Error::Protocol("properties and reason codes need MQTT 5"));
    }
    Ok(())
}

fn encode_ack(version: Version, kind: u8, ack: &Ack, body: &mut Vec<u8>) -> Result<(), Error> {
    if ack.packet_id == 0 {
        return Err(Error::Malformed("packet id 0"));
    }
    body.extend_from_slice(&ack.packet_id.to_be_bytes());
    match version {
        Version::V311 => v311_plain(&ack.properties, ack.reason),
        Version::V5 if ack.reason == 0 && ack.properties.is_empty() => Ok(()),
        Version::V5 => {
            if !reason::allowed(kind, ack.reason) {
                return Err(Error::Malformed("reason code not allowed in this packet"));
            }
            body.push(ack.reason);
            if !ack.properties.is_empty() {
                ack.properties.encode(kind, body)?;
            }
            Ok(())
        }
    }
}

/// Appends the bytes of `packet`, as protocol level `version` has it, to `out`.
pub fn encode(packet: &Packet, version: Version, out: &mut Vec<u8>) -> Result<(), Error> {
    let v5 = version == Version::V5;
    let mut body = Vec::new();
    let first = match packet {
        Packet::Connect(c) => {
            put_str(&mut body, b"MQTT")?;
            body.push(if v5 { 5 } else { 4 });
            let mut flags = 0u8;
            if c.clean_session {
                flags |= 0x02;
            }
            if c.username.is_some() {
                flags |= 0x80;
            }
            if c.password.is_some() {
                flags |= 0x40;
            }
            body.push(flags);
            body.extend_from_slice(&c.keep_alive.to_be_bytes());
            if v5 {
                c.properties.encode(1, &mut body)?;
            } else {
                v311_plain(&c.properties, 0)?;
            }
            put_str(&mut body, c.client_id.as_bytes())?;
            if let Some(u) = &c.username {
                put_str(&mut body, u.as_bytes())?;
            }
            if let Some(p) = &c.password {
                put_str(&mut body, p)?;
            }
            0x10
        }
        Packet::ConnAck {
            session_present,
            code,
            properties,
        } => {
            body.extend_from_slice(&[u8::from(*session_present), *code]);
            if v5 {
                properties.encode(2, &mut body)?;
            } else {
                v311_plain(properties, 0)?;
            }
            0x20
        }
        Packet::Publish(p) => {
            check_topic_name(&p.topic)?;
            put_str(&mut body, p.topic.as_bytes())?;
            match (p.qos, p.packet_id) {
                (QoS::AtMostOnce, None) => {}
                (QoS::AtLeastOnce | QoS::ExactlyOnce, Some(id)) if id != 0 => {
                    body.extend_from_slice(&id.to_be_bytes())
                }
                _ => {
                    return Err(Error::Malformed(
                        "packet id must be given exactly for QoS > 0",
                    ))
                }
            }
            if v5 {
                p.properties.encode(3, &mut body)?;
            } else {
                v311_plain(&p.properties, 0)?;
            }
            body.extend_from_slice(&p.payload);
            0x30 | (u8::from(p.dup) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain)
        }
        Packet::PubAck(a) => {
            encode_ack(version, 4, a, &mut body)?;
            0x40
        }
        Packet::PubRec(a) => {
            encode_ack(version, 5, a, &mut body)?;
            0x50
        }
        Packet::PubRel(a) => {
            encode_ack(version, 6, a, &mut body)?;
            0x62
        }
        Packet::PubComp(a) => {
            encode_ack(version, 7, a, &mut body)?;
            0x70
        }
        Packet::Subscribe {
            packet_id,
            filters,
            properties,
        } => {
            if filters.is_empty() {
                return Err(Error::Malformed("SUBSCRIBE without filters"));
            }
            body.extend_from_slice(&packet_id.to_be_bytes());
            if v5 {
                properties.encode(8, &mut body)?;
            } else {
                v311_plain(properties, 0)?;
            }
            for (f, q) in filters {
                put_str(&mut body, f.as_bytes())?;
                body.push(*q as u8);
            }
            0x82
        }
        Packet::SubAck {
            packet_id,
            codes,
            properties,
        } => {
            body.extend_from_slice(&packet_id.to_be_bytes());
            if v5 {
                properties.encode(9, &mut body)?;
            } else {
                v311_plain(properties, 0)?;
            }
            body.extend_from_slice(codes);
            0x90
        }
        Packet::Unsubscribe {
            packet_id,
            filters,
            properties,
        } => {
            body.extend_from_slice(&packet_id.to_be_bytes());
            if v5 {
                properties.encode(10, &mut body)?;
            } else {
                v311_plain(properties, 0)?;
            }
            for f in filters {
                put_str(&mut body, f.as_bytes())?;
            }
            0xa2
        }
        Packet::UnsubAck {
            packet_id,
            codes,
            properties,
        } => {
            body.extend_from_slice(&packet_id.to_be_bytes());
            if v5 {
                properties.encode(11, &mut body)?;
                body.extend_from_slice(codes);
            } else if !codes.is_empty() {
                return Err(Error::Protocol("properties and reason codes need MQTT 5"));
            } else {
                v311_plain(properties, 0)?;
            }
            0xb0
        }
        Packet::PingReq => 0xc0,
        Packet::PingResp => 0xd0,
        Packet::Disconnect { reason, properties } => {
            if v5 {
                if *reason != 0 || !properties.is_empty() {
                    body.push(*reason);
                    properties.encode(14, &mut body)?;
                }
            } else {
                v311_plain(properties, *reason)?;
            }
            0xe0
        }
    };
    out.push(first);
    properties::put_varint(out, body.len())?;
    out.extend_from_slice(&body);
    Ok(())
}

/// Reads fields of a packet body, failing on anything that runs past it.
pub(crate) struct Reader<'a> {
    pub(crate) data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.data.len() < n {
            return Err(Error::Malformed("field runs past the packet"));
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A variable byte integer (at most four bytes).
    pub(crate) fn varint(&mut self) -> Result<usize, Error> {
        let mut value = 0usize;
        for i in 0..4 {
            let byte = self.take(1)?[0];
            value |= usize::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Error::LengthEncoding)
    }

    fn packet_id(&mut self) -> Result<u16, Error> {
        match self.u16()? {
            0 => Err(Error::Malformed("packet id 0")),
            id => Ok(id),
        }
    }

    pub(crate) fn binary(&mut self) -> Result<Vec<u8>, Error> {
        let len = usize::from(self.u16()?);
        Ok(self.take(len)?.to_vec())
    }

    pub(crate) fn string(&mut self) -> Result<String, Error> {
        let len = usize::from(self.u16()?);
        let bytes = self.take(len)?;
        let s = core::str::from_utf8(bytes).map_err(|_| Error::Malformed("string is not UTF-8"))?;
        if s.contains('\0') {
            return Err(Error::Malformed("string contains U+0000"));
        }
        Ok(String::from(s))
    }

    fn rest(&mut self) -> Vec<u8> {
        let rest = self.data.to_vec();
        self.data = &[];
        rest
    }

    pub(crate) fn end(&self) -> Result<(), Error> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(Error::Malformed("bytes after the packet's fields"))
        }
    }
}

/// An acknowledgement of packet type `kind` (MQTT 5: a reason code and properties may follow
/// the packet id, or be left out when 0 and none).
fn decode_ack(r: &mut Reader<'_>, version: Version, kind: u8) -> Result<Ack, Error> {
    let packet_id = r.packet_id()?;
    let mut ack = Ack::new(packet_id);
    if version == Version::V5 && !r.data.is_empty() {
        ack.reason = r.take(1)?[0];
        if !reason::allowed(kind, ack.reason) {
            return Err(Error::Malformed("reason code not allowed in this packet"));
        }
        if !r.data.is_empty() {
            ack.properties = Properties::decode(r, kind)?;
        }
    }
    Ok(ack)
}

/// Decodes the packet at the start of `buffer` that a client may receive (CONNACK, PUBLISH,
/// PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, PINGRESP, and in MQTT 5 DISCONNECT) at
/// protocol level `version`: the packet and the bytes it took, `Ok(None)` if it has not all
/// arrived. `max_len` bounds the whole packet.
pub fn decode(
    buffer: &[u8],
    version: Version,
    max_len: usize,
) -> Result<Option<(Packet, usize)>, Error> {
    let v5 = version == Version::V5;
    let Some(&first) = buffer.first() else {
        return Ok(None);
    };
    let mut remaining = 0usize;
    let mut header = 1;
    loop {
        let Some(&byte) = buffer.get(header) else {
            return Ok(None);
        };
        remaining |= usize::from(byte & 0x7f) << (7 * (header - 1));
        header += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if header == 5 {
            return Err(Error::LengthEncoding);
        }
    }
    let total = header + remaining;
    if total > max_len {
        return Err(Error::TooLarge(total));
    }
    if buffer.len() < total {
        return Ok(None);
    }
    let mut r = Reader {
        data: &buffer[header..total],
    };
    let flags = first & 0x0f;
    let fixed = |expected: u8| {
        if flags == expected {
            Ok(())
        } else {
            Err(Error::Protocol("reserved flag bits"))
        }
    };
    let packet = match first >> 4 {
        2 => {
            fixed(0)?;
            let b = r.take(2)?;
            if b[0] & !1 != 0 {
                return Err(Error::Protocol("CONNACK reserved bits"));
            }
            let (session_present, code) = (b[0] & 1 == 1, b[1]);
            let properties = if v5 {
                if !reason::allowed(2, code) {
                    return Err(Error::Malformed("reason code not allowed in this packet"));
                }
                Properties::decode(&mut r, 2)?
            } else {
                Properties::new()
            };
            if session_present && code != 0 {
                return Err(Error::Malformed("session present on a refusal"));
            }
            Packet::ConnAck {
                session_present,
                code,
                properties,
            }
        }
        3 => {
            let qos = QoS::from_bits((flags >> 1) & 3)?;
            let topic = r.string()?;
            let packet_id = if qos == QoS::AtMostOnce {
                None
            } else {
                Some(r.packet_id()?)
            };
            let properties = if v5 {
                Properties::decode(&mut r, 3)?
            } else {
                Properties::new()
            };
            if properties.get(properties::id::TOPIC_ALIAS).is_some() {
                // CONNECT never offers a Topic Alias Maximum, so the broker may not use one.
                return Err(Error::Protocol("topic alias the client did not allow"));
            }
            check_topic_name(&topic)?;
            if flags & 8 == 8 && qos == QoS::AtMostOnce {
                return Err(Error::Malformed("DUP set on a QoS 0 message"));
            }
            Packet::Publish(Publish {
                topic,
                payload: r.rest(),
                qos,
                retain: flags & 1 == 1,
                dup: flags & 8 == 8,
                packet_id,
                properties,
            })
        }
        4 => {
            fixed(0)?;
            Packet::PubAck(decode_ack(&mut r, version, 4)?)
        }
        5 => {
            fixed(0)?;
            Packet::PubRec(decode_ack(&mut r, version, 5)?)
        }
        6 => {
            fixed(2)?;
            Packet::PubRel(decode_ack(&mut r, version, 6)?)
        }
        7 => {
            fixed(0)?;
            Packet::PubComp(decode_ack(&mut r, version, 7)?)
        }
        9 => {
            fixed(0)?;
            let packet_id = r.packet_id()?;
            let properties = if v5 {
                Properties::decode(&mut r, 9)?
            } else {
                Properties::new()
            };
            let codes = r.rest();
            let bad = |&c: &u8| {
                if v5 {
                    !reason::allowed(9, c)
                } else {
                    c > 2 && c != 0x80
                }
            };
            if codes.is_empty() || codes.iter().any(bad) {
                return Err(Error::Malformed("SUBACK return codes"));
            }
            Packet::SubAck {
                packet_id,
                codes,
                properties,
            }
        }
        11 => {
            fixed(0)?;
            let packet_id = r.packet_id()?;
            let (properties, codes) = if v5 {
                let properties = Properties::decode(&mut r, 11)?;
                let codes = r.rest();
                if codes.is_empty() || codes.iter().any(|&c| !reason::allowed(11, c)) {
                    return Err(Error::Malformed("UNSUBACK reason codes"));
                }
                (properties, codes)
            } else {
                (Properties::new(), Vec::new())
            };
            Packet::UnsubAck {
                packet_id,
                codes,
                properties,
            }
        }
        13 => {
            fixed(0)?;
            Packet::PingResp
        }
        14 if v5 => {
            fixed(0)?;
            let mut reason = 0;
            let mut properties = Properties::new();
            if !r.data.is_empty() {
                reason = r.take(1)?[0];
                if !reason::allowed(14, reason) {
                    return Err(Error::Malformed("reason code not allowed in this packet"));
                }
                if !r.data.is_empty() {
                    properties = Properties::decode(&mut r, 14)?;
                }
            }
            Packet::Disconnect { reason, properties }
        }
        15 if v5 => return Err(Error::Protocol("AUTH without enhanced authentication")),
        _ => return Err(Error::Protocol("packet type a client does not receive")),
    };
    r.end()?;
    Ok(Some((packet, total)))
}

/// Whether `topic` matches the subscription `filter` (`+` one level, `#` the rest).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return !topic.starts_with('$') || !filter.starts_with('#'),
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests;
