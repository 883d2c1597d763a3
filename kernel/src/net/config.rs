//! Network configuration from the command line.
//!
//! - `ip=dhcp` (the default): DHCPv4 (lease, renew and rebind are the DHCP client's job);
//! - `ip=10.0.2.15/24 gw=10.0.2.2`: a static address and an optional default gateway;
//! - `ip=off`: no IPv4 address (IPv6 link-local only);
//! - `dns=10.0.2.3,1.1.1.1`: resolvers, used before any a DHCP server names;
//! - `ip6=off`: no IPv6 link-local address (it is on by default, derived from the MAC).
//!
//! A malformed value is an error naming the key and the value, never silently ignored.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::cmdline::Args;

/// How the IPv4 address is obtained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ipv4Mode {
    /// From a DHCP server.
    Dhcp,
    /// Fixed.
    Static(StaticIpv4),
    /// None.
    Off,
}

/// A fixed IPv4 configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaticIpv4 {
    /// The interface address.
    pub address: Ipv4Addr,
    /// Network prefix length (0..=32).
    pub prefix_len: u8,
    /// Default gateway, if any.
    pub gateway: Option<Ipv4Addr>,
}

impl StaticIpv4 {
    /// Whether `other` is on this address's subnet.
    pub fn on_link(&self, other: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0);
        u32::from(self.address) & mask == u32::from(other) & mask
    }
}

/// The whole network configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// IPv4 addressing.
    pub ipv4: Ipv4Mode,
    /// Resolvers given on the command line.
    pub dns_servers: Vec<IpAddr>,
    /// Whether to configure the IPv6 link-local address.
    pub ipv6_link_local: bool,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            ipv4: Ipv4Mode::Dhcp,
            dns_servers: Vec::new(),
            ipv6_link_local: true,
        }
    }
}

/// A configuration value that does not make sense.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The key.
    pub key: &'static str,
    /// The value as given.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad `{}={}`: {}", self.key, self.value, self.reason)
    }
}

fn error(key: &'static str, value: &str, reason: &'static str) -> ConfigError {
    ConfigError {
        key,
        value: value.to_string(),
        reason,
    }
}

impl NetConfig {
    /// Reads `ip`, `gw`, `dns` and `ip6` from the command line.
    pub fn from_args(args: &Args) -> Result<NetConfig, ConfigError> {
        let ipv4 = match args.get("ip") {
            None | Some("dhcp") => Ipv4Mode::Dhcp,
            Some("off") => Ipv4Mode::Off,
            Some(cidr) => Ipv4Mode::Static(parse_static(cidr, args.get("gw"))?),
        };
        if let (Some(gw), false) = (args.get("gw"), matches!(ipv4, Ipv4Mode::Static(_))) {
            return Err(error(
                "gw",
                gw,
                "a gateway needs a static `ip=ADDRESS/PREFIX`",
            ));
        }
        let dns_servers = match args.get("dns") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|s| {
                    s.parse::<IpAddr>()
                        .map_err(|_| error("dns", list, "expected comma-separated IP addresses"))
                })
                .collect::<Result<_, _>>()?,
        };
        let ipv6_link_local = match args.get("ip6") {
            None | Some("on") | Some("link-local") => true,
            Some("off") => false,
            Some(other) => return Err(error("ip6", other, "expected `link-local` or `off`")),
        };
        Ok(NetConfig {
            ipv4,
            dns_servers,
            ipv6_link_local,
        })
    }
}

fn parse_static(cidr: &str, gateway: Option<&str>) -> Result<StaticIpv4, ConfigError> {
    let (address, prefix) = cidr
        .split_once('/')
        .ok_or_else(|| error("ip", cidr, "expected `dhcp`, `off` or ADDRESS/PREFIX"))?;
    let address: Ipv4Addr = address
        .parse()
        .map_err(|_| error("ip", cidr, "not an IPv4 address"))?;
    let prefix_len: u8 = prefix
        .parse()
        .ok()
        .filter(|&p| p <= 32)
        .ok_or_else(|| error("ip", cidr, "the prefix length must be 0..=32"))?;
    if address.is_unspecified() || address.is_broadcast() || address.is_multicast() {
        return Err(error("ip", cidr, "not a usable host address"));
    }
    let mut config = StaticIpv4 {
        address,
        prefix_len,
        gateway: None,
    };
    if let Some(gw) = gateway {
        let gw_address: Ipv4Addr = gw
            .parse()
            .map_err(|_| error("gw", gw, "not an IPv4 address"))?;
        if !config.on_link(gw_address) {
            return Err(error("gw", gw, "the gateway is outside the `ip` subnet"));
        }
        config.gateway = Some(gw_address);
    }
    Ok(config)
}

/// The IPv6 link-local address of a MAC address (modified EUI-64, RFC 4291 appendix A).
pub fn link_local_ipv6(mac: [u8; 6]) -> Ipv6Addr {
    let mut bytes = [0u8; 16];
    bytes[0] = 0xfe;
    bytes[1] = 0x80;
    bytes[8] = mac[0] ^ 0x02;
    bytes[9] = mac[1];
    bytes[10] = mac[2];
    bytes[11] = 0xff;
    bytes[12] = 0xfe;
    bytes[13] = mac[3];
    bytes[14] = mac[4];
    bytes[15] = mac[5];
    Ipv6Addr::from(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn config(line: &str) -> Result<NetConfig, ConfigError> {
        NetConfig::from_args(&Args::parse(line).unwrap())
    }

    #[test]
    fn dhcp_is_the_default() {
        assert_eq!(config("").unwrap(), NetConfig::default());
        assert_eq!(config("ip=dhcp").unwrap().ipv4, Ipv4Mode::Dhcp);
        assert_eq!(config("ip=off ip6=off").unwrap().ipv4, Ipv4Mode::Off);
        assert!(!config("ip6=off").unwrap().ipv6_link_local);
    }

    #[test]
    fn static_address_gateway_and_resolvers() {
        let c = config("ip=10.0.2.15/24 gw=10.0.2.2 dns=10.0.2.3,2001:db8::1").unwrap();
        assert_eq!(
            c.ipv4,
            Ipv4Mode::Static(StaticIpv4 {
                address: Ipv4Addr::new(10, 0, 2, 15),
                prefix_len: 24,
                gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
            })
        );
        assert_eq!(
            c.dns_servers,
            vec![
                IpAddr::V4(Ipv4Addr::new(10, 0, 2, 3)),
                "2001:db8::1".parse::<IpAddr>().unwrap()
            ]
        );
        assert!(matches!(
            config("ip=192.168.1.9/0 gw=8.8.8.8").unwrap().ipv4,
            Ipv4Mode::Static(_)
        ));
    }

    #[test]
    fn bad_values_name_key_and_reason() {
        let cases = [
            (
                "ip=10.0.2.15",
                "ip",
                "expected `dhcp`, `off` or ADDRESS/PREFIX",
            ),
            ("ip=10.0.2/24", "ip", "not an IPv4 address"),
            ("ip=10.0.2.15/33", "ip", "the prefix length must be 0..=32"),
            ("ip=0.0.0.0/8", "ip", "not a usable host address"),
            (
                "ip=10.0.2.15/24 gw=10.0.3.1",
                "gw",
                "the gateway is outside the `ip` subnet",
            ),
            ("ip=10.0.2.15/24 gw=x", "gw", "not an IPv4 address"),
            (
                "gw=10.0.2.2",
                "gw",
                "a gateway needs a static `ip=ADDRESS/PREFIX`",
            ),
            (
                "dns=10.0.2.3,,",
                "dns",
                "expected comma-separated IP addresses",
            ),
            ("ip6=maybe", "ip6", "expected `link-local` or `off`"),
        ];
        for (line, key, reason) in cases {
            let e = config(line).unwrap_err();
            assert_eq!((e.key, e.reason), (key, reason), "{line}");
        }
        assert_eq!(
            config("ip=10.0.2.15/24 gw=10.0.3.1")
                .unwrap_err()
                .to_string(),
            "bad `gw=10.0.3.1`: the gateway is outside the `ip` subnet"
        );
    }

    #[test]
    fn eui64_link_local() {
        assert_eq!(
            link_local_ipv6([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
            "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
        );
    }
}
