//! What each service finds in xenstore about itself and its peers, and who may read it.
//!
//! For a service `S` running as domain `d` (paths relative to `/local/domain/<d>/data/lichen`):
//!
//! | path                        | value                                                  |
//! |-----------------------------|--------------------------------------------------------|
//! | `name`                      | `S`                                                    |
//! | `channels`                  | the names of S's channels, space-separated             |
//! | `bus`                       | those that carry the bus (each named after its peer)   |
//! | `channels/<C>/role`         | `server` or `client`                                   |
//! | `channels/<C>/peer`         | the other service's name                               |
//! | `channels/<C>/peer-domid`   | its domid (absent while it is not running)             |
//! | `channels/<C>/ring-order`   | log2 of each ring's size in bytes                      |
//! | `channels/<C>/server-path`  | client only: the server's `channels/<C>` directory,    |
//! |                             | where the server writes `ring-ref` and `event-channel` |
//! | `disk/<vbd id>`             | the name of S's disk with that xenstore id             |
//!
//! The app manager (`[apps] manager`) also gets the channel `domains`: a client whose server is
//! dom0 (`peer-domid` 0), at [`domain_service_path`].
//!
//! `name` and `channels` are private to `d` (owner `d`, no access for others). Each
//! `channels/<C>` directory is owned by `d` and readable by the peer only (`n<d> r<peer>`); nodes
//! the service creates below it (the vchan's `ring-ref`, `event-channel`) inherit that. Dom0 can
//! read everything. When a peer stops, the launcher removes it from the entries of the services
//! still running (`peer-domid`, `server-path` and the read permission go); when it restarts with
//! a new domid the launcher rewrites both sides.

use std::collections::HashMap;

use crate::manifest::Manifest;

/// Xenstore changes: nodes to remove, values to write, then permissions to set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wiring {
    /// Nodes to remove (a missing one is fine).
    pub removes: Vec<String>,
    /// `(path, value)` pairs.
    pub writes: Vec<(String, String)>,
    /// Permission lists to set, in xenstore-chmod syntax (`n1`, `r2`, ...): the first names the
    /// owner and what everyone else may do; `recursive` applies it to the whole subtree.
    pub perms: Vec<Permissions>,
}

impl Wiring {
    /// Every path it touches (removed, written or given permissions).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.removes
            .iter()
            .chain(self.writes.iter().map(|(path, _)| path))
            .chain(self.perms.iter().map(|p| &p.path))
            .map(String::as_str)
    }

    /// Its permission changes node by node, for a tree that holds nothing but what this wiring
    /// writes (a domain that has not run yet): a recursive change covers its root, every written
    /// path below it and the directories between. No listing of the tree is needed.
    pub fn perms_of_written(&self) -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        for change in &self.perms {
            out.push((change.path.clone(), change.perms.clone()));
            if !change.recursive {
                continue;
            }
            let prefix = format!("{}/", change.path);
            let mut below = std::collections::BTreeSet::new();
            for (path, _) in &self.writes {
                let Some(rest) = path.strip_prefix(&prefix) else {
                    continue;
                };
                let mut at = prefix.len();
                for part in rest.split('/') {
                    at += part.len();
                    below.insert(path[..at].to_string());
                    at += 1;
                }
            }
            out.extend(below.into_iter().map(|p| (p, change.perms.clone())));
        }
        out
    }
}

/// One permission change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permissions {
    /// The node.
    pub path: String,
    /// The permission list.
    pub perms: Vec<String>,
    /// Whether the node's children get it too.
    pub recursive: bool,
}

/// The base of a domain's lichen entries.
pub fn base_path(domid: u32) -> String {
    format!("/local/domain/{domid}/data/lichen")
}

/// The directory of channel `channel` in domain `domid`'s entries.
pub fn channel_path(domid: u32, channel: &str) -> String {
    format!("{}/channels/{channel}", base_path(domid))
}

/// Where dom0 serves the domain service to the manager running as `domid`.
pub fn domain_service_path(domid: u32) -> String {
    format!("/local/domain/0/data/lichen/domains/{domid}")
}

/// The entries of `service`, running as `domids[service]`; `domids` holds the running services.
/// Returns nothing when `service` is not running.
pub fn service_wiring(manifest: &Manifest, service: &str, domids: &HashMap<String, u32>) -> Wiring {
    let Some(&domid) = domids.get(service) else {
        return Wiring::default();
    };
    let base = base_path(domid);
    let owner_only = vec![format!("n{domid}")];
    let mut wiring = Wiring::default();
    let is_manager = manifest
        .apps
        .as_ref()
        .is_some_and(|apps| apps.manager == service);
    let mut names: Vec<&str> = manifest
        .channels_of(service)
        .map(|c| c.name_for(service))
        .collect();
    if is_manager {
        names.push(launcher_api::CHANNEL);
    }
    let bus: Vec<&str> = manifest
        .channels_of(service)
        .filter(|c| c.is_bus())
        .map(|c| c.name_for(service))
        .collect();
    wiring
        .writes
        .push((format!("{base}/name"), service.to_string()));
    wiring
        .writes
        .push((format!("{base}/channels"), names.join(" ")));
    wiring.writes.push((format!("{base}/bus"), bus.join(" ")));
    let mut private = vec![
        base.clone(),
        format!("{base}/name"),
        format!("{base}/channels"),
        format!("{base}/bus"),
    ];
    if let Some(uses) = manifest.services.get(service).map(|s| &s.disks) {
        for (i, disk) in uses.iter().enumerate() {
            let path = format!("{base}/disk/{}", crate::disks::vbd_id(i));
            wiring.writes.push((path.clone(), disk.name.clone()));
            private.push(path);
        }
        if !uses.is_empty() {
            private.push(format!("{base}/disk"));
        }
    }
    for node in private {
        wiring.perms.push(Permissions {
            path: node,
            perms: owner_only.clone(),
            recursive: false,
        });
    }

    if is_manager {
        // The domain service: dom0 serves it (a libxenvchan server at
        // [`domain_service_path`]), the manager connects as its client.
        let dir = channel_path(domid, launcher_api::CHANNEL);
        for (key, value) in [
            ("role", "client".to_string()),
            ("peer", "launcher".to_string()),
            ("peer-domid", "0".to_string()),
            ("ring-order", "11".to_string()),
            ("server-path", domain_service_path(domid)),
        ] {
            wiring.writes.push((format!("{dir}/{key}"), value));
        }
        wiring.perms.push(Permissions {
            path: dir,
            perms: owner_only.clone(),
            recursive: true,
        });
    }
    for channel in manifest.channels_of(service) {
        let is_server = channel.server == service;
        let peer = if is_server {
            &channel.client
        } else {
            &channel.server
        };
        let dir = channel_path(domid, channel.name_for(service));
        let role = if is_server { "server" } else { "client" };
        wiring
            .writes
            .push((format!("{dir}/role"), role.to_string()));
        wiring.writes.push((format!("{dir}/peer"), peer.clone()));
        wiring
            .writes
            .push((format!("{dir}/ring-order"), channel.ring_order.to_string()));
        let peer_domid = domids.get(peer.as_str()).copied();
        if let Some(peer_domid) = peer_domid {
            wiring
                .writes
                .push((format!("{dir}/peer-domid"), peer_domid.to_string()));
            if !is_server {
                wiring.writes.push((
                    format!("{dir}/server-path"),
                    channel_path(peer_domid, channel.name_for(peer)),
                ));
            }
        } else {
            // The peer is not running (yet, or any more): nothing may name its old domain.
            wiring.removes.push(format!("{dir}/peer-domid"));
            if !is_server {
                wiring.removes.push(format!("{dir}/server-path"));
            }
        }
        let mut perms = owner_only.clone();
        perms.extend(peer_domid.map(|p| format!("r{p}")));
        wiring.perms.push(Permissions {
            path: dir,
            perms,
            recursive: true,
        });
    }
    wiring
}

/// The entries of `peer` that name `service`'s domain, as they must read once `service` runs as
/// `domids[service]`: for each channel between them, `server-path` (when `peer` is the client)
/// and then `peer-domid`. Writes only, in that order: a peer that reads a new `peer-domid`
/// already finds the matching `server-path` (see [`crate::platform::Platform::write_store`]).
/// This is the part of a restart its peers wait for; [`service_wiring`] of `peer` (the
/// permissions too) follows when nothing waits on it.
pub fn peer_update(
    manifest: &Manifest,
    peer: &str,
    service: &str,
    domids: &HashMap<String, u32>,
) -> Wiring {
    let mut wiring = Wiring::default();
    let (Some(&peer_domid), Some(&domid)) = (domids.get(peer), domids.get(service)) else {
        return wiring;
    };
    let between = manifest
        .channels_of(service)
        .filter(|c| c.server == peer || c.client == peer);
    for channel in between {
        let dir = channel_path(peer_domid, channel.name_for(peer));
        if channel.client == peer {
            wiring.writes.push((
                format!("{dir}/server-path"),
                channel_path(domid, channel.name_for(service)),
            ));
        }
        wiring
            .writes
            .push((format!("{dir}/peer-domid"), domid.to_string()));
    }
    wiring
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> Manifest {
        Manifest::parse(
            r#"
            [services.bus]
            image = "bus"
            memory = 8
            [services.api]
            image = "api"
            memory = 8
            [services.lone]
            image = "lone"
            memory = 8
            [[channels]]
            name = "events"
            server = "bus"
            client = "api"
            ring_order = 12
            "#,
        )
        .unwrap()
    }

    fn domids(pairs: &[(&str, u32)]) -> HashMap<String, u32> {
        pairs.iter().map(|(n, d)| (n.to_string(), *d)).collect()
    }

    fn value<'a>(wiring: &'a Wiring, path: &str) -> Option<&'a str> {
        wiring
            .writes
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_server_learns_its_client_and_only_the_client_may_read() {
        let wiring = service_wiring(&demo(), "bus", &domids(&[("bus", 3), ("api", 4)]));
        let dir = "/local/domain/3/data/lichen/channels/events";
        assert!(wiring.removes.is_empty());
        assert_eq!(
            value(&wiring, "/local/domain/3/data/lichen/name"),
            Some("bus")
        );
        assert_eq!(
            value(&wiring, "/local/domain/3/data/lichen/channels"),
            Some("events")
        );
        assert_eq!(value(&wiring, &format!("{dir}/role")), Some("server"));
        assert_eq!(value(&wiring, &format!("{dir}/peer")), Some("api"));
        assert_eq!(value(&wiring, &format!("{dir}/peer-domid")), Some("4"));
        assert_eq!(value(&wiring, &format!("{dir}/ring-order")), Some("12"));
        assert_eq!(value(&wiring, &format!("{dir}/server-path")), None);
        let channel_perms = wiring.perms.iter().find(|p| p.path == dir).unwrap();
        assert_eq!(channel_perms.perms, ["n3", "r4"]);
        assert!(channel_perms.recursive);
        let name_perms = wiring
            .perms
            .iter()
            .find(|p| p.path.ends_with("/name"))
            .unwrap();
        assert_eq!(name_perms.perms, ["n3"]);
    }

    #[test]
    fn a_client_learns_where_the_server_publishes_its_rings() {
        let wiring = service_wiring(&demo(), "api", &domids(&[("bus", 3), ("api", 4)]));
        let dir = "/local/domain/4/data/lichen/channels/events";
        assert_eq!(value(&wiring, &format!("{dir}/role")), Some("client"));
        assert_eq!(value(&wiring, &format!("{dir}/peer-domid")), Some("3"));
        assert_eq!(
            value(&wiring, &format!("{dir}/server-path")),
            Some("/local/domain/3/data/lichen/channels/events")
        );
        assert_eq!(
            wiring.perms.iter().find(|p| p.path == dir).unwrap().perms,
            ["n4", "r3"]
        );
    }

    #[test]
    fn a_missing_peer_is_left_out_and_nobody_else_may_read() {
        let wiring = service_wiring(&demo(), "api", &domids(&[("api", 4)]));
        let dir = "/local/domain/4/data/lichen/channels/events";
        assert_eq!(value(&wiring, &format!("{dir}/peer-domid")), None);
        assert_eq!(value(&wiring, &format!("{dir}/server-path")), None);
        assert_eq!(
            wiring.removes,
            [format!("{dir}/peer-domid"), format!("{dir}/server-path")],
            "a peer that stopped is forgotten"
        );
        assert_eq!(
            wiring.perms.iter().find(|p| p.path == dir).unwrap().perms,
            ["n4"]
        );
    }

    #[test]
    fn a_service_without_channels_gets_its_name_and_an_empty_list() {
        let wiring = service_wiring(&demo(), "lone", &domids(&[("lone", 7)]));
        assert_eq!(
            value(&wiring, "/local/domain/7/data/lichen/channels"),
            Some("")
        );
        assert_eq!(value(&wiring, "/local/domain/7/data/lichen/bus"), Some(""));
        assert_eq!(wiring.writes.len(), 3);
        assert!(service_wiring(&demo(), "lone", &domids(&[]))
            .writes
            .is_empty());
    }

    #[test]
    fn the_app_manager_gets_the_domain_service_as_a_client_of_dom0() {
        let mut manifest = demo();
        manifest.apps = Some(crate::apps::AppsConfig {
            manager: "lone".into(),
            memory_mib: 8,
            vcpus: 1,
            count: 1,
            data: "apps".into(),
            bridges: vec![],
        });
        let wiring = service_wiring(&manifest, "lone", &domids(&[("lone", 7)]));
        let dir = "/local/domain/7/data/lichen/channels/domains";
        assert_eq!(
            value(&wiring, "/local/domain/7/data/lichen/channels"),
            Some("domains")
        );
        assert_eq!(value(&wiring, &format!("{dir}/role")), Some("client"));
        assert_eq!(value(&wiring, &format!("{dir}/peer-domid")), Some("0"));
        assert_eq!(
            value(&wiring, &format!("{dir}/server-path")),
            Some("/local/domain/0/data/lichen/domains/7")
        );
        assert_eq!(
            wiring.perms.iter().find(|p| p.path == dir).unwrap().perms,
            ["n7"]
        );
        let other = service_wiring(&manifest, "bus", &domids(&[("bus", 3)]));
        assert!(
            !other.writes.iter().any(|(p, _)| p.contains("domains")),
            "only the manager"
        );
    }

    #[test]
    fn a_bus_channel_is_named_after_the_peer_on_each_side() {
        let mut manifest = demo();
        manifest.channels.push(crate::manifest::Channel {
            name: "bus~api".into(),
            server: "bus".into(),
            client: "api".into(),
            ring_order: 14,
            topics: vec![("bus/Status".into(), "bus".into())],
            log: false,
        });
        let ids = domids(&[("bus", 1), ("api", 2)]);
        let server = service_wiring(&manifest, "bus", &ids);
        assert_eq!(
            value(&server, "/local/domain/1/data/lichen/channels"),
            Some("events api")
        );
        assert_eq!(
            value(&server, "/local/domain/1/data/lichen/bus"),
            Some("api")
        );
        assert_eq!(
            value(&server, "/local/domain/1/data/lichen/channels/api/role"),
            Some("server")
        );
        let client = service_wiring(&manifest, "api", &ids);
        assert_eq!(
            value(&client, "/local/domain/2/data/lichen/bus"),
            Some("bus")
        );
        assert_eq!(
            value(
                &client,
                "/local/domain/2/data/lichen/channels/bus/server-path"
            ),
            Some("/local/domain/1/data/lichen/channels/api")
        );
        assert_eq!(
            value(
                &client,
                "/local/domain/2/data/lichen/channels/bus/ring-order"
            ),
            Some("14")
        );
    }

    #[test]
    fn a_peer_update_names_the_new_domain_with_the_server_path_first() {
        let mut manifest = demo();
        manifest.channels.push(crate::manifest::Channel {
            name: "bus~api".into(),
            server: "bus".into(),
            client: "api".into(),
            ring_order: 14,
            topics: vec![("bus/Status".into(), "bus".into())],
            log: false,
        });
        // bus (the server of both channels) came back as domain 9; api's entries follow it.
        let ids = domids(&[("bus", 9), ("api", 2), ("lone", 5)]);
        let update = peer_update(&manifest, "api", "bus", &ids);
        let dir = "/local/domain/2/data/lichen/channels";
        assert_eq!(
            update.writes,
            [
                (
                    format!("{dir}/events/server-path"),
                    "/local/domain/9/data/lichen/channels/events".to_string()
                ),
                (format!("{dir}/events/peer-domid"), "9".to_string()),
                (
                    format!("{dir}/bus/server-path"),
                    "/local/domain/9/data/lichen/channels/api".to_string()
                ),
                (format!("{dir}/bus/peer-domid"), "9".to_string()),
            ]
        );
        assert!(update.removes.is_empty() && update.perms.is_empty());
        // The same values the whole rewrite gives, later.
        let whole = service_wiring(&manifest, "api", &ids);
        for (path, v) in &update.writes {
            assert_eq!(value(&whole, path), Some(v.as_str()), "{path}");
        }
        // api came back as domain 11: bus, its server, learns only the domid.
        let ids = domids(&[("bus", 9), ("api", 11)]);
        let update = peer_update(&manifest, "bus", "api", &ids);
        assert_eq!(
            update.writes,
            [
                (
                    "/local/domain/9/data/lichen/channels/events/peer-domid".to_string(),
                    "11".to_string()
                ),
                (
                    "/local/domain/9/data/lichen/channels/api/peer-domid".to_string(),
                    "11".to_string()
                ),
            ]
        );
        // Nothing between services that share no channel, or for one that is not running.
        assert_eq!(
            peer_update(&manifest, "lone", "bus", &ids),
            Wiring::default()
        );
        assert_eq!(
            peer_update(&manifest, "bus", "lone", &ids),
            Wiring::default()
        );
    }

    #[test]
    fn the_permissions_of_a_fresh_tree_cover_what_was_written_below_each_root() {
        let wiring = service_wiring(&demo(), "api", &domids(&[("bus", 3), ("api", 4)]));
        let perms = wiring.perms_of_written();
        let dir = "/local/domain/4/data/lichen/channels/events";
        let of = |path: &str| {
            perms
                .iter()
                .filter(|(p, _)| p == path)
                .map(|(_, v)| v.clone())
                .collect::<Vec<_>>()
        };
        for node in [
            "",
            "/role",
            "/peer",
            "/ring-order",
            "/peer-domid",
            "/server-path",
        ] {
            assert_eq!(of(&format!("{dir}{node}")), [["n4", "r3"]], "{node}");
        }
        assert_eq!(of("/local/domain/4/data/lichen/name"), [["n4"]]);
        // Deeper trees get their directories too; nothing outside the root.
        let nested = Wiring {
            writes: vec![
                ("/a/b/c/d".into(), "1".into()),
                ("/a/bx".into(), "2".into()),
            ],
            perms: vec![Permissions {
                path: "/a/b".into(),
                perms: vec!["n1".into()],
                recursive: true,
            }],
            ..Wiring::default()
        };
        let paths: Vec<String> = nested
            .perms_of_written()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(paths, ["/a/b", "/a/b/c", "/a/b/c/d"]);
    }
}
