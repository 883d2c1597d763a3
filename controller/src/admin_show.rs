//! What `admin devices show` prints of a device beyond its record: a line per object it
//! reports on (apps, volumes, content trees, network instances with their apps' addresses and
//! drop counters) and its newest flow records and DNS requests.
//!
//! What the device controls here: every value (proto3 JSON of its reports). Missing or odd
//! fields print as empty or 0; nothing here fails.

/// One line per app, volume and content tree the device reports (its newest info of each):
/// kind, UUID, name, state, progress, error; `(removed)` for one the device reported gone.
pub fn object_lines(status: &crate::admin_api::DeviceStatus) -> Vec<String> {
    use serde_json::Value;
    let text = |info: &Value, names: &[&str]| {
        names
            .iter()
            .find_map(|name| info.get(*name).and_then(Value::as_str))
            .unwrap_or("")
            .to_owned()
    };
    let mut lines = Vec::new();
    let kinds = [
        ("app", &status.apps, ["AppName", "appName"], "appErr"),
        (
            "volume",
            &status.volumes,
            ["displayName", "display_name"],
            "volumeErr",
        ),
        (
            "content-tree",
            &status.content_trees,
            ["displayName", "display_name"],
            "err",
        ),
    ];
    for (kind, items, name, error) in kinds {
        for item in items {
            let info = &item.info;
            let state = match info.get("state") {
                Some(Value::String(state)) => state.clone(),
                Some(Value::Number(number)) => number.to_string(),
                _ => String::new(),
            };
            let name = text(info, &name);
            if name.is_empty() && state.is_empty() {
                lines.push(format!("{kind} {} (removed)", item.object));
                continue;
            }
            let mut line = format!("{kind} {} {name:?} {state}", item.object);
            if let Some(progress) = info.get("progressPercentage").and_then(Value::as_u64) {
                line.push_str(&format!(" {progress}%"));
            }
            // appErr is a list; the others one error.
            let errors = match info.get(error) {
                Some(Value::Array(list)) => list.clone(),
                Some(one @ Value::Object(_)) => vec![one.clone()],
                _ => Vec::new(),
            };
            for error in errors {
                let when = text(&error, &["timestamp"]);
                line.push_str(&format!(" error {:?}", text(&error, &["description"])));
                if !when.is_empty() {
                    line.push_str(&format!(" at {when}"));
                }
            }
            lines.push(line);
        }
    }
    lines
}

/// How many flow records and DNS requests `devices show` prints, the newest.
pub const RECENT_FLOWS: usize = 20;

/// The newest `limit` flow records and DNS requests of `reports` (the device's `flowlog`
/// reports, oldest first), a line each, oldest first:
/// `flow APP tcp 10.77.0.1:40000 -> 10.1.0.10:7 in acl 1 accept tx 2/120 rx 3/180` and
/// `dns APP example.com 93.184.216.34`.
pub fn flow_lines(reports: &[crate::admin_api::Report], limit: usize) -> Vec<String> {
    use serde_json::Value;
    // proto3 JSON: int64 as strings, defaults left out.
    let num = |v: &Value, name: &str| -> String {
        match v.get(name) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => "0".into(),
        }
    };
    let text = |v: &Value, name: &str| v.get(name).and_then(Value::as_str).unwrap_or("").to_owned();
    let mut lines = Vec::new();
    for report in reports.iter().filter(|r| r.kind == "flowlog") {
        let m = &report.message;
        let app = m.get("scope").map(|s| text(s, "uuid")).unwrap_or_default();
        for f in m
            .get("flows")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let ip = f.get("flow").cloned().unwrap_or_default();
            let protocol = match num(&ip, "protocol").as_str() {
                "6" => "tcp".to_owned(),
                "17" => "udp".to_owned(),
                "1" => "icmp".to_owned(),
                other => format!("proto {other}"),
            };
            let action = match text(f, "action").as_str() {
                "ActionAccept" => "accept",
                "ActionDrop" => "drop",
                _ => "unknown",
            };
            let inbound = f.get("inbound").and_then(Value::as_bool).unwrap_or(false);
            lines.push(format!(
                "flow {app} {protocol} {}:{} -> {}:{} {} acl {} {action} tx {}/{} rx {}/{}",
                text(&ip, "src"),
                num(&ip, "srcPort"),
                text(&ip, "dest"),
                num(&ip, "destPort"),
                if inbound { "in" } else { "out" },
                num(f, "aclId"),
                num(f, "txPkts"),
                num(f, "txBytes"),
                num(f, "rxPkts"),
                num(f, "rxBytes"),
            ));
        }
        for d in m
            .get("dnsReqs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let addrs: Vec<String> = d
                .get("addrs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect();
            lines.push(format!(
                "dns {app} {} {}",
                text(d, "hostName"),
                addrs.join(",")
            ));
        }
    }
    let skip = lines.len().saturating_sub(limit);
    lines.split_off(skip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin_api::{DeviceStatus, InfoItem};
    use serde_json::json;

    fn item(object: &str, info: serde_json::Value) -> InfoItem {
        InfoItem {
            object: object.into(),
            received_at_ms: 0,
            info,
        }
    }

    #[test]
    fn flows_show_the_newest_records_and_dns_requests() {
        let report = |seq: u64, message: serde_json::Value| crate::admin_api::Report {
            seq,
            kind: "flowlog".into(),
            object: String::new(),
            received_at_ms: 0,
            message,
        };
        let reports = vec![
            report(
                1,
                json!({"devId": "d", "scope": {"uuid": "app-1", "netInstUUID": "ni"},
                   "flows": [{"flow": {"src": "10.77.0.1", "srcPort": 40000, "dest": "10.1.0.10",
                                       "destPort": 7, "protocol": 6},
                              "inbound": true, "aclId": 1, "action": "ActionAccept",
                              "txBytes": "120", "txPkts": "2", "rxBytes": "180", "rxPkts": "3"}]}),
            ),
            report(
                2,
                json!({"scope": {"uuid": "app-1"},
                   "flows": [{"flow": {"src": "10.1.0.10", "srcPort": 5000, "dest": "10.77.0.9",
                                       "destPort": 22, "protocol": 6},
                              "action": "ActionDrop", "txPkts": "1", "txBytes": "60"}],
                   "dnsReqs": [{"hostName": "example.com", "addrs": ["93.184.216.34"]}]}),
            ),
        ];
        assert_eq!(
            flow_lines(&reports, 10),
            vec![
                "flow app-1 tcp 10.77.0.1:40000 -> 10.1.0.10:7 in acl 1 accept tx 2/120 rx 3/180",
                "flow app-1 tcp 10.1.0.10:5000 -> 10.77.0.9:22 out acl 0 drop tx 1/60 rx 0/0",
                "dns app-1 example.com 93.184.216.34",
            ]
        );
        assert_eq!(flow_lines(&reports, 1).len(), 1, "the newest only");
    }

    #[test]
    fn objects_show_name_state_progress_and_error() {
        let status = DeviceStatus {
            apps: vec![
                item(
                    "a1",
                    json!({"AppID": "a1", "AppName": "web", "state": "RUNNING"}),
                ),
                item(
                    "a2",
                    json!({"AppID": "a2", "AppName": "db", "state": "ERROR",
                       "appErr": [{"description": "no kernel", "timestamp": "2026-12-07T15:00:00Z"}]}),
                ),
                item("a3", json!({"AppID": "a3"})),
            ],
            volumes: vec![item(
                "v1",
                json!({"uuid": "v1", "displayName": "disk", "state": "CREATING_VOLUME", "progressPercentage": 40}),
            )],
            content_trees: vec![item(
                "c1",
                json!({"uuid": "c1", "displayName": "alpine", "state": "DOWNLOAD_STARTED",
                   "err": {"description": "retrying"}}),
            )],
            ..DeviceStatus::default()
        };
        assert_eq!(
            object_lines(&status),
            vec![
                "app a1 \"web\" RUNNING",
                "app a2 \"db\" ERROR error \"no kernel\" at 2026-12-07T15:00:00Z",
                "app a3 (removed)",
                "volume v1 \"disk\" CREATING_VOLUME 40%",
                "content-tree c1 \"alpine\" DOWNLOAD_STARTED error \"retrying\"",
            ]
        );
    }
}
