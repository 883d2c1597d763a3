//! Events and readings as EdgeX's v3 API and message bus carry them (JSON), and the topics
//! they travel on.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// EdgeX's API version string.
pub const API_VERSION: &str = "v3";

/// One value of one resource at one time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reading {
    /// A UUID.
    pub id: String,
    /// When it was read: nanoseconds since the Unix epoch.
    pub origin: i64,
    /// The device.
    pub device_name: String,
    /// The resource.
    pub resource_name: String,
    /// The device's profile.
    pub profile_name: String,
    /// EdgeX's value type name (`Float32`, ...).
    pub value_type: String,
    /// Units from the profile.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub units: String,
    /// The value as text.
    #[serde(default)]
    pub value: String,
}

/// Readings of one source (resource or command) of one device, taken together.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// `v3`.
    pub api_version: String,
    /// A UUID.
    pub id: String,
    /// The device.
    pub device_name: String,
    /// The device's profile.
    pub profile_name: String,
    /// The resource or command read.
    pub source_name: String,
    /// Nanoseconds since the Unix epoch.
    pub origin: i64,
    /// The readings.
    pub readings: Vec<Reading>,
}

/// `AddEventRequest`: what a device service publishes or POSTs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddEventRequest {
    /// `v3`.
    pub api_version: String,
    /// A request id (may be empty).
    #[serde(default)]
    pub request_id: String,
    /// The event.
    pub event: Event,
}

impl AddEventRequest {
    /// Wraps an event.
    pub fn new(event: Event) -> AddEventRequest {
        AddEventRequest {
            api_version: API_VERSION.into(),
            request_id: String::new(),
            event,
        }
    }
}

/// The message bus envelope EdgeX 3 wraps payloads in (JSON payloads, EdgeX 3.1 and later).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// `v3`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// Ties a response to its request.
    #[serde(rename = "correlationID", default)]
    pub correlation_id: String,
    /// The request's id (responses go to `edgex/response/<service>/<requestID>`).
    #[serde(rename = "requestID", default)]
    pub request_id: String,
    /// 0 for success, 1 for an error (then the payload is an error response).
    #[serde(rename = "errorCode", default)]
    pub error_code: u8,
    /// The payload.
    pub payload: T,
    /// `application/json`.
    #[serde(rename = "contentType", default)]
    pub content_type: String,
}

impl<T> Envelope<T> {
    /// An envelope for `payload` with the given ids.
    pub fn new(payload: T, correlation_id: String, request_id: String) -> Envelope<T> {
        Envelope {
            api_version: API_VERSION.into(),
            correlation_id,
            request_id,
            error_code: 0,
            payload,
            content_type: "application/json".into(),
        }
    }
}

/// The topic device services publish events on:
/// `edgex/events/device/<service>/<profile>/<device>/<source>`.
pub fn event_topic(service: &str, profile: &str, device: &str, source: &str) -> String {
    format!("edgex/events/device/{service}/{profile}/{device}/{source}")
}

/// The topic filter for command requests to `service`:
/// `edgex/device/command/request/<service>/#` (then `<device>/<command>/<get|set>`).
pub fn command_request_filter(service: &str) -> String {
    format!("edgex/device/command/request/{service}/#")
}

/// The topic a command's response goes to: `edgex/response/<service>/<requestID>`.
pub fn response_topic(service: &str, request_id: &str) -> String {
    format!("edgex/response/{service}/{request_id}")
}

/// Makes UUID-formatted ids (version 4 layout) from a 64-bit seed (xorshift: unique within a
/// run, not secret).
#[derive(Clone, Debug)]
pub struct Ids(u64);

impl Ids {
    /// Starts from `seed` (e.g. the time counter at boot); 0 is replaced.
    pub fn new(seed: u64) -> Ids {
        Ids(seed | 1)
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// The next id.
    pub fn next_id(&mut self) -> String {
        let hi = self.next_u64();
        let lo = self.next_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xffff,
            hi & 0xfff,
            ((lo >> 48) & 0x3fff) | 0x8000,
            lo & 0xffff_ffff_ffff
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_json_matches_edgex_field_names() {
        let event = Event {
            api_version: API_VERSION.into(),
            id: "e".into(),
            device_name: "D".into(),
            profile_name: "P".into(),
            source_name: "S".into(),
            origin: 7,
            readings: alloc::vec![Reading {
                id: "r".into(),
                origin: 7,
                device_name: "D".into(),
                resource_name: "R".into(),
                profile_name: "P".into(),
                value_type: "Float32".into(),
                units: "C".into(),
                value: "21.5".into(),
            }],
        };
        let json = serde_json::to_string(&Envelope::new(
            AddEventRequest::new(event.clone()),
            "c".into(),
            "q".into(),
        ))
        .unwrap();
        for field in [
            "\"apiVersion\":\"v3\"",
            "\"correlationID\":\"c\"",
            "\"deviceName\":\"D\"",
            "\"resourceName\":\"R\"",
            "\"valueType\":\"Float32\"",
            "\"sourceName\":\"S\"",
            "\"contentType\":\"application/json\"",
        ] {
            assert!(json.contains(field), "{field} in {json}");
        }
        let back: Envelope<AddEventRequest> = serde_json::from_str(&json).unwrap();
        assert_eq!(back.payload.event, event);
    }

    #[test]
    fn ids_look_like_uuids_and_differ() {
        let mut ids = Ids::new(0);
        let a = ids.next_id();
        let b = ids.next_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }
}
