//! MQTT 5 reason codes: which a packet may carry, and what they mean.
//!
//! Codes below 0x80 report success; 0x80 and above, failure. A code a packet may not carry is
//! a malformed packet ([`allowed`]).

/// Success (also "granted QoS 0" in SUBACK and "normal disconnection").
pub const SUCCESS: u8 = 0x00;
/// PUBACK: accepted, but nobody subscribes to the topic.
pub const NO_MATCHING_SUBSCRIBERS: u8 = 0x10;

/// Whether `code` may appear in a packet of `kind` (packet type: 2 CONNACK, 4..=7 the
/// publish acknowledgements, 9 SUBACK, 11 UNSUBACK, 14 DISCONNECT).
pub fn allowed(kind: u8, code: u8) -> bool {
    let list: &[u8] = match kind {
        2 => &[
            0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8c, 0x90,
            0x95, 0x97, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9f,
        ],
        4 | 5 => &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99],
        6 | 7 => &[0x00, 0x92],
        9 => &[
            0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8f, 0x91, 0x97, 0x9e, 0xa1, 0xa2,
        ],
        11 => &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8f, 0x91],
        14 => &[
            0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8b, 0x8d, 0x8e, 0x8f, 0x90, 0x93,
            0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f, 0xa0, 0xa1,
            0xa2,
        ],
        _ => &[],
    };
    list.contains(&code)
}

/// What a v5 reason code means.
pub fn describe(code: u8) -> &'static str {
    match code {
        0x00 => "success",
        0x01 => "granted QoS 1",
        0x02 => "granted QoS 2",
        0x04 => "disconnect with will message",
        0x10 => "no matching subscribers",
        0x11 => "no subscription existed",
        0x80 => "unspecified error",
        0x81 => "malformed packet",
        0x82 => "protocol error",
        0x83 => "implementation specific error",
        0x84 => "unsupported protocol version",
        0x85 => "client identifier not valid",
        0x86 => "bad user name or password",
        0x87 => "not authorized",
        0x88 => "server unavailable",
        0x89 => "server busy",
        0x8a => "banned",
        0x8b => "server shutting down",
        0x8c => "bad authentication method",
        0x8d => "keep alive timeout",
        0x8e => "session taken over",
        0x8f => "topic filter invalid",
        0x90 => "topic name invalid",
        0x91 => "packet identifier in use",
        0x92 => "packet identifier not found",
        0x93 => "receive maximum exceeded",
        0x94 => "topic alias invalid",
        0x95 => "packet too large",
        0x96 => "message rate too high",
        0x97 => "quota exceeded",
        0x98 => "administrative action",
        0x99 => "payload format invalid",
        0x9a => "retain not supported",
        0x9b => "QoS not supported",
        0x9c => "use another server",
        0x9d => "server moved",
        0x9e => "shared subscriptions not supported",
        0x9f => "connection rate exceeded",
        0xa0 => "maximum connect time",
        0xa1 => "subscription identifiers not supported",
        0xa2 => "wildcard subscriptions not supported",
        _ => "unknown reason code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_per_packet() {
        assert!(allowed(4, NO_MATCHING_SUBSCRIBERS));
        assert!(!allowed(6, NO_MATCHING_SUBSCRIBERS));
        assert!(allowed(9, 0x01) && !allowed(2, 0x01));
        assert!(allowed(14, 0x8b) && !allowed(2, 0x8b));
        assert!(!allowed(3, 0x00));
        assert_eq!(describe(0x87), "not authorized");
    }
}
