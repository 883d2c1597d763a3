//! Commands over EdgeX's message bus (shared by the device services): core-command forwards `GET`/`PUT
//! /api/v3/device/name/{device}/{command}` to the device service as a request on
//! `edgex/device/command/request/<service>/<device>/<command>/<get|set>` and waits for the
//! answer on `edgex/response/<service>/<requestID>`.
//!
//! Requests come from the network: topics with missing or extra levels, envelopes that are
//! not JSON, `set` payloads that are not an object of resource names to values are errors
//! answered (when a request id is known) with EdgeX's error response, never a crash.

use crate::{Envelope, Event};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde::Serialize;
use serde_json::Value as Json;

/// Read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `get`: read the command's resources.
    Get,
    /// `set`: write them.
    Set,
}

/// A parsed command request.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandRequest {
    /// Device name.
    pub device: String,
    /// Command or resource name.
    pub command: String,
    /// Read or write.
    pub method: Method,
    /// The request id (the response topic's last level).
    pub request_id: String,
    /// The correlation id, echoed.
    pub correlation_id: String,
    /// For `set`: resource name and value as text.
    pub settings: Vec<(String, String)>,
}

/// Parses a request: `topic` under `edgex/device/command/request/<service>/`.
pub fn parse(
    service: &str,
    topic: &str,
    payload: &[u8],
) -> Result<CommandRequest, (Option<String>, String)> {
    let envelope: Envelope<Json> = serde_json::from_slice(payload).map_err(|e| {
        (
            None,
            alloc::format!("request is not an EdgeX envelope: {e}"),
        )
    })?;
    let id = Some(envelope.request_id.clone()).filter(|r| !r.is_empty());
    let fail = |m: String| (id.clone(), m);
    let prefix = alloc::format!("edgex/device/command/request/{service}/");
    let rest = topic
        .strip_prefix(&prefix)
        .ok_or_else(|| fail(alloc::format!("topic `{topic}` is not for {service}")))?;
    let parts: Vec<&str> = rest.split('/').collect();
    let [device, command, method] = parts[..] else {
        return Err(fail(alloc::format!(
            "topic `{topic}`: expected <device>/<command>/<get|set>"
        )));
    };
    let method = match method {
        "get" => Method::Get,
        "set" => Method::Set,
        other => return Err(fail(alloc::format!("method `{other}` is not get or set"))),
    };
    if id.is_none() {
        return Err(fail("request has no requestID".into()));
    }
    let mut settings = Vec::new();
    if method == Method::Set {
        let Json::Object(map) = &envelope.payload else {
            return Err(fail(
                "set payload must be an object of resource names to values".into(),
            ));
        };
        for (name, value) in map {
            let text = match value {
                Json::String(s) => s.clone(),
                Json::Bool(b) => b.to_string(),
                Json::Number(n) => n.to_string(),
                _ => {
                    return Err(fail(alloc::format!(
                        "value of `{name}` must be a string, number or boolean"
                    )))
                }
            };
            settings.push((name.clone(), text));
        }
        if settings.is_empty() {
            return Err(fail("set payload names no resource".into()));
        }
    }
    Ok(CommandRequest {
        device: device.into(),
        command: command.into(),
        method,
        request_id: envelope.request_id,
        correlation_id: envelope.correlation_id,
        settings,
    })
}

#[derive(Serialize)]
struct EventResponse<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    #[serde(rename = "statusCode")]
    status_code: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a Event>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

/// The response envelope: `event` for a successful get, nothing for a successful set, or
/// an error with an HTTP-like status code and message (then `errorCode` is 1).
pub fn response(
    correlation_id: &str,
    request_id: &str,
    result: Result<Option<&Event>, (u16, &str)>,
) -> Vec<u8> {
    let (payload, error) = match result {
        Ok(event) => (
            EventResponse {
                api_version: "v3",
                status_code: 200,
                event,
                message: None,
            },
            0,
        ),
        Err((code, message)) => (
            EventResponse {
                api_version: "v3",
                status_code: code,
                event: None,
                message: Some(message),
            },
            1,
        ),
    };
    let mut envelope = Envelope::new(payload, correlation_id.into(), request_id.into());
    envelope.error_code = error;
    serde_json::to_vec(&envelope).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "edgex/device/command/request/device-modbus/Thermostat-1/Setpoint/set";

    #[test]
    fn set_request() {
        let r = parse(
            "device-modbus",
            T,
            br#"{"apiVersion":"v3","requestID":"r1","correlationID":"c1","payload":{"Setpoint":"22.5","Switch":true},"contentType":"application/json"}"#,
        )
        .unwrap();
        assert_eq!(r.device, "Thermostat-1");
        assert_eq!(r.method, Method::Set);
        assert_eq!(r.settings.len(), 2);
        assert!(r.settings.contains(&("Switch".into(), "true".into())));
        let out = response(&r.correlation_id, &r.request_id, Err((400, "bad")));
        let back: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back["errorCode"], 1);
        assert_eq!(back["payload"]["statusCode"], 400);
        assert_eq!(back["requestID"], "r1");
    }

    #[test]
    fn bad_requests() {
        let ok = br#"{"apiVersion":"v3","requestID":"r","payload":{"A":"1"}}"#;
        assert!(parse("device-modbus", T, b"not json")
            .unwrap_err()
            .0
            .is_none());
        for (topic, payload) in [
            ("edgex/device/command/request/device-modbus/D/C", &ok[..]),
            ("edgex/device/command/request/device-modbus/D/C/set/x", ok),
            ("edgex/device/command/request/other/D/C/set", ok),
            ("edgex/device/command/request/device-modbus/D/C/delete", ok),
            (T, br#"{"apiVersion":"v3","requestID":"r","payload":[1]}"#),
            (T, br#"{"apiVersion":"v3","requestID":"r","payload":{}}"#),
            (
                T,
                br#"{"apiVersion":"v3","requestID":"r","payload":{"A":[1]}}"#,
            ),
        ] {
            let (id, message) = parse("device-modbus", topic, payload).unwrap_err();
            assert_eq!(id.as_deref(), Some("r"), "{topic}: {message}");
        }
        let (id, _) = parse(
            "device-modbus",
            T,
            br#"{"apiVersion":"v3","payload":{"A":"1"}}"#,
        )
        .unwrap_err();
        assert!(id.is_none());
    }
}
