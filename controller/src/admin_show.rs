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

/// The network instances the device reports (their newest info) and their counters (its newest
/// metrics), a few lines each:
///
/// - `network-instance UUID "NAME" STATE KIND bridge BRIDGE gateway IP`, then ` error "TEXT"
///   at TIME` for each error; `network-instance UUID (removed)` for one reported gone;
/// - `network-instance UUID app APP MAC ADDRESSES` for each app interface and each address the
///   instance leased (APP `-` for an address no configured app's MAC holds, ADDRESSES `-` for an
///   interface with none yet);
/// - `network-instance UUID counters to-apps N from-apps N dropped N acl-drops N limit-drops N`
///   (frames; ACL drops and rate-limit drops both ways), for each instance in the metrics.
pub fn network_lines(status: &crate::admin_api::DeviceStatus) -> Vec<String> {
    use serde_json::Value;
    let text = |v: &Value, name: &str| v.get(name).and_then(Value::as_str).unwrap_or("").to_owned();
    // proto3 JSON: 64-bit integers as strings, defaults left out.
    let num = |v: &Value, name: &str| -> u64 {
        match v.get(name) {
            Some(Value::String(s)) => s.parse().unwrap_or(0),
            Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
            _ => 0,
        }
    };
    let list = |v: &Value, name: &str| -> Vec<Value> {
        v.get(name)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut lines = Vec::new();
    for item in &status.network_instances {
        let (id, info) = (&item.object, &item.info);
        let state = match info.get("state") {
            Some(Value::String(state)) => state.clone(),
            Some(Value::Number(number)) => number.to_string(),
            _ => String::new(),
        };
        let name = text(info, "displayname");
        if name.is_empty() && state.is_empty() {
            lines.push(format!("network-instance {id} (removed)"));
            continue;
        }
        let kind = match num(info, "instType") {
            1 => "switch".to_owned(),
            2 => "local".to_owned(),
            other => format!("type-{other}"),
        };
        let mut line = format!(
            "network-instance {id} {name:?} {state} {kind} bridge {} gateway {}",
            or_dash(text(info, "bridgeName")),
            or_dash(text(info, "bridgeIPAddr")),
        );
        for error in list(info, "networkErr") {
            line.push_str(&format!(" error {:?}", text(&error, "description")));
            let when = text(&error, "timestamp");
            if !when.is_empty() {
                line.push_str(&format!(" at {when}"));
            }
        }
        lines.push(line);
        // Each MAC: the app whose interface it is, and the addresses leased to it.
        let mut macs: Vec<(String, String, Vec<String>)> = list(info, "vifs")
            .iter()
            .map(|vif| (text(vif, "macAddress"), text(vif, "appID"), Vec::new()))
            .collect();
        for assignment in list(info, "ipAssignments") {
            let mac = text(&assignment, "macAddress");
            let ips = list(&assignment, "ipAddress")
                .iter()
                .filter_map(|ip| ip.as_str().map(str::to_owned))
                .collect::<Vec<_>>();
            match macs.iter_mut().find(|(m, _, _)| *m == mac) {
                Some(entry) => entry.2.extend(ips),
                None => macs.push((mac, String::new(), ips)),
            }
        }
        for (mac, app, ips) in macs {
            lines.push(format!(
                "network-instance {id} app {} {mac} {}",
                or_dash(app),
                or_dash(ips.join(","))
            ));
        }
    }
    for item in &status.network_metrics {
        let totals = list(&item.info, "network")
            .iter()
            .fold([0u64; 5], |mut sum, n| {
                let acl = num(n, "txAclDrops") + num(n, "rxAclDrops");
                let limit = num(n, "txAclRateLimitDrops") + num(n, "rxAclRateLimitDrops");
                for (total, value) in sum.iter_mut().zip([
                    num(n, "txPkts"),
                    num(n, "rxPkts"),
                    num(n, "txDrops") + num(n, "rxDrops"),
                    acl,
                    limit,
                ]) {
                    *total = total.saturating_add(value);
                }
                sum
            });
        lines.push(format!(
            "network-instance {} counters to-apps {} from-apps {} dropped {} acl-drops {} limit-drops {}",
            item.object, totals[0], totals[1], totals[2], totals[3], totals[4]
        ));
    }
    lines
}

/// `text`, or `-` if it is empty (a line's words stay in place).
fn or_dash(text: String) -> String {
    if text.is_empty() {
        "-".into()
    } else {
        text
    }
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

    #[test]
    fn network_instances_show_state_app_addresses_and_drops() {
        let status = DeviceStatus {
            network_instances: vec![
                item(
                    "ni-1",
                    json!({"networkID": "ni-1", "displayname": "default", "instType": 2,
                       "activated": true, "state": "ZNETINST_STATE_ONLINE",
                       "bridgeName": "lichenni1", "bridgeIPAddr": "10.1.0.1",
                       "ipAssignments": [
                           {"macAddress": "02:00:00:00:00:01", "ipAddress": ["10.1.0.2"]},
                           {"macAddress": "02:00:00:00:00:09", "ipAddress": ["10.1.0.3"]}],
                       "vifs": [
                           {"macAddress": "02:00:00:00:00:01", "appID": "app-1"},
                           {"macAddress": "02:00:00:00:00:02", "appID": "app-2"}],
                       "networkErr": [{"description": "app app-2: ACE 1: bad port",
                                       "timestamp": "2026-12-08T01:00:00Z",
                                       "severity": "SEVERITY_WARNING"}]}),
                ),
                item("ni-2", json!({"networkID": "ni-2"})),
            ],
            network_metrics: vec![item(
                "ni-1",
                json!({"networkID": "ni-1", "network": [
                    {"iName": "default", "txPkts": "9", "rxPkts": "10", "rxDrops": "7",
                     "rxAclDrops": "4", "txAclRateLimitDrops": "1", "rxAclRateLimitDrops": "2"}]}),
            )],
            ..DeviceStatus::default()
        };
        assert_eq!(
            network_lines(&status),
            vec![
                "network-instance ni-1 \"default\" ZNETINST_STATE_ONLINE local bridge lichenni1 \
                 gateway 10.1.0.1 error \"app app-2: ACE 1: bad port\" at 2026-12-08T01:00:00Z",
                "network-instance ni-1 app app-1 02:00:00:00:00:01 10.1.0.2",
                "network-instance ni-1 app app-2 02:00:00:00:00:02 -",
                "network-instance ni-1 app - 02:00:00:00:00:09 10.1.0.3",
                "network-instance ni-2 (removed)",
                "network-instance ni-1 counters to-apps 9 from-apps 10 dropped 7 acl-drops 4 \
                 limit-drops 3",
            ]
        );
    }
}
