//! Stored reports as the admin API shows them: each message in the proto3 JSON mapping, or, when
//! that cannot express it, its protobuf fields by number, so that no value a device sent is shown
//! as null.
//!
//! What a device controls here: the stored payload, which was checked to decode when it arrived
//! but may carry values lichen's types do not know (an enum value added by a newer EVE makes the
//! JSON mapping fail). Such payloads are rendered from the wire format: varints and fixed-width
//! values as numbers, length-delimited fields as a nested message when they parse as one, else as
//! text when UTF-8, else as base64. Nesting is bounded by [`MAX_DEPTH`].

use base64ct::{Base64, Encoding};
use prost::Message;
use serde_json::{Map, Value};

use super::device_routes::gunzip;
use crate::admin_api::Report;
use crate::store::{Telemetry, TelemetryKind};

/// Deepest nesting rendered from the wire format.
const MAX_DEPTH: usize = 16;

/// A stored report as JSON.
pub(super) fn to_report(report: Telemetry) -> Report {
    use lichen_api::logs::{AppInstanceLogBundle, LogBundle};
    use lichen_api::{flowlog::FlowMessage, info::ZInfoMsg, metrics::ZMetricMsg};
    let kind = TelemetryKind::from_code(report.kind).unwrap_or(TelemetryKind::Info);
    let message = match kind {
        TelemetryKind::Info => message_json::<ZInfoMsg>(&report.payload),
        TelemetryKind::Metrics => message_json::<ZMetricMsg>(&report.payload),
        TelemetryKind::Logs => message_json::<LogBundle>(&report.payload),
        TelemetryKind::AppLogs => message_json::<AppInstanceLogBundle>(&report.payload),
        TelemetryKind::FlowLog => message_json::<FlowMessage>(&report.payload),
        TelemetryKind::HardwareHealth => {
            message_json::<lichen_api::hardwarehealth::ZHardwareHealth>(&report.payload)
        }
        TelemetryKind::NewLogs | TelemetryKind::AppNewLogs => {
            let text = gunzip(&report.payload).unwrap_or_default();
            String::from_utf8_lossy(&text)
                .lines()
                .filter(|line| !line.trim().is_empty())
                .map(|line| {
                    serde_json::from_str(line).unwrap_or_else(|_| Value::String(line.into()))
                })
                .collect()
        }
    };
    Report {
        seq: report.seq,
        kind: kind.name().to_owned(),
        object: report.object,
        received_at_ms: report.received_at_ms,
        message,
    }
}

/// `payload` as `M` in proto3 JSON, or, if that fails, `{"wireFields": {...}}` by field number.
fn message_json<M: Message + Default + serde::Serialize>(payload: &[u8]) -> Value {
    M::decode(payload)
        .ok()
        .and_then(|message| serde_json::to_value(message).ok())
        .unwrap_or_else(|| {
            let fields = wire_fields(payload, 0).unwrap_or_default();
            let mut wrapper = Map::new();
            wrapper.insert("wireFields".into(), Value::Object(fields));
            Value::Object(wrapper)
        })
}

/// A varint, and the rest.
fn varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (index, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Some((value, &bytes[index + 1..]));
        }
    }
    None
}

/// The fields of a protobuf message by number (repeated ones as arrays), or `None` if `bytes`
/// is not a well-formed message.
fn wire_fields(mut bytes: &[u8], depth: usize) -> Option<Map<String, Value>> {
    let mut fields = Map::new();
    while !bytes.is_empty() {
        let (key, rest) = varint(bytes)?;
        let (number, wire_type) = (key >> 3, key & 7);
        if number == 0 {
            return None;
        }
        let (value, rest) = match wire_type {
            0 => {
                let (value, rest) = varint(rest)?;
                (Value::from(value), rest)
            }
            1 => {
                let (value, rest) = rest.split_at_checked(8)?;
                (
                    Value::from(u64::from_le_bytes(value.try_into().ok()?)),
                    rest,
                )
            }
            5 => {
                let (value, rest) = rest.split_at_checked(4)?;
                (
                    Value::from(u32::from_le_bytes(value.try_into().ok()?)),
                    rest,
                )
            }
            2 => {
                let (len, rest) = varint(rest)?;
                let (value, rest) = rest.split_at_checked(usize::try_from(len).ok()?)?;
                (length_delimited(value, depth), rest)
            }
            _ => return None,
        };
        bytes = rest;
        match fields.get_mut(&number.to_string()) {
            Some(Value::Array(values)) => values.push(value),
            Some(single) => *single = Value::Array(vec![single.take(), value]),
            None => {
                fields.insert(number.to_string(), value);
            }
        }
    }
    Some(fields)
}

fn length_delimited(bytes: &[u8], depth: usize) -> Value {
    if depth < MAX_DEPTH && !bytes.is_empty() {
        if let Some(fields) = wire_fields(bytes, depth + 1) {
            // Short printable text also parses as a message now and then; prefer text then.
            let printable = std::str::from_utf8(bytes)
                .is_ok_and(|text| text.chars().all(|c| !c.is_control() || c == '\n'));
            if !printable {
                return Value::Object(fields);
            }
        }
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::String(text.to_owned()),
        Err(_) => Value::String(Base64::encode_string(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lichen_api::info::{ZInfoApp, ZInfoMsg};

    #[test]
    fn known_messages_use_the_json_mapping() {
        let info = ZInfoMsg {
            dev_id: "dev-1".into(),
            ..Default::default()
        };
        let json = message_json::<ZInfoMsg>(&info.encode_to_vec());
        assert_eq!(json["devId"], "dev-1");
    }

    #[test]
    fn values_the_types_do_not_know_are_shown_by_number_not_null() {
        // An info type and an app state from a newer EVE.
        let info = ZInfoMsg {
            ztype: 99,
            dev_id: "dev-1".into(),
            info_content: Some(lichen_api::info::z_info_msg::InfoContent::Ainfo(ZInfoApp {
                app_id: "app-1".into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        let json = message_json::<ZInfoMsg>(&info.encode_to_vec());
        let fields = &json["wireFields"];
        assert_eq!(fields["1"], 99, "{json}");
        assert_eq!(fields["2"], "dev-1");
        assert_eq!(fields["5"]["1"], "app-1");
    }

    #[test]
    fn malformed_wire_data_is_refused_and_binary_becomes_base64() {
        assert_eq!(wire_fields(&[0x08], 0), None, "a key without its value");
        assert_eq!(wire_fields(&[0x0a, 5, 1], 0), None, "length past the end");
        assert_eq!(wire_fields(&[0x0b], 0), None, "group wire type");
        assert_eq!(wire_fields(&[0x00, 1], 0), None, "field number 0");
        let fields = wire_fields(&[0x0a, 2, 0xff, 0xfe, 0x10, 1, 0x10, 2], 0).unwrap();
        assert_eq!(fields["1"], "//4=");
        assert_eq!(fields["2"], serde_json::json!([1, 2]));
        // Deep nesting stops at MAX_DEPTH instead of recursing without bound.
        let mut nested = vec![0x08, 1];
        for _ in 0..100 {
            let mut outer = vec![0x0a, nested.len() as u8];
            outer.extend_from_slice(&nested);
            nested = outer;
            if nested.len() > 120 {
                break;
            }
        }
        assert!(wire_fields(&nested, 0).is_some());
    }
}
