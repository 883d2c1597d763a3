//! The router: one local network instance between an app-side card and an uplink card.
//!
//! [`Router::handle`] takes a frame from either side and rewrites it in place for the other
//! side ([`Verdict::Forward`]), answers it itself ([`Verdict::Consumed`]: ARP, ICMP echo to
//! its own addresses, DHCP; replies wait in [`Router::take_output`]), or drops it with a
//! reason ([`Verdict::Dropped`]) that [`Counters`] counts. It never allocates on the
//! forwarding path; replies and flow records do.
//!
//! App side: the router is the gateway (`gateway`, in `gateway/prefix`), serves DHCP from
//! `dhcp_range` and forwards DNS sent to the gateway to `dns_upstream`. Traffic from the app to
//! anywhere off its subnet is checked against the ACL when a connection opens (default deny),
//! source-NATed to `uplink_ip`, and sent to the uplink's gateway (or the host itself when on
//! the uplink subnet). From the uplink only replies of open connections and connections to a
//! port map pass. TCP connections open only with a SYN.

use alloc::vec::Vec;
use core::net::Ipv4Addr;

use crate::acl::{Acl, AclError, Action, Query, Rule};
use crate::arp::ArpCache;
use crate::dhcp::{DhcpConfig, DhcpServer};
use crate::dns::{parse_answer, DnsRecords};
use crate::flow::{FlowLog, FlowRecord};
use crate::nat::{Endpoint, Entry, NatTable, Slot, Timeouts};
pub use crate::verdict::{Counters, Reason, Verdict, DROP_REASONS};
use crate::wire::{
    self, build_arp, build_echo_reply, build_udp, parse, Arp, Endpoints, Ipv4, Mac, Malformed,
    Packet, Transport, BROADCAST_MAC, PROTO_UDP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN,
};

/// Which card a frame came from or goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The local network instance (apps).
    App,
    /// The uplink.
    Uplink,
}

/// A network instance's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// The app-side card's MAC.
    pub app_mac: Mac,
    /// The uplink card's MAC.
    pub uplink_mac: Mac,
    /// The router's address on the app subnet (gateway, DHCP server, DNS forwarder).
    pub gateway: Ipv4Addr,
    /// App subnet prefix length (8..=30).
    pub prefix: u8,
    /// Addresses DHCP leases (inclusive, inside the subnet; at most 4096).
    pub dhcp_range: (Ipv4Addr, Ipv4Addr),
    /// DHCP lease length, seconds.
    pub lease_secs: u32,
    /// The router's address on the uplink.
    pub uplink_ip: Ipv4Addr,
    /// Uplink subnet prefix length.
    pub uplink_prefix: u8,
    /// The uplink's gateway.
    pub uplink_gateway: Ipv4Addr,
    /// Where DNS queries to the gateway go (`None`: DNS is not offered).
    pub dns_upstream: Option<Ipv4Addr>,
    /// Most connections at once.
    pub nat_capacity: usize,
    /// Dynamic uplink ports (inclusive).
    pub nat_ports: (u16, u16),
    /// Connection timeouts.
    pub timeouts: Timeouts,
    /// ACL rules (EVE ACEs).
    pub rules: Vec<Rule>,
    /// Random seed for the connection table's hash.
    pub seed: [u64; 2],
}

/// A configuration the router refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// An addressing setting is impossible (which one, and why).
    Addressing(&'static str),
    /// An ACL rule does not parse or clashes.
    Acl(AclError),
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::Addressing(why) => f.write_str(why),
            ConfigError::Acl(e) => write!(f, "{e}"),
        }
    }
}

fn in_subnet(addr: Ipv4Addr, net: Ipv4Addr, prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    };
    u32::from(addr) & mask == u32::from(net) & mask
}

/// Checks the uplink's addressing against the app subnet.
fn check_uplink(config: &Config) -> Result<(), ConfigError> {
    use ConfigError::Addressing as A;
    if config.uplink_prefix > 32
        || !in_subnet(
            config.uplink_gateway,
            config.uplink_ip,
            config.uplink_prefix,
        )
    {
        return Err(A("the uplink gateway must be on the uplink subnet"));
    }
    if in_subnet(config.uplink_ip, config.gateway, config.prefix) {
        return Err(A("the uplink address must be outside the app subnet"));
    }
    Ok(())
}

/// Most replies waiting in the output queue.
const MAX_OUTPUT: usize = 64;

/// The router.
pub struct Router {
    config: Config,
    nat: NatTable,
    acl: Acl,
    dhcp: DhcpServer,
    dns: DnsRecords,
    flows: FlowLog,
    app_arp: ArpCache,
    uplink_arp: ArpCache,
    output: Vec<(Side, Vec<u8>)>,
    /// The app port maps target: the address last acknowledged by DHCP.
    app_ip: Option<Ipv4Addr>,
    counters: Counters,
}

impl Router {
    /// A router for `config`, or why the configuration is refused.
    pub fn new(config: Config) -> Result<Router, ConfigError> {
        use ConfigError::Addressing as A;
        if !(8..=30).contains(&config.prefix) {
            return Err(A("the app subnet prefix must be 8..=30"));
        }
        let (lo, hi) = config.dhcp_range;
        if !in_subnet(lo, config.gateway, config.prefix)
            || !in_subnet(hi, config.gateway, config.prefix)
            || lo > hi
        {
            return Err(A(
                "the DHCP range must be inside the app subnet, first <= last",
            ));
        }
        if u32::from(hi) - u32::from(lo) >= 4096 {
            return Err(A("the DHCP range holds at most 4096 addresses"));
        }
        check_uplink(&config)?;
        let acl = Acl::new(config.rules.clone()).map_err(ConfigError::Acl)?;
        let dhcp = DhcpServer::new(DhcpConfig {
            server: config.gateway,
            prefix: config.prefix,
            range: config.dhcp_range,
            dns: config.dns_upstream.map(|_| config.gateway),
            lease_secs: config.lease_secs.max(60),
        });
        Ok(Router {
            nat: NatTable::new(
                config.nat_capacity,
                config.nat_ports,
                config.seed,
                config.timeouts,
            ),
            acl,
            dhcp,
            dns: DnsRecords::new(256),
            flows: FlowLog::new(1024),
            app_arp: ArpCache::new(64),
            uplink_arp: ArpCache::new(64),
            output: Vec::new(),
            app_ip: None,
            counters: Counters::default(),
            config,
        })
    }

    /// Replaces the ACL (a changed ACE list); on error the previous rules stay. Open
    /// connections keep going; their rule indexes are re-resolved by id, and connections whose
    /// rule went away are closed.
    pub fn set_rules(&mut self, rules: Vec<Rule>) -> Result<(), AclError> {
        let acl = Acl::new(rules)?;
        let slots: Vec<Slot> = self.nat.iter().map(|(s, _)| s).collect();
        for s in slots {
            let Some(rule) = self.nat.get(s).and_then(|e| e.rule) else {
                continue;
            };
            let id = self.acl.rules().get(usize::from(rule)).map(|r| r.id);
            match acl.rules().iter().position(|r| Some(r.id) == id) {
                Some(i) => {
                    if let Some(e) = self.nat.get_mut(s) {
                        e.rule = Some(i as u16);
                    }
                }
                None => self.nat.remove(s),
            }
        }
        self.acl = acl;
        Ok(())
    }

    /// Gives the uplink a new address (its DHCP lease was bound, renewed or lost: `ip`
    /// unspecified, then frames to the uplink are dropped as `no_uplink`), subnet, gateway and
    /// resolver. Refused, with the previous addressing kept, when the gateway is off the
    /// subnet or the address is inside the app subnet. A new address ends every connection
    /// (each one's flow record is kept): their NAT mappings were to the old one. Returns how
    /// many ended.
    pub fn set_uplink(
        &mut self,
        ip: Ipv4Addr,
        prefix: u8,
        gateway: Ipv4Addr,
        dns: Option<Ipv4Addr>,
        now_ms: u64,
    ) -> Result<usize, ConfigError> {
        let mut config = self.config.clone();
        config.uplink_ip = ip;
        config.uplink_prefix = prefix;
        config.uplink_gateway = gateway;
        config.dns_upstream = dns;
        check_uplink(&config)?;
        let moved = ip != self.config.uplink_ip;
        let ended = if moved { self.nat.len() } else { 0 };
        if moved {
            self.collect_ended();
            for (_, e) in self.nat.iter() {
                self.flows
                    .finish(FlowRecord::of_entry(e, self.acl_id(e.rule)));
            }
            let c = &self.config;
            self.nat = NatTable::new(c.nat_capacity, c.nat_ports, c.seed, c.timeouts);
        }
        if moved || gateway != self.config.uplink_gateway {
            self.uplink_arp = ArpCache::new(64);
        }
        self.dhcp.set_dns(dns.map(|_| config.gateway));
        self.config = config;
        if !ip.is_unspecified() {
            self.start(now_ms);
        }
        Ok(ended)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Drop counts with their names.
    pub fn drops(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Malformed::ALL
            .iter()
            .map(|m| Reason::Malformed(*m))
            .chain(Reason::OTHERS)
            .map(|r| (r.name(), self.counters.drops[r.index()]))
    }

    /// The connection table.
    pub fn nat(&self) -> &NatTable {
        &self.nat
    }

    /// DHCP leases.
    pub fn dhcp(&self) -> &DhcpServer {
        &self.dhcp
    }

    /// Takes back a lease an earlier router gave (see [`DhcpServer::restore`]).
    pub fn restore_lease(&mut self, mac: Mac, ip: Ipv4Addr, now_ms: u64) -> bool {
        self.dhcp.restore(mac, ip, now_ms)
    }

    /// DNS records.
    pub fn dns(&mut self) -> &mut DnsRecords {
        &mut self.dns
    }

    /// Queues the ARP requests that resolve the uplink gateway (call at start; nothing while
    /// the uplink has no address).
    pub fn start(&mut self, now_ms: u64) {
        if self.config.uplink_ip.is_unspecified() {
            return;
        }
        let gw = self.config.uplink_gateway;
        self.arp_request(Side::Uplink, gw, now_ms);
    }

    /// Frames the router sends itself (replies, ARP requests), to send in order.
    pub fn take_output(&mut self) -> Vec<(Side, Vec<u8>)> {
        // Taking an empty vector allocates nothing: this runs once per batch of frames.
        core::mem::take(&mut self.output)
    }

    /// Reclaims some expired connections (call every few hundred ms) and turns them into
    /// flow records.
    pub fn tick(&mut self, now_ms: u64) {
        self.nat.expire_some(now_ms, 1024);
        self.collect_ended();
    }

    fn collect_ended(&mut self) {
        for e in self.nat.take_ended() {
            let id = self.acl_id(e.rule);
            self.flows.finish(FlowRecord::of_entry(&e, id));
        }
    }

    fn acl_id(&self, rule: Option<u16>) -> i32 {
        rule.and_then(|r| self.acl.rules().get(usize::from(r)))
            .map_or(0, |r| r.id)
    }

    /// Finished and dropped flow records since the last call, plus a snapshot of every open
    /// connection (`end_ms` = its last packet so far).
    pub fn take_flows(&mut self) -> Vec<FlowRecord> {
        self.collect_ended();
        let mut out = self.flows.take();
        for (_, e) in self.nat.iter() {
            out.push(FlowRecord::of_entry(e, self.acl_id(e.rule)));
        }
        out
    }

    /// Flow records lost because no one took them in time.
    pub fn flows_lost(&self) -> u64 {
        self.flows.lost() + self.nat.ended_lost()
    }

    fn push(&mut self, side: Side, frame: Vec<u8>) {
        if self.output.len() < MAX_OUTPUT {
            self.output.push((side, frame));
        } else {
            self.counters.output_full += 1;
        }
    }

    /// Answers a TCP segment of no connection we know (one opened before this router
    /// started: zedrouter restarted, its NAT table gone) with a reset, so that its end closes
    /// the connection at once instead of retrying into silence. Only segments of an
    /// established connection (ACK, no SYN, no RST) are answered: a SYN the ACL refused stays
    /// a silent drop, as EVE's default deny is.
    fn reset(&mut self, side: Side, frame: &[u8], p: &Ipv4) {
        let Transport::Tcp { flags, .. } = p.transport else {
            return;
        };
        if flags & (TCP_ACK | TCP_SYN | TCP_RST) != TCP_ACK {
            return;
        }
        let ends = Endpoints {
            src_mac: self.my_mac(side),
            dst_mac: p.src_mac,
            src: p.dst,
            dst: p.src,
        };
        if let Some(reset) = wire::build_tcp_reset(frame, p, &ends) {
            self.counters.resets += 1;
            self.push(side, reset);
        }
    }

    fn my_mac(&self, side: Side) -> Mac {
        match side {
            Side::App => self.config.app_mac,
            Side::Uplink => self.config.uplink_mac,
        }
    }

    fn my_ip(&self, side: Side) -> Ipv4Addr {
        match side {
            Side::App => self.config.gateway,
            Side::Uplink => self.config.uplink_ip,
        }
    }

    fn arp_request(&mut self, side: Side, ip: Ipv4Addr, now_ms: u64) {
        let cache = match side {
            Side::App => &mut self.app_arp,
            Side::Uplink => &mut self.uplink_arp,
        };
        if !cache.should_ask(ip, now_ms) {
            return;
        }
        let arp = Arp {
            op: 1,
            sender_mac: self.my_mac(side),
            sender_ip: self.my_ip(side),
            target_mac: [0; 6],
            target_ip: ip,
        };
        self.push(side, build_arp(&arp, BROADCAST_MAC));
    }

    /// Handles one frame from `side`; see [`Verdict`].
    pub fn handle(&mut self, side: Side, frame: &mut [u8], now_ms: u64) -> Verdict {
        let verdict = match parse(frame) {
            Err(m) => Verdict::Dropped(Reason::Malformed(m)),
            Ok(Packet::Arp(arp)) => self.arp(side, &arp, now_ms),
            Ok(Packet::Ipv4(p)) => match side {
                Side::App => self.app_packet(frame, p, now_ms),
                Side::Uplink => self.uplink_packet(frame, p, now_ms),
            },
        };
        match verdict {
            Verdict::Forward(Side::Uplink, _) => self.counters.to_uplink += 1,
            Verdict::Forward(Side::App, _) => self.counters.to_app += 1,
            Verdict::Consumed => self.counters.consumed += 1,
            Verdict::Dropped(r) => self.counters.drops[r.index()] += 1,
        }
        verdict
    }

    fn arp(&mut self, side: Side, arp: &Arp, now_ms: u64) -> Verdict {
        let (net, prefix) = match side {
            Side::App => (self.config.gateway, self.config.prefix),
            Side::Uplink => (self.config.uplink_ip, self.config.uplink_prefix),
        };
        let me = self.my_ip(side);
        if !in_subnet(arp.sender_ip, net, prefix) || arp.sender_ip == me {
            return Verdict::Dropped(Reason::NotForUs);
        }
        if arp.target_ip != me {
            return Verdict::Dropped(Reason::NotForUs);
        }
        match side {
            Side::App => self.app_arp.learn(arp.sender_ip, arp.sender_mac, now_ms),
            Side::Uplink => self.uplink_arp.learn(arp.sender_ip, arp.sender_mac, now_ms),
        }
        if arp.op == 1 {
            let reply = Arp {
                op: 2,
                sender_mac: self.my_mac(side),
                sender_ip: me,
                target_mac: arp.sender_mac,
                target_ip: arp.sender_ip,
            };
            self.push(side, build_arp(&reply, arp.sender_mac));
        }
        Verdict::Consumed
    }

    fn echo_reply(&mut self, side: Side, frame: &[u8], p: &Ipv4) -> Verdict {
        let ends = Endpoints {
            src_mac: self.my_mac(side),
            dst_mac: p.src_mac,
            src: p.dst,
            dst: p.src,
        };
        let reply = build_echo_reply(frame, p, &ends);
        self.push(side, reply);
        Verdict::Consumed
    }

    fn serve_dhcp(&mut self, frame: &[u8], p: &Ipv4, now_ms: u64) -> Verdict {
        let payload = &frame[p.payload_range(frame)];
        match self.dhcp.handle(payload, now_ms) {
            Ok(reply) => {
                if reply.ack {
                    self.counters.dhcp_acks += 1;
                    self.app_arp.learn(reply.yiaddr, reply.client_mac, now_ms);
                    self.app_ip = Some(reply.yiaddr);
                }
                let ends = Endpoints {
                    src_mac: self.config.app_mac,
                    dst_mac: BROADCAST_MAC,
                    src: self.config.gateway,
                    dst: Ipv4Addr::BROADCAST,
                };
                let frame = build_udp(&ends, 67, 68, &reply.payload);
                self.push(Side::App, frame);
                Verdict::Consumed
            }
            Err(_) => Verdict::Dropped(Reason::Dhcp),
        }
    }

    fn app_packet(&mut self, frame: &mut [u8], mut p: Ipv4, now_ms: u64) -> Verdict {
        let c = &self.config;
        if p.dst_mac != c.app_mac && p.dst_mac != BROADCAST_MAC {
            return Verdict::Dropped(Reason::NotForUs);
        }
        if let Transport::Udp { src: 68, dst: 67 } = p.transport {
            return self.serve_dhcp(frame, &p, now_ms);
        }
        if p.dst_mac == BROADCAST_MAC {
            return Verdict::Dropped(Reason::NotForUs);
        }
        if !in_subnet(p.src, c.gateway, c.prefix) || p.src == c.gateway {
            return Verdict::Dropped(Reason::Spoofed);
        }
        // An address leased to another MAC: an app claiming another's address (and ACL).
        if self
            .dhcp
            .lease_of_ip(p.src, now_ms)
            .is_some_and(|l| l.mac != p.src_mac)
        {
            return Verdict::Dropped(Reason::Spoofed);
        }
        let (sport, dport) = match p.transport {
            Transport::IcmpEcho { kind: 8, ident } => {
                if p.dst == c.gateway {
                    return self.echo_reply(Side::App, frame, &p);
                }
                // The identifier is the app's "port"; the remote has none.
                (ident, 0)
            }
            Transport::Tcp { src, dst, .. } | Transport::Udp { src, dst } => (src, dst),
            _ => return Verdict::Dropped(Reason::Unsupported),
        };
        let app = Endpoint::new(p.src, sport);
        let app_sees = Endpoint::new(p.dst, dport);
        let dns_query = p.dst == c.gateway && p.protocol == PROTO_UDP && dport == 53;
        let remote = if dns_query {
            match c.dns_upstream {
                Some(up) => Endpoint::new(up, 53),
                None => return Verdict::Dropped(Reason::Unsupported),
            }
        } else if p.dst == c.gateway
            || in_subnet(p.dst, c.gateway, c.prefix)
            || p.dst.is_broadcast()
            || p.dst.is_multicast()
        {
            return Verdict::Dropped(Reason::NotForUs);
        } else {
            app_sees
        };
        if c.uplink_ip.is_unspecified() {
            return Verdict::Dropped(Reason::NoUplink);
        }
        let slot = match self.nat.find_inside(p.protocol, app, app_sees, now_ms) {
            Some(s) => s,
            None => {
                match self.open_outbound(&p, app, app_sees, remote, dns_query, frame.len(), now_ms)
                {
                    Ok(s) => s,
                    Err(r) => {
                        if r == Reason::NoConnection {
                            self.reset(Side::App, frame, &p);
                        }
                        return Verdict::Dropped(r);
                    }
                }
            }
        };
        let Some(entry) = self.nat.get(slot).copied() else {
            return Verdict::Dropped(Reason::NoConnection);
        };
        if let Err(r) = self.pass(slot, &entry, &p, true, now_ms) {
            return Verdict::Dropped(r);
        }
        let next_hop = if in_subnet(
            entry.remote.ip,
            self.config.uplink_ip,
            self.config.uplink_prefix,
        ) {
            entry.remote.ip
        } else {
            self.config.uplink_gateway
        };
        let Some(mac) = self.uplink_arp.get(next_hop) else {
            self.arp_request(Side::Uplink, next_hop, now_ms);
            return Verdict::Dropped(Reason::ArpPending);
        };
        if !wire::decrement_ttl(frame, &mut p) {
            return Verdict::Dropped(Reason::TtlExpired);
        }
        wire::set_address(frame, &mut p, true, self.config.uplink_ip);
        wire::set_port(frame, &mut p, true, entry.uplink_port);
        wire::set_address(frame, &mut p, false, entry.remote.ip);
        if !matches!(p.transport, Transport::IcmpEcho { .. }) {
            wire::set_port(frame, &mut p, false, entry.remote.port);
        }
        wire::set_macs(frame, self.config.uplink_mac, mac);
        Verdict::Forward(Side::Uplink, wire::ETH_LEN + p.total_len)
    }

    /// Opens a connection the app starts, if the ACL allows it.
    #[allow(clippy::too_many_arguments)]
    fn open_outbound(
        &mut self,
        p: &Ipv4,
        app: Endpoint,
        app_sees: Endpoint,
        remote: Endpoint,
        dns_query: bool,
        len: usize,
        now_ms: u64,
    ) -> Result<Slot, Reason> {
        if let Transport::Tcp { flags, .. } = p.transport {
            if flags & (TCP_SYN | TCP_ACK | TCP_RST) != TCP_SYN {
                return Err(Reason::NoConnection);
            }
        }
        let rule = if dns_query {
            None
        } else {
            let q = Query {
                protocol: p.protocol,
                remote: remote.ip,
                lport: app.port,
                fport: remote.port,
                inbound: false,
                app: Some(p.src_mac),
            };
            let dns = &self.dns;
            let found = self.acl.evaluate(&q, |h, a| dns.host_has(h, a));
            let record = FlowRecord {
                protocol: p.protocol,
                src: app,
                dst: app_sees,
                inbound: false,
                acl_id: self.acl_id(found.map(|i| i as u16)),
                action: crate::flow::FlowAction::Drop,
                start_ms: now_ms,
                end_ms: now_ms,
                counters: Default::default(),
            };
            match found {
                None => {
                    self.flows.drop_packet(record, true, len, now_ms);
                    return Err(Reason::AclDrop);
                }
                Some(i) if matches!(self.acl.rules()[i].action, Action::Drop) => {
                    self.flows.drop_packet(record, true, len, now_ms);
                    return Err(Reason::AclDrop);
                }
                Some(i) => Some(i as u16),
            }
        };
        let entry = Entry {
            protocol: p.protocol,
            app,
            app_sees,
            uplink_port: 0,
            remote,
            inbound: false,
            rule,
            start_ms: now_ms,
            last_ms: now_ms,
            established: false,
            closing: false,
            counters: Default::default(),
        };
        let acl = &self.acl;
        self.nat
            .open(entry, |proto, port| acl.is_mapped(proto, port))
            .map_err(|_| Reason::NatFull)
    }

    /// Applies the connection's rate limit and counts the packet; `tx` is from the app.
    fn pass(
        &mut self,
        slot: Slot,
        entry: &Entry,
        p: &Ipv4,
        tx: bool,
        now_ms: u64,
    ) -> Result<(), Reason> {
        if let Some(rule) = entry.rule {
            if !self.acl.admit(usize::from(rule), now_ms) {
                let (src, dst) = if entry.inbound {
                    (entry.app_sees, entry.app)
                } else {
                    (entry.app, entry.app_sees)
                };
                let record = FlowRecord {
                    protocol: entry.protocol,
                    src,
                    dst,
                    inbound: entry.inbound,
                    acl_id: self.acl_id(Some(rule)),
                    action: crate::flow::FlowAction::Drop,
                    start_ms: now_ms,
                    end_ms: now_ms,
                    counters: Default::default(),
                };
                self.flows.drop_packet(record, tx, p.total_len, now_ms);
                if !tx {
                    self.counters.limited_to_app += 1;
                }
                return Err(Reason::RateLimit);
            }
        }
        let Some(e) = self.nat.get_mut(slot) else {
            return Err(Reason::NoConnection);
        };
        e.counters.count(tx, p.total_len);
        e.last_ms = now_ms;
        if let Transport::Tcp { flags, .. } = p.transport {
            if flags & (TCP_FIN | TCP_RST) != 0 {
                e.closing = true;
            }
            if e.counters.tx_packets > 0 && e.counters.rx_packets > 0 && flags & TCP_ACK != 0 {
                e.established = true;
            }
        }
        Ok(())
    }

    fn uplink_packet(&mut self, frame: &mut [u8], mut p: Ipv4, now_ms: u64) -> Verdict {
        let c = &self.config;
        if c.uplink_ip.is_unspecified() {
            return Verdict::Dropped(Reason::NoUplink);
        }
        if (p.dst_mac != c.uplink_mac && p.dst_mac != BROADCAST_MAC) || p.dst != c.uplink_ip {
            return Verdict::Dropped(Reason::NotForUs);
        }
        let (sport, dport) = match p.transport {
            Transport::Tcp { src, dst, .. } | Transport::Udp { src, dst } => (src, dst),
            Transport::IcmpEcho { ident, .. } => (0, ident),
            _ => return Verdict::Dropped(Reason::Unsupported),
        };
        let remote = Endpoint::new(p.src, sport);
        let slot = match self.nat.find_outside(p.protocol, dport, remote, now_ms) {
            Some(s) => s,
            None => {
                if let Transport::IcmpEcho { kind: 8, .. } = p.transport {
                    return self.echo_reply(Side::Uplink, frame, &p);
                }
                match self.open_inbound(&p, remote, dport, now_ms) {
                    Ok(s) => s,
                    Err(r) => {
                        if r == Reason::NoConnection {
                            self.reset(Side::Uplink, frame, &p);
                        }
                        return Verdict::Dropped(r);
                    }
                }
            }
        };
        let Some(entry) = self.nat.get(slot).copied() else {
            return Verdict::Dropped(Reason::NoConnection);
        };
        if let Err(r) = self.pass(slot, &entry, &p, false, now_ms) {
            return Verdict::Dropped(r);
        }
        if entry.remote.port == 53
            && entry.app_sees.ip == self.config.gateway
            && p.protocol == PROTO_UDP
        {
            let range = p.payload_range(frame);
            if let Ok(answer) = parse_answer(&frame[range]) {
                self.counters.dns_answers += 1;
                self.dns.record(answer, Some(entry.app.ip), now_ms);
            }
        }
        let Some(mac) = self.app_arp.get(entry.app.ip) else {
            self.arp_request(Side::App, entry.app.ip, now_ms);
            return Verdict::Dropped(Reason::ArpPending);
        };
        if !wire::decrement_ttl(frame, &mut p) {
            return Verdict::Dropped(Reason::TtlExpired);
        }
        wire::set_address(frame, &mut p, false, entry.app.ip);
        wire::set_port(frame, &mut p, false, entry.app.port);
        wire::set_address(frame, &mut p, true, entry.app_sees.ip);
        if !matches!(p.transport, Transport::IcmpEcho { .. }) {
            wire::set_port(frame, &mut p, true, entry.app_sees.port);
        }
        wire::set_macs(frame, self.config.app_mac, mac);
        Verdict::Forward(Side::App, wire::ETH_LEN + p.total_len)
    }

    /// Opens a connection from the uplink through a port map, if one matches.
    fn open_inbound(
        &mut self,
        p: &Ipv4,
        remote: Endpoint,
        dport: u16,
        now_ms: u64,
    ) -> Result<Slot, Reason> {
        match p.transport {
            Transport::Tcp { flags, .. } if flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN => {}
            Transport::Udp { .. } => {}
            _ => return Err(Reason::NoConnection),
        }
        let q = Query {
            protocol: p.protocol,
            remote: remote.ip,
            lport: dport,
            fport: remote.port,
            inbound: true,
            app: None,
        };
        let dns = &self.dns;
        let rule = self
            .acl
            .evaluate(&q, |h, a| dns.host_has(h, a))
            .ok_or(Reason::NoConnection)?;
        let Action::PortMap { app_port } = self.acl.rules()[rule].action else {
            return Err(Reason::NoConnection);
        };
        // An app's port map leads to that app's address; a shared one to the last leased.
        let app_ip = match self.acl.rules()[rule].app {
            Some(mac) => self
                .dhcp
                .leases()
                .iter()
                .find(|l| l.mac == mac && l.expires_ms > now_ms)
                .map(|l| l.ip),
            None => self.app_ip,
        }
        .ok_or(Reason::NoConnection)?;
        let entry = Entry {
            protocol: p.protocol,
            app: Endpoint::new(app_ip, app_port),
            app_sees: remote,
            uplink_port: dport,
            remote,
            inbound: true,
            rule: Some(rule as u16),
            start_ms: now_ms,
            last_ms: now_ms,
            established: false,
            closing: false,
            counters: Default::default(),
        };
        self.nat
            .open(entry, |_, _| false)
            .map_err(|_| Reason::NatFull)
    }
}

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;
