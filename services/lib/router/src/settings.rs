//! A network instance's [`Config`] from `key=value` settings (the zedrouter image's command
//! line), with defaults that fit QEMU's user network as the uplink.
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `subnet` | `10.1.0.1/24` | the router's address and prefix on the app side |
//! | `dhcp_range` | gateway+1 .. gateway+99 (within the subnet) | `FIRST-LAST` |
//! | `lease_s` | `3600` | DHCP lease length |
//! | `uplink` | `10.0.2.15/24` | the router's address on the uplink, or `dhcp` |
//! | `uplink_gw` | `10.0.2.2` | the uplink's gateway (not with `uplink=dhcp`) |
//! | `dns` | `10.0.2.3` (with `uplink=dhcp`: the lease's) | resolver DNS queries to the gateway go to; `off` for none |
//! | `nat_capacity` | `10000` | most connections |
//! | `nat_ports` | `20000-29999` | dynamic uplink ports |
//! | `acl` | (none: deny all) | rules, [`crate::acl::parse_rules`] syntax |
//!
//! With `uplink=dhcp` the uplink's address, subnet, gateway and (unless `dns=` names one) its
//! resolver come from a DHCP lease ([`crate::dhcp_client`]): the configuration starts without
//! an address (0.0.0.0/0), and the image gives each router the lease when it is bound
//! ([`crate::Router::set_uplink`]).
//!
//! A bad value is an error naming the key, the value and what is wrong.

use alloc::format;
use alloc::string::String;
use core::net::Ipv4Addr;

use crate::acl::parse_rules;
use crate::nat::Timeouts;
use crate::router::Config;
use crate::wire::Mac;

fn cidr(key: &str, value: &str) -> Result<(Ipv4Addr, u8), String> {
    let bad = |why: &str| format!("bad `{key}={value}`: {why}");
    let (a, p) = value
        .split_once('/')
        .ok_or_else(|| bad("expected ADDRESS/PREFIX"))?;
    let addr = a.parse().map_err(|_| bad("not an IPv4 address"))?;
    let prefix = p
        .parse::<u8>()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or_else(|| bad("prefix is 0..=32"))?;
    Ok((addr, prefix))
}

fn addr(key: &str, value: &str) -> Result<Ipv4Addr, String> {
    value
        .parse()
        .map_err(|_| format!("bad `{key}={value}`: not an IPv4 address"))
}

fn range<T: core::str::FromStr>(key: &str, value: &str) -> Result<(T, T), String> {
    let bad = || format!("bad `{key}={value}`: expected FIRST-LAST");
    let (a, b) = value.split_once('-').ok_or_else(bad)?;
    Ok((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?))
}

/// Whether the uplink's address comes from DHCP (`uplink=dhcp`).
pub fn uplink_by_dhcp<'a>(get: impl Fn(&str) -> Option<&'a str>) -> bool {
    get("uplink") == Some("dhcp")
}

/// Builds a configuration from settings (`get(key)`), the two cards' MACs and a random seed.
/// The result is still checked by [`crate::Router::new`].
pub fn config_from<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
    app_mac: Mac,
    uplink_mac: Mac,
    seed: [u64; 2],
) -> Result<Config, String> {
    let (gateway, prefix) = cidr("subnet", get("subnet").unwrap_or("10.1.0.1/24"))?;
    let dhcp_range = match get("dhcp_range") {
        Some(v) => range::<Ipv4Addr>("dhcp_range", v)?,
        None => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            let last_host = (u32::from(gateway) | !mask).saturating_sub(1);
            let first = u32::from(gateway) + 1;
            (
                Ipv4Addr::from(first),
                Ipv4Addr::from(last_host.min(first + 98).max(first)),
            )
        }
    };
    let lease_secs = match get("lease_s") {
        Some(v) => v
            .parse()
            .map_err(|_| format!("bad `lease_s={v}`: not a number of seconds"))?,
        None => 3600,
    };
    let dhcp = uplink_by_dhcp(&get);
    let (uplink_ip, uplink_prefix, uplink_gateway) = if dhcp {
        if let Some(gw) = get("uplink_gw") {
            return Err(format!(
                "bad `uplink_gw={gw}`: with `uplink=dhcp` the gateway is the lease's"
            ));
        }
        (Ipv4Addr::UNSPECIFIED, 0, Ipv4Addr::UNSPECIFIED)
    } else {
        let (ip, prefix) = cidr("uplink", get("uplink").unwrap_or("10.0.2.15/24"))?;
        (
            ip,
            prefix,
            addr("uplink_gw", get("uplink_gw").unwrap_or("10.0.2.2"))?,
        )
    };
    let dns_upstream = match get("dns") {
        Some("off") => None,
        Some(v) => Some(addr("dns", v)?),
        None if dhcp => None,
        None => Some(Ipv4Addr::new(10, 0, 2, 3)),
    };
    let nat_capacity = match get("nat_capacity") {
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1_000_000).contains(n))
            .ok_or_else(|| format!("bad `nat_capacity={v}`: 1..=1000000"))?,
        None => 10_000,
    };
    let nat_ports = match get("nat_ports") {
        Some(v) => {
            let (a, b) = range::<u16>("nat_ports", v)?;
            if a == 0 || a > b {
                return Err(format!("bad `nat_ports={v}`: 1 <= FIRST <= LAST"));
            }
            (a, b)
        }
        None => (20000, 29999),
    };
    let rules = match get("acl") {
        Some(v) => parse_rules(v).map_err(|e| format!("bad `acl`: {e}"))?,
        None => alloc::vec::Vec::new(),
    };
    Ok(Config {
        app_mac,
        uplink_mac,
        gateway,
        prefix,
        dhcp_range,
        lease_secs,
        uplink_ip,
        uplink_prefix,
        uplink_gateway,
        dns_upstream,
        nat_capacity,
        nat_ports,
        timeouts: Timeouts::default(),
        rules,
        seed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Router;

    fn from(words: &[(&'static str, &'static str)]) -> Result<Config, String> {
        config_from(
            |k| words.iter().find(|w| w.0 == k).map(|w| w.1),
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            [0, 0],
        )
    }

    #[test]
    fn defaults_fit_qemu_user_networking() {
        let c = from(&[]).unwrap();
        assert_eq!((c.gateway, c.prefix), (Ipv4Addr::new(10, 1, 0, 1), 24));
        assert_eq!(
            c.dhcp_range,
            (Ipv4Addr::new(10, 1, 0, 2), Ipv4Addr::new(10, 1, 0, 100))
        );
        assert_eq!(
            (c.uplink_ip, c.uplink_gateway, c.dns_upstream),
            (
                Ipv4Addr::new(10, 0, 2, 15),
                Ipv4Addr::new(10, 0, 2, 2),
                Some(Ipv4Addr::new(10, 0, 2, 3))
            )
        );
        assert!(c.rules.is_empty());
        assert!(Router::new(c).is_ok());
        let small = from(&[("subnet", "192.168.7.1/29")]).unwrap();
        assert_eq!(
            small.dhcp_range,
            (Ipv4Addr::new(192, 168, 7, 2), Ipv4Addr::new(192, 168, 7, 6))
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (words, key) in [
            (&[("subnet", "10.1.0.1")][..], "subnet"),
            (&[("uplink", "10.0.2.300/24")][..], "uplink"),
            (&[("dns", "resolver")][..], "dns"),
            (&[("nat_capacity", "0")][..], "nat_capacity"),
            (&[("nat_ports", "30000-20000")][..], "nat_ports"),
            (&[("dhcp_range", "10.1.0.5")][..], "dhcp_range"),
            (&[("acl", "1#nonsense")][..], "acl"),
            (&[("lease_s", "long")][..], "lease_s"),
        ] {
            let e = from(words).unwrap_err();
            assert!(e.contains(&format!("`{key}")), "{e}");
        }
        assert_eq!(from(&[("dns", "off")]).unwrap().dns_upstream, None);
        let e = from(&[("uplink", "dhcp"), ("uplink_gw", "10.0.2.2")]).unwrap_err();
        assert!(e.contains("`uplink_gw=10.0.2.2`"), "{e}");
    }

    #[test]
    fn a_dhcp_uplink_starts_without_an_address() {
        let c = from(&[("uplink", "dhcp")]).unwrap();
        assert_eq!(
            (
                c.uplink_ip,
                c.uplink_prefix,
                c.uplink_gateway,
                c.dns_upstream
            ),
            (Ipv4Addr::UNSPECIFIED, 0, Ipv4Addr::UNSPECIFIED, None)
        );
        assert!(Router::new(c).is_ok());
        let c = from(&[("uplink", "dhcp"), ("dns", "192.168.1.53")]).unwrap();
        assert_eq!(c.dns_upstream, Some(Ipv4Addr::new(192, 168, 1, 53)));
    }
}
