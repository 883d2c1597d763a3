//! Stored reports as the admin API shows them: each message in the proto3 JSON mapping, read by
//! descriptor so that values lichen's types do not know are shown rather than dropped.
//!
//! What a device controls here: the stored payload, which was checked to decode when it arrived
//! but may carry values lichen's `.proto` files do not know. An enum value they do not name (one
//! added by a newer EVE) is shown as its number, as the proto3 JSON mapping says; fields they do
//! not have are kept under `"unknownFields"` of the message they were in, by field number:
//! varints and fixed-width values as numbers, length-delimited fields as a nested message when
//! they parse as one, else as text when UTF-8, else as base64. A payload that does not decode at
//! all (it was checked on arrival, so only after a schema change) is shown entirely that way, as
//! `{"wireFields": {...}}`. Nesting is bounded by [`MAX_DEPTH`].

use std::sync::LazyLock;

use base64ct::{Base64, Encoding};
use prost_reflect::{DescriptorPool, DynamicMessage, MapKey, SerializeOptions};
use serde_json::{Map, Value};

use super::device_routes::gunzip;
use crate::admin_api::Report;
use crate::store::{Telemetry, TelemetryKind};

/// Deepest nesting rendered from the wire format.
const MAX_DEPTH: usize = 16;

/// lichen-api's schema, for reading stored payloads by descriptor.
static SCHEMA: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(lichen_api::FILE_DESCRIPTOR_SET).expect("lichen-api's descriptors")
});

/// The message type of each kind of protobuf report.
fn message_name(kind: TelemetryKind) -> Option<&'static str> {
    Some(match kind {
        TelemetryKind::Info => "org.lfedge.eve.info.ZInfoMsg",
        TelemetryKind::Metrics => "org.lfedge.eve.metrics.ZMetricMsg",
        TelemetryKind::Logs => "org.lfedge.eve.logs.LogBundle",
        TelemetryKind::AppLogs => "org.lfedge.eve.logs.AppInstanceLogBundle",
        TelemetryKind::FlowLog => "org.lfedge.eve.flowlog.FlowMessage",
        TelemetryKind::HardwareHealth => "org.lfedge.eve.hardwarehealth.ZHardwareHealth",
        TelemetryKind::NewLogs | TelemetryKind::AppNewLogs => return None,
    })
}

/// A stored report as JSON.
pub(super) fn to_report(report: Telemetry) -> Report {
    let kind = TelemetryKind::from_code(report.kind).unwrap_or(TelemetryKind::Info);
    let message = match message_name(kind) {
        Some(name) => message_json(name, &report.payload),
        None => {
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

/// `payload`, a message of type `name`, in proto3 JSON with its unknown fields added, or, if it
/// does not decode, `{"wireFields": {...}}` by field number.
fn message_json(name: &str, payload: &[u8]) -> Value {
    SCHEMA
        .get_message_by_name(name)
        .and_then(|descriptor| DynamicMessage::decode(descriptor, payload).ok())
        .and_then(|message| {
            let mut json = message
                .serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new())
                .ok()?;
            add_unknown_fields(&message, &mut json, 0);
            Some(json)
        })
        .unwrap_or_else(|| {
            let fields = wire_fields(payload, 0).unwrap_or_default();
            let mut wrapper = Map::new();
            wrapper.insert("wireFields".into(), Value::Object(fields));
            Value::Object(wrapper)
        })
}

/// Adds the unknown fields of `message` and of the messages inside it to `json`, its JSON.
fn add_unknown_fields(message: &DynamicMessage, json: &mut Value, depth: usize) {
    // Well-known types (Timestamp...) are strings in JSON; their unknown fields are not shown.
    let Value::Object(object) = json else {
        return;
    };
    if depth >= MAX_DEPTH {
        return;
    }
    let mut unknown = Vec::new();
    for field in message.unknown_fields() {
        field.encode(&mut unknown);
    }
    if let Some(fields) = wire_fields(&unknown, depth + 1).filter(|f| !f.is_empty()) {
        object.insert("unknownFields".into(), Value::Object(fields));
    }
    for (field, value) in message.fields() {
        let Some(child) = object.get_mut(field.json_name()) else {
            continue;
        };
        match (value, child) {
            (prost_reflect::Value::Message(inner), child) => {
                add_unknown_fields(inner, child, depth + 1);
            }
            (prost_reflect::Value::List(items), Value::Array(array)) => {
                for (item, child) in items.iter().zip(array) {
                    if let prost_reflect::Value::Message(inner) = item {
                        add_unknown_fields(inner, child, depth + 1);
                    }
                }
            }
            (prost_reflect::Value::Map(entries), Value::Object(children)) => {
                for (key, item) in entries {
                    let key = match key {
                        MapKey::String(key) => key.clone(),
                        MapKey::Bool(key) => key.to_string(),
                        MapKey::I32(key) => key.to_string(),
                        MapKey::I64(key) => key.to_string(),
                        MapKey::U32(key) => key.to_string(),
                        MapKey::U64(key) => key.to_string(),
                    };
                    if let (prost_reflect::Value::Message(inner), Some(child)) =
                        (item, children.get_mut(&key))
                    {
                        add_unknown_fields(inner, child, depth + 1);
                    }
                }
            }
            _ => {}
        }
    }
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
    use prost::Message;

    const INFO: &str = "org.lfedge.eve.info.ZInfoMsg";

    #[test]
    fn every_report_kind_has_its_message_in_the_schema() {
        for code in 0..=u8::MAX {
            if let Some(name) = TelemetryKind::from_code(code.into()).and_then(message_name) {
                assert!(SCHEMA.get_message_by_name(name).is_some(), "{name}");
            }
        }
    }

    #[test]
    fn known_messages_use_the_json_mapping() {
        let info = ZInfoMsg {
            dev_id: "dev-1".into(),
            at_time_stamp: Some(lichen_api::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            ..Default::default()
        };
        let json = message_json(INFO, &info.encode_to_vec());
        assert_eq!(json["devId"], "dev-1");
        // Timestamps in the canonical form of the mapping (UTC with "Z").
        assert_eq!(json["atTimeStamp"], "2023-11-14T22:13:20Z");
        // Otherwise the same JSON as the generated types' mapping.
        let info = ZInfoMsg {
            at_time_stamp: None,
            ..info
        };
        let json = message_json(INFO, &info.encode_to_vec());
        assert_eq!(json, serde_json::to_value(&info).unwrap());
    }

    #[test]
    fn values_the_types_do_not_know_are_shown_by_number_not_null() {
        // An info type and an app state from a newer EVE: the numbers in place, names kept.
        let info = ZInfoMsg {
            ztype: 99,
            dev_id: "dev-1".into(),
            info_content: Some(lichen_api::info::z_info_msg::InfoContent::Ainfo(ZInfoApp {
                app_id: "app-1".into(),
                state: 77,
                ..Default::default()
            })),
            ..Default::default()
        };
        let json = message_json(INFO, &info.encode_to_vec());
        assert_eq!(json["ztype"], 99, "{json}");
        assert_eq!(json["devId"], "dev-1");
        assert_eq!(json["ainfo"]["AppID"], "app-1", "{json}");
        assert_eq!(json["ainfo"]["state"], 77, "{json}");
    }

    #[test]
    fn fields_the_types_do_not_have_are_kept_by_number() {
        let info = ZInfoMsg {
            dev_id: "dev-1".into(),
            info_content: Some(lichen_api::info::z_info_msg::InfoContent::Ainfo(ZInfoApp {
                app_id: "app-1".into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        let mut app = ZInfoApp {
            app_id: "app-1".into(),
            ..Default::default()
        }
        .encode_to_vec();
        // Field 900 (varint 5) and field 901 (text) in the app; field 999 (a message) on top.
        app.extend_from_slice(&[0xa0, 0x38, 5, 0xaa, 0x38, 2, b'o', b'k']);
        let payload = info.encode_to_vec();
        let mut with_unknown = ZInfoMsg {
            dev_id: "dev-1".into(),
            ..Default::default()
        }
        .encode_to_vec();
        with_unknown.push(0x2a); // field 5 (ainfo), length-delimited
        with_unknown.push(app.len() as u8);
        with_unknown.extend_from_slice(&app);
        with_unknown.extend_from_slice(&[0xba, 0x3e, 2, 0x08, 7]);
        let json = message_json(INFO, &with_unknown);
        assert_eq!(json["devId"], "dev-1", "{json}");
        assert_eq!(json["ainfo"]["AppID"], "app-1", "{json}");
        assert_eq!(json["ainfo"]["unknownFields"]["900"], 5, "{json}");
        assert_eq!(json["ainfo"]["unknownFields"]["901"], "ok", "{json}");
        assert_eq!(json["unknownFields"]["999"]["1"], 7, "{json}");
        assert_eq!(message_json(INFO, &payload)["ainfo"]["AppID"], "app-1");
    }

    #[test]
    fn undecodable_payloads_are_shown_by_number() {
        // Field 2 (devId, a string) holding invalid UTF-8 does not decode as ZInfoMsg.
        let json = message_json(INFO, &[0x12, 2, 0xff, 0xfe, 0x08, 3]);
        assert_eq!(json["wireFields"]["1"], 3, "{json}");
        assert_eq!(json["wireFields"]["2"], "//4=", "{json}");
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
