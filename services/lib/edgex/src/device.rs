//! Devices in EdgeX's YAML format (a device file's `deviceList`): name, profile, protocol
//! properties and `autoEvents`.
//!
//! Like profiles, device files come from users: errors name the line.

use crate::schema::{boolean, fail, map, required, seq, strings, text};
use crate::yaml::{self, Error, Node, Value};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Reads a source periodically.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoEvent {
    /// `interval`, in microseconds (Go duration syntax in the file: `1s`, `500ms`, `1m30s`).
    pub interval_us: u64,
    /// `onChange`: publish only when a reading differs from the last one published.
    pub on_change: bool,
    /// `sourceName`: a resource or command.
    pub source_name: String,
}

/// A device.
#[derive(Clone, Debug, PartialEq)]
pub struct Device {
    /// `name`.
    pub name: String,
    /// `profileName`.
    pub profile_name: String,
    /// `serviceName` (the device service that owns it), if given.
    pub service_name: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `labels`.
    pub labels: Vec<String>,
    /// `adminState`: `LOCKED` devices are not read or written.
    pub locked: bool,
    /// `protocols`: per protocol name (`modbus-tcp`, `mqtt`, ...) its properties as text.
    pub protocols: Vec<(String, Vec<(String, String)>)>,
    /// `autoEvents`.
    pub auto_events: Vec<AutoEvent>,
}

impl Device {
    /// The property `key` of protocol `protocol`.
    pub fn protocol(&self, protocol: &str, key: &str) -> Option<&str> {
        let (_, props) = self.protocols.iter().find(|(p, _)| p == protocol)?;
        props
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Parses a device file: a document with `deviceList` (EdgeX's device definition files).
    pub fn parse_list(text: &str) -> Result<Vec<Device>, Error> {
        let doc = yaml::parse(text)?;
        map(&doc, "a device file")?;
        let mut devices: Vec<Device> = Vec::new();
        for node in seq(&doc, "deviceList")? {
            let device = Device::from_node(node)?;
            if devices.iter().any(|d| d.name == device.name) {
                return fail(node, format!("device `{}` defined twice", device.name));
            }
            devices.push(device);
        }
        Ok(devices)
    }

    /// Reads one device.
    pub fn from_node(node: &Node) -> Result<Device, Error> {
        map(node, "a device")?;
        let name = required(node, "name", "a device")?;
        let profile_name = required(node, "profileName", "a device")?;
        let locked = match text(node, "adminState")?.as_deref() {
            None | Some("UNLOCKED") => false,
            Some("LOCKED") => true,
            Some(other) => {
                return fail(
                    node.get("adminState").unwrap_or(node),
                    format!("`adminState`: `{other}` is not LOCKED or UNLOCKED"),
                )
            }
        };
        let mut protocols = Vec::new();
        if let Some(p) = node.get("protocols") {
            for (protocol, props) in map(p, "`protocols`")? {
                let mut values = Vec::new();
                for (key, value) in map(props, "a protocol's properties")? {
                    match &value.value {
                        Value::Scalar { text, .. } => values.push((key.clone(), text.clone())),
                        Value::Null => values.push((key.clone(), String::new())),
                        _ => {
                            return fail(
                                value,
                                format!("protocol property `{key}` must be a scalar"),
                            )
                        }
                    }
                }
                protocols.push((protocol.clone(), values));
            }
        }
        let mut auto_events = Vec::new();
        for event in seq(node, "autoEvents")? {
            map(event, "an auto event")?;
            let interval = required(event, "interval", "an auto event")?;
            let Some(interval_us) = parse_duration_us(&interval) else {
                return fail(
                    event.get("interval").unwrap_or(event),
                    format!("`interval`: `{interval}` is not a duration like 1s or 500ms"),
                );
            };
            if interval_us == 0 {
                return fail(event, "`interval` must be more than 0");
            }
            auto_events.push(AutoEvent {
                interval_us,
                on_change: boolean(event, "onChange")?.unwrap_or(false),
                source_name: required(event, "sourceName", "an auto event")?,
            });
        }
        Ok(Device {
            name,
            profile_name,
            service_name: text(node, "serviceName")?,
            description: text(node, "description")?,
            labels: strings(node, "labels")?,
            locked,
            protocols,
            auto_events,
        })
    }
}

/// Parses a Go duration (`300ms`, `1.5s`, `1h2m3s`, `100us`) into microseconds; `None` if
/// malformed or beyond a year.
pub fn parse_duration_us(text: &str) -> Option<u64> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return None;
        }
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 0.001,
            "us" | "µs" => 1.0,
            "ms" => 1e3,
            "s" => 1e6,
            "m" => 60e6,
            "h" => 3600e6,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    (total <= 366.0 * 86_400e6).then_some(total as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_devices_load() {
        let devices = Device::parse_list(include_str!("../profiles/devices.yaml")).unwrap();
        let d = &devices[0];
        assert_eq!(d.name, "Thermostat-1");
        assert_eq!(d.profile_name, "Modbus-Thermostat");
        assert_eq!(d.protocol("modbus-tcp", "Port"), Some("5020"));
        assert_eq!(d.auto_events[0].interval_us, 200_000);
        assert_eq!(d.auto_events[0].source_name, "Readings");
        assert!(d.auto_events[1].on_change);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_us("1s"), Some(1_000_000));
        assert_eq!(parse_duration_us("250ms"), Some(250_000));
        assert_eq!(parse_duration_us("1m30s"), Some(90_000_000));
        assert_eq!(parse_duration_us("1.5s"), Some(1_500_000));
        for bad in ["", "s", "10", "1x", "-1s", "9999h"] {
            assert_eq!(parse_duration_us(bad), None, "{bad}");
        }
    }

    #[test]
    fn errors_name_the_line() {
        let text = "deviceList:\n  - name: D\n    profileName: P\n    autoEvents:\n      - { interval: 10 parsecs, sourceName: X }\n";
        let e = Device::parse_list(text).unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        let text = "deviceList:\n  - name: D\n    adminState: MAYBE\n    profileName: P\n";
        assert_eq!(Device::parse_list(text).unwrap_err().line, 3);
        let text = "deviceList:\n  - name: D\n";
        assert!(Device::parse_list(text)
            .unwrap_err()
            .message
            .contains("profileName"));
    }
}
