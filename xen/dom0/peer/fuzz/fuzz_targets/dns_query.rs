//! `dns_query`: any datagram to the dom0 test peer's DNS server (`lichen_dom0_peer::dns`).
//! Checked: no panic; a reply keeps the query's id and is a response; an answer is only
//! given for the one name the table knows, and then holds the question and one A record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lichen_dom0_peer::dns::answer;
use std::net::Ipv4Addr;

fuzz_target!(|query: &[u8]| {
    let table = |name: &str| (name == "peer.lichen.test").then_some(Ipv4Addr::new(10, 77, 0, 42));
    if let Some((reply, _)) = answer(query, table) {
        assert_eq!(&reply[..2], &query[..2], "the id");
        assert!(reply[2] & 0x80 != 0, "a response");
        assert!(reply.len() >= 12);
        if reply[6..8] == [0, 1] {
            assert!(reply.ends_with(&[0, 4, 10, 77, 0, 42]));
        }
    }
});
