//! What `zedrouter` publishes (services/zedrouter, docs/router.md): the state of every local
//! network instance it serves, keyed by the instance's UUID (`zedagent/NetworkInstance`'s key;
//! an instance configured on zedrouter's command line is keyed `static`). zedagent reads it for
//! `niinfo` and the network-instance metrics; domainmgr reads `bridge` to attach an app's vif.
//!
//! Volatile: a restarted zedrouter publishes again once it has applied the configuration.
//! Only the leases ([`LEASES`]) are persistent: the vault keeps them.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::Topic;

/// Where a network instance stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkInstanceState {
    /// Known, not served yet (no free port: every bridge the node declares is taken).
    #[default]
    Pending,
    /// Served: its gateway, DHCP server and NAT run on `bridge`.
    Online,
    /// Refused (`error` says why: a kind zedrouter does not serve, addressing that does not
    /// parse, a port map another instance has). The previous settings stay if it had some.
    Error,
}

/// An address the instance's DHCP server leased.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The app's MAC, `xx:xx:xx:xx:xx:xx`.
    pub mac: String,
    /// The address.
    pub ip: String,
}

/// An app's interface on a network instance, as the configuration gives it (EVE's
/// `ZmetVifInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppVif {
    /// The app instance's UUID.
    pub app: String,
    /// The interface's MAC, `xx:xx:xx:xx:xx:xx` (the launcher's for the app's vif).
    pub mac: String,
}

/// A local network instance as zedrouter serves it (EVE's `NetworkInstanceStatus`, the parts
/// zedrouter knows).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInstanceStatus {
    /// Its display name.
    pub name: String,
    /// Its kind as configured (EVE's `ZNetworkInstType`: 1 switch, 2 local).
    pub kind: i32,
    /// Where it stands.
    pub state: NetworkInstanceState,
    /// Why it is in `Error` (empty otherwise).
    pub error: String,
    /// The dom0 bridge apps attach to (launcher-api's `AppSpec::network`); empty while pending.
    pub bridge: String,
    /// Its subnet, `gateway/prefix`.
    pub subnet: String,
    /// The addresses leased now.
    pub leases: Vec<Lease>,
    /// The configured apps' interfaces on it.
    pub apps: Vec<AppVif>,
    /// Frames forwarded to the uplink.
    pub to_uplink: u64,
    /// Frames forwarded to the apps.
    pub to_app: u64,
    /// Frames dropped, every reason together.
    pub dropped: u64,
    /// Of those, connections an ACL (or default deny) refused.
    pub acl_drops: u64,
    /// Of those, packets over a rate limit.
    pub limit_drops: u64,
    /// Of the rate-limit drops, packets on their way to an app (the others came from one).
    pub limit_drops_to_app: u64,
    /// Connections open now.
    pub connections: u64,
    /// Flow records lost: not taken in time, or beyond [`MAX_FLOWS`] in a period.
    pub flows_lost: u64,
}

impl core::fmt::Display for NetworkInstanceStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} {:?} {} on {}: {} leases, {} connections, to uplink {} to app {} dropped {} (acl {}, limit {})",
            self.name,
            self.state,
            self.subnet,
            self.bridge,
            self.leases.len(),
            self.connections,
            self.to_uplink,
            self.to_app,
            self.dropped,
            self.acl_drops,
            self.limit_drops
        )?;
        if !self.error.is_empty() {
            write!(f, ": {}", self.error)?;
        }
        Ok(())
    }
}

/// Every local network instance zedrouter knows, by UUID.
pub const NETWORK_INSTANCE_STATUS: Topic<String, NetworkInstanceStatus> =
    Topic::volatile("zedrouter/NetworkInstanceStatus", 2);

/// The leases of one network instance, kept by the vault: a restarted zedrouter gives each
/// app the address it had (EVE keeps dnsmasq's lease file in `/persist`). Keyed like the
/// status (the instance's UUID, or `static`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leases {
    /// The leases bound when it was published (MAC, address).
    pub leases: Vec<Lease>,
}

/// Every network instance's leases, by instance key (persistent).
pub const LEASES: Topic<String, Leases> = Topic::persistent("zedrouter/Leases", 1);

/// One flow record (EVE's `FlowRecord`): the 5-tuple as the app sees it, who opened it, the
/// ACE that decided (0: none, default deny or the router's DNS forwarding), and the counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// IP protocol (6 TCP, 17 UDP, 1 ICMP).
    pub protocol: u8,
    /// The opener's address and port (the app for outbound flows).
    pub src: ([u8; 4], u16),
    /// The other end's address and port.
    pub dst: ([u8; 4], u16),
    /// Opened from the uplink (through a port map).
    pub inbound: bool,
    /// The ACE's id (EVE's `aclId`).
    pub acl_id: i32,
    /// Let through (`false`: dropped by an ACE, the default deny or a rate limit).
    pub accepted: bool,
    /// First packet, Unix ms (0: zedrouter has no wall clock).
    pub start_ms: u64,
    /// Last packet so far, Unix ms.
    pub end_ms: u64,
    /// Bytes from the app.
    pub tx_bytes: u64,
    /// Packets from the app.
    pub tx_packets: u64,
    /// Bytes to the app.
    pub rx_bytes: u64,
    /// Packets to the app.
    pub rx_packets: u64,
}

/// A name the app asked zedrouter's DNS forwarder for, and the addresses answered (EVE's
/// `DnsRequest`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRequest {
    /// The name.
    pub name: String,
    /// The IPv4 addresses answered.
    pub addrs: Vec<[u8; 4]>,
    /// When the answer came, Unix ms (0: no wall clock).
    pub at_ms: u64,
}

/// The most flow records one [`AppFlows`] carries (the rest of a period are counted in
/// `lost`); about 60 bytes each on the bus, well under its 64 KiB value limit.
pub const MAX_FLOWS: usize = 256;
/// The most DNS requests one [`AppFlows`] carries.
pub const MAX_DNS: usize = 64;

/// One app's flow log for one period (EVE's `FlowMessage`, scope = the app): published by
/// zedrouter every `flowlog_s` when the app had traffic, keyed by the app's UUID (or
/// `mac:xx:xx:xx:xx:xx:xx` for a MAC no app instance has). zedagent posts each new `seq` once.
/// A subscriber that misses a value (the bus keeps the latest) sees a gap in `seq`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppFlows {
    /// The network instance (`zedagent/NetworkInstance`'s key, or `static`).
    pub network_id: String,
    /// The app's MAC on it.
    pub mac: String,
    /// Counts the periods published for this key, from 1.
    pub seq: u64,
    /// Records ended or dropped in the period, and a snapshot of the open connections.
    pub flows: Vec<Flow>,
    /// DNS answers in the period.
    pub dns: Vec<DnsRequest>,
    /// Records of the period that did not fit ([`MAX_FLOWS`], [`MAX_DNS`]).
    pub lost: u64,
}

/// Every app's latest flow log, by app UUID.
pub const APP_FLOWS: Topic<String, AppFlows> = Topic::volatile("zedrouter/AppFlows", 1);

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn a_status_survives_the_wire_and_reads_as_one_line() {
        let status = NetworkInstanceStatus {
            name: "local".into(),
            state: NetworkInstanceState::Online,
            bridge: "lichenni1".into(),
            subnet: "10.1.0.1/24".into(),
            leases: alloc::vec![Lease {
                mac: "02:00:00:00:00:01".into(),
                ip: "10.1.0.2".into(),
            }],
            to_uplink: 3,
            ..Default::default()
        };
        let bytes = postcard::to_allocvec(&status).unwrap();
        assert_eq!(
            postcard::from_bytes::<NetworkInstanceStatus>(&bytes).unwrap(),
            status
        );
        let line = status.to_string();
        assert!(line.contains("lichenni1") && !line.contains('\n'), "{line}");
    }

    #[test]
    fn a_full_flow_log_fits_in_one_bus_value() {
        let big = AppFlows {
            network_id: "6ba7b810-9dad-11d1-80b4-00c04fd430c8".into(),
            mac: "02:00:00:00:00:01".into(),
            seq: u64::MAX,
            flows: alloc::vec![
                Flow {
                    protocol: 6,
                    src: ([255; 4], u16::MAX),
                    dst: ([255; 4], u16::MAX),
                    inbound: true,
                    acl_id: i32::MIN,
                    accepted: true,
                    start_ms: u64::MAX,
                    end_ms: u64::MAX,
                    tx_bytes: u64::MAX,
                    tx_packets: u64::MAX,
                    rx_bytes: u64::MAX,
                    rx_packets: u64::MAX,
                };
                MAX_FLOWS
            ],
            dns: alloc::vec![
                DnsRequest {
                    name: "x".repeat(255),
                    addrs: alloc::vec![[255; 4]; 8],
                    at_ms: u64::MAX,
                };
                MAX_DNS
            ],
            lost: u64::MAX,
        };
        let bytes = postcard::to_allocvec(&big).unwrap();
        assert!(bytes.len() < 64 * 1024, "{} bytes", bytes.len());
        assert_eq!(postcard::from_bytes::<AppFlows>(&bytes).unwrap(), big);
    }
}
