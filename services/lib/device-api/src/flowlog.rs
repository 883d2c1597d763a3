//! Flow logs: zedrouter's per-app flow records (`zedrouter/AppFlows`) as EVE's `FlowMessage`,
//! which zedagent posts to the controller's `flowlog` route, and which of them are due.
//!
//! Each app's latest value on the bus carries a `seq`; a value is due once per `seq`
//! ([`FlowLogs::due`], then [`FlowLogs::posted`] after the controller took it). Flow logs are
//! lossy, like EVE's: a value replaced on the bus before zedagent read it, or one the
//! controller did not take, is not sent again (counted in [`FlowLogs::missed`]).

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use lichen_api::flowlog::{AclAction, DnsRequest, FlowMessage, FlowRecord, IpFlow, ScopeInfo};
use topics::zedrouter::AppFlows;

/// A Unix time in milliseconds as a protobuf timestamp.
fn at(ms: u64) -> Option<lichen_api::Timestamp> {
    Some(lichen_api::Timestamp {
        seconds: i64::try_from(ms / 1000).unwrap_or(i64::MAX),
        nanos: ((ms % 1000) * 1_000_000) as i32,
    })
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The `FlowMessage` of device `device` for app `app` (its UUID, or zedrouter's `mac:`/`ip:`
/// key for traffic no app instance owns).
pub fn message(device: &str, app: &str, flows: &AppFlows) -> FlowMessage {
    FlowMessage {
        dev_id: device.into(),
        scope: Some(ScopeInfo {
            uuid: app.into(),
            intf: String::new(),
            local_intf: flows.mac.clone(),
            net_inst_uuid: flows.network_id.clone(),
        }),
        flows: flows
            .flows
            .iter()
            .map(|f| FlowRecord {
                flow: Some(IpFlow {
                    src: format!("{}", Ipv4Addr::from(f.src.0)),
                    src_port: i32::from(f.src.1),
                    dest: format!("{}", Ipv4Addr::from(f.dst.0)),
                    dest_port: i32::from(f.dst.1),
                    protocol: i32::from(f.protocol),
                }),
                inbound: f.inbound,
                acl_id: f.acl_id,
                acl_name: String::new(),
                start_time: at(f.start_ms),
                end_time: at(f.end_ms),
                tx_bytes: count(f.tx_bytes),
                tx_pkts: count(f.tx_packets),
                rx_bytes: count(f.rx_bytes),
                rx_pkts: count(f.rx_packets),
                action: if f.accepted {
                    AclAction::ActionAccept
                } else {
                    AclAction::ActionDrop
                } as i32,
            })
            .collect(),
        dns_reqs: flows
            .dns
            .iter()
            .map(|d| DnsRequest {
                host_name: d.name.clone(),
                addrs: d
                    .addrs
                    .iter()
                    .map(|a| format!("{}", Ipv4Addr::from(*a)))
                    .collect(),
                request_time: at(d.at_ms),
                acl_num: 0,
            })
            .collect(),
    }
}

/// Which apps' flow logs were posted, by `seq`.
#[derive(Debug, Default)]
pub struct FlowLogs {
    posted: BTreeMap<String, u64>,
    /// Periods never posted: skipped on the bus (a `seq` gap) or refused by the controller.
    pub missed: u64,
    /// Flow logs posted.
    pub sent: u64,
}

impl FlowLogs {
    /// Nothing posted yet.
    pub fn new() -> FlowLogs {
        FlowLogs::default()
    }

    /// The flow logs due, from `view` (app key, its latest value): `(key, seq, message)`.
    pub fn due<'a>(
        &mut self,
        device: &str,
        view: impl Iterator<Item = (&'a str, &'a AppFlows)>,
    ) -> Vec<(String, u64, FlowMessage)> {
        let mut due = Vec::new();
        let mut seen = Vec::new();
        for (key, flows) in view {
            seen.push(String::from(key));
            let last = self.posted.get(key).copied().unwrap_or(0);
            if flows.seq > last {
                // A restarted zedrouter counts from 1 again: not a gap.
                if last > 0 && flows.seq > last + 1 {
                    self.missed += flows.seq - last - 1;
                }
                due.push((key.into(), flows.seq, message(device, key, flows)));
            } else if flows.seq < last {
                // zedrouter restarted: its counting starts again.
                due.push((key.into(), flows.seq, message(device, key, flows)));
            }
        }
        // Apps gone from the bus are forgotten.
        self.posted.retain(|k, _| seen.contains(k));
        due
    }

    /// Marks `key`'s `seq` posted (`ok`) or lost.
    pub fn posted(&mut self, key: &str, seq: u64, ok: bool) {
        self.posted.insert(key.into(), seq);
        if ok {
            self.sent += 1;
        } else {
            self.missed += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use topics::zedrouter::{DnsRequest as Dns, Flow};

    fn flows(seq: u64) -> AppFlows {
        AppFlows {
            network_id: "ni-1".into(),
            mac: "02:00:00:00:00:01".into(),
            seq,
            flows: vec![Flow {
                protocol: 6,
                src: ([10, 77, 0, 1], 40000),
                dst: ([10, 1, 0, 10], 7),
                inbound: true,
                acl_id: 3,
                accepted: true,
                start_ms: 1_700_000_000_250,
                end_ms: 1_700_000_001_000,
                tx_bytes: 120,
                tx_packets: 2,
                rx_bytes: 180,
                rx_packets: 3,
            }],
            dns: vec![Dns {
                name: "example.com".into(),
                addrs: vec![[93, 184, 216, 34]],
                at_ms: 1_700_000_000_000,
            }],
            lost: 0,
        }
    }

    #[test]
    fn a_flow_log_reads_as_eve_flow_message() {
        let m = message("dev", "app-1", &flows(1));
        let scope = m.scope.unwrap();
        assert_eq!(
            (scope.uuid.as_str(), scope.net_inst_uuid.as_str()),
            ("app-1", "ni-1")
        );
        let f = &m.flows[0];
        let ip = f.flow.as_ref().unwrap();
        assert_eq!(
            (ip.src.as_str(), ip.src_port, ip.dest.as_str(), ip.dest_port),
            ("10.77.0.1", 40000, "10.1.0.10", 7)
        );
        assert_eq!((f.acl_id, f.action), (3, AclAction::ActionAccept as i32));
        assert_eq!((f.tx_pkts, f.rx_bytes), (2, 180));
        let start = f.start_time.unwrap();
        assert_eq!((start.seconds, start.nanos), (1_700_000_000, 250_000_000));
        assert_eq!(m.dns_reqs[0].host_name, "example.com");
        assert_eq!(m.dns_reqs[0].addrs, vec!["93.184.216.34"]);
    }

    #[test]
    fn each_seq_is_due_once_gaps_are_counted_and_restarts_start_over() {
        let mut logs = FlowLogs::new();
        let mut view: BTreeMap<String, AppFlows> = BTreeMap::new();
        view.insert("a".into(), flows(1));
        let due = logs.due("dev", view.iter().map(|(k, v)| (k.as_str(), v)));
        assert_eq!(due.len(), 1);
        logs.posted("a", 1, true);
        assert!(
            logs.due("dev", view.iter().map(|(k, v)| (k.as_str(), v)))
                .is_empty(),
            "posted already"
        );
        view.insert("a".into(), flows(4));
        let due = logs.due("dev", view.iter().map(|(k, v)| (k.as_str(), v)));
        assert_eq!((due.len(), due[0].1, logs.missed), (1, 4, 2));
        logs.posted("a", 4, false);
        assert_eq!(logs.missed, 3);
        view.insert("a".into(), flows(1));
        assert_eq!(
            logs.due("dev", view.iter().map(|(k, v)| (k.as_str(), v)))
                .len(),
            1,
            "zedrouter restarted"
        );
        logs.posted("a", 1, true);
        view.clear();
        assert!(logs
            .due("dev", view.iter().map(|(k, v)| (k.as_str(), v)))
            .is_empty());
        assert_eq!(logs.sent, 2);
    }
}
