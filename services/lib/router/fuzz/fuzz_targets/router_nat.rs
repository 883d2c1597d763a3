//! A conversation through the router, both sides hostile: the input is a script of frames
//! (mostly well-formed TCP, UDP and ICMP with fuzzed ports, flags and payloads, some raw
//! bytes), each from the app side or the uplink, with time moving on. Whatever comes, the
//! router never panics; every frame it forwards or sends parses (checksums right) and leaves
//! by the other side with the router's own addresses; the connection table stays within its
//! capacity.
#![no_main]

use libfuzzer_sys::fuzz_target;
use router::acl::parse_rules;
use router::nat::Timeouts;
use router::router::{Config, Router, Side, Verdict};
use router::wire::{self, Endpoints, Packet};
use std::net::Ipv4Addr;

const APP_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const UP_MAC: [u8; 6] = [2, 0, 0, 0, 2, 2];
const CAPACITY: usize = 6;

fn router() -> Router {
    let mut r = Router::new(Config {
        app_mac: APP_MAC,
        uplink_mac: UP_MAC,
        gateway: Ipv4Addr::new(10, 1, 0, 1),
        prefix: 24,
        dhcp_range: (Ipv4Addr::new(10, 1, 0, 2), Ipv4Addr::new(10, 1, 0, 4)),
        lease_secs: 60,
        uplink_ip: Ipv4Addr::new(10, 0, 2, 15),
        uplink_prefix: 24,
        uplink_gateway: Ipv4Addr::new(10, 0, 2, 2),
        dns_upstream: Some(Ipv4Addr::new(10, 0, 2, 3)),
        nat_capacity: CAPACITY,
        nat_ports: (20000, 20007),
        timeouts: Timeouts { tcp_established_ms: 5000, tcp_closing_ms: 500, udp_ms: 1000, icmp_ms: 300 },
        rules: parse_rules("1#protocol:tcp,fport:80->accept;2#protocol:udp->limit:3/s/2;3#protocol:tcp,lport:9000->portmap:7;4#protocol:icmp->accept;5#ip:10.0.2.0/24->drop").unwrap(),
        seed: [1, 2],
    })
    .unwrap();
    r.start(0);
    r
}

fuzz_target!(|data: &[u8]| {
    let mut r = router();
    let mut now = 0u64;
    // At most 64 frames per input: the table holds 6 connections, so longer scripts add time,
    // not states.
    for op in data.chunks(12).take(64) {
        if op.len() < 8 {
            break;
        }
        now += u64::from(op[0]) * 4;
        let from_app = op[1] & 1 == 0;
        let side = if from_app { Side::App } else { Side::Uplink };
        let port = u16::from_be_bytes([op[2], op[3]]);
        let other = u16::from_be_bytes([op[4], op[5]]);
        let host = Ipv4Addr::new(10, 0, 2, 2 + (op[6] & 1));
        let ends = if from_app {
            Endpoints { src_mac: [2, 0, 0, 0, 0, 9 + (op[6] >> 7)], dst_mac: APP_MAC, src: Ipv4Addr::new(10, 1, 0, 2 + (op[6] >> 6 & 1)), dst: if op[6] & 2 != 0 { Ipv4Addr::new(10, 1, 0, 1) } else { host } }
        } else {
            Endpoints { src_mac: [2, 0, 0, 0, 0, 0x22], dst_mac: UP_MAC, src: host, dst: Ipv4Addr::new(10, 0, 2, 15) }
        };
        let payload = &op[8..];
        let mut frame = match op[1] >> 1 & 7 {
            0 => wire::build_tcp(&ends, port, other, op[7], payload),
            1 => wire::build_udp(&ends, port, other, payload),
            2 => {
                let mut l4 = vec![if op[7] & 1 == 0 { 8 } else { 0 }, 0, 0, 0, op[2], op[3], 0, 1];
                let sum = wire::checksum(&l4, 0);
                l4[2..4].copy_from_slice(&sum.to_be_bytes());
                wire::build_ipv4(&ends, wire::PROTO_ICMP, &l4)
            }
            3 => {
                let arp = wire::Arp { op: 1 + u16::from(op[7] & 1), sender_mac: ends.src_mac, sender_ip: ends.src, target_mac: [0; 6], target_ip: ends.dst };
                wire::build_arp(&arp, if op[7] & 2 != 0 { wire::BROADCAST_MAC } else { ends.dst_mac })
            }
            4 => {
                // DHCP-ish: a BOOTP request with fuzzed bytes.
                let mut m = vec![0u8; 240];
                m[0] = 1;
                m[1] = 1;
                m[2] = 6;
                m[28..34].copy_from_slice(&ends.src_mac);
                m[236..240].copy_from_slice(&[99, 130, 83, 99]);
                m.extend_from_slice(&[53, 1, op[7] & 7]);
                m.extend_from_slice(payload);
                let e = Endpoints { dst_mac: wire::BROADCAST_MAC, src: Ipv4Addr::UNSPECIFIED, dst: Ipv4Addr::BROADCAST, ..ends };
                wire::build_udp(&e, 68, 67, &m)
            }
            5 => {
                // A flipped byte in an otherwise good segment.
                let mut f = wire::build_tcp(&ends, port, other, op[7], payload);
                let at = usize::from(op[7]) % f.len();
                f[at] ^= op[4] | 1;
                f
            }
            _ => data[..data.len().min(1600)].to_vec(),
        };
        match r.handle(side, &mut frame, now) {
            Verdict::Forward(out, len) => {
                assert_ne!(out, side);
                let Ok(Packet::Ipv4(p)) = wire::parse(&frame[..len]) else { panic!("forwarded a broken frame") };
                match out {
                    Side::Uplink => assert_eq!((p.src, p.src_mac), (Ipv4Addr::new(10, 0, 2, 15), UP_MAC)),
                    Side::App => assert_eq!(p.src_mac, APP_MAC),
                }
            }
            Verdict::Consumed | Verdict::Dropped(_) => {}
        }
        for (_, out) in r.take_output() {
            assert!(wire::parse(&out).is_ok(), "sent a broken frame");
        }
        assert!(r.nat().len() <= CAPACITY);
        if op[0] == 255 {
            r.tick(now);
            let _ = r.take_flows();
        }
    }
    let flows = r.take_flows();
    assert!(flows.iter().all(|f| f.start_ms <= f.end_ms));
});
