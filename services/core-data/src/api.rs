//! EdgeX's v3 REST API over the store: core-data's event and reading queries and event
//! submission, and the parsing of core-command's device command requests (which the image
//! forwards to the device service over the message bus).
//!
//! Paths, query parameters and bodies come from any client: unknown paths are 404, bad
//! numbers and malformed bodies 400, with EdgeX's error body
//! (`{"apiVersion":"v3","statusCode":400,"message":"..."}`).

use crate::http::Request;
use crate::store::{page, Store};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use edgex::{AddEventRequest, Event, Reading};
use serde::Serialize;

/// Largest page (EdgeX's default `MaxResultCount`).
pub const MAX_LIMIT: usize = 1024;
/// Default page.
pub const DEFAULT_LIMIT: usize = 20;

/// What the server should do with a request.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Answer now: status and JSON body.
    Respond(u16, Vec<u8>),
    /// Store the event, then answer 201 (or 409 if its id is known).
    Add(Event),
    /// Forward a command to the device's service: `set` carries the JSON settings.
    Command {
        /// Device name.
        device: String,
        /// Command name.
        command: String,
        /// `None` for get, the settings object for set.
        settings: Option<serde_json::Value>,
    },
}

#[derive(Serialize)]
struct Base<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    #[serde(rename = "statusCode")]
    status_code: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

/// EdgeX's error body.
pub fn error(status: u16, message: &str) -> Action {
    Action::Respond(
        status,
        json(&Base {
            api_version: "v3",
            status_code: status,
            message: Some(message),
        }),
    )
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

#[derive(Serialize)]
struct Events<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    #[serde(rename = "statusCode")]
    status_code: u16,
    #[serde(rename = "totalCount")]
    total_count: usize,
    events: Vec<&'a Event>,
}

#[derive(Serialize)]
struct Readings<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    #[serde(rename = "statusCode")]
    status_code: u16,
    #[serde(rename = "totalCount")]
    total_count: usize,
    readings: Vec<&'a Reading>,
}

#[derive(Serialize)]
struct Count<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    #[serde(rename = "statusCode")]
    status_code: u16,
    #[serde(rename = "Count")]
    count: usize,
}

/// The response to a successful event submission.
pub fn created(id: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Created<'a> {
        #[serde(rename = "apiVersion")]
        api_version: &'a str,
        #[serde(rename = "statusCode")]
        status_code: u16,
        id: &'a str,
    }
    json(&Created {
        api_version: "v3",
        status_code: 201,
        id,
    })
}

fn paging(request: &Request) -> Result<(usize, Option<usize>), &'static str> {
    let offset = match request.param("offset") {
        None => 0,
        Some(o) => o
            .parse()
            .map_err(|_| "offset must be a non-negative integer")?,
    };
    let limit = match request.param("limit") {
        None => Some(DEFAULT_LIMIT),
        Some("-1") => Some(MAX_LIMIT),
        Some(l) => match l.parse::<usize>() {
            Ok(n) if n <= MAX_LIMIT => Some(n),
            _ => return Err("limit must be -1 or 0..=1024"),
        },
    };
    Ok((offset, limit))
}

fn events_page(store: &Store, request: &Request, keep: impl Fn(&Event) -> bool + Clone) -> Action {
    let (offset, limit) = match paging(request) {
        Ok(p) => p,
        Err(m) => return error(400, m),
    };
    let total = store.events(keep.clone()).count();
    let events = page(store.events(keep), offset, limit);
    Action::Respond(
        200,
        json(&Events {
            api_version: "v3",
            status_code: 200,
            total_count: total,
            events,
        }),
    )
}

fn readings_page(
    store: &Store,
    request: &Request,
    keep: impl Fn(&Reading) -> bool + Clone,
) -> Action {
    let (offset, limit) = match paging(request) {
        Ok(p) => p,
        Err(m) => return error(400, m),
    };
    let total = store.readings(keep.clone()).count();
    let readings = page(store.readings(keep), offset, limit);
    Action::Respond(
        200,
        json(&Readings {
            api_version: "v3",
            status_code: 200,
            total_count: total,
            readings,
        }),
    )
}

fn count(n: usize) -> Action {
    Action::Respond(
        200,
        json(&Count {
            api_version: "v3",
            status_code: 200,
            count: n,
        }),
    )
}

/// Routes a request.
pub fn route(store: &Store, request: &Request) -> Action {
    let path = request.path.trim_end_matches('/');
    let Some(rest) = path.strip_prefix("/api/v3/") else {
        return error(404, "not an EdgeX v3 path");
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let method = request.method.as_str();
    match (method, parts.as_slice()) {
        ("GET", ["ping"]) => {
            Action::Respond(200, b"{\"apiVersion\":\"v3\",\"statusCode\":200}".to_vec())
        }
        ("POST", ["event", _service, profile, device, source]) => {
            let add: AddEventRequest = match serde_json::from_slice(&request.body) {
                Ok(a) => a,
                Err(e) => return error(400, &format!("body is not an AddEventRequest: {e}")),
            };
            let e = add.event;
            if e.profile_name != *profile || e.device_name != *device || e.source_name != *source {
                return error(
                    400,
                    "the event's profile, device and source differ from the path",
                );
            }
            if e.id.is_empty() || e.readings.is_empty() {
                return error(400, "an event needs an id and at least one reading");
            }
            Action::Add(e)
        }
        ("GET", ["event", "all"]) => events_page(store, request, |_| true),
        ("GET", ["event", "count"]) => count(store.len()),
        ("GET", ["event", "count", "device", "name", name]) => {
            count(store.events(|e| e.device_name == *name).count())
        }
        ("GET", ["event", "device", "name", name]) => {
            let name = name.to_string();
            events_page(store, request, move |e| e.device_name == name)
        }
        ("GET", ["event", "start", start, "end", end]) => {
            let (Ok(start), Ok(end)) = (start.parse::<i64>(), end.parse::<i64>()) else {
                return error(400, "start and end must be nanoseconds since the epoch");
            };
            if start > end {
                return error(400, "start is after end");
            }
            events_page(store, request, move |e| (start..=end).contains(&e.origin))
        }
        ("GET", ["reading", "all"]) => readings_page(store, request, |_| true),
        ("GET", ["reading", "count"]) => count(store.readings(|_| true).count()),
        ("GET", ["reading", "count", "device", "name", name]) => {
            count(store.readings(|r| r.device_name == *name).count())
        }
        ("GET", ["reading", "device", "name", name]) => {
            let name = name.to_string();
            readings_page(store, request, move |r| r.device_name == name)
        }
        ("GET", ["reading", "resourceName", name]) => {
            let name = name.to_string();
            readings_page(store, request, move |r| r.resource_name == name)
        }
        ("GET", ["device", "name", device, command]) => Action::Command {
            device: device.to_string(),
            command: command.to_string(),
            settings: None,
        },
        ("PUT", ["device", "name", device, command]) => {
            match serde_json::from_slice::<serde_json::Value>(&request.body) {
                Ok(v @ serde_json::Value::Object(_)) => Action::Command {
                    device: device.to_string(),
                    command: command.to_string(),
                    settings: Some(v),
                },
                _ => error(
                    400,
                    "the body must be a JSON object of resource names to values",
                ),
            }
        }
        (_, ["event" | "reading" | "device" | "ping", ..])
            if method != "GET" && method != "POST" && method != "PUT" =>
        {
            error(405, "method not allowed")
        }
        _ => error(404, "no such endpoint"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::event;

    fn get(store: &Store, path: &str) -> (u16, serde_json::Value) {
        let request = crate::http::parse(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes())
            .unwrap()
            .unwrap();
        match route(store, &request) {
            Action::Respond(status, body) => (status, serde_json::from_slice(&body).unwrap()),
            other => panic!("{other:?}"),
        }
    }

    fn store() -> Store {
        let mut s = Store::new(100);
        for i in 0..30 {
            s.add(event(
                i,
                if i < 10 { "A" } else { "B" },
                1000 + i64::from(i),
            ));
        }
        s
    }

    #[test]
    fn queries() {
        let s = store();
        let (status, body) = get(&s, "/api/v3/event/all");
        assert_eq!(status, 200);
        assert_eq!(body["totalCount"], 30);
        assert_eq!(body["events"].as_array().unwrap().len(), 20);
        assert_eq!(body["events"][0]["id"], "29");
        let (_, body) = get(&s, "/api/v3/event/all?offset=25&limit=-1");
        assert_eq!(body["events"].as_array().unwrap().len(), 5);
        assert_eq!(get(&s, "/api/v3/event/count").1["Count"], 30);
        assert_eq!(get(&s, "/api/v3/event/count/device/name/A").1["Count"], 10);
        assert_eq!(
            get(&s, "/api/v3/event/device/name/A?limit=100").1["totalCount"],
            10
        );
        assert_eq!(
            get(&s, "/api/v3/event/start/1005/end/1009").1["totalCount"],
            5
        );
        assert_eq!(get(&s, "/api/v3/reading/count").1["Count"], 30);
        assert_eq!(get(&s, "/api/v3/reading/device/name/B").1["totalCount"], 20);
        assert_eq!(
            get(&s, "/api/v3/reading/resourceName/T").1["readings"][0]["value"],
            "29"
        );
        assert_eq!(get(&s, "/api/v3/ping").0, 200);
    }

    #[test]
    fn bad_queries() {
        let s = store();
        for path in [
            "/api/v3/event/all?limit=5000",
            "/api/v3/event/all?offset=-1",
            "/api/v3/event/start/x/end/1",
            "/api/v3/event/start/5/end/1",
        ] {
            let (status, body) = get(&s, path);
            assert_eq!(status, 400, "{path}");
            assert_eq!(body["statusCode"], 400);
        }
        assert_eq!(get(&s, "/api/v2/event/all").0, 404);
        assert_eq!(get(&s, "/api/v3/nothing").0, 404);
    }

    #[test]
    fn submissions_and_commands() {
        let s = Store::new(10);
        let e = event(1, "A", 5);
        let body = serde_json::to_string(&AddEventRequest::new(e.clone())).unwrap();
        let post = |path: &str, body: &str| {
            let raw = format!(
                "POST {path} HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            route(&s, &crate::http::parse(raw.as_bytes()).unwrap().unwrap())
        };
        assert_eq!(post("/api/v3/event/svc/P/A/S", &body), Action::Add(e));
        assert!(matches!(
            post("/api/v3/event/svc/P/Other/S", &body),
            Action::Respond(400, _)
        ));
        assert!(matches!(
            post("/api/v3/event/svc/P/A/S", "{"),
            Action::Respond(400, _)
        ));
        let raw = b"PUT /api/v3/device/name/D/Setpoint HTTP/1.1\r\nContent-Length: 16\r\n\r\n{\"Setpoint\":\"1\"}";
        assert!(matches!(
            route(&s, &crate::http::parse(raw).unwrap().unwrap()),
            Action::Command {
                settings: Some(_),
                ..
            }
        ));
        let raw = b"PUT /api/v3/device/name/D/Setpoint HTTP/1.1\r\nContent-Length: 3\r\n\r\n[1]";
        assert!(matches!(
            route(&s, &crate::http::parse(raw).unwrap().unwrap()),
            Action::Respond(400, _)
        ));
        let raw = b"DELETE /api/v3/event/all HTTP/1.1\r\n\r\n";
        assert!(matches!(
            route(&s, &crate::http::parse(raw).unwrap().unwrap()),
            Action::Respond(405, _)
        ));
    }
}
