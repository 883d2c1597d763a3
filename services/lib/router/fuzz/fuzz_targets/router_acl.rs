//! ACL text from anyone (a controller's ACEs, a command line): parsing refuses or yields rules
//! that evaluate without panicking; a limit rule never lets through more than its bucket and
//! rate allow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use router::acl::{parse_rules, Acl, Action, Query};
use std::net::Ipv4Addr;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let Ok(text) = std::str::from_utf8(&data[..split]) else { return };
    let Ok(rules) = parse_rules(text) else { return };
    let Ok(mut acl) = Acl::new(rules) else { return };
    let probes = &data[split..];
    let mut passed = vec![0u64; acl.rules().len()];
    let mut now = 0u64;
    for p in probes.chunks(9) {
        if p.len() < 9 {
            break;
        }
        now += u64::from(p[8]);
        let q = Query {
            protocol: p[0] % 20,
            remote: Ipv4Addr::new(p[1], p[2], p[3], p[4]),
            lport: u16::from_be_bytes([p[5], p[6]]),
            fport: u16::from(p[7]),
            inbound: p[0] & 0x80 != 0,
            app: (p[0] & 0x40 != 0).then_some([2, 0, 0, 0, 0, p[1] & 1]),
        };
        if let Some(i) = acl.evaluate(&q, |host, addr| host.len() % 3 == usize::from(addr.octets()[3] % 3)) {
            assert!(i < acl.rules().len());
            if acl.admit(i, now) {
                passed[i] += 1;
            }
        }
    }
    for (i, rule) in acl.rules().iter().enumerate() {
        if let Action::Limit { rate, unit_ms, burst } = rule.action {
            let allowed = u128::from(burst) + u128::from(rate) * u128::from(now) / u128::from(unit_ms);
            assert!(u128::from(passed[i]) <= allowed, "rule {} let {} through, allowed {allowed}", rule.id, passed[i]);
        }
    }
});
