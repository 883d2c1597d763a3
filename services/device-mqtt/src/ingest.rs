//! What devices push, as EdgeX's device-mqtt takes it with topic levels: a message on
//! `incoming/data/<device>/<source>` whose payload is, for a device command, a JSON object of
//! resource names to values, and for a single resource either such an object or the bare value
//! (JSON, or plain text).
//!
//! Devices are on the network and may push anything: a topic with missing or extra levels, an
//! unknown device or source, a payload that is not JSON where an object is needed, a value that
//! is not of the resource's type or out of its range, a resource the source does not have. Each
//! is an error naming what was wrong; nothing is published for it.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use edgex::{value, Device, DeviceProfile, Event, Ids, Reading};
use serde_json::Value as Json;

/// The topic filter devices push to.
pub const INCOMING: &str = "incoming/data/#";

/// Splits `incoming/data/<device>/<source>`.
pub fn parse_topic(topic: &str) -> Result<(&str, &str), String> {
    let rest = topic
        .strip_prefix("incoming/data/")
        .ok_or_else(|| format!("topic `{topic}` is not under incoming/data/"))?;
    match rest.split('/').collect::<Vec<_>>()[..] {
        [device, source] if !device.is_empty() && !source.is_empty() => Ok((device, source)),
        _ => Err(format!(
            "topic `{topic}`: expected incoming/data/<device>/<source>"
        )),
    }
}

fn text_of(v: &Json) -> Result<String, String> {
    match v {
        Json::String(s) => Ok(s.clone()),
        Json::Bool(b) => Ok(b.to_string()),
        Json::Number(n) => Ok(n.to_string()),
        other => Err(format!("value {other} is not a string, number or boolean")),
    }
}

/// Builds the event for a push of `payload` to `source` of `device`.
pub fn event(
    device: &Device,
    profile: &DeviceProfile,
    source: &str,
    payload: &[u8],
    ids: &mut Ids,
    origin: i64,
) -> Result<Event, String> {
    let resources = profile
        .resources_of(source)
        .ok_or_else(|| format!("`{}` has no resource or command `{source}`", profile.name))?;
    let parsed: Option<Json> = serde_json::from_slice(payload).ok();
    let values: Vec<(String, String)> = match (&parsed, resources.len()) {
        (Some(Json::Object(map)), _) => map
            .iter()
            .map(|(k, v)| Ok((k.clone(), text_of(v)?)))
            .collect::<Result<_, String>>()?,
        (Some(v), 1) => alloc::vec![(resources[0].name.clone(), text_of(v)?)],
        (None, 1) => {
            let text =
                core::str::from_utf8(payload).map_err(|_| "payload is not UTF-8".to_string())?;
            alloc::vec![(resources[0].name.clone(), text.to_string())]
        }
        _ => {
            return Err(format!(
                "`{source}` has several resources: the payload must be a JSON object"
            ))
        }
    };
    let mut readings = Vec::new();
    for (name, text) in values {
        let r = resources
            .iter()
            .find(|r| r.name == name)
            .ok_or_else(|| format!("`{name}` is not a resource of `{source}`"))?;
        let raw = value::parse_value(r.properties.value_type, &text)
            .map_err(|e| format!("`{name}`: {e}"))?;
        let v = value::transform_read(&r.properties, raw).map_err(|e| format!("`{name}`: {e}"))?;
        readings.push(Reading {
            id: ids.next_id(),
            origin,
            device_name: device.name.clone(),
            resource_name: name,
            profile_name: profile.name.clone(),
            value_type: r.properties.value_type.name().into(),
            units: r.properties.units.clone().unwrap_or_default(),
            value: value::format_value(r.properties.value_type, &v),
        });
    }
    if readings.is_empty() {
        return Err("the payload names no resource".into());
    }
    Ok(Event {
        api_version: edgex::event::API_VERSION.into(),
        id: ids.next_id(),
        device_name: device.name.clone(),
        profile_name: profile.name.clone(),
        source_name: source.into(),
        origin,
        readings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (Device, DeviceProfile) {
        let profile =
            DeviceProfile::parse(include_str!("../../lib/edgex/profiles/mqtt-sensor.yaml"))
                .unwrap();
        let devices =
            Device::parse_list(include_str!("../../lib/edgex/profiles/devices.yaml")).unwrap();
        let device = devices
            .into_iter()
            .find(|d| d.profile_name == profile.name)
            .unwrap();
        (device, profile)
    }

    #[test]
    fn pushes_become_events() {
        let (d, p) = setup();
        let mut ids = Ids::new(1);
        let e = event(
            &d,
            &p,
            "values",
            br#"{"temperature": 23.5, "message": "hi"}"#,
            &mut ids,
            9,
        )
        .unwrap();
        assert_eq!(e.readings.len(), 2);
        let value = |name: &str| {
            e.readings
                .iter()
                .find(|r| r.resource_name == name)
                .unwrap()
                .value
                .clone()
        };
        assert_eq!(value("temperature"), "23.5");
        assert_eq!(value("message"), "hi");
        let e = event(&d, &p, "temperature", b"21", &mut ids, 9).unwrap();
        assert_eq!(e.readings[0].value, "21");
        let e = event(&d, &p, "message", b"plain text", &mut ids, 9).unwrap();
        assert_eq!(e.readings[0].value, "plain text");
        assert_eq!(
            parse_topic("incoming/data/Sensor-1/values").unwrap(),
            ("Sensor-1", "values")
        );
    }

    #[test]
    fn bad_pushes_are_errors() {
        let (d, p) = setup();
        let mut ids = Ids::new(1);
        for (source, payload, what) in [
            ("nothing", &b"1"[..], "no resource"),
            ("values", b"23.5", "JSON object"),
            ("values", br#"{"temperature": "warm"}"#, "not a Float64"),
            ("values", br#"{"humidity": 3}"#, "not a resource"),
            ("values", br#"{"temperature": [1]}"#, "not a string"),
            ("values", b"{}", "names no resource"),
            ("temperature", b"\xff", "UTF-8"),
        ] {
            let e = event(&d, &p, source, payload, &mut ids, 0).unwrap_err();
            assert!(e.contains(what), "{source} {payload:?}: {e}");
        }
        for topic in [
            "incoming/data/a",
            "incoming/data/a/b/c",
            "other/a/b",
            "incoming/data//b",
        ] {
            assert!(parse_topic(topic).is_err(), "{topic}");
        }
    }
}
