//! zedrouter's network instances (`zedrouter/NetworkInstanceStatus`) as EVE reports them: the
//! info of each one (`ZInfoNetworkInstance`, [`info`]: sent when it changes, through
//! [`crate::objects::Reporter::network_instances`]) and its counters in the metrics
//! (`ZMetricNetworkInstance`, [`metrics`]).
//!
//! From the bridge's side, as EVE counts a network instance: `tx` is what zedrouter sent to
//! the apps, `rx` what it took from them to the uplink; `rxDrops` every frame it dropped
//! (either side, every reason); `rxAclDrops` the connections an ACL (a drop rule or the
//! default deny) refused, which are all opened by an app (a connection from the uplink that
//! no port map admits is not an ACL's: it has no connection); the rate-limit drops split by
//! direction (`txAclRateLimitDrops` on their way to an app).
//!
//! **What the publisher may send**: anything the status's types hold (zedrouter on the node's
//! bus is trusted to say what it does, not to be sensible): names and errors are passed on
//! clipped to [`crate::objects::MAX_TEXT`] bytes, lists to [`MAX_ENTRIES`] entries; a subnet
//! or bridge name that does not read as expected leaves the field it feeds empty.

use alloc::string::String;
use alloc::vec::Vec;

use lichen_api::info::{
    ErrorInfo, Severity, ZInfoNetworkInstance, ZNetworkInstanceState, ZmetIpAssignmentEntry,
    ZmetVifInfo,
};
use lichen_api::metrics::{NetworkMetric, ZMetricNetworkInstance};
use topics::zedrouter::{NetworkInstanceState, NetworkInstanceStatus};

/// EVE's `ZNetworkInstType` of a local instance (NATed, served by zedrouter).
pub const LOCAL: i32 = 2;

/// The most app addresses and interfaces one instance's info lists.
pub const MAX_ENTRIES: usize = 256;

/// The name lichen's node gives its one uplink (the device's port every instance goes out
/// through; the metrics' `uplink` interface).
pub const UPLINK: &str = "uplink";

/// The MTU of a local instance: zedrouter carries Ethernet frames of at most 1,514 bytes.
const LOCAL_MTU: u32 = 1500;

/// The metrics of `statuses` (instance UUID, status).
pub fn metrics<'a>(
    statuses: impl Iterator<Item = (&'a str, &'a NetworkInstanceStatus)>,
) -> Vec<ZMetricNetworkInstance> {
    statuses
        .map(|(uuid, s)| ZMetricNetworkInstance {
            network_id: uuid.into(),
            network_version: String::new(),
            inst_type: kind(s),
            displayname: crate::objects::clip(&s.name).into(),
            activated: s.state == NetworkInstanceState::Online,
            network: alloc::vec![NetworkMetric {
                i_name: crate::objects::clip(&s.name).into(),
                local_name: crate::objects::clip(&s.bridge).into(),
                tx_pkts: s.to_app,
                rx_pkts: s.to_uplink,
                rx_drops: s.dropped,
                rx_acl_drops: s.acl_drops,
                tx_acl_rate_limit_drops: s.limit_drops_to_app,
                rx_acl_rate_limit_drops: s.limit_drops.saturating_sub(s.limit_drops_to_app),
                ..Default::default()
            }],
        })
        .collect()
}

/// The info of instance `uuid` now (`status`); `up_since` is when it was first seen online
/// in this run (Unix seconds), `error_since` when its error text was first seen.
pub fn info(
    uuid: &str,
    s: &NetworkInstanceStatus,
    up_since: Option<u64>,
    error_since: Option<u64>,
) -> ZInfoNetworkInstance {
    let online = s.state == NetworkInstanceState::Online;
    let local = s.kind == LOCAL;
    // Each MAC's addresses, in the order leased.
    let mut assignments: Vec<ZmetIpAssignmentEntry> = Vec::new();
    for lease in &s.leases {
        let ip = String::from(crate::objects::clip(&lease.ip));
        if let Some(entry) = assignments.iter_mut().find(|a| a.mac_address == lease.mac) {
            if entry.ip_address.len() < MAX_ENTRIES {
                entry.ip_address.push(ip);
            }
        } else if assignments.len() < MAX_ENTRIES {
            assignments.push(ZmetIpAssignmentEntry {
                mac_address: crate::objects::clip(&lease.mac).into(),
                ip_address: alloc::vec![ip],
            });
        }
    }
    ZInfoNetworkInstance {
        network_id: uuid.into(),
        network_version: String::new(),
        inst_type: kind(s),
        displayname: crate::objects::clip(&s.name).into(),
        activated: online,
        up_time_stamp: up_since.filter(|_| online).map(crate::timestamp),
        ports: if online {
            alloc::vec![UPLINK.into()]
        } else {
            Vec::new()
        },
        bridge_num: bridge_number(&s.bridge),
        bridge_name: crate::objects::clip(&s.bridge).into(),
        // zedrouter is the gateway of a local instance; it has no address on a switch's bridge.
        bridge_ip_addr: if local {
            gateway(&s.subnet).into()
        } else {
            String::new()
        },
        ip_assignments: assignments,
        vifs: s
            .apps
            .iter()
            .take(MAX_ENTRIES)
            .map(|v| ZmetVifInfo {
                vif_name: String::new(),
                mac_address: crate::objects::clip(&v.mac).into(),
                app_id: crate::objects::clip(&v.app).into(),
            })
            .collect(),
        network_err: if s.error.is_empty() {
            Vec::new()
        } else {
            alloc::vec![ErrorInfo {
                description: crate::objects::clip(&s.error).into(),
                timestamp: error_since.map(crate::timestamp),
                // In Error, the instance is refused; otherwise its previous settings (or the
                // apps' previous rules) stay in force.
                severity: if s.state == NetworkInstanceState::Error {
                    Severity::Error
                } else {
                    Severity::Warning
                } as i32,
            }]
        },
        state: match s.state {
            NetworkInstanceState::Pending => ZNetworkInstanceState::ZnetinstStateInit,
            NetworkInstanceState::Online => ZNetworkInstanceState::ZnetinstStateOnline,
            NetworkInstanceState::Error => ZNetworkInstanceState::ZnetinstStateError,
        } as i32,
        mtu: if local && online { LOCAL_MTU } else { 0 },
    }
}

/// The instance's kind as EVE numbers it (an unset kind is zedrouter's own: local).
fn kind(s: &NetworkInstanceStatus) -> u32 {
    match s.kind {
        1.. => s.kind as u32,
        _ => LOCAL as u32,
    }
}

/// The gateway of `gateway/prefix` (empty if it is not that).
fn gateway(subnet: &str) -> &str {
    match subnet.split_once('/') {
        Some((gateway, _)) if gateway.parse::<core::net::Ipv4Addr>().is_ok() => gateway,
        _ => "",
    }
}

/// The number a bridge's name ends with (`lichenni2`: 2; none: 0).
fn bridge_number(bridge: &str) -> u32 {
    let digits = bridge.len() - bridge.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    bridge[bridge.len() - digits..].parse().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use topics::zedrouter::{AppVif, Lease};

    fn online() -> NetworkInstanceStatus {
        NetworkInstanceStatus {
            name: "default".into(),
            kind: LOCAL,
            state: NetworkInstanceState::Online,
            bridge: "lichenni1".into(),
            subnet: "10.1.0.1/24".into(),
            leases: alloc::vec![
                Lease {
                    mac: "02:00:00:00:00:01".into(),
                    ip: "10.1.0.2".into(),
                },
                Lease {
                    mac: "02:00:00:00:00:02".into(),
                    ip: "10.1.0.3".into(),
                },
            ],
            apps: alloc::vec![AppVif {
                app: "app-1".into(),
                mac: "02:00:00:00:00:01".into(),
            }],
            to_uplink: 10,
            to_app: 9,
            dropped: 7,
            acl_drops: 4,
            limit_drops: 3,
            limit_drops_to_app: 1,
            ..Default::default()
        }
    }

    #[test]
    fn drops_split_as_eve_counts_them_on_each_instance() {
        let s = online();
        let nm = metrics([("ni-1", &s)].into_iter());
        assert_eq!(nm.len(), 1);
        assert!(nm[0].activated && nm[0].network_id == "ni-1" && nm[0].inst_type == 2);
        let n = &nm[0].network[0];
        assert_eq!(
            (n.i_name.as_str(), n.local_name.as_str()),
            ("default", "lichenni1")
        );
        assert_eq!(
            (n.tx_pkts, n.rx_pkts, n.rx_drops, n.tx_drops),
            (9, 10, 7, 0)
        );
        assert_eq!(
            (
                n.rx_acl_drops,
                n.tx_acl_drops,
                n.tx_acl_rate_limit_drops,
                n.rx_acl_rate_limit_drops
            ),
            (4, 0, 1, 2)
        );
    }

    #[test]
    fn an_online_instance_reads_as_eve_info_with_its_apps_addresses() {
        let i = info("ni-1", &online(), Some(100), None);
        assert_eq!(
            (i.network_id.as_str(), i.displayname.as_str(), i.inst_type),
            ("ni-1", "default", 2)
        );
        assert!(i.activated);
        assert_eq!(i.state, ZNetworkInstanceState::ZnetinstStateOnline as i32);
        assert_eq!(
            (
                i.bridge_name.as_str(),
                i.bridge_num,
                i.bridge_ip_addr.as_str()
            ),
            ("lichenni1", 1, "10.1.0.1")
        );
        assert_eq!((i.ports.clone(), i.mtu), (alloc::vec![UPLINK.into()], 1500));
        assert_eq!(i.up_time_stamp, Some(crate::timestamp(100)));
        let macs: Vec<(&str, &[String])> = i
            .ip_assignments
            .iter()
            .map(|a| (a.mac_address.as_str(), &a.ip_address[..]))
            .collect();
        assert_eq!(
            macs,
            alloc::vec![
                ("02:00:00:00:00:01", &["10.1.0.2".into()][..]),
                ("02:00:00:00:00:02", &["10.1.0.3".into()][..]),
            ]
        );
        assert_eq!(
            (i.vifs[0].app_id.as_str(), i.vifs[0].mac_address.as_str()),
            ("app-1", "02:00:00:00:00:01")
        );
        assert!(i.network_err.is_empty());
    }

    #[test]
    fn errors_and_other_states_are_reported_with_their_severity() {
        // An app's ACL refused: the instance runs on with the previous rules (a warning).
        let mut s = online();
        s.error = "app a1: ACE 3: bad protocol \"tcpx\"".into();
        let i = info("ni-1", &s, Some(100), Some(120));
        let e = &i.network_err[0];
        assert_eq!(
            (e.description.as_str(), e.severity, e.timestamp),
            (
                s.error.as_str(),
                Severity::Warning as i32,
                Some(crate::timestamp(120))
            )
        );
        // Refused settings: Error, not activated, no ports, no up time.
        s.state = NetworkInstanceState::Error;
        let i = info("ni-1", &s, Some(100), Some(120));
        assert_eq!(
            (i.state, i.activated, i.network_err[0].severity),
            (
                ZNetworkInstanceState::ZnetinstStateError as i32,
                false,
                Severity::Error as i32
            )
        );
        assert!(i.ports.is_empty() && i.up_time_stamp.is_none() && i.mtu == 0);
        // Waiting for a port.
        s.state = NetworkInstanceState::Pending;
        assert_eq!(
            info("ni-1", &s, None, None).state,
            ZNetworkInstanceState::ZnetinstStateInit as i32
        );
        // A switch instance: the uplink's bridge, no gateway of zedrouter's.
        let switch = NetworkInstanceStatus {
            kind: 1,
            state: NetworkInstanceState::Online,
            bridge: "lichenup0".into(),
            subnet: "10.0.2.0/24".into(),
            ..Default::default()
        };
        let i = info("sw", &switch, None, None);
        assert_eq!(
            (i.inst_type, i.bridge_num, i.bridge_ip_addr.as_str(), i.mtu),
            (1, 0, "", 0)
        );
    }

    #[test]
    fn hostile_values_are_bounded() {
        let mut s = online();
        s.name = "n".repeat(10_000);
        s.bridge = "x".repeat(3000) + "99999999999999999999";
        s.subnet = "not an address".into();
        s.leases = (0..1000)
            .map(|n| Lease {
                mac: alloc::format!("m{n}"),
                ip: "10.1.0.9".into(),
            })
            .collect();
        s.apps = alloc::vec![AppVif::default(); 1000];
        let i = info("ni-1", &s, None, None);
        assert_eq!(i.displayname.len(), crate::objects::MAX_TEXT);
        assert_eq!(i.bridge_name.len(), crate::objects::MAX_TEXT);
        assert_eq!((i.bridge_num, i.bridge_ip_addr.as_str()), (0, ""));
        assert_eq!(
            (i.ip_assignments.len(), i.vifs.len()),
            (MAX_ENTRIES, MAX_ENTRIES)
        );
    }
}
