//! The router end to end over frames: an app gets a lease, talks through NAT, is reached
//! through a port map, asks DNS; ACLs, rate limits and a full table drop and count.

use super::*;
use crate::acl::parse_rules;
use crate::dhcp::tests::message;
use crate::flow::FlowAction;
use crate::wire::tests::{ping, tcp};
use crate::wire::{Packet, PROTO_TCP};
use proptest::prelude::*;

const APP_MAC: Mac = [2, 0, 0, 0, 1, 1];
const UP_MAC: Mac = [2, 0, 0, 0, 2, 2];
const CLIENT: Mac = [2, 0, 0, 0, 0, 9];
const HOST_MAC: Mac = [2, 0, 0, 0, 0, 0x22];

fn config(rules: &str, capacity: usize) -> Config {
    Config {
        app_mac: APP_MAC,
        uplink_mac: UP_MAC,
        gateway: Ipv4Addr::new(10, 1, 0, 1),
        prefix: 24,
        dhcp_range: (Ipv4Addr::new(10, 1, 0, 2), Ipv4Addr::new(10, 1, 0, 10)),
        lease_secs: 3600,
        uplink_ip: Ipv4Addr::new(10, 0, 2, 15),
        uplink_prefix: 24,
        uplink_gateway: Ipv4Addr::new(10, 0, 2, 2),
        dns_upstream: Some(Ipv4Addr::new(10, 0, 2, 3)),
        nat_capacity: capacity,
        nat_ports: (20000, 20999),
        timeouts: Timeouts::default(),
        rules: parse_rules(rules).unwrap(),
        seed: [11, 22],
    }
}

const RULES: &str = "1#protocol:tcp,fport:8080->accept; 2#protocol:udp,fport:9->limit:5/s/2; \
                     3#protocol:tcp,lport:9000->portmap:7; 4#protocol:icmp->accept";

fn ipv4(frame: &[u8]) -> Ipv4 {
    match parse(frame) {
        Ok(Packet::Ipv4(p)) => p,
        other => panic!("not a valid IPv4 frame: {other:?}"),
    }
}

/// A router whose uplink gateway is resolved and whose app holds 10.1.0.2.
fn ready(rules: &str, capacity: usize) -> Router {
    let mut r = Router::new(config(rules, capacity)).unwrap();
    r.start(0);
    let out = r.take_output();
    assert_eq!(out.len(), 1, "an ARP request for the uplink gateway");
    let Ok(Packet::Arp(req)) = parse(&out[0].1) else {
        panic!()
    };
    assert_eq!(
        (out[0].0, req.op, req.target_ip),
        (Side::Uplink, 1, Ipv4Addr::new(10, 0, 2, 2))
    );
    let reply = Arp {
        op: 2,
        sender_mac: HOST_MAC,
        sender_ip: req.target_ip,
        target_mac: UP_MAC,
        target_ip: req.sender_ip,
    };
    assert_eq!(
        r.handle(Side::Uplink, &mut build_arp(&reply, UP_MAC), 1),
        Verdict::Consumed
    );
    lease(&mut r, CLIENT);
    r
}

/// Runs DHCP for `mac` (DISCOVER, REQUEST) and returns the address acknowledged.
fn lease(r: &mut Router, mac: Mac) -> Ipv4Addr {
    let dhcp = |payload: &[u8]| {
        let ends = Endpoints {
            src_mac: mac,
            dst_mac: BROADCAST_MAC,
            src: Ipv4Addr::UNSPECIFIED,
            dst: Ipv4Addr::BROADCAST,
        };
        build_udp(&ends, 68, 67, payload)
    };
    assert_eq!(
        r.handle(Side::App, &mut dhcp(&message(1, mac, None)), 2),
        Verdict::Consumed
    );
    let out = r.take_output();
    let offer = ipv4(&out[0].1);
    let offered = &out[0].1[offer.payload_range(&out[0].1)];
    let yiaddr = Ipv4Addr::new(offered[16], offered[17], offered[18], offered[19]);
    assert_eq!(
        r.handle(Side::App, &mut dhcp(&message(3, mac, Some(yiaddr))), 3),
        Verdict::Consumed
    );
    let out = r.take_output();
    let ack = ipv4(&out[0].1);
    assert_eq!(
        (ack.src, ack.dst, ack.transport),
        (
            Ipv4Addr::new(10, 1, 0, 1),
            Ipv4Addr::BROADCAST,
            Transport::Udp { src: 67, dst: 68 }
        )
    );
    assert_eq!(r.counters().dhcp_acks, 1 + u64::from(mac != CLIENT));
    yiaddr
}

fn app_ends(dst: [u8; 4]) -> Endpoints {
    Endpoints {
        src_mac: CLIENT,
        dst_mac: APP_MAC,
        src: Ipv4Addr::new(10, 1, 0, 2),
        dst: dst.into(),
    }
}

fn host_ends(src: [u8; 4]) -> Endpoints {
    Endpoints {
        src_mac: HOST_MAC,
        dst_mac: UP_MAC,
        src: src.into(),
        dst: Ipv4Addr::new(10, 0, 2, 15),
    }
}

fn forward(r: &mut Router, side: Side, mut frame: Vec<u8>, now: u64) -> Ipv4 {
    let to = match side {
        Side::App => Side::Uplink,
        Side::Uplink => Side::App,
    };
    let v = r.handle(side, &mut frame, now);
    let Verdict::Forward(out, len) = v else {
        panic!("not forwarded: {v:?}")
    };
    assert_eq!(out, to);
    ipv4(&frame[..len])
}

#[test]
fn app_reaches_the_uplink_through_nat_and_back() {
    let mut r = ready(RULES, 16);
    let syn = forward(
        &mut r,
        Side::App,
        tcp(&app_ends([10, 0, 2, 2]), 40000, 8080, TCP_SYN, b""),
        10,
    );
    assert_eq!(
        (syn.src, syn.dst, syn.src_mac, syn.dst_mac),
        (
            Ipv4Addr::new(10, 0, 2, 15),
            Ipv4Addr::new(10, 0, 2, 2),
            UP_MAC,
            HOST_MAC
        )
    );
    let Transport::Tcp {
        src: port,
        dst: 8080,
        ..
    } = syn.transport
    else {
        panic!()
    };
    assert!((20000..=20999).contains(&port));
    assert_eq!(syn.ttl, 63);
    let synack = forward(
        &mut r,
        Side::Uplink,
        tcp(
            &host_ends([10, 0, 2, 2]),
            8080,
            port,
            TCP_SYN | TCP_ACK,
            b"",
        ),
        11,
    );
    assert_eq!(
        (synack.src, synack.dst, synack.dst_mac),
        (
            Ipv4Addr::new(10, 0, 2, 2),
            Ipv4Addr::new(10, 1, 0, 2),
            CLIENT
        )
    );
    assert_eq!(
        synack.transport,
        Transport::Tcp {
            src: 8080,
            dst: 40000,
            flags: TCP_SYN | TCP_ACK
        }
    );
    forward(
        &mut r,
        Side::App,
        tcp(&app_ends([10, 0, 2, 2]), 40000, 8080, TCP_ACK, b"hello"),
        12,
    );
    let flows = r.take_flows();
    assert_eq!(flows.len(), 1);
    let f = flows[0];
    assert_eq!(
        (
            f.acl_id,
            f.action,
            f.inbound,
            f.counters.tx_packets,
            f.counters.rx_packets
        ),
        (1, FlowAction::Accept, false, 2, 1)
    );
    assert_eq!(f.counters.tx_bytes, 40 + 45);
    // A segment for a connection that does not exist is dropped.
    let mut stray = tcp(&host_ends([10, 0, 2, 2]), 8080, port + 1, TCP_ACK, b"");
    assert_eq!(
        r.handle(Side::Uplink, &mut stray, 13),
        Verdict::Dropped(Reason::NoConnection)
    );
}

#[test]
fn default_deny_and_drop_rules_are_counted_and_logged() {
    let mut r = ready(RULES, 16);
    let mut ssh = tcp(&app_ends([10, 0, 2, 2]), 40000, 22, TCP_SYN, b"");
    assert_eq!(
        r.handle(Side::App, &mut ssh.clone(), 10),
        Verdict::Dropped(Reason::AclDrop)
    );
    assert_eq!(
        r.handle(Side::App, &mut ssh, 11),
        Verdict::Dropped(Reason::AclDrop)
    );
    let flows = r.take_flows();
    assert_eq!(flows.len(), 1);
    assert_eq!(
        (
            flows[0].action,
            flows[0].acl_id,
            flows[0].counters.tx_packets
        ),
        (FlowAction::Drop, 0, 2)
    );
    assert_eq!(r.drops().find(|d| d.0 == "acl_drop").unwrap().1, 2);
    // A mid-stream segment cannot open a connection.
    let mut ack = tcp(&app_ends([10, 0, 2, 2]), 40001, 8080, TCP_ACK, b"");
    assert_eq!(
        r.handle(Side::App, &mut ack, 12),
        Verdict::Dropped(Reason::NoConnection)
    );
}

#[test]
fn rate_limit_drops_beyond_the_bucket() {
    let mut r = ready(RULES, 16);
    let dgram = |n: u8| build_udp(&app_ends([10, 0, 2, 2]), 5000, 9, &[n]);
    let passed = (0..10)
        .filter(|n| {
            matches!(
                r.handle(Side::App, &mut dgram(*n), 100),
                Verdict::Forward(..)
            )
        })
        .count();
    assert_eq!(passed, 2, "the burst");
    let out = forward(&mut r, Side::App, dgram(0), 300); // 5/s refills one per 200 ms
    let Transport::Udp { src: nat_port, .. } = out.transport else {
        panic!("{out:?}")
    };
    assert_eq!(r.drops().find(|d| d.0 == "rate_limit").unwrap().1, 8);
    assert_eq!(r.counters().limited_to_app, 0, "all from the app");
    // A reply over the limit is dropped on its way to the app, and counted as such.
    let mut reply = build_udp(&host_ends([10, 0, 2, 2]), 9, nat_port, b"r");
    assert_eq!(
        r.handle(Side::Uplink, &mut reply, 300),
        Verdict::Dropped(Reason::RateLimit)
    );
    assert_eq!(r.drops().find(|d| d.0 == "rate_limit").unwrap().1, 9);
    assert_eq!(r.counters().limited_to_app, 1);
    let flows = r.take_flows();
    assert!(flows
        .iter()
        .any(|f| f.action == FlowAction::Drop && f.acl_id == 2 && f.counters.tx_packets == 8));
}

#[test]
fn port_map_reaches_the_app() {
    let mut r = ready(RULES, 16);
    let syn = forward(
        &mut r,
        Side::Uplink,
        tcp(&host_ends([10, 0, 2, 2]), 51000, 9000, TCP_SYN, b""),
        10,
    );
    assert_eq!(
        (syn.dst, syn.src, syn.transport),
        (
            Ipv4Addr::new(10, 1, 0, 2),
            Ipv4Addr::new(10, 0, 2, 2),
            Transport::Tcp {
                src: 51000,
                dst: 7,
                flags: TCP_SYN
            }
        )
    );
    let back = forward(
        &mut r,
        Side::App,
        tcp(&app_ends([10, 0, 2, 2]), 7, 51000, TCP_SYN | TCP_ACK, b""),
        11,
    );
    assert_eq!(
        (back.src, back.transport),
        (
            Ipv4Addr::new(10, 0, 2, 15),
            Transport::Tcp {
                src: 9000,
                dst: 51000,
                flags: TCP_SYN | TCP_ACK
            }
        )
    );
    let flows = r.take_flows();
    assert_eq!(
        (flows[0].inbound, flows[0].acl_id, flows[0].dst.port),
        (true, 3, 7)
    );
    // No map on another port.
    let mut other = tcp(&host_ends([10, 0, 2, 2]), 51000, 9001, TCP_SYN, b"");
    assert_eq!(
        r.handle(Side::Uplink, &mut other, 12),
        Verdict::Dropped(Reason::NoConnection)
    );
}

#[test]
fn dns_is_forwarded_and_answers_recorded() {
    let mut r = ready(RULES, 16);
    let query = build_udp(
        &app_ends([10, 1, 0, 1]),
        3333,
        53,
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01a\x00\x00\x01\x00\x01",
    );
    // The resolver is on the uplink subnet: the router asks for its MAC first.
    assert_eq!(
        r.handle(Side::App, &mut query.clone(), 9),
        Verdict::Dropped(Reason::ArpPending)
    );
    let out = r.take_output();
    let Ok(Packet::Arp(req)) = parse(&out[0].1) else {
        panic!()
    };
    assert_eq!(req.target_ip, Ipv4Addr::new(10, 0, 2, 3));
    let is_at = Arp {
        op: 2,
        sender_mac: HOST_MAC,
        sender_ip: req.target_ip,
        target_mac: UP_MAC,
        target_ip: req.sender_ip,
    };
    assert_eq!(
        r.handle(Side::Uplink, &mut build_arp(&is_at, UP_MAC), 9),
        Verdict::Consumed
    );
    let q = forward(&mut r, Side::App, query, 10);
    assert_eq!(q.dst, Ipv4Addr::new(10, 0, 2, 3));
    let Transport::Udp { src: port, dst: 53 } = q.transport else {
        panic!()
    };
    let answer = crate::dns::tests::response("example.com", &[[93, 184, 216, 34]]);
    let a = forward(
        &mut r,
        Side::Uplink,
        build_udp(&host_ends([10, 0, 2, 3]), 53, port, &answer),
        11,
    );
    assert_eq!(
        (a.src, a.transport),
        (
            Ipv4Addr::new(10, 1, 0, 1),
            Transport::Udp { src: 53, dst: 3333 }
        )
    );
    assert!(r
        .dns()
        .host_has("example.com", Ipv4Addr::new(93, 184, 216, 34)));
    let new = r.dns().take_new();
    assert_eq!(
        (new.len(), new[0].asker),
        (1, Some(Ipv4Addr::new(10, 1, 0, 2))),
        "the asking app is recorded"
    );
    // host rules then match the recorded address.
    r.set_rules(parse_rules("9#host:example.com,protocol:tcp->accept").unwrap())
        .unwrap();
    forward(
        &mut r,
        Side::App,
        tcp(&app_ends([93, 184, 216, 34]), 1, 443, TCP_SYN, b""),
        12,
    );
    let mut other = tcp(&app_ends([93, 184, 216, 35]), 1, 443, TCP_SYN, b"");
    assert_eq!(
        r.handle(Side::App, &mut other, 13),
        Verdict::Dropped(Reason::AclDrop)
    );
}

#[test]
fn full_table_is_a_counted_drop() {
    let mut r = ready(RULES, 2);
    for port in [1, 2] {
        forward(
            &mut r,
            Side::App,
            tcp(&app_ends([10, 0, 2, 2]), port, 8080, TCP_SYN, b""),
            10,
        );
    }
    let mut third = tcp(&app_ends([10, 0, 2, 2]), 3, 8080, TCP_SYN, b"");
    assert_eq!(
        r.handle(Side::App, &mut third.clone(), 10),
        Verdict::Dropped(Reason::NatFull)
    );
    // Handshakes that never finished expire after tcp_closing_ms: room again.
    assert!(matches!(
        r.handle(Side::App, &mut third, 20_000),
        Verdict::Forward(..)
    ));
    let ended = r.take_flows();
    assert_eq!(ended.len(), 3, "two ended, one open");
}

#[test]
fn router_answers_arp_and_ping_and_refuses_the_rest() {
    let mut r = ready(RULES, 4);
    let who_has = Arp {
        op: 1,
        sender_mac: CLIENT,
        sender_ip: Ipv4Addr::new(10, 1, 0, 2),
        target_mac: [0; 6],
        target_ip: Ipv4Addr::new(10, 1, 0, 1),
    };
    assert_eq!(
        r.handle(Side::App, &mut build_arp(&who_has, BROADCAST_MAC), 5),
        Verdict::Consumed
    );
    let Ok(Packet::Arp(reply)) = parse(&r.take_output()[0].1) else {
        panic!()
    };
    assert_eq!(
        (reply.op, reply.sender_mac, reply.target_mac),
        (2, APP_MAC, CLIENT)
    );
    assert_eq!(
        r.handle(Side::App, &mut ping(&app_ends([10, 1, 0, 1]), 5), 6),
        Verdict::Consumed
    );
    let echo = ipv4(&r.take_output()[0].1);
    assert_eq!(
        (echo.src, echo.dst, echo.transport),
        (
            Ipv4Addr::new(10, 1, 0, 1),
            Ipv4Addr::new(10, 1, 0, 2),
            Transport::IcmpEcho { kind: 0, ident: 5 }
        )
    );
    // Ping through NAT: identifier rewritten and restored.
    let out = forward(&mut r, Side::App, ping(&app_ends([10, 0, 2, 2]), 77), 7);
    let Transport::IcmpEcho { kind: 8, ident } = out.transport else {
        panic!()
    };
    let mut reply = ping(&host_ends([10, 0, 2, 2]), ident);
    reply[34] = 0; // echo reply
    let sum = u16::from_be_bytes([reply[36], reply[37]]);
    reply[36..38].copy_from_slice(&wire::adjust_checksum(sum, 0x0800, 0).to_be_bytes());
    let back = forward(&mut r, Side::Uplink, reply, 8);
    assert_eq!(back.transport, Transport::IcmpEcho { kind: 0, ident: 77 });
    // Spoofed source, frames for other MACs, garbage.
    let mut spoof = tcp(
        &Endpoints {
            src: Ipv4Addr::new(192, 168, 0, 1),
            ..app_ends([10, 0, 2, 2])
        },
        1,
        8080,
        TCP_SYN,
        b"",
    );
    assert_eq!(
        r.handle(Side::App, &mut spoof, 9),
        Verdict::Dropped(Reason::Spoofed)
    );
    let mut other_mac = tcp(
        &Endpoints {
            dst_mac: [2, 9, 9, 9, 9, 9],
            ..app_ends([10, 0, 2, 2])
        },
        1,
        8080,
        TCP_SYN,
        b"",
    );
    assert_eq!(
        r.handle(Side::App, &mut other_mac, 9),
        Verdict::Dropped(Reason::NotForUs)
    );
    assert_eq!(
        r.handle(Side::Uplink, &mut [0u8; 10], 9),
        Verdict::Dropped(Reason::Malformed(Malformed::FrameLength))
    );
    let total: u64 = r.drops().map(|d| d.1).sum();
    assert_eq!(total, 3);
}

#[test]
fn bad_configurations_are_refused() {
    let mut c = config(RULES, 4);
    c.dhcp_range.1 = Ipv4Addr::new(10, 2, 0, 1);
    assert!(Router::new(c).is_err());
    let mut c = config(RULES, 4);
    c.uplink_gateway = Ipv4Addr::new(192, 168, 1, 1);
    assert!(Router::new(c).is_err());
    let mut c = config(RULES, 4);
    c.rules =
        parse_rules("1#protocol:tcp,lport:1->portmap:1;2#protocol:tcp,lport:1->portmap:2").unwrap();
    assert!(matches!(Router::new(c), Err(ConfigError::Acl(_))));
    // A bad rule update keeps the old rules.
    let mut r = ready(RULES, 4);
    assert!(r
        .set_rules(
            parse_rules("1#protocol:tcp,lport:1->portmap:1;2#protocol:tcp,lport:1->portmap:2")
                .unwrap()
        )
        .is_err());
    forward(
        &mut r,
        Side::App,
        tcp(&app_ends([10, 0, 2, 2]), 1, 8080, TCP_SYN, b""),
        10,
    );
}

proptest! {
    /// Whatever arrives on either side, the router never panics, and every frame it forwards
    /// or sends is well-formed (it parses, checksums included).
    #[test]
    fn arbitrary_frames_never_break_the_router(
        frames in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..200), 0u8..4), 1..60)
    ) {
        let mut r = ready(RULES, 8);
        let mut now = 10;
        for (from_app, bytes, shape) in frames {
            now += 7;
            let side = if from_app { Side::App } else { Side::Uplink };
            // Mostly valid headers with random payloads and ports, sometimes raw bytes.
            let mut frame = match shape {
                0 => bytes.clone(),
                1 => {
                    let port = u16::from_be_bytes([bytes.first().copied().unwrap_or(0), bytes.get(1).copied().unwrap_or(0)]);
                    if from_app { tcp(&app_ends([10, 0, 2, 2]), port, 8080, bytes.get(2).copied().unwrap_or(2), &bytes) }
                    else { tcp(&host_ends([10, 0, 2, 2]), 8080, port, bytes.get(2).copied().unwrap_or(2), &bytes) }
                }
                2 => {
                    let port = u16::from_be_bytes([bytes.first().copied().unwrap_or(0), bytes.get(1).copied().unwrap_or(0)]);
                    if from_app { build_udp(&app_ends([10, 1, 0, 1]), port, 53, &bytes) }
                    else { build_udp(&host_ends([10, 0, 2, 3]), 53, port, &bytes) }
                }
                _ => {
                    let mut f = tcp(&app_ends([10, 0, 2, 2]), 1, 8080, TCP_SYN, &bytes);
                    if let Some(b) = bytes.first() { let i = usize::from(*b) % f.len(); f[i] ^= bytes.get(1).copied().unwrap_or(1); }
                    f
                }
            };
            if let Verdict::Forward(_, len) = r.handle(side, &mut frame, now) {
                prop_assert!(parse(&frame[..len]).is_ok());
            }
            for (_, out) in r.take_output() {
                prop_assert!(parse(&out).is_ok());
            }
        }
        let _ = r.take_flows();
        prop_assert!(r.nat().len() <= 8);
    }
}

#[test]
fn segments_of_connections_a_restart_lost_are_reset_and_refused_syns_are_not() {
    // A fresh router (as after a restart): the app's connection to 10.0.2.2:8080 is unknown.
    let mut r = ready(RULES, 16);
    let mut mid = crate::wire::build_tcp_seq(
        &app_ends([10, 0, 2, 2]),
        40000,
        8080,
        (1000, 5000),
        TCP_ACK,
        b"data",
    );
    assert_eq!(
        r.handle(Side::App, &mut mid, 10),
        Verdict::Dropped(Reason::NoConnection)
    );
    let out = r.take_output();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, Side::App);
    let rst = &out[0].1;
    let p = ipv4(rst);
    assert_eq!(p.src_mac, APP_MAC);
    assert_eq!(p.dst_mac, CLIENT);
    assert_eq!(
        (p.src, p.dst),
        (Ipv4Addr::new(10, 0, 2, 2), Ipv4Addr::new(10, 1, 0, 2))
    );
    assert_eq!(
        p.transport,
        Transport::Tcp {
            src: 8080,
            dst: 40000,
            flags: TCP_RST
        }
    );
    let l4 = p.l4_offset();
    assert_eq!(
        &rst[l4 + 4..l4 + 8],
        &5000u32.to_be_bytes(),
        "seq = the segment's ack"
    );
    assert_eq!(r.counters().resets, 1);

    // From the uplink, to the uplink address on a port no connection has: reset too.
    let mut stray = crate::wire::build_tcp_seq(
        &host_ends([10, 0, 2, 2]),
        8080,
        20001,
        (77, 88),
        TCP_ACK | 0x08, // PSH
        b"late",
    );
    r.handle(Side::Uplink, &mut stray, 11);
    let out = r.take_output();
    assert_eq!(out.len(), 1);
    let p = ipv4(&out[0].1);
    assert_eq!(
        (out[0].0, p.dst_mac, p.dst),
        (Side::Uplink, HOST_MAC, Ipv4Addr::new(10, 0, 2, 2))
    );
    assert!(matches!(
        p.transport,
        Transport::Tcp {
            flags: TCP_RST,
            dst: 8080,
            ..
        }
    ));

    // A SYN the ACL refuses, a reset, and UDP: silent drops.
    let mut syn = tcp(&app_ends([10, 0, 2, 2]), 40001, 9, TCP_SYN, b"");
    assert!(matches!(
        r.handle(Side::App, &mut syn, 12),
        Verdict::Dropped(_)
    ));
    let mut rst_in = crate::wire::build_tcp_seq(
        &app_ends([10, 0, 2, 2]),
        40000,
        8080,
        (1, 1),
        TCP_RST | TCP_ACK,
        b"",
    );
    r.handle(Side::App, &mut rst_in, 13);
    assert!(r.take_output().is_empty());
    assert_eq!(r.counters().resets, 2);

    // A segment without ACK (RFC 9293: ack = its seq + length, RST|ACK).
    let p = ipv4(&mid);
    let ends = Endpoints {
        src_mac: APP_MAC,
        dst_mac: CLIENT,
        src: p.dst,
        dst: p.src,
    };
    let no_ack = crate::wire::build_tcp_seq(
        &app_ends([10, 0, 2, 2]),
        40000,
        8080,
        (1000, 0),
        0x08,
        b"data",
    );
    let q = ipv4(&no_ack);
    let reply = crate::wire::build_tcp_reset(&no_ack, &q, &ends).unwrap();
    let l4 = ipv4(&reply).l4_offset();
    assert_eq!(&reply[l4 + 8..l4 + 12], &1004u32.to_be_bytes());
    assert_eq!(reply[l4 + 13], TCP_RST | TCP_ACK);
}

#[test]
fn ten_thousand_connections_fit() {
    let mut r = ready("1#protocol:tcp->accept", 10_000);
    for i in 0..10_000u32 {
        // 1000 dynamic ports per remote: ten remotes behind the uplink gateway.
        let port = 1 + i as u16;
        let dst = [1, 1, (i / 1000) as u8, 1];
        forward(
            &mut r,
            Side::App,
            tcp(&app_ends(dst), port, 80, TCP_SYN, b""),
            10,
        );
    }
    assert_eq!(r.nat().len(), 10_000);
    let mut one_more = tcp(&app_ends([1, 1, 99, 1]), 1, 80, TCP_SYN, b"");
    assert_eq!(
        r.handle(Side::App, &mut one_more, 10),
        Verdict::Dropped(Reason::NatFull)
    );
    let _ = PROTO_TCP;
}

/// Rules owned by one app: `rules` parsed, each given `owner`.
fn owned(rules: &str, owner: Mac) -> Vec<Rule> {
    parse_rules(rules)
        .unwrap()
        .into_iter()
        .map(|r| Rule {
            app: Some(owner),
            ..r
        })
        .collect()
}

#[test]
fn each_app_gets_its_own_rules_and_port_maps() {
    const OTHER: Mac = [2, 0, 0, 0, 0, 0x0a];
    let mut r = ready("", 16);
    let b_ip = lease(&mut r, OTHER);
    let mut rules = owned(
        "1#ip:10.0.2.2,protocol:tcp->accept;5#protocol:tcp,lport:9001->portmap:7",
        CLIENT,
    );
    rules.extend(owned(
        "2#protocol:tcp,fport:8080->accept;3#protocol:tcp,lport:9000->portmap:7",
        OTHER,
    ));
    r.set_rules(rules).unwrap();
    // App A may reach 10.0.2.2 on any port, and nothing else.
    forward(
        &mut r,
        Side::App,
        tcp(&app_ends([10, 0, 2, 2]), 40000, 22, TCP_SYN, b""),
        10,
    );
    let mut elsewhere = tcp(&app_ends([10, 0, 3, 3]), 40001, 8080, TCP_SYN, b"");
    assert_eq!(
        r.handle(Side::App, &mut elsewhere, 11),
        Verdict::Dropped(Reason::AclDrop),
        "B's rule 2 is not A's"
    );
    // App B may reach port 8080 anywhere, not 22.
    let b = |dst: [u8; 4]| Endpoints {
        src_mac: OTHER,
        src: b_ip,
        ..app_ends(dst)
    };
    forward(
        &mut r,
        Side::App,
        tcp(&b([10, 0, 3, 3]), 40002, 8080, TCP_SYN, b""),
        12,
    );
    let mut ssh = tcp(&b([10, 0, 2, 2]), 40003, 22, TCP_SYN, b"");
    assert_eq!(
        r.handle(Side::App, &mut ssh, 13),
        Verdict::Dropped(Reason::AclDrop)
    );
    // B's port map leads to B.
    let syn = forward(
        &mut r,
        Side::Uplink,
        tcp(&host_ends([10, 0, 2, 2]), 51000, 9000, TCP_SYN, b""),
        14,
    );
    assert_eq!((syn.dst, syn.dst_mac), (b_ip, OTHER));
    // A's port map leads to A, though B leased last.
    let syn = forward(
        &mut r,
        Side::Uplink,
        tcp(&host_ends([10, 0, 2, 2]), 51001, 9001, TCP_SYN, b""),
        15,
    );
    assert_eq!((syn.dst, syn.dst_mac), (Ipv4Addr::new(10, 1, 0, 2), CLIENT));
    // A sending from B's address (with its own MAC) is a spoof, whatever B's rules allow.
    let mut forged = tcp(
        &Endpoints {
            src: b_ip,
            ..app_ends([10, 0, 3, 3])
        },
        40004,
        8080,
        TCP_SYN,
        b"",
    );
    assert_eq!(
        r.handle(Side::App, &mut forged, 16),
        Verdict::Dropped(Reason::Spoofed)
    );
    // Flow records name the rule of each app.
    let ids: Vec<(Ipv4Addr, i32, FlowAction)> = r
        .take_flows()
        .iter()
        .map(|f| (f.src.ip, f.acl_id, f.action))
        .collect();
    assert!(
        ids.contains(&(Ipv4Addr::new(10, 1, 0, 2), 1, FlowAction::Accept)),
        "{ids:?}"
    );
    assert!(ids.contains(&(b_ip, 2, FlowAction::Accept)), "{ids:?}");
    assert!(
        ids.contains(&(Ipv4Addr::new(10, 1, 0, 2), 0, FlowAction::Drop)),
        "{ids:?}"
    );
}

#[test]
fn two_apps_cannot_map_the_same_port() {
    let mut r = ready("", 16);
    let mut rules = owned("3#protocol:tcp,lport:9000->portmap:7", CLIENT);
    rules.extend(owned(
        "4#protocol:tcp,lport:9000->portmap:8",
        [2, 0, 0, 0, 0, 0x0a],
    ));
    let e = r.set_rules(rules).unwrap_err();
    assert_eq!(e.id, 4, "{e}");
}

/// The uplink's address from its DHCP lease: none yet (apps still get leases, their traffic
/// out is a counted `no_uplink` drop), then bound (NAT to it, the gateway resolved), then
/// moved (connections end, their flow records kept), and a lease that cannot work refused.
#[test]
fn the_uplink_address_comes_goes_and_moves() {
    let mut c = config(RULES, 16);
    (
        c.uplink_ip,
        c.uplink_prefix,
        c.uplink_gateway,
        c.dns_upstream,
    ) = (Ipv4Addr::UNSPECIFIED, 0, Ipv4Addr::UNSPECIFIED, None);
    let mut r = Router::new(c).unwrap();
    lease(&mut r, CLIENT);
    let mut syn = tcp(&app_ends([10, 0, 2, 2]), 40000, 8080, TCP_SYN, b"");
    assert_eq!(
        r.handle(Side::App, &mut syn, 10),
        Verdict::Dropped(Reason::NoUplink)
    );
    let mut to_nobody = tcp(&host_ends([10, 0, 2, 2]), 8080, 9000, TCP_SYN, b"");
    assert_eq!(
        r.handle(Side::Uplink, &mut to_nobody, 10),
        Verdict::Dropped(Reason::NoUplink)
    );
    assert!(r.drops().any(|d| d == ("no_uplink", 2)));
    // Bound: the gateway is asked for at once.
    let up = |r: &mut Router, ip: [u8; 4], now: u64| {
        r.set_uplink(
            ip.into(),
            24,
            Ipv4Addr::new(10, 0, 2, 2),
            Some(Ipv4Addr::new(10, 0, 2, 3)),
            now,
        )
    };
    assert_eq!(up(&mut r, [10, 0, 2, 15], 20), Ok(0));
    let out = r.take_output();
    let Ok(Packet::Arp(req)) = parse(&out[0].1) else {
        panic!("{out:?}")
    };
    assert_eq!(
        (req.sender_ip, req.target_ip),
        (Ipv4Addr::new(10, 0, 2, 15), Ipv4Addr::new(10, 0, 2, 2))
    );
    let reply = Arp {
        op: 2,
        sender_mac: HOST_MAC,
        sender_ip: req.target_ip,
        target_mac: UP_MAC,
        target_ip: req.sender_ip,
    };
    r.handle(Side::Uplink, &mut build_arp(&reply, UP_MAC), 21);
    let out = forward(&mut r, Side::App, syn.clone(), 22);
    assert_eq!(out.src, Ipv4Addr::new(10, 0, 2, 15));
    assert_eq!(r.nat().len(), 1);
    // Renewed, same address: the connection stays.
    assert_eq!(up(&mut r, [10, 0, 2, 15], 30), Ok(0));
    assert_eq!(r.nat().len(), 1);
    // A lease in the app subnet, or with the gateway off the subnet: refused, nothing changes.
    assert!(up(&mut r, [10, 1, 0, 50], 40).is_err());
    assert!(r
        .set_uplink(
            Ipv4Addr::new(10, 0, 3, 15),
            24,
            Ipv4Addr::new(10, 0, 2, 2),
            None,
            40
        )
        .is_err());
    assert_eq!(r.config().uplink_ip, Ipv4Addr::new(10, 0, 2, 15));
    assert_eq!(r.nat().len(), 1);
    // Moved: the connection ends with its record; new ones go out from the new address once
    // the gateway is resolved again.
    assert_eq!(up(&mut r, [10, 0, 2, 16], 50), Ok(1));
    assert_eq!(r.nat().len(), 0);
    let flows = r.take_flows();
    assert_eq!(flows.len(), 1, "{flows:?}");
    assert_eq!(flows[0].counters.tx_packets, 1);
    r.take_output();
    let reply = Arp {
        target_ip: Ipv4Addr::new(10, 0, 2, 16),
        ..reply
    };
    r.handle(Side::Uplink, &mut build_arp(&reply, UP_MAC), 51);
    let out = forward(&mut r, Side::App, syn, 52);
    assert_eq!(out.src, Ipv4Addr::new(10, 0, 2, 16));
}
