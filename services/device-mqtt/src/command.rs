//! Commands to devices that speak MQTT, as EdgeX's device-mqtt sends them: a request from
//! core-command (`edgex::command`) for a device becomes a message on the device's
//! `CommandTopic` (its `mqtt` protocol property), `<CommandTopic>/<command>/<get|set>/<uuid>`,
//! carrying `{}` for get and the values to write for set (a JSON object of resource names to
//! the raw values, after the profile's checks and inverse transformations); the device answers
//! on `command/response/<uuid>`, for get with the values read (as it pushes them, see
//! [`crate::ingest`]), and that answer becomes core-command's response.
//!
//! Requests and answers come from the network: an unknown device or command (404), a locked
//! device (423), a read-only resource or command (405), a value that does not parse or is out
//! of range (400), more requests waiting than [`MAX_PENDING`] (503), an answer for no request
//! (ignored, counted by the caller) or that does not parse (500), no answer in time (503). Every
//! value of a set is checked before anything is sent.

use crate::ingest;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use edgex::command::{CommandRequest, Method};
use edgex::{value, Device, DeviceProfile, Event, Ids};

/// Where devices answer (EdgeX device-mqtt's default `ResponseTopic`).
pub const RESPONSES: &str = "command/response/#";

/// Requests waiting for a device's answer at most; more are refused (503).
pub const MAX_PENDING: usize = 64;

/// A request sent to a device, waiting for its answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    /// The uuid of the device's topics.
    pub uuid: String,
    /// The request it answers.
    pub request: CommandRequest,
    /// When to give up (the caller's clock, milliseconds).
    pub deadline_ms: u64,
}

/// What to publish to the device: topic and payload.
pub type ToDevice = (String, Vec<u8>);

/// Checks `request` for `device` and builds the message to it; an error is core-command's
/// status code and message.
pub fn to_device(
    device: &Device,
    profile: &DeviceProfile,
    request: &CommandRequest,
    uuid: &str,
) -> Result<ToDevice, (u16, String)> {
    if device.locked {
        return Err((423, "the device is locked".into()));
    }
    let base = device
        .protocol("mqtt", "CommandTopic")
        .filter(|t| !t.is_empty() && !t.contains(['+', '#']))
        .ok_or_else(|| {
            (
                500,
                format!("device `{}` has no mqtt CommandTopic", device.name),
            )
        })?;
    let resources = profile
        .resources_of(&request.command)
        .ok_or_else(|| (404, format!("no command `{}`", request.command)))?;
    let access = profile.command(&request.command).map(|c| c.read_write);
    let (method, payload) = match request.method {
        Method::Get => {
            if access.is_some_and(|a| !a.readable()) {
                return Err((405, "the command is not readable".into()));
            }
            ("get", b"{}".to_vec())
        }
        Method::Set => {
            if access.is_some_and(|a| !a.writable()) {
                return Err((405, "the command is not writable".into()));
            }
            let mut values = serde_json::Map::new();
            for (name, text) in &request.settings {
                let r = resources.iter().find(|r| &r.name == name).ok_or_else(|| {
                    (
                        400,
                        format!("`{name}` is not part of `{}`", request.command),
                    )
                })?;
                if !r.properties.read_write.writable() {
                    return Err((405, format!("`{name}` is read-only")));
                }
                let raw = value::parse_write(&r.properties, text)
                    .map_err(|e| (400, format!("`{name}`: {e}")))?;
                values.insert(
                    name.clone(),
                    serde_json::Value::String(value::format_value(r.properties.value_type, &raw)),
                );
            }
            let body = serde_json::to_vec(&serde_json::Value::Object(values))
                .map_err(|e| (500, e.to_string()))?;
            ("set", body)
        }
    };
    Ok((
        format!("{base}/{}/{method}/{uuid}", request.command),
        payload,
    ))
}

/// The uuid of an answer's topic `command/response/<uuid>`.
pub fn response_uuid(topic: &str) -> Option<&str> {
    topic
        .strip_prefix("command/response/")
        .filter(|u| !u.is_empty() && !u.contains('/'))
}

/// Turns the device's answer to `pending` into core-command's result: the event read for get,
/// nothing for set.
pub fn answer(
    device: &Device,
    profile: &DeviceProfile,
    pending: &Pending,
    payload: &[u8],
    ids: &mut Ids,
    origin: i64,
) -> Result<Option<Event>, (u16, String)> {
    match pending.request.method {
        Method::Get => ingest::event(
            device,
            profile,
            &pending.request.command,
            payload,
            ids,
            origin,
        )
        .map(Some)
        .map_err(|e| (500, format!("the device's answer: {e}"))),
        Method::Set => Ok(None),
    }
}

/// Requests waiting for devices' answers, oldest first.
#[derive(Debug, Default)]
pub struct Waiting {
    pending: Vec<Pending>,
}

impl Waiting {
    /// Nothing waiting.
    pub fn new() -> Waiting {
        Waiting::default()
    }

    /// Adds a request; `Err` (503) if [`MAX_PENDING`] already wait.
    pub fn add(&mut self, pending: Pending) -> Result<(), (u16, String)> {
        if self.pending.len() >= MAX_PENDING {
            return Err((503, "too many commands waiting for devices".into()));
        }
        self.pending.push(pending);
        Ok(())
    }

    /// Takes the request answered on `uuid`, if any waits.
    pub fn take(&mut self, uuid: &str) -> Option<Pending> {
        let i = self.pending.iter().position(|p| p.uuid == uuid)?;
        Some(self.pending.remove(i))
    }

    /// Takes the requests whose deadline passed at `now_ms`.
    pub fn expired(&mut self, now_ms: u64) -> Vec<Pending> {
        let (gone, kept) = core::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.deadline_ms <= now_ms);
        self.pending = kept;
        gone
    }

    /// Requests waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (Device, DeviceProfile) {
        let profile =
            DeviceProfile::parse(include_str!("../../lib/edgex/profiles/mqtt-sensor.yaml"))
                .unwrap();
        let device = Device::parse_list(include_str!("../../lib/edgex/profiles/devices.yaml"))
            .unwrap()
            .into_iter()
            .find(|d| d.profile_name == profile.name)
            .unwrap();
        (device, profile)
    }

    fn request(command: &str, method: Method, settings: &[(&str, &str)]) -> CommandRequest {
        CommandRequest {
            device: "Sensor-1".into(),
            command: command.into(),
            method,
            request_id: "r".into(),
            correlation_id: "c".into(),
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn get_and_set_go_to_the_command_topic() {
        let (device, profile) = setup();
        let (topic, payload) = to_device(
            &device,
            &profile,
            &request("values", Method::Get, &[]),
            "u1",
        )
        .unwrap();
        assert_eq!(topic, "command/Sensor-1/values/get/u1");
        assert_eq!(payload, b"{}");
        let (topic, payload) = to_device(
            &device,
            &profile,
            &request("message", Method::Set, &[("message", "on")]),
            "u2",
        )
        .unwrap();
        assert_eq!(topic, "command/Sensor-1/message/set/u2");
        assert_eq!(payload, br#"{"message":"on"}"#);
        assert_eq!(response_uuid("command/response/u2"), Some("u2"));
        assert_eq!(response_uuid("command/response/a/b"), None);
        assert_eq!(response_uuid("command/response/"), None);
    }

    #[test]
    fn bad_requests_are_refused_before_anything_is_sent() {
        let (mut device, profile) = setup();
        let cases = [
            (request("nothing", Method::Get, &[]), 404),
            (request("values", Method::Set, &[("message", "x")]), 405),
            (
                request("temperature", Method::Set, &[("temperature", "1")]),
                405,
            ),
            (
                request("message", Method::Set, &[("temperature", "1")]),
                400,
            ),
        ];
        for (r, code) in cases {
            assert_eq!(
                to_device(&device, &profile, &r, "u").unwrap_err().0,
                code,
                "{r:?}"
            );
        }
        device.locked = true;
        let r = request("values", Method::Get, &[]);
        assert_eq!(to_device(&device, &profile, &r, "u").unwrap_err().0, 423);
    }

    #[test]
    fn answers_and_deadlines() {
        let (device, profile) = setup();
        let mut ids = Ids::new(1);
        let mut waiting = Waiting::new();
        for (uuid, deadline_ms) in [("a", 10), ("b", 20)] {
            waiting
                .add(Pending {
                    uuid: uuid.into(),
                    request: request("values", Method::Get, &[]),
                    deadline_ms,
                })
                .unwrap();
        }
        let a = waiting.take("a").unwrap();
        assert_eq!(waiting.take("a"), None, "answered once");
        let event = answer(
            &device,
            &profile,
            &a,
            br#"{"temperature":21.5,"message":"ok"}"#,
            &mut ids,
            7,
        )
        .unwrap()
        .unwrap();
        assert_eq!(event.source_name, "values");
        assert_eq!(event.readings.len(), 2);
        assert_eq!(
            answer(&device, &profile, &a, b"[1,2]", &mut ids, 7)
                .unwrap_err()
                .0,
            500
        );
        assert!(waiting.expired(19).is_empty());
        assert_eq!(waiting.expired(20).len(), 1);
        assert!(waiting.is_empty());
        for i in 0..MAX_PENDING {
            waiting
                .add(Pending {
                    uuid: format!("{i}"),
                    request: request("values", Method::Get, &[]),
                    deadline_ms: 0,
                })
                .unwrap();
        }
        let extra = Pending {
            uuid: "x".into(),
            request: request("values", Method::Get, &[]),
            deadline_ms: 0,
        };
        assert_eq!(waiting.add(extra).unwrap_err().0, 503);
    }
}
