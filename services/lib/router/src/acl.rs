//! Access control from EVE's ACE model (`fw.proto`): each rule is a list of matches that must
//! all hold and an action; the first rule that matches a new connection decides; a connection
//! no rule allows is dropped (EVE's default deny).
//!
//! Matches (the values EVE sends as strings):
//! - `ip`: the remote's address, `A.B.C.D` or `A.B.C.D/N`;
//! - `host`: the remote's name, matched through the DNS answers the forwarder recorded (the
//!   name itself or any subdomain of it);
//! - `protocol`: `tcp`, `udp`, `icmp` or a number;
//! - `lport`: the app's port (for a port map: the uplink port the map listens on);
//! - `fport`: the remote's port.
//!
//! Actions: accept, drop, limit (`rate` per `unit` — `s`, `m`, `h`, `d` — with `burst`, a token
//! bucket counted in packets, as iptables' limit match), portmap (uplink `lport` -> app's
//! `app_port`; it only applies to connections opened from the uplink).
//!
//! A rule may belong to one app (`app`: the MAC of its interface): it is then asked only
//! about that app's connections, and its port map leads to that app's leased address. Rules
//! without an app (the command line's) apply to every app of the instance.
//!
//! A rule that does not parse is refused with an [`AclError`] naming it; the caller keeps its
//! previous rules. The text syntax [`parse_rules`] reads is for command lines:
//! `ID#type:value,type:value->action;...` with action `accept`, `drop`,
//! `limit:RATE/UNIT/BURST` or `portmap:APP_PORT`.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::net::Ipv4Addr;

use crate::wire::{PROTO_ICMP, PROTO_TCP, PROTO_UDP};

/// One condition of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    /// The remote is in `network/prefix`.
    Ip(Ipv4Addr, u8),
    /// The remote is an address recorded for this name (or a subdomain).
    Host(String),
    /// The IP protocol.
    Protocol(u8),
    /// The app's port (the uplink port for a port map).
    Lport(u16),
    /// The remote's port.
    Fport(u16),
}

/// What a rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Let the connection through.
    Accept,
    /// Drop it.
    Drop,
    /// Let its packets through at most `rate` per `unit_ms`, with bursts of `burst`.
    Limit {
        /// Packets per unit.
        rate: u32,
        /// The unit, in milliseconds.
        unit_ms: u64,
        /// Packets allowed at once.
        burst: u32,
    },
    /// Connections from the uplink to port `lport` go to the app's `app_port`.
    PortMap {
        /// The app's port.
        app_port: u16,
    },
}

/// EVE's ACE direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Direction {
    /// Both ways (EVE's default).
    #[default]
    Both,
    /// Connections opened from the uplink only.
    Ingress,
    /// Connections opened by the app only.
    Egress,
}

/// One access control entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// EVE's `id` (reported in flow records as `aclId`).
    pub id: i32,
    /// EVE's `name`.
    pub name: String,
    /// Conditions, all of which must hold.
    pub matches: Vec<Match>,
    /// What to do.
    pub action: Action,
    /// Which connections it applies to.
    pub direction: Direction,
    /// The app (its interface's MAC) whose connections it decides; `None`: every app's.
    pub app: Option<crate::wire::Mac>,
}

/// An ACE's action as EVE's `ACEAction` carries it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AceAction {
    /// `drop`.
    pub drop: bool,
    /// `limit`.
    pub limit: bool,
    /// `limitrate`.
    pub limit_rate: u32,
    /// `limitunit`.
    pub limit_unit: String,
    /// `limitburst`.
    pub limit_burst: u32,
    /// `portmap`.
    pub portmap: bool,
    /// `appPort`.
    pub app_port: u32,
}

/// Why a rule was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclError {
    /// The rule's id.
    pub id: i32,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for AclError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ACL rule {}: {}", self.id, self.reason)
    }
}

fn parse_ip_match(value: &str) -> Result<Match, String> {
    let (addr, prefix) = match value.split_once('/') {
        Some((a, p)) => (
            a,
            p.parse::<u8>()
                .ok()
                .filter(|p| *p <= 32)
                .ok_or("bad prefix length")?,
        ),
        None => (value, 32),
    };
    let addr: Ipv4Addr = addr.parse().map_err(|_| "not an IPv4 address")?;
    Ok(Match::Ip(addr, prefix))
}

fn parse_protocol(value: &str) -> Result<u8, String> {
    match value.to_ascii_lowercase().as_str() {
        "tcp" => Ok(PROTO_TCP),
        "udp" => Ok(PROTO_UDP),
        "icmp" => Ok(PROTO_ICMP),
        n => n.parse().map_err(|_| "unknown protocol".into()),
    }
}

fn parse_port(value: &str) -> Result<u16, String> {
    value
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| "not a port (1..65535)".into())
}

fn unit_ms(unit: &str) -> Option<u64> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "" | "s" | "sec" | "second" => 1_000,
        "m" | "min" | "minute" => 60_000,
        "h" | "hour" => 3_600_000,
        "d" | "day" => 86_400_000,
        _ => return None,
    })
}

impl Rule {
    /// A rule from EVE's ACE fields: `matches` as (type, value) strings, `actions` (none means
    /// accept; several are combined as EVE does: drop wins, then portmap, then limit).
    pub fn from_ace(
        id: i32,
        name: &str,
        matches: &[(&str, &str)],
        actions: &[AceAction],
        direction: Direction,
    ) -> Result<Rule, AclError> {
        let err = |reason: String| AclError { id, reason };
        let mut parsed = Vec::new();
        for (kind, value) in matches {
            let m = match *kind {
                "ip" => parse_ip_match(value),
                "host" if !value.is_empty() => Ok(Match::Host(
                    value.trim_end_matches('.').to_ascii_lowercase(),
                )),
                "protocol" => parse_protocol(value).map(Match::Protocol),
                "lport" => parse_port(value).map(Match::Lport),
                "fport" => parse_port(value).map(Match::Fport),
                _ => Err("unsupported match type".to_string()),
            }
            .map_err(|r| err(alloc::format!("match {kind}={value}: {r}")))?;
            parsed.push(m);
        }
        let action = if actions.iter().any(|a| a.drop) {
            Action::Drop
        } else if let Some(a) = actions.iter().find(|a| a.portmap) {
            let app_port = u16::try_from(a.app_port)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| err("portmap: appPort is not a port".into()))?;
            if !parsed.iter().any(|m| matches!(m, Match::Lport(_))) {
                return Err(err("portmap: needs an lport match (the uplink port)".into()));
            }
            if !parsed
                .iter()
                .any(|m| matches!(m, Match::Protocol(PROTO_TCP | PROTO_UDP)))
            {
                return Err(err("portmap: needs protocol tcp or udp".into()));
            }
            Action::PortMap { app_port }
        } else if let Some(a) = actions.iter().find(|a| a.limit) {
            if a.limit_rate == 0 {
                return Err(err("limit: rate 0".into()));
            }
            let unit_ms = unit_ms(&a.limit_unit)
                .ok_or_else(|| err(alloc::format!("limit: unknown unit {:?}", a.limit_unit)))?;
            Action::Limit {
                rate: a.limit_rate,
                unit_ms,
                burst: a.limit_burst.max(1),
            }
        } else {
            Action::Accept
        };
        Ok(Rule {
            id,
            name: name.into(),
            matches: parsed,
            action,
            direction,
            app: None,
        })
    }

    /// The uplink port of a port map rule.
    pub fn portmap_port(&self) -> Option<(u8, u16)> {
        let Action::PortMap { .. } = self.action else {
            return None;
        };
        let proto = self.matches.iter().find_map(|m| match m {
            Match::Protocol(p) => Some(*p),
            _ => None,
        })?;
        let port = self.matches.iter().find_map(|m| match m {
            Match::Lport(p) => Some(*p),
            _ => None,
        })?;
        Some((proto, port))
    }
}

/// Parses the command-line syntax (see the module docs) into rules.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, AclError> {
    let mut rules = Vec::new();
    for (n, spec) in text
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
    {
        let (id, rest) = match spec.split_once('#') {
            Some((id, rest)) => (
                id.parse::<i32>().map_err(|_| AclError {
                    id: n as i32 + 1,
                    reason: alloc::format!("bad id {id:?}"),
                })?,
                rest,
            ),
            None => (n as i32 + 1, spec),
        };
        let err = |reason: &str| AclError {
            id,
            reason: reason.into(),
        };
        let (matches, action) = rest
            .split_once("->")
            .ok_or_else(|| err("expected MATCHES->ACTION"))?;
        let pairs: Vec<(&str, &str)> = matches
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(|m| {
                m.split_once(':')
                    .ok_or_else(|| err("a match is TYPE:VALUE"))
            })
            .collect::<Result<_, _>>()?;
        let (verb, arg) = action.trim().split_once(':').unwrap_or((action.trim(), ""));
        let ace = match verb {
            "accept" => AceAction::default(),
            "drop" => AceAction {
                drop: true,
                ..Default::default()
            },
            "limit" => {
                let mut parts = arg.split('/');
                let rate = parts
                    .next()
                    .and_then(|r| r.parse().ok())
                    .ok_or_else(|| err("limit:RATE/UNIT/BURST"))?;
                let unit = parts.next().unwrap_or("s");
                let burst = parts
                    .next()
                    .map(|b| b.parse().map_err(|_| err("bad burst")))
                    .transpose()?
                    .unwrap_or(0);
                AceAction {
                    limit: true,
                    limit_rate: rate,
                    limit_unit: unit.into(),
                    limit_burst: burst,
                    ..Default::default()
                }
            }
            "portmap" => AceAction {
                portmap: true,
                app_port: arg.parse().map_err(|_| err("portmap:APP_PORT"))?,
                ..Default::default()
            },
            _ => {
                return Err(err(
                    "action is accept, drop, limit:RATE/UNIT/BURST or portmap:PORT",
                ))
            }
        };
        rules.push(Rule::from_ace(id, "", &pairs, &[ace], Direction::Both)?);
    }
    Ok(rules)
}

/// What the ACL is asked about: a new connection, seen from the app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query {
    /// IP protocol.
    pub protocol: u8,
    /// The remote's address.
    pub remote: Ipv4Addr,
    /// The app's port (for a connection from the uplink: the uplink port it arrived on).
    pub lport: u16,
    /// The remote's port.
    pub fport: u16,
    /// Opened from the uplink.
    pub inbound: bool,
    /// The app's MAC, for a connection the app opens (`None` from the uplink: every port
    /// map may answer, and its app is the target).
    pub app: Option<crate::wire::Mac>,
}

fn in_subnet(addr: Ipv4Addr, net: Ipv4Addr, prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    };
    u32::from(addr) & mask == u32::from(net) & mask
}

/// A token bucket in thousandths of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bucket {
    milli_tokens: u64,
    at_ms: u64,
}

/// The rules in force and their rate-limit buckets.
pub struct Acl {
    rules: Vec<Rule>,
    buckets: Vec<Bucket>,
}

impl Acl {
    /// An ACL of `rules` (checked: see [`Acl::check`]).
    pub fn new(rules: Vec<Rule>) -> Result<Acl, AclError> {
        Acl::check(&rules)?;
        let buckets = rules
            .iter()
            .map(|r| Bucket {
                milli_tokens: match r.action {
                    Action::Limit { burst, .. } => u64::from(burst) * 1000,
                    _ => 0,
                },
                at_ms: 0,
            })
            .collect();
        Ok(Acl { rules, buckets })
    }

    /// Refuses two port maps on the same uplink port and protocol.
    pub fn check(rules: &[Rule]) -> Result<(), AclError> {
        for (i, r) in rules.iter().enumerate() {
            if let Some(p) = r.portmap_port() {
                if rules[..i].iter().any(|o| o.portmap_port() == Some(p)) {
                    return Err(AclError {
                        id: r.id,
                        reason: alloc::format!("port {} is mapped twice", p.1),
                    });
                }
            }
        }
        Ok(())
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether a port map listens on `port` for `protocol` (dynamic NAT ports avoid these).
    pub fn is_mapped(&self, protocol: u8, port: u16) -> bool {
        self.rules
            .iter()
            .any(|r| r.portmap_port() == Some((protocol, port)))
    }

    /// The first rule that matches `q`, if any (`None`: default deny). For an inbound
    /// connection only port maps apply; `host_has(name, addr)` says whether DNS answered
    /// `addr` for `name` or a subdomain of it.
    pub fn evaluate(&self, q: &Query, host_has: impl Fn(&str, Ipv4Addr) -> bool) -> Option<usize> {
        self.rules.iter().position(|r| {
            let direction_ok = match r.direction {
                Direction::Both => true,
                Direction::Ingress => q.inbound,
                Direction::Egress => !q.inbound,
            };
            let kind_ok = matches!(r.action, Action::PortMap { .. }) == q.inbound;
            let app_ok = match (r.app, q.app) {
                (Some(owner), Some(asker)) => owner == asker,
                _ => true,
            };
            direction_ok
                && kind_ok
                && app_ok
                && r.matches.iter().all(|m| match m {
                    Match::Ip(net, prefix) => in_subnet(q.remote, *net, *prefix),
                    Match::Host(name) => host_has(name, q.remote),
                    Match::Protocol(p) => *p == q.protocol,
                    Match::Lport(p) => *p == q.lport,
                    Match::Fport(p) => *p == q.fport,
                })
        })
    }

    /// Whether rule `index` lets one more packet through at `now_ms` (always, but for a limit
    /// rule whose bucket is empty).
    pub fn admit(&mut self, index: usize, now_ms: u64) -> bool {
        let (Some(rule), Some(bucket)) = (self.rules.get(index), self.buckets.get_mut(index))
        else {
            return false;
        };
        match rule.action {
            Action::Drop => false,
            Action::Limit {
                rate,
                unit_ms,
                burst,
            } => {
                let elapsed = now_ms.saturating_sub(bucket.at_ms);
                bucket.at_ms = bucket.at_ms.max(now_ms);
                let refill = u128::from(elapsed) * u128::from(rate) * 1000 / u128::from(unit_ms);
                let cap = u64::from(burst) * 1000;
                bucket.milli_tokens =
                    (u128::from(bucket.milli_tokens) + refill).min(u128::from(cap)) as u64;
                if bucket.milli_tokens >= 1000 {
                    bucket.milli_tokens -= 1000;
                    true
                } else {
                    false
                }
            }
            Action::Accept | Action::PortMap { .. } => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(remote: [u8; 4], protocol: u8, lport: u16, fport: u16) -> Query {
        Query {
            protocol,
            remote: remote.into(),
            lport,
            fport,
            inbound: false,
            app: None,
        }
    }

    fn no_hosts(_: &str, _: Ipv4Addr) -> bool {
        false
    }

    #[test]
    fn first_match_wins_and_default_denies() {
        let acl = Acl::new(
            parse_rules("1#ip:10.0.2.2,protocol:tcp,fport:8080->accept; 2#ip:10.0.2.0/24->drop; 3#protocol:udp,fport:53->accept")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            acl.evaluate(&q([10, 0, 2, 2], PROTO_TCP, 4000, 8080), no_hosts),
            Some(0)
        );
        assert_eq!(
            acl.evaluate(&q([10, 0, 2, 2], PROTO_TCP, 4000, 8081), no_hosts),
            Some(1)
        );
        assert_eq!(
            acl.evaluate(&q([8, 8, 8, 8], PROTO_UDP, 4000, 53), no_hosts),
            Some(2)
        );
        assert_eq!(
            acl.evaluate(&q([8, 8, 8, 8], PROTO_TCP, 4000, 53), no_hosts),
            None
        );
        assert_eq!(acl.rules()[1].action, Action::Drop);
    }

    #[test]
    fn host_matches_through_dns_answers() {
        let acl = Acl::new(parse_rules("7#host:example.com->accept").unwrap()).unwrap();
        let dns = |name: &str, addr: Ipv4Addr| {
            name == "example.com" && addr == Ipv4Addr::new(93, 184, 216, 34)
        };
        assert_eq!(
            acl.evaluate(&q([93, 184, 216, 34], PROTO_TCP, 1, 443), dns),
            Some(0)
        );
        assert_eq!(acl.evaluate(&q([1, 1, 1, 1], PROTO_TCP, 1, 443), dns), None);
    }

    #[test]
    fn port_maps_apply_to_inbound_only() {
        let acl = Acl::new(
            parse_rules("1#protocol:tcp,lport:8080->portmap:80; 2#protocol:tcp->accept").unwrap(),
        )
        .unwrap();
        let mut inbound = q([10, 0, 2, 2], PROTO_TCP, 8080, 50000);
        inbound.inbound = true;
        assert_eq!(acl.evaluate(&inbound, no_hosts), Some(0));
        inbound.lport = 8081;
        assert_eq!(
            acl.evaluate(&inbound, no_hosts),
            None,
            "no map: default deny"
        );
        assert_eq!(
            acl.evaluate(&q([1, 1, 1, 1], PROTO_TCP, 8080, 80), no_hosts),
            Some(1)
        );
        assert!(acl.is_mapped(PROTO_TCP, 8080) && !acl.is_mapped(PROTO_UDP, 8080));
        assert!(Acl::new(
            parse_rules("1#protocol:tcp,lport:80->portmap:1;2#protocol:tcp,lport:80->portmap:2")
                .unwrap()
        )
        .is_err());
    }

    #[test]
    fn bad_rules_are_refused_with_their_id() {
        for (text, id) in [
            ("4#ip:10.0.2.300->accept", 4),
            ("5#ip:10.0.2.0/33->accept", 5),
            ("6#protocol:tcpx->accept", 6),
            ("7#lport:0->accept", 7),
            ("8#colour:red->accept", 8),
            ("9#protocol:tcp->portmap:80", 9),
            ("10#lport:80->portmap:80", 10),
            ("11#protocol:udp->limit:0/s/1", 11),
            ("12#protocol:udp->limit:5/fortnight/1", 12),
            ("13#protocol:udp->maybe", 13),
            ("14#protocol:udp", 14),
        ] {
            assert_eq!(parse_rules(text).map(|_| ()).unwrap_err().id, id, "{text}");
        }
    }

    #[test]
    fn limit_is_a_token_bucket() {
        let mut acl = Acl::new(parse_rules("1#protocol:udp->limit:10/s/5").unwrap()).unwrap();
        // The burst first, then one packet per 100 ms.
        let passed = (0..20).filter(|_| acl.admit(0, 0)).count();
        assert_eq!(passed, 5);
        assert!(!acl.admit(0, 50));
        assert!(acl.admit(0, 100));
        assert!(!acl.admit(0, 100));
        // Over 10 s at one packet per ms: 100 pass (plus what the bucket held: none).
        let passed = (1..=10_000).filter(|t| acl.admit(0, 100 + t)).count();
        assert_eq!(passed, 100);
        // Idle for a minute: the bucket holds the burst, no more.
        let passed = (0..20).filter(|_| acl.admit(0, 80_000)).count();
        assert_eq!(passed, 5);
    }

    #[test]
    fn eve_ace_actions_combine() {
        let drop_and_limit = [
            AceAction {
                drop: true,
                ..Default::default()
            },
            AceAction {
                limit: true,
                limit_rate: 1,
                ..Default::default()
            },
        ];
        let r = Rule::from_ace(
            1,
            "n",
            &[("protocol", "6")],
            &drop_and_limit,
            Direction::Egress,
        )
        .unwrap();
        assert_eq!(r.action, Action::Drop);
        let r = Rule::from_ace(2, "n", &[], &[], Direction::Both).unwrap();
        assert_eq!((r.action, r.matches.len()), (Action::Accept, 0));
    }

    proptest! {
        /// Rate limits hold: over any run of packets the bucket never lets through more than
        /// burst + rate * elapsed / unit.
        #[test]
        fn limit_never_exceeds_its_rate(rate in 1u32..1000, burst in 1u32..50, steps in proptest::collection::vec(0u64..50, 1..500)) {
            let mut acl = Acl::new(alloc::vec![Rule::from_ace(1, "", &[], &[AceAction { limit: true, limit_rate: rate, limit_unit: "s".into(), limit_burst: burst, ..Default::default() }], Direction::Both).unwrap()]).unwrap();
            let mut now = 0;
            let mut passed = 0u64;
            for s in steps {
                now += s;
                if acl.admit(0, now) { passed += 1; }
            }
            prop_assert!(passed <= u64::from(burst) + u64::from(rate) * now / 1000);
        }

        #[test]
        fn text_rules_never_panic(text in ".{0,80}") {
            let _ = parse_rules(&text);
        }
    }
}
