//! The configuration zedagent fans out on the bus: one table per kind of object of the
//! configuration in force (EVE's `EdgeDevConfig`), whether it came from the controller or from
//! the checkpoint, keyed by the object's UUID string (the config items and the base OS: one
//! object, [`Global`]).
//!
//! The tables are volatile: zedagent republishes them at start from its checkpoint. A
//! subscriber treats a key that vanishes as the object deleted from the configuration.
//! zedagent publishes only configurations whose references resolve (a volume's content tree, a
//! content tree's datastore, an app's volumes and network instances, the base OS's content
//! tree): a subscriber may still see a referenced object a moment after the referrer, since
//! tables change one at a time.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::{Global, Topic};

/// The device's config items (EVE's `configItems`, e.g. `timer.config.interval`), in the
/// order the configuration lists them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigItems {
    /// `(name, value)` pairs, values as received (not validated: each user checks its own).
    pub items: Vec<(String, String)>,
}

impl ConfigItems {
    /// The value of item `name`, if the configuration sets it (the last one if set twice).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.items
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The config items (one object).
pub const CONFIG_ITEMS: Topic<Global, ConfigItems> = Topic::volatile("zedagent/ConfigItems", 1);

/// The protocol of a datastore (EVE's `DsType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DatastoreKind {
    /// `DsHttp`.
    Http,
    /// `DsHttps`.
    Https,
    /// Any other `DsType` value, as received (S3, SFTP, a container registry, ...).
    Other(i32),
}

/// A server that content is downloaded from (EVE's `DatastoreConfig`). Secrets are as
/// received: EVE's encrypted `cipherData` is not supported yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Datastore {
    /// Its id (the key), which content trees name.
    pub id: String,
    /// Its protocol.
    pub kind: DatastoreKind,
    /// The server, `host[:port]`.
    pub fqdn: String,
    /// The path on the server that content tree URLs are relative to.
    pub dpath: String,
    /// The user or API key, if any.
    pub api_key: String,
    /// The password, if any.
    pub password: String,
}

/// The datastores, keyed by id.
pub const DATASTORE: Topic<String, Datastore> = Topic::volatile("zedagent/Datastore", 1);

/// Immutable content to download and verify (EVE's `ContentTree`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentTree {
    /// Its UUID (the key).
    pub uuid: String,
    /// The datastore it comes from ([`DATASTORE`]'s key).
    pub datastore_id: String,
    /// Its path, relative to the datastore's `dpath`.
    pub url: String,
    /// Its format (EVE's `Format`: 1 RAW, 3 QCOW2, 8 CONTAINER, ...).
    pub format: i32,
    /// Its SHA-256, lowercase hex; empty when the controller gave none.
    pub sha256: String,
    /// The most bytes it may take (0: no limit given).
    pub max_size_bytes: u64,
    /// Its display name.
    pub name: String,
}

/// The content trees, keyed by UUID.
pub const CONTENT_TREE: Topic<String, ContentTree> = Topic::volatile("zedagent/ContentTree", 1);

/// What a volume starts from (EVE's `VolumeContentOrigin`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeOrigin {
    /// An empty volume.
    Blank,
    /// The content tree with this UUID ([`CONTENT_TREE`]'s key).
    ContentTree(String),
}

/// Writable storage for apps (EVE's `Volume`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Its UUID (the key).
    pub uuid: String,
    /// Its display name.
    pub name: String,
    /// What it starts from.
    pub origin: VolumeOrigin,
    /// Its size limit in bytes (0: the content's size).
    pub max_size_bytes: u64,
    /// Its generation: a new one means a new volume (EVE's `generationCount`).
    pub generation: i64,
}

/// The volumes, keyed by UUID.
pub const VOLUME: Topic<String, Volume> = Topic::volatile("zedagent/Volume", 1);

/// A volume an app instance uses (EVE's `VolumeRef`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRef {
    /// The volume's UUID ([`VOLUME`]'s key).
    pub uuid: String,
    /// The generation of the volume it wants.
    pub generation: i64,
}

/// A virtual NIC of an app instance (EVE's `NetworkAdapter`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInterface {
    /// Its name inside the app.
    pub name: String,
    /// The network instance it attaches to ([`NETWORK_INSTANCE`]'s key).
    pub network_id: String,
    /// A fixed IP address; empty: one from the network instance's DHCP.
    pub addr: String,
    /// A fixed MAC address; empty: one chosen by the node.
    pub mac: String,
    /// Its access control entries (EVE's `acls`), in order; zedrouter enforces them for this
    /// app (docs/router.md). zedagent publishes only ACEs that parse.
    pub acls: Vec<Ace>,
}

/// An ACE's action (EVE's `ACEAction`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AceAction {
    /// `drop`.
    pub drop: bool,
    /// `limit`.
    pub limit: bool,
    /// `limitrate`: packets per unit.
    pub limit_rate: u32,
    /// `limitunit`: `s`, `m`, `h` or `d` (also the long names).
    pub limit_unit: String,
    /// `limitburst`: packets at once.
    pub limit_burst: u32,
    /// `portmap`.
    pub portmap: bool,
    /// `appPort`: the app's port a port map leads to.
    pub app_port: u32,
}

/// An access control entry of an app's interface (EVE's `ACE`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ace {
    /// Its id (flow records report it as `aclId`).
    pub id: i32,
    /// Its name.
    pub name: String,
    /// `(type, value)`: `ip`, `host`, `protocol`, `lport`, `fport`; all must hold.
    pub matches: Vec<(String, String)>,
    /// What it does (none: accept).
    pub actions: Vec<AceAction>,
    /// EVE's `ACEDirection`: 0 both, 1 ingress, 2 egress.
    pub direction: i32,
}

/// An app instance (EVE's `AppInstanceConfig`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInstance {
    /// Its UUID (the key).
    pub uuid: String,
    /// The version of its configuration.
    pub version: String,
    /// Its display name.
    pub name: String,
    /// Whether it should run.
    pub activate: bool,
    /// Its memory in KiB.
    pub memory_kib: u64,
    /// Its virtual CPUs.
    pub vcpus: u32,
    /// Its volumes, in order (the first is its boot disk).
    pub volumes: Vec<VolumeRef>,
    /// Its network interfaces, in order.
    pub interfaces: Vec<AppInterface>,
    /// Restart it when this changes (EVE's `restart.counter`).
    pub restart_counter: u32,
    /// Restart it from fresh volumes when this changes (EVE's `purge.counter`).
    pub purge_counter: u32,
    /// Seconds to wait after the node boots before starting it.
    pub start_delay_s: u32,
    /// The command line its domain gets: EVE's `userData`, decoded and made a command line
    /// (`launcher_api::check::cmdline_from_user_data`); empty when none was given.
    pub cmdline: String,
}

/// The app instances, keyed by UUID.
pub const APP_INSTANCE: Topic<String, AppInstance> = Topic::volatile("zedagent/AppInstance", 2);

/// A network instance: a virtual network apps attach to (EVE's `NetworkInstanceConfig`).
/// Addresses are strings as in EVE's `ipspec` (empty when not given).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInstance {
    /// Its UUID (the key).
    pub uuid: String,
    /// Its display name.
    pub name: String,
    /// Its kind (EVE's `ZNetworkInstType`: 1 switch, 2 local, ...).
    pub kind: i32,
    /// Its subnet, `a.b.c.d/len`.
    pub subnet: String,
    /// The gateway address apps get.
    pub gateway: String,
    /// The first address its DHCP server hands out.
    pub dhcp_start: String,
    /// The last address its DHCP server hands out.
    pub dhcp_end: String,
    /// The DNS servers apps get.
    pub dns: Vec<String>,
}

/// The network instances, keyed by UUID.
pub const NETWORK_INSTANCE: Topic<String, NetworkInstance> =
    Topic::volatile("zedagent/NetworkInstance", 1);

/// The base OS the device should run (EVE's `BaseOS`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseOs {
    /// The content tree holding the image ([`CONTENT_TREE`]'s key).
    pub content_tree_uuid: String,
    /// The version it holds.
    pub version: String,
    /// Whether to switch to it.
    pub activate: bool,
}

/// The base OS (one object; absent when the configuration names none).
pub const BASE_OS: Topic<Global, BaseOs> = Topic::volatile("zedagent/BaseOs", 1);

/// Every configuration table, as an image declares it (zedagent publishes them all; a pillar
/// subscribes to those it needs).
pub const TABLES: &[crate::TopicDecl] = &[
    CONFIG_ITEMS.decl(),
    DATASTORE.decl(),
    CONTENT_TREE.decl(),
    VOLUME.decl(),
    APP_INSTANCE.decl(),
    NETWORK_INSTANCE.decl(),
    BASE_OS.decl(),
];

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn config_items_are_found_by_name_the_last_setting_winning() {
        let items = ConfigItems {
            items: vec![
                ("timer.config.interval".to_string(), "10".to_string()),
                ("debug.enable.ssh".to_string(), "false".to_string()),
                ("timer.config.interval".to_string(), "20".to_string()),
            ],
        };
        assert_eq!(items.get("timer.config.interval"), Some("20"));
        assert_eq!(items.get("debug.enable.ssh"), Some("false"));
        assert_eq!(items.get("timer.metric.interval"), None);
    }

    #[test]
    fn tables_round_trip_through_the_bus_encoding() {
        let app = AppInstance {
            uuid: "a".into(),
            version: "2".into(),
            name: "app".into(),
            activate: true,
            memory_kib: 65536,
            vcpus: 1,
            volumes: vec![VolumeRef {
                uuid: "v".into(),
                generation: 3,
            }],
            interfaces: vec![AppInterface {
                name: "eth0".into(),
                network_id: "n".into(),
                addr: String::new(),
                mac: "02:00:00:00:00:01".into(),
                acls: vec![Ace {
                    id: 1,
                    name: "web".into(),
                    matches: vec![
                        ("protocol".into(), "tcp".into()),
                        ("lport".into(), "8080".into()),
                    ],
                    actions: vec![AceAction {
                        portmap: true,
                        app_port: 80,
                        ..Default::default()
                    }],
                    direction: 0,
                }],
            }],
            restart_counter: 1,
            purge_counter: 2,
            start_delay_s: 5,
            cmdline: "broker=10.0.2.2:1883".into(),
        };
        let bytes = postcard::to_allocvec(&app).unwrap();
        assert_eq!(postcard::from_bytes::<AppInstance>(&bytes).unwrap(), app);
        let volume = Volume {
            uuid: "v".into(),
            name: "disk".into(),
            origin: VolumeOrigin::ContentTree("c".into()),
            max_size_bytes: 1 << 30,
            generation: -1,
        };
        let bytes = postcard::to_allocvec(&volume).unwrap();
        assert_eq!(postcard::from_bytes::<Volume>(&bytes).unwrap(), volume);
        let kind = DatastoreKind::Other(3);
        let bytes = postcard::to_allocvec(&kind).unwrap();
        assert_eq!(postcard::from_bytes::<DatastoreKind>(&bytes).unwrap(), kind);
    }
}
