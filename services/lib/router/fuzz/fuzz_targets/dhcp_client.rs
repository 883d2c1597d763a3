//! The uplink's DHCP client against a hostile uplink: a script of time steps, raw frames and
//! replies that carry the client's current transaction id and MAC (so the fuzzer reaches the
//! states past SELECTING) with fuzzed fields and options.
//!
//! Checked: no panic; every frame the client sends parses as UDP 68 -> 67 from its MAC; a
//! bound lease has a usable address and a prefix of 1..=30 and is what `lease()` says until a
//! loss; after a loss there is none.
#![no_main]

use libfuzzer_sys::fuzz_target;
use router::dhcp_client::{DhcpClient, Event, Step, CLIENT_PORT, SERVER_PORT};
use router::wire::{build_udp, parse, Endpoints, Packet, Transport};
use std::net::Ipv4Addr;

const MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x42];

/// Checks a step; returns the transaction id of the frame it sent, if any.
fn check(c: &DhcpClient, step: &Step) -> Option<[u8; 4]> {
    match step.event {
        Some(Event::Bound(l)) => {
            assert!(!l.ip.is_unspecified() && !l.ip.is_broadcast() && !l.ip.is_multicast());
            assert!((1..=30).contains(&l.prefix), "{l:?}");
            assert_eq!(c.lease(), Some(l));
        }
        Some(Event::Lost(_)) => assert_eq!(c.lease(), None),
        None => {}
    }
    let frame = step.send.as_ref()?;
    let Ok(Packet::Ipv4(p)) = parse(frame) else {
        panic!("the client sent a frame that does not parse");
    };
    assert_eq!(p.src_mac, MAC);
    assert_eq!(
        p.transport,
        Transport::Udp {
            src: CLIENT_PORT,
            dst: SERVER_PORT
        }
    );
    let payload = &frame[p.payload_range(frame)];
    Some([payload[4], payload[5], payload[6], payload[7]])
}

fuzz_target!(|data: &[u8]| {
    let seed = data
        .iter()
        .take(8)
        .fold(0u64, |s, b| s << 8 | u64::from(*b));
    let mut c = DhcpClient::new(MAC, seed);
    let mut now = 0u64;
    let mut xid = [0u8; 4];
    let ends = Endpoints {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: MAC,
        src: Ipv4Addr::new(10, 0, 2, 2),
        dst: Ipv4Addr::BROADCAST,
    };
    let mut rest = data.get(8..).unwrap_or_default();
    while let Some((&op, tail)) = rest.split_first() {
        let len = usize::from(tail.first().copied().unwrap_or(0)).min(tail.len().saturating_sub(1));
        let body = tail.get(1..1 + len).unwrap_or_default();
        rest = tail.get(1 + len..).unwrap_or_default();
        let step = match op % 3 {
            0 => {
                now += u64::from(op) * 997 + body.len() as u64 * 60_000;
                c.poll(now)
            }
            1 => c.handle(body, now),
            _ => {
                // A BOOTREPLY for this client: the body is its type, the address's last byte
                // and its options.
                let mut m = vec![0u8; 236];
                m[0] = 2;
                m[1] = 1;
                m[2] = 6;
                m[4..8].copy_from_slice(&xid);
                m[16..20].copy_from_slice(&[10, 0, 2, body.get(1).copied().unwrap_or(15)]);
                m[28..34].copy_from_slice(&MAC);
                m.extend_from_slice(&[99, 130, 83, 99, 53, 1, body.first().copied().unwrap_or(2)]);
                m.extend_from_slice(body.get(2..).unwrap_or_default());
                c.handle(&build_udp(&ends, SERVER_PORT, CLIENT_PORT, &m), now)
            }
        };
        if let Some(sent) = check(&c, &step) {
            xid = sent;
        }
    }
});
