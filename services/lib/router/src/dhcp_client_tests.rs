//! The uplink's DHCP client against the crate's own server ([`crate::dhcp::DhcpServer`]) and
//! against replies made by hand (what other servers send, what a hostile uplink sends). The
//! client meets a server no one here wrote in the node's Xen test: QEMU's user network.

use super::*;
use crate::dhcp::{DhcpConfig, DhcpServer};
use crate::wire::{parse, Packet};
use proptest::prelude::*;
use std::vec::Vec;

const CLIENT: Mac = [2, 0, 0, 0, 0, 0x42];
const SERVER_MAC: Mac = [2, 0, 0, 0, 0, 0x01];
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);

fn server(lease_secs: u32) -> DhcpServer {
    DhcpServer::new(DhcpConfig {
        server: SERVER,
        prefix: 24,
        range: (Ipv4Addr::new(10, 1, 0, 10), Ipv4Addr::new(10, 1, 0, 20)),
        dns: Some(Ipv4Addr::new(10, 1, 0, 3)),
        lease_secs,
    })
}

/// The DHCP message in a frame the client sent, with the frame's addressing.
fn sent(frame: &[u8]) -> (Vec<u8>, Ipv4Addr, Ipv4Addr, Mac) {
    let Ok(Packet::Ipv4(p)) = parse(frame) else {
        panic!("the client sent a frame that does not parse");
    };
    assert_eq!(
        p.transport,
        Transport::Udp {
            src: CLIENT_PORT,
            dst: SERVER_PORT
        }
    );
    assert_eq!(p.src_mac, CLIENT);
    (
        frame[p.payload_range(frame)].to_vec(),
        p.src,
        p.dst,
        p.dst_mac,
    )
}

/// A server's DHCP message to the client in a frame.
fn from_server(payload: &[u8]) -> Vec<u8> {
    let ends = Endpoints {
        src_mac: SERVER_MAC,
        dst_mac: CLIENT,
        src: SERVER,
        dst: Ipv4Addr::BROADCAST,
    };
    build_udp(&ends, SERVER_PORT, CLIENT_PORT, payload)
}

/// The server's answer to the client's frame, as a frame.
fn answer(server: &mut DhcpServer, frame: &[u8], now_ms: u64) -> Vec<u8> {
    let (msg, ..) = sent(frame);
    from_server(&server.handle(&msg, now_ms).expect("an answer").payload)
}

/// Runs DISCOVER, OFFER, REQUEST, ACK at `now_ms`.
fn bind(client: &mut DhcpClient, server: &mut DhcpServer, now_ms: u64) -> UplinkLease {
    let discover = client.poll(now_ms).send.expect("a DISCOVER");
    let (msg, src, dst, dst_mac) = sent(&discover);
    assert_eq!(msg[242], DISCOVER);
    assert_eq!(
        (src, dst, dst_mac),
        (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, BROADCAST_MAC)
    );
    let request = client
        .handle(&answer(server, &discover, now_ms), now_ms)
        .send
        .expect("a REQUEST");
    assert_eq!(sent(&request).0[242], REQUEST);
    let step = client.handle(&answer(server, &request, now_ms), now_ms);
    assert_eq!(step.send, None);
    match step.event {
        Some(Event::Bound(lease)) => lease,
        other => panic!("not bound: {other:?}"),
    }
}

#[test]
fn binds_the_offered_address_with_the_servers_settings() {
    let mut s = server(600);
    let mut c = DhcpClient::new(CLIENT, 7);
    let lease = bind(&mut c, &mut s, 1_000);
    assert_eq!(
        lease,
        UplinkLease {
            ip: Ipv4Addr::new(10, 1, 0, 10),
            prefix: 24,
            gateway: Some(SERVER),
            dns: Some(Ipv4Addr::new(10, 1, 0, 3)),
            server: SERVER,
            lease_secs: 600,
        }
    );
    assert_eq!(c.lease(), Some(lease));
    assert_eq!(s.lease_of_ip(lease.ip, 2_000).map(|l| l.mac), Some(CLIENT));
    // Nothing to do until T1 (half the lease).
    assert_eq!(c.next_ms(), 1_000 + 300_000);
    assert_eq!(c.poll(300_000), Step::default());
    assert_eq!(c.ignored(), 0);
}

#[test]
fn renews_with_the_server_at_t1_rebinds_at_t2_and_gives_up_at_the_end() {
    let mut s = server(600);
    let mut c = DhcpClient::new(CLIENT, 9);
    let lease = bind(&mut c, &mut s, 0);
    // T1: a REQUEST from the address to the server, by its MAC.
    let renew = c.poll(300_000).send.expect("a renewal");
    let (msg, src, dst, dst_mac) = sent(&renew);
    assert_eq!((src, dst, dst_mac), (lease.ip, SERVER, SERVER_MAC));
    assert_eq!(msg[12..16], lease.ip.octets(), "ciaddr");
    // The server answers: bound again, T1 moves.
    let step = c.handle(&answer(&mut s, &renew, 300_500), 300_500);
    assert_eq!(step.event, Some(Event::Bound(lease)));
    assert_eq!(c.next_ms(), 300_500 + 300_000);
    // This time nobody answers: retries in RENEWING, then broadcasts from T2 (7/8 of the
    // lease after the renewal), then the lease ends.
    let renewed_at = 300_500;
    let renew = c.poll(renewed_at + 300_000).send.expect("a renewal");
    assert_eq!(sent(&renew).3, SERVER_MAC);
    let t2 = renewed_at + 525_000;
    let mut now = renewed_at + 300_000;
    while c.next_ms() < t2 {
        now = c.next_ms();
        assert_eq!(sent(&c.poll(now).send.expect("a retry")).2, SERVER);
    }
    let rebind = c.poll(t2).send.expect("a rebinding request");
    let (msg, src, dst, dst_mac) = sent(&rebind);
    assert_eq!(
        (src, dst, dst_mac),
        (lease.ip, Ipv4Addr::BROADCAST, BROADCAST_MAC)
    );
    assert_eq!(msg[12..16], lease.ip.octets());
    let end = renewed_at + 600_000;
    while c.next_ms() < end {
        now = c.next_ms();
        assert!(c.poll(now).send.is_some());
    }
    assert!(now < end);
    let step = c.poll(end);
    assert_eq!(step.event, Some(Event::Lost(lease.ip)));
    assert_eq!(c.lease(), None);
    // And starts over.
    let discover = c.poll(end).send.expect("a DISCOVER");
    assert_eq!(sent(&discover).0[242], DISCOVER);
}

#[test]
fn a_nak_loses_the_address_and_starts_over() {
    let mut s = server(600);
    let mut c = DhcpClient::new(CLIENT, 3);
    let lease = bind(&mut c, &mut s, 0);
    let renew = c.poll(300_000).send.unwrap();
    // The server forgot the lease and another client took the address.
    let mut other = server(600);
    let (mut msg, ..) = sent(&renew);
    msg[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 0x99]);
    other.handle(&msg, 300_000).unwrap();
    let nak = answer(&mut other, &renew, 300_001);
    let step = c.handle(&nak, 300_001);
    assert_eq!(step.event, Some(Event::Lost(lease.ip)));
    assert_eq!(c.lease(), None);
    assert_eq!(sent(&c.poll(300_001).send.unwrap()).0[242], DISCOVER);
}

#[test]
fn retransmissions_back_off_and_an_unanswered_request_starts_over() {
    let mut c = DhcpClient::new(CLIENT, 5);
    let mut now = 0;
    let mut gaps = Vec::new();
    for _ in 0..7 {
        assert!(c.poll(now).send.is_some());
        gaps.push((c.next_ms() - now) / 1000);
        now = c.next_ms();
    }
    assert_eq!(gaps, [4, 8, 16, 32, 64, 64, 64]);
    // An offer, then no ACK: four REQUESTs, then a new DISCOVER.
    let mut s = server(600);
    let discover = c.poll(now).send.unwrap();
    let request = c.handle(&answer(&mut s, &discover, now), now).send.unwrap();
    assert_eq!(sent(&request).0[242], REQUEST);
    let mut requests = 1;
    loop {
        now = c.next_ms();
        match c.poll(now).send {
            Some(f) if sent(&f).0[242] == REQUEST => requests += 1,
            Some(f) => panic!("{:?}", sent(&f).0[242]),
            None => break,
        }
    }
    assert_eq!(requests, 4);
    assert_eq!(sent(&c.poll(now).send.unwrap()).0[242], DISCOVER);
}

/// An OFFER or ACK made by hand: `kind`, the address, and `options` (after the type).
fn reply(c: &DhcpClient, kind: u8, yiaddr: Ipv4Addr, options: &[u8]) -> Vec<u8> {
    let mut m = std::vec![0u8; FIXED_LEN];
    m[0] = OP_REPLY;
    m[1] = 1;
    m[2] = 6;
    m[4..8].copy_from_slice(&c.xid.to_be_bytes());
    m[16..20].copy_from_slice(&yiaddr.octets());
    m[28..34].copy_from_slice(&CLIENT);
    m.extend_from_slice(&MAGIC);
    m.extend_from_slice(&[53, 1, kind]);
    m.extend_from_slice(options);
    m.push(255);
    m
}

const ID: [u8; 6] = [54, 4, 10, 1, 0, 1];

#[test]
fn a_lease_without_mask_is_classful_and_server_timers_are_bounded_by_the_lease() {
    let mut c = DhcpClient::new(CLIENT, 11);
    c.poll(0);
    let ip = Ipv4Addr::new(172, 16, 5, 9);
    c.handle(&from_server(&reply(&c, OFFER, ip, &ID)), 0)
        .send
        .unwrap();
    // T1 and T2 past the lease's end: clamped to it.
    let mut options = ID.to_vec();
    options.extend_from_slice(&[51, 4, 0, 0, 0, 100, 58, 4, 0, 0, 1, 0, 59, 4, 0, 0, 2, 0]);
    let step = c.handle(&from_server(&reply(&c, ACK, ip, &options)), 0);
    let Some(Event::Bound(lease)) = step.event else {
        panic!("{step:?}");
    };
    assert_eq!((lease.prefix, lease.gateway, lease.dns), (16, None, None));
    assert_eq!(c.next_ms(), 100_000);
    assert_eq!(prefix_of([255, 255, 255, 252]), Some(30));
    assert_eq!(prefix_of([255, 0, 255, 0]), None);
    assert_eq!(prefix_of([255; 4]), Some(32));
}

#[test]
fn what_does_not_fit_is_ignored_and_counted() {
    let mut c = DhcpClient::new(CLIENT, 13);
    c.poll(0);
    let ip = Ipv4Addr::new(10, 1, 0, 10);
    let good = reply(&c, OFFER, ip, &ID);
    let mut bad = Vec::new();
    // Another transaction, another client, a request, no magic cookie.
    for at in [4, 28, 0, FIXED_LEN] {
        let mut m = good.clone();
        m[at] ^= 0xff;
        bad.push(from_server(&m));
    }
    // Cut short; an option running past the end; no server id; an unusable address.
    bad.push(from_server(&good[..FIXED_LEN + 2]));
    let mut m = good[..good.len() - 1].to_vec();
    m.extend_from_slice(&[6, 200, 1]);
    bad.push(from_server(&m));
    bad.push(from_server(&reply(&c, OFFER, ip, &[])));
    bad.push(from_server(&reply(&c, OFFER, Ipv4Addr::BROADCAST, &ID)));
    // An ACK while selecting; from the wrong port; to another MAC.
    bad.push(from_server(&reply(&c, ACK, ip, &ID)));
    let ends = Endpoints {
        src_mac: SERVER_MAC,
        dst_mac: CLIENT,
        src: SERVER,
        dst: ip,
    };
    bad.push(build_udp(&ends, 53, CLIENT_PORT, &good));
    let other = Endpoints {
        dst_mac: [2, 0, 0, 0, 0, 0x43],
        ..ends
    };
    bad.push(build_udp(&other, SERVER_PORT, CLIENT_PORT, &good));
    for (i, frame) in bad.iter().enumerate() {
        assert_eq!(c.handle(frame, 1), Step::default(), "case {i}");
    }
    assert_eq!(c.ignored(), bad.len() as u64);
    // The good offer still works; an ACK without a lease time does not bind.
    assert!(c.handle(&from_server(&good), 2).send.is_some());
    assert_eq!(
        c.handle(&from_server(&reply(&c, ACK, ip, &ID)), 3),
        Step::default()
    );
    let mut options = ID.to_vec();
    options.extend_from_slice(&[51, 4, 0, 0, 14, 16, 1, 4, 255, 255, 255, 0]);
    let step = c.handle(&from_server(&reply(&c, ACK, ip, &options)), 4);
    assert!(matches!(step.event, Some(Event::Bound(l)) if l.ip == ip && l.lease_secs == 3600));
}

proptest! {
    #[test]
    fn any_frame_is_handled_without_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..700),
        state in 0u8..3,
    ) {
        let mut c = DhcpClient::new(CLIENT, 17);
        let mut s = server(600);
        match state {
            0 => {}
            1 => {
                c.poll(0);
            }
            _ => {
                bind(&mut c, &mut s, 0);
            }
        }
        // Raw, and as the payload of a well-addressed datagram.
        c.handle(&bytes, 1);
        if DhcpClient::wants(&from_server(&bytes)) {
            c.handle(&from_server(&bytes), 1);
        }
        let mut m = reply(&c, ACK, Ipv4Addr::new(10, 1, 0, 10), &[]);
        m.pop();
        m.extend_from_slice(&bytes);
        c.handle(&from_server(&m), 2);
    }
}

#[test]
fn a_frame_the_card_could_not_take_is_tried_again_in_a_second() {
    let mut c = DhcpClient::new(CLIENT, 19);
    // The card is not connected yet: three DISCOVERs in a row cannot be sent.
    let mut now = 0;
    for _ in 0..3 {
        assert!(c.poll(now).send.is_some());
        c.unsent(now);
        assert_eq!(c.next_ms(), now + 1_000);
        now = c.next_ms();
    }
    // The first that goes out waits the first backoff, and the next one the second.
    assert!(c.poll(now).send.is_some());
    assert_eq!((c.next_ms() - now) / 1000, 4);
    now = c.next_ms();
    assert!(c.poll(now).send.is_some());
    assert_eq!((c.next_ms() - now) / 1000, 8);
    // A REQUEST that could not be sent does not count as one of its four tries.
    let mut s = server(600);
    let discover = c.poll(c.next_ms()).send.unwrap();
    now = c.next_ms();
    let request = c.handle(&answer(&mut s, &discover, now), now);
    assert!(request.send.is_some());
    c.unsent(now);
    let mut requests = 0;
    loop {
        now = c.next_ms();
        match c.poll(now).send {
            Some(_) => requests += 1,
            None => break,
        }
    }
    assert_eq!(requests, 4);
}
