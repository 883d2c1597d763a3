//! Which local network instance runs on which port, and each one's router.
//!
//! A port is an app-side card (a vif on one of the node's network-instance bridges). A network
//! instance from the bus (`zedagent/NetworkInstance` of kind Local) takes the lowest free port
//! and keeps it while it exists; one from the command line (`subnet=`) takes the first port
//! and is keyed `static` (it is applied before the bus is read). An instance whose settings change gets a new router on the same port
//! (its connections end; apps renew their leases at the same address, leases being stable per
//! MAC in a fresh server only when the range is the same). A change that is refused leaves the
//! previous router running and reports the error.
//!
//! Pure (no driver, no clock, no log): tested on the host; the image (`main.rs`) logs what
//! [`Instances::apply`] returns.
#![no_std]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use router::ports::{self, local_config, portmap_clash, KIND_LOCAL};
use router::{Config, Router};
use topics::zedagent::NetworkInstance;
use topics::zedrouter::{Lease, NetworkInstanceState, NetworkInstanceStatus};

/// `xx:xx:xx:xx:xx:xx`.
pub fn mac_text(mac: router::wire::Mac) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

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

    /// Applies what `key` asks for now (`None`: it is gone), at `now_ms`; returns what
    /// happened, for the log (`None`: nothing changed).
    pub fn apply(&mut self, key: &str, wanted: Option<Wanted>, now_ms: u64) -> Option<String> {
        let Some(wanted) = wanted else {
            let old = self.known.remove(key)?;
            if let Some(port) = old.port {
                self.routers[port] = None;
            }
            return Some(format!("network instance {key} removed"));
        };
        let entry = self.known.entry(key.to_string()).or_insert(Instance {
            wanted: None,
            port: None,
            error: String::new(),
        });
        if entry.wanted.as_ref() == Some(&wanted) {
            return None;
        }
        entry.wanted = Some(wanted.clone());
        if wanted.kind != KIND_LOCAL {
            entry.error = format!(
                "kind {} is not served by zedrouter (only local, {KIND_LOCAL})",
                wanted.kind
            );
            let refused = format!("network instance {key} refused: {}", entry.error);
            self.release(key);
            return Some(refused);
        }
        let port = match entry.port {
            Some(p) => p,
            None => match self.routers.iter().position(Option::is_none) {
                Some(p) => p,
                None => {
                    entry.error = "no free port: every network-instance bridge is taken".into();
                    return Some(format!("network instance {key} waits: {}", entry.error));
                }
            },
        };
        let result = self.build(port, &wanted, key);
        let entry = self.known.get_mut(key).expect("inserted above");
        match result {
            Ok(mut router) => {
                router.start(now_ms);
                let c = router.config();
                let done = format!(
                    "network instance {key} ({}) on port {}: gateway {}/{}, dhcp {}-{}, nat ports {:?}, app mac {}",
                    wanted.name,
                    port + 1,
                    c.gateway,
                    c.prefix,
                    c.dhcp_range.0,
                    c.dhcp_range.1,
                    c.nat_ports,
                    mac_text(c.app_mac),
                );
                entry.port = Some(port);
                entry.error.clear();
                self.routers[port] = Some((key.to_string(), router));
                Some(done)
            }
            Err(e) => {
                let refused = format!("network instance {key} refused: {e}");
                entry.error = e;
                Some(refused)
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
                            mac: mac_text(l.mac),
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn base(acl: &'static str) -> Config {
        router::settings::config_from(
            |k| (k == "acl").then_some(acl),
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            [1, 2],
        )
        .unwrap()
    }

    fn local(subnet: &str) -> Wanted {
        Wanted {
            name: format!("ni {subnet}"),
            kind: KIND_LOCAL,
            subnet: subnet.into(),
            gateway: String::new(),
            dhcp: (String::new(), String::new()),
        }
    }

    fn macs(n: u8) -> Vec<router::wire::Mac> {
        (1..=n).map(|i| [2, 0, 0, 0, 1, i]).collect()
    }

    fn state(set: &Instances, key: &str) -> NetworkInstanceStatus {
        let bridges = vec!["lichenni1".into(), "lichenni2".into()];
        set.statuses(&bridges, 0)
            .into_iter()
            .find(|(k, _)| k == key)
            .unwrap()
            .1
    }

    #[test]
    fn instances_take_the_lowest_free_port_and_free_it_when_gone() {
        let mut set = Instances::new(base(""), macs(2));
        assert!(set
            .apply("a", Some(local("10.1.0.0/24")), 0)
            .unwrap()
            .contains("on port 1"));
        assert!(set
            .apply("b", Some(local("10.2.0.0/24")), 0)
            .unwrap()
            .contains("on port 2"));
        let s = state(&set, "b");
        assert_eq!(
            (s.state, s.bridge.as_str()),
            (NetworkInstanceState::Online, "lichenni2")
        );
        assert_eq!(s.subnet, "10.2.0.1/24");
        let configs = set.configs();
        assert_eq!(
            configs[1].as_ref().unwrap().app_mac,
            [2, 0, 0, 0, 1, 2],
            "port 2's card"
        );
        assert_eq!(
            configs[1].as_ref().unwrap().nat_ports,
            router::ports::nat_ports(1)
        );
        // Full: a third waits, and says why.
        assert!(set
            .apply("c", Some(local("10.3.0.0/24")), 0)
            .unwrap()
            .contains("no free port"));
        assert_eq!(state(&set, "c").state, NetworkInstanceState::Error);
        // The same settings again change nothing.
        assert_eq!(set.apply("a", Some(local("10.1.0.0/24")), 0), None);
        // a leaves: its port is free, and the next one takes it.
        assert!(set.apply("a", None, 0).unwrap().contains("removed"));
        assert!(set.routers[0].is_none());
        assert_eq!(set.apply("a", None, 0), None, "gone already");
        assert!(set
            .apply("d", Some(local("10.4.0.0/24")), 0)
            .unwrap()
            .contains("on port 1"));
    }

    #[test]
    fn a_refused_change_keeps_the_previous_router_and_reports_why() {
        let mut set = Instances::new(base(""), macs(1));
        set.apply("a", Some(local("10.1.0.0/24")), 0);
        let refused = set.apply("a", Some(local("10.1.0.0/33")), 0).unwrap();
        assert!(
            refused.contains("refused") && refused.contains("subnet"),
            "{refused}"
        );
        let (key, router) = set.routers[0].as_ref().unwrap();
        assert_eq!(
            (key.as_str(), router.config().prefix),
            ("a", 24),
            "the old one runs"
        );
        let s = state(&set, "a");
        assert_eq!(s.state, NetworkInstanceState::Error);
        assert!(s.error.contains("subnet"), "{}", s.error);
        // A good change replaces it on the same port, and the error is gone.
        assert!(set
            .apply("a", Some(local("10.9.0.0/16")), 0)
            .unwrap()
            .contains("on port 1"));
        assert_eq!(state(&set, "a").state, NetworkInstanceState::Online);
        assert!(state(&set, "a").error.is_empty());
    }

    #[test]
    fn other_kinds_and_clashing_port_maps_are_refused() {
        let mut set = Instances::new(base("1#protocol:tcp,lport:8000->portmap:7"), macs(2));
        let switch = Wanted {
            kind: 1,
            ..local("10.1.0.0/24")
        };
        assert!(set.apply("sw", Some(switch), 0).unwrap().contains("kind 1"));
        assert!(set.routers.iter().all(Option::is_none));
        assert_eq!(state(&set, "sw").state, NetworkInstanceState::Error);
        // Both instances share the command line's ACL, so the second maps 8000 again.
        set.apply("a", Some(local("10.1.0.0/24")), 0);
        let clash = set.apply("b", Some(local("10.2.0.0/24")), 0).unwrap();
        assert!(clash.contains("uplink port 8000"), "{clash}");
        assert!(set.routers[1].is_none());
    }

    #[test]
    fn the_status_counts_leases_and_drops() {
        let mut set = Instances::new(base(""), macs(1));
        set.apply("a", Some(local("10.1.0.0/24")), 0);
        let (_, router) = set.routers[0].as_mut().unwrap();
        // A TCP SYN from the app to the uplink: default deny.
        let ends = router::wire::Endpoints {
            src_mac: [2, 0, 0, 0, 0, 9],
            dst_mac: [2, 0, 0, 0, 1, 1],
            src: core::net::Ipv4Addr::new(10, 1, 0, 5),
            dst: core::net::Ipv4Addr::new(10, 0, 2, 2),
        };
        let mut frame = router::wire::build_udp(&ends, 1000, 2000, b"x");
        router.handle(router::Side::App, &mut frame, 0);
        let s = state(&set, "a");
        assert_eq!((s.dropped, s.acl_drops), (1, 1), "{s:?}");
        assert!(s.leases.is_empty());
        assert_eq!(
            mac_text([0, 0x16, 0x3e, 0xa, 0xb, 0xff]),
            "00:16:3e:0a:0b:ff"
        );
    }
}
