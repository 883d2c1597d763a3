//! `zedrouter`: local network instances as a unikernel with raw network cards, an uplink and
//! one app side ("port") per instance, forwarding frames between them through `router` (DHCP
//! server, DNS forwarder, source NAT, port maps, ACLs, flow records). No TCP/IP stack runs
//! here: frames go from one card's receive ring through a router into another card's transmit
//! ring.
//!
//! Under Xen the cards are netfronts: vif 0 on the uplink bridge, vif `i` on the node's
//! network-instance bridge `lichenni<i>` (docs/router.md). Each `zedagent/NetworkInstance` of
//! kind Local takes a free port (the crate's library, [`zedrouter::Instances`]); zedrouter publishes
//! `zedrouter/NetworkInstanceStatus` (state, bridge, leases, counters). Under QEMU's microvm it
//! takes two virtio-net cards and serves one instance from its command line.
//!
//! Settings (command line): those of `router::settings` (subnet, DHCP range, uplink address and
//! gateway, DNS, NAT size, `acl`): the uplink, DNS, NAT size and ACL apply to every instance,
//! and `subnet=` (always, under microvm) makes an instance keyed `static` on the first port.
//! Also `uplink_mac=MAC` (microvm: which card is the uplink, see [`cards`]) and `flowlog_s=N`
//! (default 10): how often flow records, new DNS answers and counters are logged and the status
//! published. `switch_bridge=NAME` names the dom0 bridge zedrouter's uplink is on (the
//! manifest's `network`: `lichenbr0` or `lichenup0`): apps on a network instance of kind Switch
//! join it (without it, switch instances are refused).
//!
//! `uplink=dhcp` makes the uplink's address a DHCP lease (`router::dhcp_client`, over the
//! uplink card's raw frames): every instance NATs to it once it is bound, and moves with it.
//!
//! Leases survive a restart: each instance's leases go to `zedrouter/Leases` (persistent, kept
//! by the vault) when they change, and a restarted zedrouter takes the vault's copy back
//! before it publishes any (a node without a vault just does not keep them).

#![no_std]
#![no_main]

extern crate alloc;

mod cards;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::future::{poll_fn, Future};
use core::pin::Pin;
use core::task::Poll;

use bus_io::Update;
use kernel::net::device::MacDisplay;
use kernel::{error, info, warn, Args, Duration};
use router::dhcp_client::{DhcpClient, Event, Step, UplinkLease};
use router::ports::{uplink_owner, Owner};
use router::router::{Side, Verdict};
use router::wire::{PROTO_TCP, PROTO_UDP};
use router::Router;
use topics::vault::STORED;
use topics::zedagent::{APP_INSTANCE, NETWORK_INSTANCE};
use topics::zedrouter::{Leases, APP_FLOWS, LEASES, NETWORK_INSTANCE_STATUS};

use cards::{Card, Port};
use zedrouter::{Instances, Wanted, STATIC};

kernel::service! {
    main: main,
    memory_floor_mib: 16,
    publishes: &[NETWORK_INSTANCE_STATUS.decl(), APP_FLOWS.decl(), LEASES.decl()],
    watches: &[NETWORK_INSTANCE.decl(), APP_INSTANCE.decl(), STORED.decl()],
}

/// Frames taken from one card before looking at the others (fairness between the sides).
const BATCH: usize = 64;
/// How often expired connections are reclaimed and the bus looked at.
const TICK: Duration = Duration::from_millis(500);

fn now_ms() -> u64 {
    kernel::now().as_nanos() / 1_000_000
}

async fn main(args: Args) -> i32 {
    let (mut uplink, mut ports) = match cards::find(&args) {
        Ok(c) => c,
        Err(e) => {
            error!("zedrouter: {e}");
            return 2;
        }
    };
    let mut seed = [0u8; 16];
    if kernel::random::fill(&mut seed).is_err() {
        warn!("zedrouter: no entropy: the connection table's hash is not keyed at random");
    }
    let seed = [
        u64::from_le_bytes(seed[..8].try_into().unwrap_or_default()),
        u64::from_le_bytes(seed[8..].try_into().unwrap_or_default()),
    ];
    let base = match router::settings::config_from(
        |k| args.get(k),
        ports[0].card.mac_address(),
        uplink.mac_address(),
        seed,
    ) {
        Ok(c) => c,
        Err(e) => {
            error!("zedrouter: {e}");
            return 2;
        }
    };
    let dhcp = router::settings::uplink_by_dhcp(|k| args.get(k)).then(|| UplinkDhcp {
        client: DhcpClient::new(uplink.mac_address(), seed[0] ^ seed[1].rotate_left(17)),
        dns: args.get("dns").map(|_| base.dns_upstream),
        bound: None,
    });
    let flowlog = Duration::from_secs(match args.parse_value::<u64>("flowlog_s") {
        Ok(v) => v.unwrap_or(10).max(1),
        Err(e) => {
            error!("zedrouter: {e}");
            return 2;
        }
    });
    info!(
        "zedrouter: uplink {} {} (dns {}), {} ports ({}), {} rules, {} connections per instance",
        MacDisplay(base.uplink_mac),
        if dhcp.is_some() {
            String::from("by dhcp")
        } else {
            format!(
                "{}/{} via {}",
                base.uplink_ip, base.uplink_prefix, base.uplink_gateway
            )
        },
        base.dns_upstream
            .map_or(String::from("off"), |d| format!("{d}")),
        ports.len(),
        ports
            .iter()
            .map(|p| format!("{} {}", MacDisplay(p.card.mac_address()), p.bridge))
            .collect::<Vec<_>>()
            .join(", "),
        base.rules.len(),
        base.nat_capacity,
    );
    if base.rules.is_empty() {
        warn!("zedrouter: no acl: every connection is denied (EVE's default)");
    }
    let static_instance = (args.get("subnet").is_some()
        || kernel::platform::kind() != kernel::platform::Kind::Xen)
        .then(|| Wanted {
            name: String::from(STATIC),
            kind: router::ports::KIND_LOCAL,
            subnet: format!("{}/{}", base.gateway, base.prefix),
            gateway: format!("{}", base.gateway),
            dhcp: (
                format!("{}", base.dhcp_range.0),
                format!("{}", base.dhcp_range.1),
            ),
        });
    let macs = ports.iter().map(|p| p.card.mac_address()).collect();
    let mut instances = Instances::new(base, macs);
    instances.set_switch_bridge(args.get("switch_bridge").map(String::from));
    if let Some(wanted) = static_instance {
        apply(&mut instances, STATIC, Some(wanted));
    }
    info!(
        "zedrouter: heap in use {} KiB",
        kernel::mem::heap_used() / 1024
    );
    let bus = Bus::start().await;
    let mut dhcp = dhcp;
    run(
        &mut instances,
        &mut uplink,
        &mut ports,
        &mut dhcp,
        bus,
        flowlog,
    )
    .await;
    // A card failed (its backend never connected, or broke the protocol): a router without
    // all its links serves nobody; the launcher restarts it with fresh cards.
    1
}

/// Whether every card still works.
fn cards_work(uplink: &Card, ports: &[Port]) -> bool {
    !uplink.is_broken() && ports.iter().all(|p| !p.card.is_broken())
}

/// Applies an instance's settings and logs what happened.
fn apply(instances: &mut Instances, key: &str, wanted: Option<Wanted>) {
    if let Some(what) = instances.apply(key, wanted, now_ms()) {
        if what.contains("refused") {
            warn!("zedrouter: {what}");
        } else {
            info!("zedrouter: {what}");
        }
    }
}

/// zedrouter's bus: the network instances it follows and the status it publishes (both absent
/// under microvm, where there is no bus).
struct Bus {
    config: Option<bus_io::Subscription<topics::zedagent::NetworkInstance>>,
    apps: Option<bus_io::Subscription<topics::zedagent::AppInstance>>,
    status: Option<bus_io::Publication<String, topics::zedrouter::NetworkInstanceStatus>>,
    flows: Option<bus_io::Publication<String, topics::zedrouter::AppFlows>>,
    leases: Rc<RefCell<LeaseStore>>,
}

/// The persistent lease table: the vault's copy to take back, then what is published.
#[derive(Default)]
struct LeaseStore {
    /// Once the vault's copy came: the publication.
    publication: Option<bus_io::Publication<String, Leases>>,
    /// The vault's copy, until the instances took it.
    restored: Option<Vec<(String, Leases)>>,
    /// What was last published, per instance key.
    published: BTreeMap<String, Leases>,
}

impl Bus {
    async fn start() -> Bus {
        if kernel::platform::kind() != kernel::platform::Kind::Xen {
            return Bus {
                config: None,
                apps: None,
                status: None,
                flows: None,
                leases: Rc::default(),
            };
        }
        let node = bus_io::channel::node().await;
        // The leases: the vault's copy first (waiting for the vault, so it runs beside the
        // router), then published as they change.
        let leases: Rc<RefCell<LeaseStore>> = Rc::default();
        let (store, leases_node) = (leases.clone(), node.clone());
        kernel::spawn(async move {
            match leases_node.publish_persistent(&LEASES).await {
                Ok(publication) => {
                    let table = publication
                        .shared()
                        .with(|p| p.iter().map(|(k, v)| (String::from(k), v)).collect());
                    let mut store = store.borrow_mut();
                    store.restored = Some(table);
                    store.publication = Some(publication);
                }
                Err(e) => info!("zedrouter: leases are not kept across restarts ({e})"),
            }
        });
        let config = node
            .subscribe(&NETWORK_INSTANCE)
            .map_err(|e| info!("zedrouter: no network instances from the bus ({e})"))
            .ok();
        let apps = node
            .subscribe(&APP_INSTANCE)
            .map_err(|e| info!("zedrouter: no app instances from the bus ({e})"))
            .ok();
        let status = node
            .publish(&NETWORK_INSTANCE_STATUS)
            .map_err(|e| error!("zedrouter: cannot publish the status: {e}"))
            .ok();
        let flows = node
            .publish(&APP_FLOWS)
            .map_err(|e| error!("zedrouter: cannot publish flow logs: {e}"))
            .ok();
        Bus {
            config,
            apps,
            status,
            flows,
            leases,
        }
    }

    /// Gives the instances the vault's copy of the leases once it came, then publishes each
    /// served instance's leases when they changed.
    fn sync_leases(&self, instances: &mut Instances) {
        let mut store = self.leases.borrow_mut();
        let now = now_ms();
        if let Some(table) = store.restored.take() {
            for (key, leases) in &table {
                let taken = instances.restore_leases(key, leases, now);
                info!(
                    "zedrouter: network instance {key}: {} leases from the vault, {taken} taken back now",
                    leases.leases.len()
                );
            }
        }
        let LeaseStore {
            publication: Some(publication),
            published,
            ..
        } = &mut *store
        else {
            return;
        };
        for (key, table) in instances.lease_tables(now) {
            if published.get(&key) == Some(&table) {
                continue;
            }
            match publication.publish(&key, &table) {
                Ok(()) => {
                    published.insert(key, table);
                }
                Err(e) => warn!("zedrouter: cannot publish the leases of {key}: {e}"),
            }
        }
    }

    /// Forgets the leases of an instance that went away.
    fn drop_leases(&self, key: &str) {
        let mut store = self.leases.borrow_mut();
        if let Some(publication) = &store.publication {
            let _ = publication.unpublish(&String::from(key));
        }
        store.published.remove(key);
    }

    /// Applies what changed in `zedagent/AppInstance` (the apps' ACEs); returns whether
    /// anything did. Called after [`Bus::follow`], so that new instances get their apps' rules.
    fn follow_apps(&self, instances: &mut Instances, force: bool) -> bool {
        let Some(apps) = &self.apps else {
            return false;
        };
        let mut changed = force;
        while let Some(update) = apps.try_next() {
            match update {
                Update::Link(link) => info!("zedrouter: zedagent's app instances: {link}"),
                Update::Event(_) => changed = true,
            }
        }
        if !changed {
            return false;
        }
        let list: Vec<(String, topics::zedagent::AppInstance)> = apps.with(|view| {
            view.iter()
                .map(|(k, a)| (String::from(k), a.clone()))
                .collect()
        });
        for line in instances.set_apps(&list) {
            if line.contains("refused") {
                warn!("zedrouter: {line}");
            } else {
                info!("zedrouter: {line}");
            }
        }
        true
    }

    fn publish_flows(&self, key: &str, flows: &topics::zedrouter::AppFlows) {
        if let Some(table) = &self.flows {
            if let Err(e) = table.publish(&String::from(key), flows) {
                warn!("zedrouter: cannot publish the flow log of {key}: {e}");
            }
        }
    }

    /// Applies what changed in `zedagent/NetworkInstance`; returns whether anything did.
    fn follow(&self, instances: &mut Instances) -> bool {
        let Some(config) = &self.config else {
            return false;
        };
        let mut changed = false;
        while let Some(update) = config.try_next() {
            match update {
                Update::Link(link) => info!("zedrouter: zedagent's network instances: {link}"),
                Update::Event(_) => changed = true,
            }
        }
        if !changed {
            return false;
        }
        let wanted: Vec<(String, Wanted)> = config.with(|view| {
            view.iter()
                .map(|(k, ni)| (String::from(k), Wanted::from(ni)))
                .collect()
        });
        let gone: Vec<String> = instances
            .known
            .keys()
            .filter(|k| k.as_str() != STATIC && !wanted.iter().any(|(w, _)| w == *k))
            .cloned()
            .collect();
        for key in gone {
            apply(instances, &key, None);
            self.drop_leases(&key);
            if let Some(status) = &self.status {
                let _ = status.unpublish(&key);
            }
        }
        for (key, w) in wanted {
            if key == STATIC {
                warn!(
                    "zedrouter: a network instance keyed `static` is ignored (the command line's)"
                );
                continue;
            }
            apply(instances, &key, Some(w));
        }
        true
    }

    fn publish(&self, instances: &Instances, bridges: &[String]) {
        let Some(status) = &self.status else { return };
        for (key, s) in instances.statuses(bridges, now_ms()) {
            if let Err(e) = status.publish(&key, &s) {
                warn!("zedrouter: cannot publish the status of {key}: {e}");
            }
        }
    }
}

/// The uplink's DHCP client (`uplink=dhcp`).
struct UplinkDhcp {
    client: DhcpClient,
    /// The resolver `dns=` named (`Some(None)`: `dns=off`), which the lease's does not replace.
    dns: Option<Option<core::net::Ipv4Addr>>,
    /// The lease the instances have.
    bound: Option<UplinkLease>,
}

impl UplinkDhcp {
    /// Sends what the client asks for and gives the instances the lease when it changed.
    fn apply(
        &mut self,
        step: Step,
        instances: &mut Instances,
        uplink: &mut Card,
        stats: &mut Stats,
    ) {
        if let Some(frame) = step.send {
            if !transmit(uplink, &frame, stats) {
                self.client.unsent(now_ms());
            }
        }
        let unspecified = core::net::Ipv4Addr::UNSPECIFIED;
        let said = match step.event {
            Some(Event::Bound(lease)) if self.bound != Some(lease) => {
                // Without a router option the server is the best guess at a gateway.
                let gateway = lease.gateway.unwrap_or(lease.server);
                let dns = self.dns.unwrap_or(lease.dns);
                info!(
                    "zedrouter: uplink lease {}/{} via {gateway} (dns {}) for {} s from {}",
                    lease.ip,
                    lease.prefix,
                    dns.map_or(String::from("off"), |d| format!("{d}")),
                    lease.lease_secs,
                    lease.server,
                );
                self.bound = Some(lease);
                instances.set_uplink(lease.ip, lease.prefix, gateway, dns, now_ms())
            }
            Some(Event::Lost(ip)) => {
                warn!("zedrouter: uplink lease {ip} lost: no uplink until the next one");
                self.bound = None;
                instances.set_uplink(unspecified, 0, unspecified, self.dns.flatten(), now_ms())
            }
            _ => Vec::new(),
        };
        for line in said {
            warn!("zedrouter: {line}");
        }
    }
}

#[derive(Default)]
struct Stats {
    tx_full: u64,
    acks_logged: u64,
    last_counters: Vec<String>,
}

/// Copies `frame` into a transmit buffer of `card`.
/// Returns whether the card took it.
fn transmit(card: &mut Card, frame: &[u8], stats: &mut Stats) -> bool {
    match card.transmit_buffer() {
        Some(mut tx) => {
            let n = frame.len().min(card.max_frame_len());
            tx.bytes_mut(n).copy_from_slice(&frame[..n]);
            card.send(tx);
            true
        }
        None => {
            stats.tx_full += 1;
            false
        }
    }
}

/// Moves frames from the uplink to the instances they belong to; returns how many were taken.
fn drain_uplink(
    instances: &mut Instances,
    uplink: &mut Card,
    ports: &mut [Port],
    dhcp: &mut Option<UplinkDhcp>,
    stats: &mut Stats,
) -> usize {
    let now = now_ms();
    let configs = instances.configs();
    let mut taken = 0;
    let mut dhcp_steps = Vec::new();
    while taken < BATCH {
        let Some(mut frame) = uplink.receive() else {
            break;
        };
        taken += 1;
        let len = frame.len();
        if let Some(d) = dhcp.as_mut() {
            if DhcpClient::wants(&frame.bytes()[..len]) {
                dhcp_steps.push(d.client.handle(&frame.bytes()[..len], now));
                uplink.recycle(frame);
                continue;
            }
        }
        match uplink_owner(&frame.bytes()[..len], &configs) {
            None => {}
            Some(Owner::All) => {
                let copy: Vec<u8> = frame.bytes().to_vec();
                for (_, r) in instances.routers.iter_mut().flatten() {
                    let mut scratch = copy.clone();
                    r.handle(Side::Uplink, &mut scratch, now);
                }
            }
            Some(Owner::One(i)) => {
                if let Some((_, r)) = instances.routers[i].as_mut() {
                    if let Verdict::Forward(_, out) =
                        r.handle(Side::Uplink, frame.bytes_mut(len), now)
                    {
                        transmit(&mut ports[i].card, &frame.bytes()[..out], stats);
                    }
                }
            }
        }
        uplink.recycle(frame);
    }
    if let Some(d) = dhcp.as_mut() {
        for step in dhcp_steps {
            d.apply(step, instances, uplink, stats);
        }
    }
    taken
}

/// Moves frames from port `i` to the uplink; returns how many were taken.
fn drain_port(
    router: Option<&mut Router>,
    port: &mut Port,
    uplink: &mut Card,
    stats: &mut Stats,
) -> usize {
    let now = now_ms();
    let mut taken = 0;
    let mut router = router;
    while taken < BATCH {
        let Some(mut frame) = port.card.receive() else {
            break;
        };
        taken += 1;
        let len = frame.len();
        if let Some(r) = router.as_deref_mut() {
            if let Verdict::Forward(_, out) = r.handle(Side::App, frame.bytes_mut(len), now) {
                transmit(uplink, &frame.bytes()[..out], stats);
            }
        }
        port.card.recycle(frame);
    }
    taken
}

fn send_output(
    instances: &mut Instances,
    uplink: &mut Card,
    ports: &mut [Port],
    stats: &mut Stats,
) {
    for (i, slot) in instances.routers.iter_mut().enumerate() {
        let Some((_, r)) = slot else { continue };
        for (side, frame) in r.take_output() {
            let card = match side {
                Side::Uplink => &mut *uplink,
                Side::App => &mut ports[i].card,
            };
            transmit(card, &frame, stats);
        }
    }
}

fn protocol_name(p: u8) -> &'static str {
    match p {
        PROTO_TCP => "tcp",
        PROTO_UDP => "udp",
        1 => "icmp",
        _ => "ip",
    }
}

/// Publishes each app's flow records and DNS answers (`zedrouter/AppFlows`), logs them and
/// the counters per instance.
fn report(instances: &mut Instances, stats: &mut Stats, bus: &Bus) {
    let now = now_ms();
    let wall = kernel::wall_clock().and_then(|t| u64::try_from(t.0.div_euclid(1_000_000)).ok());
    for (who, flows) in instances.take_app_flows(now, wall) {
        for f in &flows.flows {
            info!(
                "zedrouter: flow {} {}:{} -> {}:{} {} acl {} {} tx {}/{} rx {}/{} app {who}",
                protocol_name(f.protocol),
                core::net::Ipv4Addr::from(f.src.0),
                f.src.1,
                core::net::Ipv4Addr::from(f.dst.0),
                f.dst.1,
                if f.inbound { "in" } else { "out" },
                f.acl_id,
                if f.accepted { "Accept" } else { "Drop" },
                f.tx_packets,
                f.tx_bytes,
                f.rx_packets,
                f.rx_bytes,
            );
        }
        for d in &flows.dns {
            let addrs: Vec<core::net::Ipv4Addr> = d
                .addrs
                .iter()
                .map(|a| core::net::Ipv4Addr::from(*a))
                .collect();
            info!("zedrouter: dns {} -> {:?} app {who}", d.name, addrs);
        }
        bus.publish_flows(&who, &flows);
    }
    // Counters, when they changed since the last report.
    let mut lines = Vec::new();
    for (port, slot) in instances.routers.iter_mut().enumerate() {
        let Some((key, router)) = slot else { continue };
        let c = router.counters().clone();
        let drops: Vec<_> = router.drops().filter(|d| d.1 > 0).collect();
        lines.push(format!(
            "zedrouter: counters {key} port {} to_uplink {} to_app {} consumed {} connections {} flows_lost {} drops {:?}",
            port + 1,
            c.to_uplink,
            c.to_app,
            c.consumed,
            router.nat().len(),
            router.flows_lost(),
            drops,
        ));
    }
    lines.push(format!(
        "zedrouter: tx_full {} heap {} KiB",
        stats.tx_full,
        kernel::mem::heap_used() / 1024
    ));
    if lines != stats.last_counters {
        for line in &lines {
            info!("{line}");
        }
        stats.last_counters = lines;
    }
}

fn log_leases(instances: &Instances, stats: &mut Stats) {
    let acks: u64 = instances
        .routers
        .iter()
        .flatten()
        .map(|(_, r)| r.counters().dhcp_acks)
        .sum();
    if acks == stats.acks_logged {
        return;
    }
    stats.acks_logged = acks;
    for (key, r) in instances.routers.iter().flatten() {
        for l in r.dhcp().leases().iter().filter(|l| l.expires_ms > now_ms()) {
            info!(
                "zedrouter: dhcp lease {} -> {} ({key})",
                l.ip,
                MacDisplay(l.mac)
            );
        }
    }
}

async fn run(
    instances: &mut Instances,
    uplink: &mut Card,
    ports: &mut [Port],
    dhcp: &mut Option<UplinkDhcp>,
    bus: Bus,
    flowlog: Duration,
) {
    let bridges: Vec<String> = ports.iter().map(|p| p.bridge.clone()).collect();
    let mut stats = Stats::default();
    let mut next_tick = kernel::now().saturating_add(TICK);
    let mut next_report = kernel::now().saturating_add(flowlog);
    bus.follow(instances);
    bus.follow_apps(instances, true);
    bus.publish(instances, &bridges);
    loop {
        uplink.handle_interrupt();
        for p in ports.iter_mut() {
            p.card.handle_interrupt();
        }
        let mut busy = drain_uplink(instances, uplink, ports, dhcp, &mut stats) == BATCH;
        for (i, port) in ports.iter_mut().enumerate() {
            let router = instances.routers[i].as_mut().map(|(_, r)| r);
            busy |= drain_port(router, port, uplink, &mut stats) == BATCH;
        }
        send_output(instances, uplink, ports, &mut stats);
        uplink.flush();
        for p in ports.iter_mut() {
            p.card.flush();
        }
        log_leases(instances, &mut stats);
        let now = kernel::now();
        if now >= next_tick {
            if !cards_work(uplink, ports) {
                error!("zedrouter: a network card failed: exiting, to be restarted");
                return;
            }
            for (_, r) in instances.routers.iter_mut().flatten() {
                r.tick(now_ms());
            }
            if let Some(d) = dhcp.as_mut() {
                let step = d.client.poll(now_ms());
                d.apply(step, instances, uplink, &mut stats);
                uplink.flush();
            }
            let instances_changed = bus.follow(instances);
            bus.sync_leases(instances);
            if bus.follow_apps(instances, instances_changed) || instances_changed {
                bus.publish(instances, &bridges);
            }
            next_tick = now.saturating_add(TICK);
        }
        if now >= next_report {
            report(instances, &mut stats, &bus);
            bus.publish(instances, &bridges);
            next_report = now.saturating_add(flowlog);
        }
        if busy {
            kernel::yield_now().await;
            continue;
        }
        let mut waits: Vec<Pin<Box<dyn Future<Output = ()>>>> = Vec::with_capacity(ports.len() + 2);
        waits.push(cards::event(uplink.event_source()));
        for p in ports.iter() {
            waits.push(cards::event(p.card.event_source()));
        }
        waits.push(Box::pin(kernel::sleep_until(next_tick.min(next_report))));
        poll_fn(|cx| {
            let mut ready = false;
            for w in waits.iter_mut() {
                ready |= w.as_mut().poll(cx).is_ready();
            }
            if ready {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}
