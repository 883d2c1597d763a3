//! What an app or the uplink may send: arbitrary bytes as an Ethernet frame, a DHCP message
//! and a DNS answer. Parsing may refuse, never panic; a frame that parses is whole (every
//! checksum right), so rewriting it keeps it whole. The same bytes as an uplink frame are
//! placed on an instance that exists, and as a controller's network-instance fields
//! (`ports::local_config`) are refused or give settings the router takes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use router::dhcp::{DhcpConfig, DhcpServer};
use router::ports::{self, Owner};
use router::wire::{self, Packet};
use std::net::Ipv4Addr;

fuzz_target!(|data: &[u8]| {
    let mut frame = data.to_vec();
    if let Ok(Packet::Ipv4(mut p)) = wire::parse(&frame) {
        let range = p.payload_range(&frame);
        assert!(range.start <= range.end && range.end <= frame.len());
        // Rewrite as NAT would: the result must still parse, to the same packet.
        let salt = data.len() as u16;
        wire::set_address(&mut frame, &mut p, true, Ipv4Addr::new(10, 0, 2, 15));
        wire::set_port(&mut frame, &mut p, true, 20000 ^ salt);
        wire::set_address(&mut frame, &mut p, false, Ipv4Addr::new(10, 1, 0, 2));
        wire::set_port(&mut frame, &mut p, false, 7 ^ salt);
        let live = wire::decrement_ttl(&mut frame, &mut p);
        match wire::parse(&frame) {
            Ok(Packet::Ipv4(q)) => assert_eq!(q, p, "rewrite changed more than it said"),
            other => panic!("a rewritten frame no longer parses: {other:?} (ttl live {live})"),
        }
    }
    let _ = router::dns::parse_answer(data);
    let mut dhcp = DhcpServer::new(DhcpConfig {
        server: Ipv4Addr::new(10, 1, 0, 1),
        prefix: 24,
        range: (Ipv4Addr::new(10, 1, 0, 2), Ipv4Addr::new(10, 1, 0, 3)),
        dns: None,
        lease_secs: 60,
    });
    for now in [0, 1] {
        if let Ok(reply) = dhcp.handle(data, now) {
            assert!(reply.payload.len() >= 300);
            assert!(reply.yiaddr.is_unspecified() || (Ipv4Addr::new(10, 1, 0, 2)..=Ipv4Addr::new(10, 1, 0, 3)).contains(&reply.yiaddr));
        }
    }
    // Which instance an uplink frame belongs to: one that exists, whatever the bytes.
    let base = router::settings::config_from(|_| None, [2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], [0, 0])
        .expect("the defaults are good");
    let mut second = base.clone();
    second.nat_ports = ports::nat_ports(2);
    let instances = [None, Some(base.clone()), Some(second)];
    match ports::uplink_owner(data, &instances) {
        Some(Owner::One(i)) => assert!(instances[i].is_some(), "placed on a free port {i}"),
        Some(Owner::All) => {}
        None => panic!("instances exist, yet nobody owns the frame"),
    }
    // The controller's fields: refused with a reason, or settings the router accepts.
    let text = String::from_utf8_lossy(data);
    let mut fields = text.split('|');
    let mut next = || fields.next().unwrap_or("");
    let (subnet, gateway, start, end) = (next(), next(), next(), next());
    if let Ok(config) = ports::local_config(&base, subnet, gateway, start, end) {
        if let Err(e) = router::Router::new(config) {
            panic!("local_config gave settings the router refuses: {e} ({subnet} {gateway} {start} {end})");
        }
    }
});
