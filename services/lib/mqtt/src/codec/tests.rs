//! The codec's tests: round trips at both levels, exact bytes, hostile packets, random bytes.

use super::*;
use crate::properties::{id, Value};
use alloc::vec;

fn roundtrip(p: Packet, version: Version) {
    let mut out = Vec::new();
    encode(&p, version, &mut out).unwrap();
    let (back, used) = decode(&out, version, 1 << 20).unwrap().unwrap();
    assert_eq!(used, out.len());
    assert_eq!(back, p);
    for cut in 0..out.len() {
        assert_eq!(
            decode(&out[..cut], version, 1 << 20),
            Ok(None),
            "cut at {cut}"
        );
    }
}

fn publish(qos: QoS, packet_id: Option<u16>) -> Publish {
    Publish {
        qos,
        packet_id,
        retain: true,
        ..Publish::new("edgex/events/device/a".into(), vec![7; 300])
    }
}

#[test]
fn client_bound_packets_round_trip() {
    for version in [Version::V311, Version::V5] {
        roundtrip(
            Packet::ConnAck {
                session_present: true,
                code: 0,
                properties: Properties::new(),
            },
            version,
        );
        roundtrip(Packet::Publish(publish(QoS::AtLeastOnce, Some(9))), version);
        roundtrip(Packet::Publish(Publish::new("t".into(), vec![])), version);
        roundtrip(Packet::PubAck(Ack::new(1)), version);
        roundtrip(Packet::PubRel(Ack::new(2)), version);
        roundtrip(
            Packet::SubAck {
                packet_id: 3,
                codes: vec![0, 1, 0x80],
                properties: Properties::new(),
            },
            version,
        );
        roundtrip(Packet::PingResp, version);
    }
    roundtrip(
        Packet::UnsubAck {
            packet_id: 4,
            codes: vec![],
            properties: Properties::new(),
        },
        Version::V311,
    );
}

#[test]
fn v5_packets_with_properties_and_reasons_round_trip() {
    let v5 = Version::V5;
    roundtrip(
        Packet::ConnAck {
            session_present: false,
            code: 0,
            properties: Properties::new()
                .with(id::RECEIVE_MAXIMUM, Value::U16(10))
                .with(id::MAXIMUM_QOS, Value::Byte(1))
                .with(id::TOPIC_ALIAS_MAXIMUM, Value::U16(10))
                .with(id::ASSIGNED_CLIENT_IDENTIFIER, Value::Str("auto-1".into())),
        },
        v5,
    );
    roundtrip(
        Packet::ConnAck {
            session_present: false,
            code: 0x87,
            properties: Properties::new().with(id::REASON_STRING, Value::Str("no".into())),
        },
        v5,
    );
    let mut p = publish(QoS::AtLeastOnce, Some(10));
    p.properties = Properties::new()
        .with(id::CONTENT_TYPE, Value::Str("application/json".into()))
        .with(id::PAYLOAD_FORMAT_INDICATOR, Value::Byte(1))
        .with(id::USER_PROPERTY, Value::Pair("k".into(), "v".into()));
    roundtrip(Packet::Publish(p), v5);
    roundtrip(
        Packet::PubAck(Ack {
            packet_id: 5,
            reason: reason::NO_MATCHING_SUBSCRIBERS,
            properties: Properties::new(),
        }),
        v5,
    );
    roundtrip(
        Packet::PubAck(Ack {
            packet_id: 6,
            reason: 0x97,
            properties: Properties::new().with(id::REASON_STRING, Value::Str("quota".into())),
        }),
        v5,
    );
    roundtrip(
        Packet::SubAck {
            packet_id: 3,
            codes: vec![0, 0xa2],
            properties: Properties::new()
                .with(id::USER_PROPERTY, Value::Pair("a".into(), "".into())),
        },
        v5,
    );
    roundtrip(
        Packet::UnsubAck {
            packet_id: 4,
            codes: vec![0, 0x11],
            properties: Properties::new(),
        },
        v5,
    );
    roundtrip(
        Packet::Disconnect {
            reason: 0x8b,
            properties: Properties::new().with(id::REASON_STRING, Value::Str("bye".into())),
        },
        v5,
    );
    roundtrip(
        Packet::Disconnect {
            reason: 0,
            properties: Properties::new(),
        },
        v5,
    );
}

#[test]
fn connect_and_subscribe_bytes() {
    let connect = Connect {
        client_id: "c".into(),
        keep_alive: 30,
        clean_session: true,
        ..Connect::default()
    };
    let mut out = Vec::new();
    encode(&Packet::Connect(connect.clone()), Version::V311, &mut out).unwrap();
    assert_eq!(
        out,
        [0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 30, 0, 1, b'c']
    );
    out.clear();
    let v5 = Connect {
        properties: Properties::new().with(id::SESSION_EXPIRY_INTERVAL, Value::U32(300)),
        ..connect
    };
    encode(&Packet::Connect(v5), Version::V5, &mut out).unwrap();
    assert_eq!(
        out,
        [0x10, 19, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 30, 5, 0x11, 0, 0, 1, 44, 0, 1, b'c']
    );
    out.clear();
    let subscribe = Packet::Subscribe {
        packet_id: 1,
        filters: vec![("a/#".into(), QoS::AtLeastOnce)],
        properties: Properties::new(),
    };
    encode(&subscribe, Version::V311, &mut out).unwrap();
    assert_eq!(out, [0x82, 8, 0, 1, 0, 3, b'a', b'/', b'#', 1]);
    out.clear();
    encode(&subscribe, Version::V5, &mut out).unwrap();
    assert_eq!(out, [0x82, 9, 0, 1, 0, 0, 3, b'a', b'/', b'#', 1]);
    // 3.1.1 has no properties: asking for some is an error, not a silent loss.
    let mut p = Publish::new("t".into(), vec![]);
    p.properties = Properties::new().with(id::CONTENT_TYPE, Value::Str("x".into()));
    assert!(encode(&Packet::Publish(p), Version::V311, &mut Vec::new()).is_err());
}

#[test]
fn hostile_packets_are_errors() {
    let both: &[(&[u8], Error)] = &[
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
            &[0x30, 4, 0, 2, 0xc3, 0x28],
            Error::Malformed("string is not UTF-8"),
        ),
        (
            &[0x30, 2, 0, 5],
            Error::Malformed("field runs past the packet"),
        ),
        (
            &[0xd0, 1, 0],
            Error::Malformed("bytes after the packet's fields"),
        ),
    ];
    for version in [Version::V311, Version::V5] {
        for (bytes, e) in both {
            assert_eq!(decode(bytes, version, 4096), Err(e.clone()), "{bytes:?}");
        }
    }
    let v311: &[(&[u8], Error)] = &[
        (&[0x90, 3, 0, 1, 7], Error::Malformed("SUBACK return codes")),
        (
            &[0x30, 3, 0, 1, b'#'],
            Error::Malformed("topic name empty or with wildcards"),
        ),
        (
            &[0x40, 3, 0, 1, 9],
            Error::Malformed("bytes after the packet's fields"),
        ),
        (
            &[0x38, 3, 0, 1, b'a'],
            Error::Malformed("DUP set on a QoS 0 message"),
        ),
        (
            &[0xe0, 0],
            Error::Protocol("packet type a client does not receive"),
        ),
        (
            &[0x20, 2, 1, 5],
            Error::Malformed("session present on a refusal"),
        ),
    ];
    for (bytes, e) in v311 {
        assert_eq!(
            decode(bytes, Version::V311, 4096),
            Err(e.clone()),
            "{bytes:?}"
        );
    }
    let v5: &[(&[u8], Error)] = &[
        // CONNACK with a reason code CONNACK may not carry (0x10), or none of its properties.
        (
            &[0x20, 3, 0, 0x10, 0],
            Error::Malformed("reason code not allowed in this packet"),
        ),
        (
            &[0x20, 2, 0, 0],
            Error::Malformed("field runs past the packet"),
        ),
        // A topic alias the client never allowed; a property PUBLISH may not carry.
        (
            &[0x30, 7, 0, 1, b'a', 3, 0x23, 0, 1],
            Error::Protocol("topic alias the client did not allow"),
        ),
        (
            &[0x30, 7, 0, 1, b'a', 3, 0x21, 0, 1],
            Error::Protocol("property not allowed in this packet"),
        ),
        // Property length past the packet; a property length of five bytes.
        (
            &[0x30, 5, 0, 1, b'a', 9, 1],
            Error::Malformed("field runs past the packet"),
        ),
        (
            &[0x30, 9, 0, 1, b'a', 0x80, 0x80, 0x80, 0x80, 0x01, 0],
            Error::LengthEncoding,
        ),
        // PUBACK with a SUBACK-only reason; PUBREL with a PUBACK-only one.
        (
            &[0x40, 3, 0, 1, 0x01],
            Error::Malformed("reason code not allowed in this packet"),
        ),
        (
            &[0x62, 3, 0, 1, 0x10],
            Error::Malformed("reason code not allowed in this packet"),
        ),
        // PUBACK whose properties run past, or carry a duplicate reason string.
        (
            &[0x40, 5, 0, 1, 0, 5, 0x1f],
            Error::Malformed("field runs past the packet"),
        ),
        (
            &[0x40, 10, 0, 1, 0, 6, 0x1f, 0, 0, 0x1f, 0, 0],
            Error::Protocol("property given twice"),
        ),
        // SUBACK with a CONNACK-only code; UNSUBACK without codes.
        (
            &[0x90, 4, 0, 1, 0, 0x84],
            Error::Malformed("SUBACK return codes"),
        ),
        (
            &[0xb0, 3, 0, 1, 0],
            Error::Malformed("UNSUBACK reason codes"),
        ),
        // DISCONNECT with a code it may not carry; AUTH never asked for.
        (
            &[0xe0, 1, 0x10],
            Error::Malformed("reason code not allowed in this packet"),
        ),
        (
            &[0xf0, 0],
            Error::Protocol("AUTH without enhanced authentication"),
        ),
    ];
    for (bytes, e) in v5 {
        assert_eq!(
            decode(bytes, Version::V5, 4096),
            Err(e.clone()),
            "{bytes:?}"
        );
    }
    assert!(encode(
        &Packet::Publish(Publish::new("a/+".into(), vec![])),
        Version::V5,
        &mut Vec::new()
    )
    .is_err());
    assert!(encode(
        &Packet::PubAck(Ack {
            packet_id: 1,
            reason: 0x01,
            properties: Properties::new()
        }),
        Version::V5,
        &mut Vec::new()
    )
    .is_err());
}

#[test]
fn v5_short_acknowledgements_mean_success() {
    // PUBACK with the packet id only, with a reason only; DISCONNECT with nothing.
    assert_eq!(
        decode(&[0x40, 2, 0, 7], Version::V5, 64),
        Ok(Some((Packet::PubAck(Ack::new(7)), 4)))
    );
    let (p, _) = decode(&[0x40, 3, 0, 7, 0x10], Version::V5, 64)
        .unwrap()
        .unwrap();
    assert_eq!(
        p,
        Packet::PubAck(Ack {
            packet_id: 7,
            reason: 0x10,
            properties: Properties::new()
        })
    );
    assert_eq!(
        decode(&[0xe0, 0], Version::V5, 64),
        Ok(Some((
            Packet::Disconnect {
                reason: 0,
                properties: Properties::new()
            },
            2
        )))
    );
}

#[test]
fn random_bytes_never_panic() {
    let mut seed = 0x2545_f491u32;
    for round in 0..100_000 {
        let version = if round % 2 == 0 {
            Version::V311
        } else {
            Version::V5
        };
        let mut b = Vec::new();
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        for i in 0..(seed % 16) {
            b.push(seed.rotate_left(i * 3) as u8);
        }
        if let Ok(Some((p, used))) = decode(&b, version, 64) {
            assert!(used <= b.len());
            // What decodes encodes again to a packet that decodes the same.
            let mut again = Vec::new();
            if encode(&p, version, &mut again).is_ok() {
                assert_eq!(decode(&again, version, 1 << 20).unwrap().unwrap().0, p);
            }
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
