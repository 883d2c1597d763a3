//! Network instances: the dom0 bridges a node declares for zedrouter's local networks, which
//! vifs a service gets, and which bridge an app may join (docs/router.md).
//!
//! A manifest with `network_instances = N` (at most [`MAX_INSTANCES`]) has the launcher make N
//! empty bridges, `lichenni1` .. `lichenniN`, before any service starts. The service with
//! `router = true` (zedrouter) gets vif 0 on its `network` bridge (the uplink side) and vif
//! `i` on `lichenni<i>`: one port per network instance. Apps join a bridge by name
//! (launcher-api's `AppSpec::network`): `lichenni<i>` (a local network instance, behind
//! zedrouter), `lichenbr0` (dom0's services bridge, dom0's DHCP) or `lichenup0` (the uplink's
//! L2: EVE's switch network instance as a dom0 bridge). Nothing else.
//!
//! dom0 itself has no address on a `lichenni` bridge: the only IP peer there is zedrouter.

use std::process::Command;

use crate::manifest::{Manifest, Network, BRIDGE, UPLINK_BRIDGE};

/// The most network-instance bridges a node may declare (zedrouter's ports).
pub const MAX_INSTANCES: u8 = 8;

/// The prefix of network-instance bridge names.
pub const PREFIX: &str = "lichenni";

/// The name of network-instance bridge `i` (1-based).
pub fn bridge(i: u8) -> String {
    format!("{PREFIX}{i}")
}

/// The network-instance number of `name`, if it is one of `lichenni1..=lichenni<declared>`.
pub fn instance_of(name: &str, declared: u8) -> Option<u8> {
    let i: u8 = name.strip_prefix(PREFIX)?.parse().ok()?;
    (1..=declared).contains(&i).then_some(i)
}

/// Every bridge an app may join on a node declaring `declared` network instances.
pub fn app_bridges(declared: u8) -> Vec<String> {
    let mut all = vec![BRIDGE.to_string(), UPLINK_BRIDGE.to_string()];
    all.extend((1..=declared).map(bridge));
    all
}

/// The card an app asking for `network` gets, or why it may not: `None` is no card.
pub fn app_network(network: Option<&str>, declared: u8) -> Result<Network, String> {
    match network {
        None => Ok(Network::None),
        Some(BRIDGE) => Ok(Network::Bridge),
        Some(UPLINK_BRIDGE) => Ok(Network::Uplink),
        Some(name) => instance_of(name, declared)
            .map(Network::Local)
            .ok_or_else(|| {
                format!(
                    "network `{name}` is not a bridge of this node (it has {})",
                    app_bridges(declared).join(", ")
                )
            }),
    }
}

/// What is wrong with the manifest's network instances and router.
pub fn check(manifest: &Manifest) -> Vec<String> {
    let mut errors = Vec::new();
    let n = manifest.network_instances;
    if n > MAX_INSTANCES {
        errors.push(format!(
            "network_instances = {n}: at most {MAX_INSTANCES} (zedrouter's ports)"
        ));
    }
    let routers: Vec<&String> = manifest
        .services
        .iter()
        .filter(|(_, s)| s.router)
        .map(|(name, _)| name)
        .collect();
    if routers.len() > 1 {
        errors.push(format!(
            "services {}: only one service may be the router",
            routers
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for (name, service) in &manifest.services {
        if let Network::Local(i) = service.network {
            if i > n {
                errors.push(format!(
                    "service `{name}`: network `{}`: the node declares {n} network instances",
                    bridge(i)
                ));
            }
        }
    }
    for name in &routers {
        let service = &manifest.services[name.as_str()];
        if !matches!(service.network, Network::Bridge | Network::Uplink) {
            errors.push(format!(
                "service `{name}`: a router needs `network = \"bridge\"` or `\"uplink\"` (its uplink side)"
            ));
        }
        if n == 0 {
            errors.push(format!(
                "service `{name}`: a router needs `network_instances` >= 1 (its ports)"
            ));
        }
        if service.toolstack == crate::manifest::Toolstack::Xl {
            errors.push(format!(
                "service `{name}`: a router is built by the launcher (`toolstack = \"lichen\"`)"
            ));
        }
    }
    errors
}

/// Makes the bridges `lichenni1..=lichenni<n>` in dom0 (a bridge that exists is kept) and
/// brings them up. Returns what failed, for the log: a service whose bridge is missing gets a
/// vif that the hotplug script cannot enslave, and says so.
pub fn setup_bridges(n: u8) -> Vec<String> {
    let mut failures = Vec::new();
    for i in 1..=n.min(MAX_INSTANCES) {
        let name = bridge(i);
        let exists = std::path::Path::new(&format!("/sys/class/net/{name}/bridge")).is_dir();
        let steps: Vec<Vec<&str>> = if exists {
            vec![vec!["ip", "link", "set", &name, "up"]]
        } else {
            vec![
                vec!["brctl", "addbr", &name],
                // No IPv6 autoconfiguration or address of dom0's on an app network.
                vec![
                    "sh",
                    "-c",
                    "echo 1 > /proc/sys/net/ipv6/conf/$0/disable_ipv6",
                    &name,
                ],
                vec!["ip", "link", "set", &name, "up"],
            ]
        };
        for step in steps {
            match Command::new(step[0]).args(&step[1..]).output() {
                Ok(out) if out.status.success() => {}
                Ok(out) => failures.push(format!(
                    "{}: {}",
                    step.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                Err(e) => failures.push(format!("{}: {e}", step.join(" "))),
            }
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_join_declared_bridges_only() {
        assert_eq!(app_network(None, 2), Ok(Network::None));
        assert_eq!(app_network(Some("lichenbr0"), 0), Ok(Network::Bridge));
        assert_eq!(app_network(Some("lichenup0"), 0), Ok(Network::Uplink));
        assert_eq!(app_network(Some("lichenni2"), 2), Ok(Network::Local(2)));
        for bad in [
            "lichenni3",
            "lichenni0",
            "lichenni",
            "lichenni01x",
            "eth0",
            "",
            "lichenbr0 ",
        ] {
            let e = app_network(Some(bad), 2).unwrap_err();
            assert!(
                e.contains("lichenni2") && e.contains("lichenbr0"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn a_router_needs_an_uplink_and_ports() {
        let parse = |text: &str| Manifest::parse(text).unwrap();
        let good = parse(
            "network_instances = 2\n[services.zedrouter]\nimage = \"zedrouter\"\nmemory = 32\nnetwork = \"bridge\"\nrouter = true\n",
        );
        assert!(check(&good).is_empty(), "{:?}", check(&good));
        assert_eq!(
            good.services["zedrouter"].vifs(),
            ["lichenbr0", "lichenni1", "lichenni2"]
        );
        let no_ports = parse(
            "[services.zedrouter]\nimage = \"zedrouter\"\nmemory = 32\nnetwork = \"uplink\"\nrouter = true\n",
        );
        assert!(check(&no_ports)[0].contains("network_instances"));
        let no_uplink = parse(
            "network_instances = 1\n[services.zedrouter]\nimage = \"zedrouter\"\nmemory = 32\nrouter = true\n",
        );
        assert!(check(&no_uplink)[0].contains("uplink side"));
        let too_many = parse("network_instances = 9\n[services.a]\nimage = \"a\"\nmemory = 8\n");
        assert!(check(&too_many)[0].contains("at most 8"));
        let two = parse(
            "network_instances = 1\n[services.a]\nimage = \"a\"\nmemory = 8\nnetwork = \"bridge\"\nrouter = true\n[services.b]\nimage = \"a\"\nmemory = 8\nnetwork = \"bridge\"\nrouter = true\n",
        );
        assert!(check(&two)[0].contains("only one"));
        let local = parse(
            "network_instances = 1\n[services.a]\nimage = \"a\"\nmemory = 8\nnetwork = \"lichenni1\"\n[services.b]\nimage = \"a\"\nmemory = 8\nnetwork = \"lichenni2\"\n",
        );
        assert_eq!(local.services["a"].network, Network::Local(1));
        assert!(check(&local)[0].contains("declares 1"));
        for bad in [
            "lichenni0",
            "lichenni",
            "lichennix",
            "lichenni+1",
            "eth0",
            "Bridge",
        ] {
            let text = format!("[services.a]\nimage = \"a\"\nmemory = 8\nnetwork = \"{bad}\"\n");
            assert!(Manifest::parse(&text).is_err(), "{bad}");
        }
        let plain = parse("network_instances = 1\n[services.a]\nimage = \"a\"\nmemory = 8\nnetwork = \"bridge\"\n");
        assert_eq!(
            plain.services["a"].vifs(),
            ["lichenbr0"],
            "only the router gets ports"
        );
    }
}
