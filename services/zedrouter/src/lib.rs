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
//! Each app's ACEs (`zedagent/AppInstance`'s interfaces, [`Instances::set_apps`]) become rules
//! owned by the app's MAC on its instance's router, after the command line's shared rules; a
//! change applies to the running router (`Router::set_rules`: open connections stay). An app
//! is known by the MAC of its vif: the interface's `mac` if the controller set one, else the
//! one the launcher derives from the app's UUID (`launcher_api::mac`). Flow records and DNS
//! answers are grouped per app the same way ([`Instances::take_app_flows`]).
//!
//! A network instance of kind Switch (EVE's `ZnetInstSwitch`, 1) takes no port: its apps join
//! the uplink's own dom0 bridge ([`Instances::set_switch_bridge`], zedrouter's `switch_bridge=`)
//! and get their addresses from whatever serves that L2 (dom0's DHCP on `lichenbr0`, the
//! outside network's on `lichenup0`), as issue 17 allows: a dom0 bridge, not a router. Nothing
//! of zedrouter is on their path, so their ACEs are not enforced, and the status says so.
//!
//! Leases survive a restart of zedrouter: the image publishes each instance's leases
//! ([`Instances::lease_tables`], `zedrouter/Leases`, kept by the vault) and gives the table it
//! finds there back at start ([`Instances::restore_leases`]): each router, when it is built,
//! takes back its instance's leases, so an app renewing (or rebooting) keeps its address and no
//! other app is offered it meanwhile.
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

use router::acl::Rule;
use router::flow::{FlowAction, FlowRecord};
use router::ports::{self, local_config, portmap_clash, KIND_LOCAL};
use router::wire::Mac;
use router::{Config, Router};
use topics::zedagent::{AppInstance, NetworkInstance};
use topics::zedrouter::{
    AppFlows, AppVif, DnsRequest, Flow, Lease, Leases, NetworkInstanceState, NetworkInstanceStatus,
    MAX_DNS, MAX_FLOWS,
};

/// `xx:xx:xx:xx:xx:xx`.
pub fn mac_text(mac: router::wire::Mac) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// The EVE kind of a switch network instance (`ZNetworkInstType` 1): apps on the uplink's L2.
pub const KIND_SWITCH: i32 = 1;

/// What a switch instance's status says when its apps have ACEs: nothing enforces them.
pub const SWITCH_ACLS: &str =
    "ACEs on a switch instance are not enforced: its apps are on the uplink's dom0 bridge";

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
    /// Why the apps' last rules were refused (empty: they were not); the previous rules stay.
    pub acl_error: String,
    /// A switch instance: no port, its apps on the uplink's bridge.
    pub switch: bool,
}

/// The apps' rules on one instance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct AppRules {
    /// In force (or to be, once the instance has a router).
    rules: Vec<Rule>,
}

/// Every port's router and every instance's state.
pub struct Instances {
    /// Per port: the key of the instance on it and its router.
    pub routers: Vec<Option<(String, Router)>>,
    /// Per key.
    pub known: BTreeMap<String, Instance>,
    base: Config,
    port_macs: Vec<router::wire::Mac>,
    /// Per instance key: the apps' rules.
    app_rules: BTreeMap<String, AppRules>,
    /// Per app MAC: the app's UUID (for flow logs).
    owners: BTreeMap<Mac, String>,
    /// Per instance key: the configured apps' interfaces on it (for the status).
    vifs: BTreeMap<String, Vec<AppVif>>,
    /// Per flow-log key: the last `seq` published.
    seqs: BTreeMap<String, u64>,
    /// Flow records beyond [`MAX_FLOWS`] or [`MAX_DNS`] in a period.
    pub flows_lost: u64,
    /// The uplink's dom0 bridge, which switch instances' apps join (`None`: no switch).
    switch_bridge: Option<String>,
    /// Per instance key: leases an earlier zedrouter gave, taken back when its router is built.
    restored: BTreeMap<String, Vec<(Mac, core::net::Ipv4Addr)>>,
}

/// The MAC of an app's interface `devid`: the controller's, else the launcher's.
pub fn app_mac(app: &AppInstance, devid: usize) -> Result<Mac, String> {
    let mac = &app.interfaces[devid].mac;
    if mac.is_empty() {
        return Ok(launcher_api::mac::app_mac(&app.uuid, devid as u32));
    }
    parse_mac(mac).ok_or_else(|| format!("interface {devid}: bad MAC {mac:?}"))
}

/// Gives `router` back the `restored` leases; returns how many it took.
fn take_back(
    router: &mut Router,
    restored: Option<&Vec<(Mac, core::net::Ipv4Addr)>>,
    now_ms: u64,
) -> usize {
    restored
        .into_iter()
        .flatten()
        .filter(|(mac, ip)| router.restore_lease(*mac, *ip, now_ms))
        .count()
}

/// `xx:xx:xx:xx:xx:xx` (or with `-`).
pub fn parse_mac(text: &str) -> Option<Mac> {
    let mut mac = [0u8; 6];
    let mut parts = text.split([':', '-']);
    for b in mac.iter_mut() {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
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
            app_rules: BTreeMap::new(),
            owners: BTreeMap::new(),
            vifs: BTreeMap::new(),
            seqs: BTreeMap::new(),
            flows_lost: 0,
            switch_bridge: None,
            restored: BTreeMap::new(),
        }
    }

    /// Takes back the leases an earlier zedrouter published for instance `key` (the vault's
    /// copy of `zedrouter/Leases`): at once if its router runs, else when it is built. Returns
    /// how many its router took now; one that does not parse, is out of the instance's range
    /// or clashes with a lease given since is left out.
    pub fn restore_leases(&mut self, key: &str, leases: &Leases, now_ms: u64) -> usize {
        let parsed: Vec<(Mac, core::net::Ipv4Addr)> = leases
            .leases
            .iter()
            .filter_map(|l| Some((parse_mac(&l.mac)?, l.ip.parse().ok()?)))
            .collect();
        self.restored.insert(key.to_string(), parsed);
        match self.routers.iter_mut().flatten().find(|(k, _)| k == key) {
            Some((_, router)) => take_back(router, self.restored.get(key), now_ms),
            None => 0,
        }
    }

    /// Every served instance's live leases, by key, for `zedrouter/Leases`.
    pub fn lease_tables(&self, now_ms: u64) -> Vec<(String, Leases)> {
        self.routers
            .iter()
            .flatten()
            .map(|(key, r)| {
                let leases = r
                    .dhcp()
                    .leases()
                    .iter()
                    .filter(|l| l.expires_ms > now_ms && l.mac != [0; 6])
                    .map(|l| Lease {
                        mac: mac_text(l.mac),
                        ip: format!("{}", l.ip),
                    })
                    .collect();
                (key.clone(), Leases { leases })
            })
            .collect()
    }

    /// The uplink's dom0 bridge, which apps on switch instances join (`None`: switch
    /// instances are refused, as under microvm where there are no bridges).
    pub fn set_switch_bridge(&mut self, bridge: Option<String>) {
        self.switch_bridge = bridge.filter(|b| !b.is_empty());
    }

    /// Gives every instance the uplink's addressing from its DHCP lease (`ip` unspecified: the
    /// lease was lost), at `now_ms`; instances made later get it too. An instance whose subnet
    /// holds the new address cannot NAT to it: it gets no uplink (its traffic out is a
    /// `no_uplink` drop) and the clash is its error until the next lease. Returns what
    /// happened, for the log.
    pub fn set_uplink(
        &mut self,
        ip: core::net::Ipv4Addr,
        prefix: u8,
        gateway: core::net::Ipv4Addr,
        dns: Option<core::net::Ipv4Addr>,
        now_ms: u64,
    ) -> Vec<String> {
        self.base.uplink_ip = ip;
        self.base.uplink_prefix = prefix;
        self.base.uplink_gateway = gateway;
        self.base.dns_upstream = dns;
        let mut said = Vec::new();
        for (key, router) in self.routers.iter_mut().flatten() {
            let result = router.set_uplink(ip, prefix, gateway, dns, now_ms);
            let error = match result {
                Ok(ended) if ended > 0 => {
                    said.push(format!(
                        "network instance {key}: {ended} connections ended, the uplink moved to {ip}"
                    ));
                    String::new()
                }
                Ok(_) => String::new(),
                Err(e) => {
                    let unspecified = core::net::Ipv4Addr::UNSPECIFIED;
                    // Cannot fail: no address clashes with nothing.
                    let _ = router.set_uplink(unspecified, 0, unspecified, dns, now_ms);
                    let why = format!("the uplink's address {ip}/{prefix} via {gateway}: {e}");
                    said.push(format!("network instance {key}: no uplink: {why}"));
                    why
                }
            };
            if let Some(known) = self.known.get_mut(key.as_str()) {
                known.error = error;
            }
        }
        said
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
            acl_error: String::new(),
            switch: false,
        });
        if entry.wanted.as_ref() == Some(&wanted) {
            return None;
        }
        entry.wanted = Some(wanted.clone());
        entry.switch = false;
        if wanted.kind == KIND_SWITCH {
            let said = match &self.switch_bridge {
                Some(bridge) => {
                    entry.switch = true;
                    entry.error.clear();
                    format!(
                        "network instance {key} ({}): switch, apps on the uplink's bridge {bridge}",
                        wanted.name
                    )
                }
                None => {
                    entry.error =
                        "switch instances need the uplink's bridge (switch_bridge=)".into();
                    format!("network instance {key} refused: {}", entry.error)
                }
            };
            self.release(key);
            return Some(said);
        }
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
                take_back(&mut router, self.restored.get(key), now_ms);
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

    /// The command line's rules, then the apps' on instance `key`.
    fn rules_for(&self, key: &str) -> Vec<Rule> {
        let mut rules = self.base.rules.clone();
        if let Some(apps) = self.app_rules.get(key) {
            rules.extend(apps.rules.iter().cloned());
        }
        rules
    }

    /// Applies the apps' ACEs (`zedagent/AppInstance`, by UUID) to their instances' routers;
    /// returns what happened, for the log. An app whose ACEs do not parse (zedagent checks
    /// them first) or clash with another's port maps leaves its instance's previous rules in
    /// force, and the instance's status says why.
    pub fn set_apps(&mut self, apps: &[(String, AppInstance)]) -> Vec<String> {
        let mut wanted: BTreeMap<String, Result<Vec<Rule>, String>> = BTreeMap::new();
        self.owners.clear();
        self.vifs.clear();
        for (uuid, app) in apps {
            for (devid, iface) in app.interfaces.iter().enumerate() {
                let mac = app_mac(app, devid);
                if let Ok(mac) = mac {
                    self.owners.insert(mac, uuid.clone());
                    self.vifs
                        .entry(iface.network_id.clone())
                        .or_default()
                        .push(AppVif {
                            app: uuid.clone(),
                            mac: mac_text(mac),
                        });
                }
                let slot = wanted
                    .entry(iface.network_id.clone())
                    .or_insert_with(|| Ok(Vec::new()));
                let Ok(list) = slot else { continue };
                match mac.and_then(|mac| {
                    router::ace::rules_of(&iface.acls, Some(mac)).map_err(|e| e.to_string())
                }) {
                    Ok(rules) => list.extend(rules),
                    Err(e) => *slot = Err(format!("app {uuid}: {e}")),
                }
            }
        }
        let mut log = Vec::new();
        let keys: Vec<String> = self
            .known
            .keys()
            .chain(self.app_rules.keys())
            .cloned()
            .collect();
        for key in keys.iter().chain(wanted.keys()) {
            let new = match wanted.get(key) {
                Some(Ok(rules)) => rules.clone(),
                Some(Err(e)) => {
                    if let Some(i) = self.known.get_mut(key) {
                        if i.acl_error != *e {
                            log.push(format!("network instance {key}: ACL refused: {e}"));
                            i.acl_error = e.clone();
                        }
                    }
                    continue;
                }
                None => Vec::new(),
            };
            if self.app_rules.get(key).map(|a| &a.rules) == Some(&new)
                && self.known.get(key).is_none_or(|i| i.acl_error.is_empty())
            {
                continue;
            }
            if !self.app_rules.contains_key(key) && new.is_empty() {
                continue;
            }
            if let Some(i) = self.known.get_mut(key).filter(|i| i.switch) {
                let said = if new.is_empty() { "" } else { SWITCH_ACLS };
                if i.acl_error != said {
                    i.acl_error = said.into();
                    if !said.is_empty() {
                        log.push(format!("network instance {key}: {said}"));
                    }
                }
                self.app_rules.insert(key.clone(), AppRules { rules: new });
                continue;
            }
            let mut all = self.base.rules.clone();
            all.extend(new.iter().cloned());
            let port = self.known.get(key).and_then(|i| i.port);
            let result = match port.and_then(|p| self.routers[p].as_mut()) {
                Some((_, r)) => r.set_rules(all).map_err(|e| e.to_string()),
                None => router::acl::Acl::check(&all).map_err(|e| e.to_string()),
            };
            match result {
                Ok(()) => {
                    log.push(format!(
                        "network instance {key}: {} app rules in force",
                        new.len()
                    ));
                    self.app_rules.insert(key.clone(), AppRules { rules: new });
                    if let Some(i) = self.known.get_mut(key) {
                        i.acl_error.clear();
                    }
                }
                Err(e) => {
                    if let Some(i) = self.known.get_mut(key) {
                        if i.acl_error != e {
                            log.push(format!("network instance {key}: ACL refused: {e}"));
                            i.acl_error = e;
                        }
                    }
                }
            }
        }
        log.dedup();
        log
    }

    /// Every app's flow records and DNS answers since the last call, grouped by app (its UUID;
    /// `mac:..` for a MAC no app has, `ip:..` for an address no lease has), each with its next
    /// `seq`. `wall_ms` turns the routers' milliseconds into Unix ms (`None`: no wall clock,
    /// times are 0).
    pub fn take_app_flows(&mut self, now_ms: u64, wall_ms: Option<u64>) -> Vec<(String, AppFlows)> {
        let unix = |ms: u64| wall_ms.map_or(0, |w| (w + ms).saturating_sub(now_ms));
        let mut out: BTreeMap<String, AppFlows> = BTreeMap::new();
        let mut lost = 0;
        for (key, router) in self.routers.iter_mut().flatten() {
            let owner_of = |ip: core::net::Ipv4Addr, router: &Router| -> (String, String) {
                match router.dhcp().leases().iter().find(|l| l.ip == ip) {
                    Some(l) => {
                        let mac = mac_text(l.mac);
                        let key = self
                            .owners
                            .get(&l.mac)
                            .cloned()
                            .unwrap_or_else(|| format!("mac:{mac}"));
                        (key, mac)
                    }
                    None => (format!("ip:{ip}"), String::new()),
                }
            };
            let flows = router.take_flows();
            let dns = router.dns().take_new();
            for f in &flows {
                let app = if f.inbound { f.dst.ip } else { f.src.ip };
                let (who, mac) = owner_of(app, router);
                let entry = out.entry(who).or_insert_with(|| AppFlows {
                    network_id: key.clone(),
                    mac,
                    ..Default::default()
                });
                if entry.flows.len() < MAX_FLOWS {
                    entry.flows.push(flow(f, &unix));
                } else {
                    lost += 1;
                }
            }
            for d in &dns {
                let Some(asker) = d.asker else { continue };
                let (who, mac) = owner_of(asker, router);
                let entry = out.entry(who).or_insert_with(|| AppFlows {
                    network_id: key.clone(),
                    mac,
                    ..Default::default()
                });
                if entry.dns.len() < MAX_DNS {
                    entry.dns.push(DnsRequest {
                        name: d.name.clone(),
                        addrs: d.addrs.iter().map(|a| a.octets()).collect(),
                        at_ms: unix(d.time_ms),
                    });
                } else {
                    lost += 1;
                }
            }
        }
        self.flows_lost += lost;
        out.into_iter()
            .map(|(who, mut flows)| {
                let seq = self.seqs.entry(who.clone()).or_insert(0);
                *seq += 1;
                flows.seq = *seq;
                (who, flows)
            })
            .collect()
    }

    fn build(&self, port: usize, wanted: &Wanted, key: &str) -> Result<Router, String> {
        let mut base = self.base.clone();
        base.rules = self.rules_for(key);
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
                    kind: i.wanted.as_ref().map_or(0, |w| w.kind),
                    apps: self.vifs.get(key).cloned().unwrap_or_default(),
                    error: match (i.error.is_empty(), i.acl_error.is_empty()) {
                        (_, true) => i.error.clone(),
                        (true, false) => i.acl_error.clone(),
                        (false, false) => format!("{}; {}", i.error, i.acl_error),
                    },
                    flows_lost: self.flows_lost,
                    ..Default::default()
                };
                let router = i
                    .port
                    .and_then(|p| self.routers[p].as_ref().map(|(_, r)| (p, r)));
                s.state = match (router.is_some() || i.switch, i.error.is_empty()) {
                    (_, false) => NetworkInstanceState::Error,
                    (true, true) => NetworkInstanceState::Online,
                    (false, true) => NetworkInstanceState::Pending,
                };
                if i.switch {
                    s.bridge = self.switch_bridge.clone().unwrap_or_default();
                    s.subnet = i
                        .wanted
                        .as_ref()
                        .map(|w| w.subnet.clone())
                        .unwrap_or_default();
                }
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
                    s.limit_drops_to_app = n.limited_to_app;
                    for (reason, count) in r.drops() {
                        s.dropped += count;
                        match reason {
                            "acl_drop" => s.acl_drops += count,
                            "rate_limit" => s.limit_drops += count,
                            _ => {}
                        }
                    }
                    s.connections = r.nat().len() as u64;
                    s.flows_lost += r.flows_lost();
                }
                (key.clone(), s)
            })
            .collect()
    }
}

/// A router's flow record as the bus carries it, times through `unix`.
fn flow(f: &FlowRecord, unix: &impl Fn(u64) -> u64) -> Flow {
    Flow {
        protocol: f.protocol,
        src: (f.src.ip.octets(), f.src.port),
        dst: (f.dst.ip.octets(), f.dst.port),
        inbound: f.inbound,
        acl_id: f.acl_id,
        accepted: f.action == FlowAction::Accept,
        start_ms: unix(f.start_ms),
        end_ms: unix(f.end_ms),
        tx_bytes: f.counters.tx_bytes,
        tx_packets: f.counters.tx_packets,
        rx_bytes: f.counters.rx_bytes,
        rx_packets: f.counters.rx_packets,
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
        let cloud = Wanted {
            kind: 3,
            ..local("10.1.0.0/24")
        };
        assert!(set.apply("cl", Some(cloud), 0).unwrap().contains("kind 3"));
        assert!(set.routers.iter().all(Option::is_none));
        assert_eq!(state(&set, "cl").state, NetworkInstanceState::Error);
        // A switch instance with no uplink bridge to put it on (as under microvm).
        let switch = Wanted {
            kind: KIND_SWITCH,
            ..local("10.1.0.0/24")
        };
        let said = set.apply("sw", Some(switch), 0).unwrap();
        assert!(said.contains("switch_bridge"), "{said}");
        assert_eq!(state(&set, "sw").state, NetworkInstanceState::Error);
        // Both instances share the command line's ACL, so the second maps 8000 again.
        set.apply("a", Some(local("10.1.0.0/24")), 0);
        let clash = set.apply("b", Some(local("10.2.0.0/24")), 0).unwrap();
        assert!(clash.contains("uplink port 8000"), "{clash}");
        assert!(set.routers[1].is_none());
    }

    #[test]
    fn a_switch_instance_puts_its_apps_on_the_uplink_bridge_and_says_acls_are_not_enforced() {
        let mut set = Instances::new(base(""), macs(1));
        set.set_switch_bridge(Some("lichenup0".into()));
        let switch = Wanted {
            kind: KIND_SWITCH,
            ..local("10.0.2.0/24")
        };
        let said = set.apply("sw", Some(switch.clone()), 0).unwrap();
        assert!(
            said.contains("switch, apps on the uplink's bridge lichenup0"),
            "{said}"
        );
        // No port taken: a local instance still gets port 1.
        assert!(set.routers.iter().all(Option::is_none));
        let s = state(&set, "sw");
        assert_eq!(
            (s.state, s.bridge.as_str(), s.error.as_str()),
            (NetworkInstanceState::Online, "lichenup0", "")
        );
        assert!(set
            .apply("a", Some(local("10.1.0.0/24")), 0)
            .unwrap()
            .contains("on port 1"));
        // Two apps on the switch: one with an ACE, which nothing enforces; the status says so
        // and the instance stays online.
        let a = app(
            "a1",
            "sw",
            vec![ace(1, &[("protocol", "tcp"), ("lport", "8080")], 7)],
        );
        let b = app("b1", "sw", Vec::new());
        let log = set.set_apps(&[a, b.clone()]);
        assert!(log.iter().any(|l| l.contains(SWITCH_ACLS)), "{log:?}");
        let s = state(&set, "sw");
        assert_eq!(
            (s.state, s.error.as_str()),
            (NetworkInstanceState::Online, SWITCH_ACLS)
        );
        // Without ACEs the note goes.
        set.set_apps(&[b]);
        assert_eq!(state(&set, "sw").error, "");
        // The same instance made local takes a port; made a switch again, frees it.
        set.apply("a", None, 0);
        set.apply("sw", Some(local("10.3.0.0/24")), 0);
        assert_eq!(state(&set, "sw").bridge, "lichenni1");
        set.apply("sw", Some(switch), 0);
        assert!(set.routers.iter().all(Option::is_none));
        assert_eq!(state(&set, "sw").bridge, "lichenup0");
    }

    #[test]
    fn leases_published_by_one_zedrouter_are_taken_back_by_the_next() {
        let mac = launcher_api::mac::app_mac("web", 0);
        let mut first = Instances::new(base(""), macs(1));
        first.apply("ni", Some(local("10.1.0.0/24")), 0);
        // Two apps lease; the second one's address is the one to keep.
        let (_, router) = first.routers[0].as_mut().unwrap();
        lease(router, [2, 0, 0, 0, 0, 1]);
        let ip = lease(router, mac);
        let tables = first.lease_tables(10);
        assert_eq!(tables.len(), 1);
        assert_eq!(tables[0].1.leases.len(), 2);

        // A restarted zedrouter: the table comes back before the instance is configured (and a
        // garbled entry is left out).
        let mut next = Instances::new(base(""), macs(1));
        let mut table = tables[0].1.clone();
        table.leases.push(Lease {
            mac: "not a mac".into(),
            ip: "10.1.0.99".into(),
        });
        table
            .leases
            .retain(|l| l.mac == mac_text(mac) || l.mac == "not a mac");
        assert_eq!(next.restore_leases("ni", &table, 0), 0, "no router yet");
        next.apply("ni", Some(local("10.1.0.0/24")), 1_000);
        let (_, router) = next.routers[0].as_mut().unwrap();
        // Another app asking first is not offered web's address; web renewing keeps it.
        let other = lease(router, [2, 0, 0, 0, 0, 7]);
        assert_ne!(other, ip);
        assert_eq!(lease(router, mac), ip);
        assert_eq!(state(&next, "ni").leases.len(), 2);
        // Restored into a running router too.
        let mut running = Instances::new(base(""), macs(1));
        running.apply("ni", Some(local("10.1.0.0/24")), 0);
        assert_eq!(running.restore_leases("ni", &table, 5), 1);
        let (_, router) = running.routers[0].as_mut().unwrap();
        assert_eq!(router.dhcp().lease_of_ip(ip, 6).unwrap().mac, mac);
    }

    #[test]
    fn the_uplink_lease_reaches_every_instance_and_one_it_clashes_with_has_none() {
        let ip = |s: &str| s.parse::<core::net::Ipv4Addr>().unwrap();
        let mut base = base("");
        base.uplink_ip = ip("0.0.0.0");
        base.uplink_prefix = 0;
        base.uplink_gateway = ip("0.0.0.0");
        let mut set = Instances::new(base, macs(2));
        set.apply("a", Some(local("10.1.0.0/24")), 0);
        set.apply("b", Some(local("192.168.9.0/24")), 0);
        let said = set.set_uplink(ip("192.168.9.40"), 24, ip("192.168.9.1"), None, 5);
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0].contains("network instance b: no uplink"),
            "{said:?}"
        );
        let uplink =
            |set: &Instances, port: usize| set.routers[port].as_ref().unwrap().1.config().uplink_ip;
        assert_eq!(uplink(&set, 0), ip("192.168.9.40"));
        assert_eq!(uplink(&set, 1), ip("0.0.0.0"));
        assert!(state(&set, "b").error.contains("192.168.9.40"));
        // The next lease fits both; an instance made later starts with it.
        assert!(set
            .set_uplink(ip("10.0.2.15"), 24, ip("10.0.2.2"), Some(ip("10.0.2.3")), 6)
            .is_empty());
        assert_eq!(uplink(&set, 1), ip("10.0.2.15"));
        assert!(state(&set, "b").error.is_empty());
        set.apply("a", None, 7);
        set.apply("c", Some(local("10.7.0.0/24")), 8);
        assert_eq!(uplink(&set, 0), ip("10.0.2.15"));
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
        assert_eq!((s.kind, s.limit_drops_to_app), (KIND_LOCAL, 0));
        // The configured apps' interfaces, by the MAC their vif has.
        let (uuid, web) = app("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "a", vec![]);
        set.set_apps(&[(uuid.clone(), web.clone())]);
        let s = state(&set, "a");
        assert_eq!(
            s.apps,
            vec![AppVif {
                app: uuid,
                mac: mac_text(app_mac(&web, 0).unwrap()),
            }]
        );
        assert_eq!(
            mac_text([0, 0x16, 0x3e, 0xa, 0xb, 0xff]),
            "00:16:3e:0a:0b:ff"
        );
    }

    fn app(uuid: &str, network: &str, acls: Vec<topics::zedagent::Ace>) -> (String, AppInstance) {
        let app = AppInstance {
            uuid: uuid.into(),
            version: "1".into(),
            name: uuid.into(),
            activate: true,
            memory_kib: 1024,
            vcpus: 1,
            volumes: Vec::new(),
            interfaces: vec![topics::zedagent::AppInterface {
                name: "eth0".into(),
                network_id: network.into(),
                addr: String::new(),
                mac: String::new(),
                acls,
            }],
            restart_counter: 0,
            purge_counter: 0,
            start_delay_s: 0,
            cmdline: String::new(),
        };
        (uuid.into(), app)
    }

    fn ace(id: i32, matches: &[(&str, &str)], app_port: u32) -> topics::zedagent::Ace {
        topics::zedagent::Ace {
            id,
            matches: matches
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            actions: if app_port > 0 {
                vec![topics::zedagent::AceAction {
                    portmap: true,
                    app_port,
                    ..Default::default()
                }]
            } else {
                Vec::new()
            },
            ..Default::default()
        }
    }

    /// DHCP for `mac` on `router` (DISCOVER then REQUEST of the offered address).
    fn lease(router: &mut Router, mac: Mac) -> core::net::Ipv4Addr {
        use router::wire::{build_udp, Endpoints, BROADCAST_MAC};
        let ends = Endpoints {
            src_mac: mac,
            dst_mac: BROADCAST_MAC,
            src: core::net::Ipv4Addr::UNSPECIFIED,
            dst: core::net::Ipv4Addr::BROADCAST,
        };
        let msg = |kind: u8, ip: Option<core::net::Ipv4Addr>| {
            let mut m = vec![0u8; 240];
            m[0] = 1;
            m[1] = 1;
            m[2] = 6;
            m[4..8].copy_from_slice(&[1, 2, 3, 4]);
            m[28..34].copy_from_slice(&mac);
            m[236..240].copy_from_slice(&[99, 130, 83, 99]);
            m.extend_from_slice(&[53, 1, kind]);
            if let Some(ip) = ip {
                m.extend_from_slice(&[50, 4]);
                m.extend_from_slice(&ip.octets());
            }
            m.push(255);
            build_udp(&ends, 68, 67, &m)
        };
        router.handle(router::Side::App, &mut msg(1, None), 1);
        let offer = router.take_output().pop().unwrap().1;
        let at = 14 + 20 + 8 + 16;
        let ip = core::net::Ipv4Addr::new(offer[at], offer[at + 1], offer[at + 2], offer[at + 3]);
        router.handle(router::Side::App, &mut msg(3, Some(ip)), 2);
        router.take_output();
        ip
    }

    #[test]
    fn apps_get_their_own_rules_live_and_a_bad_one_keeps_the_previous() {
        let mut set = Instances::new(base(""), macs(1));
        set.apply("ni", Some(local("10.1.0.0/24")), 0);
        let web = app(
            "web",
            "ni",
            vec![ace(1, &[("protocol", "tcp"), ("lport", "8080")], 7)],
        );
        let log = set.set_apps(core::slice::from_ref(&web));
        assert!(log.iter().any(|l| l.contains("1 app rules")), "{log:?}");
        // The rules in force: the router maps 8080 to web's lease.
        let (_, router) = set.routers[0].as_mut().unwrap();
        let web_mac = launcher_api::mac::app_mac("web", 0);
        let web_ip = lease(router, web_mac);
        let host = router::wire::Endpoints {
            src_mac: [2, 0, 0, 0, 0, 9],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: core::net::Ipv4Addr::new(10, 0, 2, 2),
            dst: core::net::Ipv4Addr::new(10, 0, 2, 15),
        };
        let mut syn = router::wire::build_tcp(&host, 5000, 8080, router::wire::TCP_SYN, b"");
        let v = router.handle(router::Side::Uplink, &mut syn, 10);
        let router::router::Verdict::Forward(router::Side::App, len) = v else {
            panic!("{v:?}")
        };
        let Ok(router::wire::Packet::Ipv4(p)) = router::wire::parse(&syn[..len]) else {
            panic!()
        };
        assert_eq!((p.dst, p.dst_mac), (web_ip, web_mac));
        // Its flows are web's, with a sequence number per app.
        let flows = set.take_app_flows(20, Some(1_000_000));
        assert_eq!(flows.len(), 1, "{flows:?}");
        let (who, f) = &flows[0];
        assert_eq!(
            (who.as_str(), f.seq, f.network_id.as_str()),
            ("web", 1, "ni")
        );
        assert_eq!(f.mac, mac_text(web_mac));
        assert!(f.flows[0].inbound && f.flows[0].accepted && f.flows[0].acl_id == 1);
        assert_eq!(f.flows[0].dst, (web_ip.octets(), 7));
        assert_eq!(f.flows[0].start_ms, 1_000_000 - 10, "router ms to Unix ms");
        assert_eq!(
            set.take_app_flows(21, None)[0].1.seq,
            2,
            "the open one again"
        );
        // Another app maps the same port: refused, web's map stays, the status says why.
        let other = app(
            "other",
            "ni",
            vec![ace(2, &[("protocol", "tcp"), ("lport", "8080")], 9)],
        );
        let log = set.set_apps(&[web.clone(), other]);
        assert!(log.iter().any(|l| l.contains("ACL refused")), "{log:?}");
        let s = state(&set, "ni");
        assert_eq!(s.state, NetworkInstanceState::Online, "still serving");
        assert!(s.error.contains("mapped twice"), "{}", s.error);
        assert_eq!(set.app_rules["ni"].rules.len(), 1);
        // Back to web alone: the error goes.
        set.set_apps(&[web]);
        assert!(state(&set, "ni").error.is_empty());
        // No apps: no app rules.
        set.set_apps(&[]);
        assert!(set.app_rules["ni"].rules.is_empty());
    }
}
