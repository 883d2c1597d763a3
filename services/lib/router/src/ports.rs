//! Several local network instances behind one uplink: which instance an uplink frame belongs
//! to, how the uplink's NAT ports are shared, and an instance's settings from the controller's
//! `NetworkInstanceConfig` fields.
//!
//! zedrouter has one uplink card and one app-side card ("port") per local network instance;
//! each instance is a [`Router`](crate::Router) with the same uplink address. They share the
//! uplink's ports by giving each instance its own slice of dynamic NAT ports
//! ([`nat_ports`]), so a reply's destination port says whose connection it is
//! ([`uplink_owner`]). Port maps (uplink port -> app port) belong to the instance whose ACL
//! declares them; two instances mapping the same uplink port are refused ([`portmap_clash`]).
//!
//! The uplink peer may send anything: a frame [`uplink_owner`] cannot place goes to the first
//! instance, which drops and counts it as the single-instance router always did.

use alloc::string::String;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use crate::router::Config;
use crate::wire::{parse, Packet, Transport, PROTO_TCP, PROTO_UDP};

/// The most local network instances (app-side ports) one zedrouter serves.
pub const MAX_PORTS: usize = 8;

/// The dynamic NAT ports of the whole uplink, shared between instances.
pub const NAT_PORTS: (u16, u16) = (20000, 59999);

/// The dynamic uplink ports of instance `index` (0-based) when there are at most
/// [`MAX_PORTS`]: equal, disjoint slices of [`NAT_PORTS`].
pub fn nat_ports(index: usize) -> (u16, u16) {
    let per = (u32::from(NAT_PORTS.1) - u32::from(NAT_PORTS.0) + 1) / MAX_PORTS as u32;
    let first = u32::from(NAT_PORTS.0) + per * index.min(MAX_PORTS - 1) as u32;
    (first as u16, (first + per - 1) as u16)
}

/// Where a frame from the uplink goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Every instance (ARP replies: each keeps its own cache).
    All,
    /// One instance, by index.
    One(usize),
}

/// What [`uplink_owner`] needs to know of an instance.
pub trait Instance {
    /// Its dynamic uplink ports.
    fn nat_ports(&self) -> (u16, u16);
    /// Whether its ACL maps uplink port `port` of `protocol` to an app.
    fn maps(&self, protocol: u8, port: u16) -> bool;
}

impl Instance for Config {
    fn nat_ports(&self) -> (u16, u16) {
        self.nat_ports
    }
    fn maps(&self, protocol: u8, port: u16) -> bool {
        self.rules
            .iter()
            .any(|r| r.portmap_port() == Some((protocol, port)))
    }
}

/// Which of `instances` (in port order; `None` for a free port) a frame from the uplink
/// belongs to: ARP replies to all, ARP requests and anything unplaceable to the first instance
/// present, TCP/UDP/ICMP echo replies to the instance whose NAT ports hold the destination port
/// (or echo identifier), new connections to the instance that maps the port. `None` when no
/// instance is configured.
pub fn uplink_owner<I: Instance>(frame: &[u8], instances: &[Option<I>]) -> Option<Owner> {
    let first = instances.iter().position(Option::is_some)?;
    let port = match parse(frame) {
        Ok(Packet::Arp(arp)) if arp.op == 2 => return Some(Owner::All),
        Ok(Packet::Ipv4(p)) => match p.transport {
            Transport::Tcp { dst, .. } => Some((PROTO_TCP, dst)),
            Transport::Udp { dst, .. } => Some((PROTO_UDP, dst)),
            Transport::IcmpEcho { kind: 0, ident } => Some((1, ident)),
            _ => None,
        },
        _ => None,
    };
    let Some((protocol, port)) = port else {
        return Some(Owner::One(first));
    };
    let by_nat = instances.iter().position(|i| {
        i.as_ref().is_some_and(|i| {
            let (lo, hi) = i.nat_ports();
            (lo..=hi).contains(&port)
        })
    });
    let by_map = || {
        instances
            .iter()
            .position(|i| i.as_ref().is_some_and(|i| i.maps(protocol, port)))
    };
    Some(Owner::One(by_nat.or_else(by_map).unwrap_or(first)))
}

/// The first uplink port that `config` maps and another of `others` maps too, if any.
pub fn portmap_clash<'a>(config: &Config, others: impl Iterator<Item = &'a Config>) -> Option<u16> {
    let others: Vec<&Config> = others.collect();
    config
        .rules
        .iter()
        .filter_map(|r| r.portmap_port())
        .find(|&(protocol, port)| others.iter().any(|o| o.maps(protocol, port)))
        .map(|(_, port)| port)
}

/// The EVE kind of a local (NATed, DHCP) network instance (`ZNetworkInstType` 2).
pub const KIND_LOCAL: i32 = 2;

/// An instance's settings from the controller's fields (`subnet` `a.b.c.d/len`, `gateway`, the
/// DHCP range, all as EVE's `ipspec` strings) on top of `base`, which holds the uplink, DNS
/// forwarding, NAT size, ACL and the card MACs. An empty gateway is the subnet's first host; an
/// empty range is every other host but the last. The result is still checked by
/// [`crate::Router::new`]; every error names the field.
pub fn local_config(
    base: &Config,
    subnet: &str,
    gateway: &str,
    dhcp_start: &str,
    dhcp_end: &str,
) -> Result<Config, String> {
    let (net, prefix) = subnet
        .split_once('/')
        .and_then(|(a, p)| Some((a.parse::<Ipv4Addr>().ok()?, p.parse::<u8>().ok()?)))
        .filter(|(_, p)| (8..=30).contains(p))
        .ok_or_else(|| alloc::format!("bad subnet `{subnet}`: expected a.b.c.d/8..30"))?;
    let mask = u32::MAX << (32 - u32::from(prefix));
    let network = u32::from(net) & mask;
    let broadcast = network | !mask;
    let parse = |field: &str, text: &str, default: u32| -> Result<Ipv4Addr, String> {
        if text.is_empty() {
            return Ok(Ipv4Addr::from(default));
        }
        let a: Ipv4Addr = text
            .parse()
            .map_err(|_| alloc::format!("bad {field} `{text}`: not an IPv4 address"))?;
        let v = u32::from(a);
        if v & mask != network || v == network || v == broadcast {
            return Err(alloc::format!(
                "bad {field} `{text}`: not a host of {subnet}"
            ));
        }
        Ok(a)
    };
    // The router tells its sides apart by subnet: the uplink's address must lie outside.
    if u32::from(base.uplink_ip) & mask == network {
        return Err(alloc::format!(
            "bad subnet `{subnet}`: it holds the uplink's address {}",
            base.uplink_ip
        ));
    }
    let gateway = parse("gateway", gateway, network + 1)?;
    let first_free = if u32::from(gateway) == network + 1 {
        network + 2
    } else {
        network + 1
    };
    let start = parse("dhcp start", dhcp_start, first_free)?;
    let end = parse("dhcp end", dhcp_end, broadcast - 1)?;
    let (lo, hi) = (u32::from(start), u32::from(end));
    if lo > hi {
        return Err(alloc::format!(
            "bad dhcp range {start}-{end}: the first is after the last"
        ));
    }
    if (lo..=hi).contains(&u32::from(gateway)) {
        return Err(alloc::format!(
            "bad dhcp range {start}-{end}: it holds the gateway {gateway}"
        ));
    }
    // The router leases at most 4096 addresses: a bigger range is cut, not refused.
    let hi = hi.min(lo + 4095);
    let mut config = base.clone();
    config.gateway = gateway;
    config.prefix = prefix;
    config.dhcp_range = (start, Ipv4Addr::from(hi));
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::config_from;
    use crate::wire::{build_arp, build_udp, Arp, Endpoints};

    fn base(words: &[(&'static str, &'static str)]) -> Config {
        config_from(
            |k| words.iter().find(|w| w.0 == k).map(|w| w.1),
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            [0, 0],
        )
        .unwrap()
    }

    fn udp_to(port: u16) -> Vec<u8> {
        let ends = Endpoints {
            src_mac: [2, 0, 0, 0, 0, 9],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: Ipv4Addr::new(10, 0, 2, 2),
            dst: Ipv4Addr::new(10, 0, 2, 15),
        };
        build_udp(&ends, 53, port, b"x")
    }

    #[test]
    fn nat_port_slices_are_disjoint_and_inside_the_range() {
        let mut last = NAT_PORTS.0 - 1;
        for i in 0..MAX_PORTS {
            let (lo, hi) = nat_ports(i);
            assert!(lo == last + 1 && lo < hi, "{i}: {lo}-{hi}");
            last = hi;
        }
        assert!(last <= NAT_PORTS.1);
        assert_eq!(nat_ports(100), nat_ports(MAX_PORTS - 1));
    }

    #[test]
    fn uplink_frames_go_to_the_instance_owning_the_port() {
        let mut a = base(&[("acl", "1#protocol:udp,lport:8000->portmap:7")]);
        a.nat_ports = nat_ports(0);
        let mut b = base(&[("acl", "1#protocol:tcp,lport:8000->portmap:7")]);
        b.nat_ports = nat_ports(1);
        let set = [None, Some(a), Some(b)];
        assert_eq!(
            uplink_owner(&udp_to(nat_ports(0).0), &set),
            Some(Owner::One(1))
        );
        assert_eq!(
            uplink_owner(&udp_to(nat_ports(1).1), &set),
            Some(Owner::One(2))
        );
        assert_eq!(
            uplink_owner(&udp_to(8000), &set),
            Some(Owner::One(1)),
            "udp map"
        );
        assert_eq!(
            uplink_owner(&udp_to(9), &set),
            Some(Owner::One(1)),
            "nobody's"
        );
        assert_eq!(
            uplink_owner(&[0u8; 3], &set),
            Some(Owner::One(1)),
            "garbage"
        );
        let reply = Arp {
            op: 2,
            sender_mac: [2, 0, 0, 0, 0, 9],
            sender_ip: Ipv4Addr::new(10, 0, 2, 2),
            target_mac: [2, 0, 0, 0, 0, 2],
            target_ip: Ipv4Addr::new(10, 0, 2, 15),
        };
        assert_eq!(
            uplink_owner(&build_arp(&reply, [2, 0, 0, 0, 0, 2]), &set),
            Some(Owner::All)
        );
        let request = Arp { op: 1, ..reply };
        assert_eq!(
            uplink_owner(&build_arp(&request, [0xff; 6]), &set),
            Some(Owner::One(1))
        );
        assert_eq!(uplink_owner::<Config>(&udp_to(9), &[None, None]), None);
    }

    #[test]
    fn the_same_uplink_port_mapped_twice_is_found() {
        let a = base(&[("acl", "1#protocol:tcp,lport:8000->portmap:7")]);
        let b = base(&[("acl", "2#protocol:tcp,lport:8000->portmap:22")]);
        let c = base(&[("acl", "3#protocol:udp,lport:8000->portmap:7")]);
        assert_eq!(portmap_clash(&a, [&b].into_iter()), Some(8000));
        assert_eq!(portmap_clash(&a, [&c].into_iter()), None);
    }

    #[test]
    fn a_local_instance_takes_the_controllers_addressing() {
        let b = base(&[]);
        let c = local_config(&b, "10.11.0.0/24", "10.11.0.1", "10.11.0.10", "10.11.0.20").unwrap();
        assert_eq!((c.gateway, c.prefix), (Ipv4Addr::new(10, 11, 0, 1), 24));
        assert_eq!(
            c.dhcp_range,
            (Ipv4Addr::new(10, 11, 0, 10), Ipv4Addr::new(10, 11, 0, 20))
        );
        assert_eq!(c.uplink_ip, b.uplink_ip, "the uplink is the node's");
        assert!(crate::Router::new(c).is_ok());
        let d = local_config(&b, "10.12.0.0/16", "", "", "").unwrap();
        assert_eq!(d.gateway, Ipv4Addr::new(10, 12, 0, 1));
        assert_eq!(
            d.dhcp_range,
            (Ipv4Addr::new(10, 12, 0, 2), Ipv4Addr::new(10, 12, 16, 1)),
            "cut to 4096 addresses"
        );
        assert!(crate::Router::new(d).is_ok());
    }

    #[test]
    fn bad_controller_fields_are_refused_by_name() {
        let b = base(&[]);
        for (args, field) in [
            (("10.11.0.0", "", "", ""), "subnet"),
            (("10.11.0.0/31", "", "", ""), "subnet"),
            (("nonsense/24", "", "", ""), "subnet"),
            (("10.11.0.0/24", "10.12.0.1", "", ""), "gateway"),
            (("10.11.0.0/24", "10.11.0.255", "", ""), "gateway"),
            (("10.11.0.0/24", "", "10.11.0.0", ""), "dhcp start"),
            (("10.11.0.0/24", "", "x", ""), "dhcp start"),
            (("10.11.0.0/24", "", "", "10.11.1.3"), "dhcp end"),
            (("10.11.0.0/24", "", "10.11.0.9", "10.11.0.8"), "dhcp range"),
            (
                ("10.11.0.0/24", "10.11.0.5", "10.11.0.2", "10.11.0.9"),
                "dhcp range",
            ),
            // Found by the router_wire fuzz target: a subnet holding the uplink's 10.0.2.15.
            (("10.2.0.0/08", "", "", ""), "uplink"),
        ] {
            let e = local_config(&b, args.0, args.1, args.2, args.3).unwrap_err();
            assert!(e.contains(field), "{args:?}: {e}");
        }
    }
}
