//! The MQTT 3.1.1 client codec, sans-IO: packets to bytes and bytes to packets.
//!
//! The broker is a peer on the network and may send anything: a remaining length of more than
//! four bytes or beyond the caller's limit, reserved flag bits set, a packet type a client
//! never receives, a topic that is not UTF-8 or carries wildcards, a QoS of 3, a packet id of
//! 0, fields running past the packet's end. [`decode`] turns each into an [`Error`] and never
//! panics; `Ok(None)` means "not all here yet".

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

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
    fn from_bits(bits: u8) -> Result<QoS, Error> {
        match bits {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            2 => Ok(QoS::ExactlyOnce),
            _ => Err(Error::Malformed("QoS 3")),
        }
    }
}

/// CONNECT's contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    /// Client identifier (1..=23 characters is what every broker must take).
    pub client_id: String,
    /// Keep-alive in seconds (0: none).
    pub keep_alive: u16,
    /// Start a fresh session.
    pub clean_session: bool,
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<Vec<u8>>,
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
}

/// The packets of MQTT 3.1.1 a client sends or receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// Client: open a session.
    Connect(Connect),
    /// Broker: session opened (`code` 0) or refused.
    ConnAck {
        /// The broker kept a session.
        session_present: bool,
        /// 0 accepted; 1..=5 refused (see [`connack_reason`]).
        code: u8,
    },
    /// Either direction.
    Publish(Publish),
    /// QoS 1 acknowledgement.
    PubAck(u16),
    /// QoS 2, step 1.
    PubRec(u16),
    /// QoS 2, step 2.
    PubRel(u16),
    /// QoS 2, step 3.
    PubComp(u16),
    /// Client: subscribe to filters at a maximum QoS.
    Subscribe {
        /// Packet id.
        packet_id: u16,
        /// Filters and the QoS asked.
        filters: Vec<(String, QoS)>,
    },
    /// Broker: granted QoS per filter (0x80 failure).
    SubAck {
        /// Packet id.
        packet_id: u16,
        /// Return codes.
        codes: Vec<u8>,
    },
    /// Client: unsubscribe.
    Unsubscribe {
        /// Packet id.
        packet_id: u16,
        /// Filters.
        filters: Vec<String>,
    },
    /// Broker: unsubscribed.
    UnsubAck(u16),
    /// Client: are you there?
    PingReq,
    /// Broker: yes.
    PingResp,
    /// Client: goodbye.
    Disconnect,
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
            Error::LengthEncoding => write!(f, "remaining length longer than four bytes"),
            Error::TooLarge(n) => write!(f, "packet of {n} bytes is over the limit"),
            Error::Protocol(m) => write!(f, "protocol violation: {m}"),
            Error::Malformed(m) => write!(f, "malformed packet: {m}"),
        }
    }
}

/// Why a broker refused a connection (CONNACK return codes 1..=5).
pub fn connack_reason(code: u8) -> &'static str {
    match code {
        0 => "accepted",
        1 => "unacceptable protocol version",
        2 => "identifier rejected",
        3 => "server unavailable",
        4 => "bad user name or password",
        5 => "not authorized",
        _ => "unknown return code",
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) -> Result<(), Error> {
    let len = u16::try_from(s.len()).map_err(|_| Error::Malformed("string over 65535 bytes"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s);
    Ok(())
}

fn put_header(out: &mut Vec<u8>, first: u8, body: &[u8]) -> Result<(), Error> {
    let mut len = body.len();
    if len > 268_435_455 {
        return Err(Error::TooLarge(len));
    }
    out.push(first);
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    Ok(())
}

fn check_topic_name(topic: &str) -> Result<(), Error> {
    if topic.is_empty() || topic.contains(['+', '#', '\0']) {
        return Err(Error::Malformed("topic name empty or with wildcards"));
    }
    Ok(())
}

/// Appends the bytes of `packet` to `out`.
pub fn encode(packet: &Packet, out: &mut Vec<u8>) -> Result<(), Error> {
    let mut body = Vec::new();
    let first = match packet {
        Packet::Connect(c) => {
            put_str(&mut body, b"MQTT")?;
            body.push(4); // protocol level 3.1.1
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
        } => {
            body.extend_from_slice(&[u8::from(*session_present), *code]);
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
            body.extend_from_slice(&p.payload);
            0x30 | (u8::from(p.dup) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain)
        }
        Packet::PubAck(id) => {
            body.extend_from_slice(&id.to_be_bytes());
            0x40
        }
        Packet::PubRec(id) => {
            body.extend_from_slice(&id.to_be_bytes());
            0x50
        }
        Packet::PubRel(id) => {
            body.extend_from_slice(&id.to_be_bytes());
            0x62
        }
        Packet::PubComp(id) => {
            body.extend_from_slice(&id.to_be_bytes());
            0x70
        }
        Packet::Subscribe { packet_id, filters } => {
            if filters.is_empty() {
                return Err(Error::Malformed("SUBSCRIBE without filters"));
            }
            body.extend_from_slice(&packet_id.to_be_bytes());
            for (f, q) in filters {
                put_str(&mut body, f.as_bytes())?;
                body.push(*q as u8);
            }
            0x82
        }
        Packet::SubAck { packet_id, codes } => {
            body.extend_from_slice(&packet_id.to_be_bytes());
            body.extend_from_slice(codes);
            0x90
        }
        Packet::Unsubscribe { packet_id, filters } => {
            body.extend_from_slice(&packet_id.to_be_bytes());
            for f in filters {
                put_str(&mut body, f.as_bytes())?;
            }
            0xa2
        }
        Packet::UnsubAck(id) => {
            body.extend_from_slice(&id.to_be_bytes());
            0xb0
        }
        Packet::PingReq => 0xc0,
        Packet::PingResp => 0xd0,
        Packet::Disconnect => 0xe0,
    };
    put_header(out, first, &body)
}

/// Reads fields of a packet body, failing on anything that runs past it.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.data.len() < n {
            return Err(Error::Malformed("field runs past the packet"));
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16, Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn packet_id(&mut self) -> Result<u16, Error> {
        match self.u16()? {
            0 => Err(Error::Malformed("packet id 0")),
            id => Ok(id),
        }
    }

    fn string(&mut self) -> Result<String, Error> {
        let len = usize::from(self.u16()?);
        let bytes = self.take(len)?;
        let s = core::str::from_utf8(bytes).map_err(|_| Error::Malformed("string is not UTF-8"))?;
        if s.contains('\0') {
            return Err(Error::Malformed("string contains U+0000"));
        }
        Ok(String::from(s))
    }

    fn end(&self) -> Result<(), Error> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(Error::Malformed("bytes after the packet's fields"))
        }
    }
}

/// Decodes the packet at the start of `buffer` that a client may receive (CONNACK, PUBLISH,
/// PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, PINGRESP): the packet and the bytes it
/// took, `Ok(None)` if it has not all arrived. `max_len` bounds the whole packet.
pub fn decode(buffer: &[u8], max_len: usize) -> Result<Option<(Packet, usize)>, Error> {
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
            Packet::ConnAck {
                session_present: b[0] & 1 == 1,
                code: b[1],
            }
        }
        3 => {
            let qos = QoS::from_bits((flags >> 1) & 3)?;
            let topic = r.string()?;
            check_topic_name(&topic)?;
            let packet_id = if qos == QoS::AtMostOnce {
                None
            } else {
                Some(r.packet_id()?)
            };
            let payload = r.data.to_vec();
            r.data = &[];
            Packet::Publish(Publish {
                topic,
                payload,
                qos,
                retain: flags & 1 == 1,
                dup: flags & 8 == 8,
                packet_id,
            })
        }
        4 => {
            fixed(0)?;
            Packet::PubAck(r.packet_id()?)
        }
        5 => {
            fixed(0)?;
            Packet::PubRec(r.packet_id()?)
        }
        6 => {
            fixed(2)?;
            Packet::PubRel(r.packet_id()?)
        }
        7 => {
            fixed(0)?;
            Packet::PubComp(r.packet_id()?)
        }
        9 => {
            fixed(0)?;
            let packet_id = r.packet_id()?;
            let codes = r.data.to_vec();
            r.data = &[];
            if codes.is_empty() || codes.iter().any(|&c| c > 2 && c != 0x80) {
                return Err(Error::Malformed("SUBACK return codes"));
            }
            Packet::SubAck { packet_id, codes }
        }
        11 => {
            fixed(0)?;
            Packet::UnsubAck(r.packet_id()?)
        }
        13 => {
            fixed(0)?;
            Packet::PingResp
        }
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
mod tests {
    use super::*;
    use alloc::vec;

    fn roundtrip(p: Packet) {
        let mut out = Vec::new();
        encode(&p, &mut out).unwrap();
        let (back, used) = decode(&out, 1 << 20).unwrap().unwrap();
        assert_eq!(used, out.len());
        assert_eq!(back, p);
        for cut in 0..out.len() {
            assert_eq!(decode(&out[..cut], 1 << 20), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn client_bound_packets_round_trip() {
        roundtrip(Packet::ConnAck {
            session_present: true,
            code: 0,
        });
        roundtrip(Packet::Publish(Publish {
            topic: "edgex/events/device/a".into(),
            payload: vec![7; 300],
            qos: QoS::AtLeastOnce,
            retain: true,
            dup: false,
            packet_id: Some(9),
        }));
        roundtrip(Packet::Publish(Publish {
            topic: "t".into(),
            payload: vec![],
            qos: QoS::AtMostOnce,
            retain: false,
            dup: false,
            packet_id: None,
        }));
        roundtrip(Packet::PubAck(1));
        roundtrip(Packet::PubRel(2));
        roundtrip(Packet::SubAck {
            packet_id: 3,
            codes: vec![0, 1, 0x80],
        });
        roundtrip(Packet::UnsubAck(4));
        roundtrip(Packet::PingResp);
    }

    #[test]
    fn connect_and_subscribe_bytes() {
        let mut out = Vec::new();
        encode(
            &Packet::Connect(Connect {
                client_id: "c".into(),
                keep_alive: 30,
                clean_session: true,
                username: None,
                password: None,
            }),
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out,
            [0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 30, 0, 1, b'c']
        );
        out.clear();
        encode(
            &Packet::Subscribe {
                packet_id: 1,
                filters: vec![("a/#".into(), QoS::AtLeastOnce)],
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [0x82, 8, 0, 1, 0, 3, b'a', b'/', b'#', 1]);
    }

    #[test]
    fn hostile_packets_are_errors() {
        let cases: &[(&[u8], Error)] = &[
            (&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], Error::LengthEncoding),
            (&[0x30, 0xff, 0xff, 0x7f], Error::TooLarge(2_097_155)),
            (&[0x21, 2, 0, 0], Error::Protocol("reserved flag bits")),
            (&[0x20, 2, 2, 0], Error::Protocol("CONNACK reserved bits")),
            (
                &[0x10, 0],
                Error::Protocol("packet type a client does not receive"),
            ),
            (&[0x36, 3, 0, 1, b'a'], Error::Malformed("QoS 3")),
            (
                &[0x32, 3, 0, 1, b'a'],
                Error::Malformed("field runs past the packet"),
            ),
            (
                &[0x32, 5, 0, 1, b'a', 0, 0],
                Error::Malformed("packet id 0"),
            ),
            (
                &[0x30, 3, 0, 1, b'#'],
                Error::Malformed("topic name empty or with wildcards"),
            ),
            (
                &[0x30, 4, 0, 2, 0xc3, 0x28],
                Error::Malformed("string is not UTF-8"),
            ),
            (
                &[0x30, 2, 0, 5],
                Error::Malformed("field runs past the packet"),
            ),
            (
                &[0x40, 3, 0, 1, 9],
                Error::Malformed("bytes after the packet's fields"),
            ),
            (&[0x90, 3, 0, 1, 7], Error::Malformed("SUBACK return codes")),
            (
                &[0xd0, 1, 0],
                Error::Malformed("bytes after the packet's fields"),
            ),
        ];
        for (bytes, e) in cases {
            assert_eq!(decode(bytes, 4096), Err(e.clone()), "{bytes:?}");
        }
        assert!(encode(
            &Packet::Publish(Publish {
                topic: "a/+".into(),
                payload: vec![],
                qos: QoS::AtMostOnce,
                retain: false,
                dup: false,
                packet_id: None
            }),
            &mut Vec::new()
        )
        .is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut seed = 0x2545_f491u32;
        for _ in 0..50_000 {
            let mut b = Vec::new();
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            for i in 0..(seed % 12) {
                b.push(seed.rotate_left(i * 3) as u8);
            }
            if let Ok(Some((_, used))) = decode(&b, 64) {
                assert!(used <= b.len());
            }
        }
    }

    #[test]
    fn topic_filters() {
        assert!(topic_matches("a/#", "a/b/c"));
        assert!(topic_matches("a/#", "a"));
        assert!(topic_matches("a/+/c", "a/b/c"));
        assert!(!topic_matches("a/+/c", "a/b/d"));
        assert!(!topic_matches("a/b", "a/b/c"));
        assert!(topic_matches("#", "x/y"));
        assert!(!topic_matches("#", "$SYS/x"));
    }
}
