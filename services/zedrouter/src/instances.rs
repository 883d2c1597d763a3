//! Which local network instance runs on which port, and each one's router.
//!
//! A port is an app-side card (a vif on one of the node's network-instance bridges). A network
//! instance from the bus (`zedagent/NetworkInstance` of kind Local) takes the lowest free port
//! and keeps it while it exists; one from the command line (`subnet=`) takes the first port
//! and is keyed `static` (it is applied before the bus is read). An instance whose settings change gets a new router on the same port
//! (its connections end; apps renew their leases at the same address, leases being stable per
//! MAC in a fresh server only when the range is the same). A change that is refused leaves the
//! previous router running and reports the error.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use kernel::net::device::MacDisplay;
use router::ports::{self, local_config, portmap_clash, KIND_LOCAL};
use router::{Config, Router};
use topics::zedagent::NetworkInstance;
use topics::zedrouter::{Lease, NetworkInstanceState, NetworkInstanceStatus};

/// The key of the instance configured on the command line.
pub const STATIC: &str = "static";

/// What one instance asks for: the controller's fields (or the command line's, for `static`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// Display name.
    pub name: String,
    /// EVE's kind.
    pub kind: i32,
    /// `a.b.c.d/len`.
    pub subnet: String,
    /// Gateway.
    pub gateway: String,
    /// DHCP range.
    pub dhcp: (String, String),
}

impl From<&NetworkInstance> for Wanted {
    fn from(ni: &NetworkInstance) -> Wanted {
        Wanted {
            name: ni.name.clone(),
            kind: ni.kind,
            subnet: ni.subnet.clone(),
            gateway: ni.gateway.clone(),
            dhcp: (ni.dhcp_start.clone(), ni.dhcp_end.clone()),
        }
    }
}

/// One instance zedrouter knows.
pub struct Instance {
    /// What was asked.
    pub wanted: Option<Wanted>,
    /// Its port, once it has one.
    pub port: Option<usize>,
    /// Why the last settings were refused (empty: they were not).
    pub error: String,
}

/// Every port's router and every instance's state.
pub struct Instances {
    /// Per port: the key of the instance on it and its router.
    pub routers: Vec<Option<(String, Router)>>,
    /// Per key.
    pub known: BTreeMap<String, Instance>,
    base: Config,
    port_macs: Vec<router::wire::Mac>,
}

impl Instances {
    /// No instances yet, on `port_macs.len()` ports; `base` holds the uplink, DNS, NAT and ACL
    /// settings every instance shares.
    pub fn new(base: Config, port_macs: Vec<router::wire::Mac>) -> Instances {
        Instances {
            routers: port_macs.iter().map(|_| None).collect(),
            known: BTreeMap::new(),
            base,
            port_macs,
        }
    }

    /// The routers' settings, per port (for [`router::ports::uplink_owner`]).
    pub fn configs(&self) -> Vec<Option<Config>> {
        self.routers
            .iter()
            .map(|r| r.as_ref().map(|(_, r)| r.config().clone()))
            .collect()
    }

    /// Applies what `key` asks for now (`None`: it is gone), at `now_ms`.
    pub fn apply(&mut self, key: &str, wanted: Option<Wanted>, now_ms: u64) {
        let Some(wanted) = wanted else {
            if let Some(old) = self.known.remove(key) {
                if let Some(port) = old.port {
                    self.routers[port] = None;
                    kernel::info!(
                        "zedrouter: network instance {key} removed from port {}",
                        port + 1
                    );
                }
            }
            return;
        };
        let entry = self.known.entry(key.to_string()).or_insert(Instance {
            wanted: None,
            port: None,
            error: String::new(),
        });
        if entry.wanted.as_ref() == Some(&wanted) {
            return;
        }
        entry.wanted = Some(wanted.clone());
        if wanted.kind != KIND_LOCAL {
            entry.error = format!(
                "kind {} is not served by zedrouter (only local, {KIND_LOCAL})",
                wanted.kind
            );
            return self.release(key);
        }
        let port = match entry.port {
            Some(p) => p,
            None => match self.routers.iter().position(Option::is_none) {
                Some(p) => p,
                None => {
                    entry.error = "no free port: every network-instance bridge is taken".into();
                    return;
                }
            },
        };
        let result = self.build(port, &wanted, key);
        let entry = self.known.get_mut(key).expect("inserted above");
        match result {
            Ok(mut router) => {
                router.start(now_ms);
                kernel::info!(
                    "zedrouter: network instance {key} ({}) on port {}: gateway {}/{}, dhcp {}-{}, nat ports {:?}, app mac {}",
                    wanted.name,
                    port + 1,
                    router.config().gateway,
                    router.config().prefix,
                    router.config().dhcp_range.0,
                    router.config().dhcp_range.1,
                    router.config().nat_ports,
                    MacDisplay(router.config().app_mac),
                );
                entry.port = Some(port);
                entry.error.clear();
                self.routers[port] = Some((key.to_string(), router));
            }
            Err(e) => {
                kernel::warn!("zedrouter: network instance {key} refused: {e}");
                entry.error = e;
            }
        }
    }

    fn release(&mut self, key: &str) {
        if let Some(i) = self.known.get_mut(key) {
            if let Some(port) = i.port.take() {
                self.routers[port] = None;
            }
        }
    }

    fn build(&self, port: usize, wanted: &Wanted, key: &str) -> Result<Router, String> {
        let mut base = self.base.clone();
        base.app_mac = self.port_macs[port];
        base.nat_ports = ports::nat_ports(port);
        let config = local_config(
            &base,
            &wanted.subnet,
            &wanted.gateway,
            &wanted.dhcp.0,
            &wanted.dhcp.1,
        )?;
        let others = self
            .routers
            .iter()
            .flatten()
            .filter(|(k, _)| k != key)
            .map(|(_, r)| r.config());
        if let Some(port) = portmap_clash(&config, others) {
            return Err(format!(
                "uplink port {port} is mapped by another network instance"
            ));
        }
        Router::new(config).map_err(|e| e.to_string())
    }

    /// Every instance's status, with `bridges[port]` naming each port's bridge.
    pub fn statuses(
        &self,
        bridges: &[String],
        now_ms: u64,
    ) -> Vec<(String, NetworkInstanceStatus)> {
        self.known
            .iter()
            .map(|(key, i)| {
                let mut s = NetworkInstanceStatus {
                    name: i
                        .wanted
                        .as_ref()
                        .map(|w| w.name.clone())
                        .unwrap_or_default(),
                    error: i.error.clone(),
                    ..Default::default()
                };
                let router = i
                    .port
                    .and_then(|p| self.routers[p].as_ref().map(|(_, r)| (p, r)));
                s.state = match (router.is_some(), i.error.is_empty()) {
                    (_, false) => NetworkInstanceState::Error,
                    (true, true) => NetworkInstanceState::Online,
                    (false, true) => NetworkInstanceState::Pending,
                };
                if let Some((port, r)) = router {
                    let c = r.config();
                    s.bridge = bridges.get(port).cloned().unwrap_or_default();
                    s.subnet = format!("{}/{}", c.gateway, c.prefix);
                    s.leases = r
                        .dhcp()
                        .leases()
                        .iter()
                        .filter(|l| l.expires_ms > now_ms)
                        .map(|l| Lease {
                            mac: format!("{}", MacDisplay(l.mac)),
                            ip: format!("{}", l.ip),
                        })
                        .collect();
                    let n = r.counters();
                    s.to_uplink = n.to_uplink;
                    s.to_app = n.to_app;
                    for (reason, count) in r.drops() {
                        s.dropped += count;
                        match reason {
                            "acl_drop" => s.acl_drops += count,
                            "rate_limit" => s.limit_drops += count,
                            _ => {}
                        }
                    }
                    s.connections = r.nat().len() as u64;
                }
                (key.clone(), s)
            })
            .collect()
    }
}
