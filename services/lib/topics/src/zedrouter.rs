//! What `zedrouter` publishes (services/zedrouter, docs/router.md): the state of every local
//! network instance it serves, keyed by the instance's UUID (`zedagent/NetworkInstance`'s key;
//! an instance configured on zedrouter's command line is keyed `static`). zedagent reads it for
//! `niinfo` and the network-instance metrics; domainmgr reads `bridge` to attach an app's vif.
//!
//! Volatile: a restarted zedrouter publishes again once it has applied the configuration.

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

/// A local network instance as zedrouter serves it (EVE's `NetworkInstanceStatus`, the parts
/// zedrouter knows).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInstanceStatus {
    /// Its display name.
    pub name: String,
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
    /// Connections open now.
    pub connections: u64,
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
    Topic::volatile("zedrouter/NetworkInstanceStatus", 1);

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
}
