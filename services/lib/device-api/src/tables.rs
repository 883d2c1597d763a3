//! The configuration in force as the bus's typed tables (`topics::zedagent::config`): an
//! `EdgeDevConfig` converted object by object, its references checked.
//!
//! **What the controller may send, and what happens**: any `EdgeDevConfig` that verified and
//! decoded. An object without its id, two objects with one id, or a reference to an object the
//! configuration does not hold (a content tree's datastore, a volume's content tree, an app's
//! volume or network instance, the base OS's content tree), a negative size or a SHA-256 that
//! is not 64 hex digits: the whole configuration is refused with every reason found, and the
//! caller keeps the one in force. Nothing is published from a configuration half understood.
//!
//! Ids and UUIDs are compared and published in lowercase (the controller compares them so), so
//! that a subscriber finds a referenced object under the key its referrer names.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use lichen_api::config::{EdgeDevConfig, VolumeContentOriginType};
use topics::zedagent::config::{
    Ace, AceAction, AppInstance, AppInterface, BaseOs, ConfigItems, ContentTree, Datastore,
    DatastoreKind, NetworkInstance, Volume, VolumeOrigin, VolumeRef,
};

/// A configuration as the bus's tables, each keyed as published.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigTables {
    /// `zedagent/ConfigItems`.
    pub items: ConfigItems,
    /// `zedagent/Datastore`, by id.
    pub datastores: BTreeMap<String, Datastore>,
    /// `zedagent/ContentTree`, by UUID.
    pub content_trees: BTreeMap<String, ContentTree>,
    /// `zedagent/Volume`, by UUID.
    pub volumes: BTreeMap<String, Volume>,
    /// `zedagent/AppInstance`, by UUID.
    pub apps: BTreeMap<String, AppInstance>,
    /// `zedagent/NetworkInstance`, by UUID.
    pub network_instances: BTreeMap<String, NetworkInstance>,
    /// `zedagent/BaseOs`, if the configuration names one.
    pub base_os: Option<BaseOs>,
}

/// Why a configuration was refused: every problem found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            f.write_str(problem)?;
        }
        Ok(())
    }
}

impl ConfigTables {
    /// The tables of `config`, or every reason to refuse it.
    pub fn from_config(config: &EdgeDevConfig) -> Result<ConfigTables, ConfigError> {
        let config = &lowercase_ids(config);
        let mut problems = Vec::new();
        let mut tables = ConfigTables {
            items: ConfigItems {
                items: config
                    .config_items
                    .iter()
                    .map(|i| (i.key.clone(), i.value.clone()))
                    .collect(),
            },
            ..ConfigTables::default()
        };

        for ds in &config.datastores {
            let datastore = Datastore {
                id: ds.id.clone(),
                kind: match ds.d_type {
                    1 => DatastoreKind::Http,
                    2 => DatastoreKind::Https,
                    other => DatastoreKind::Other(other),
                },
                fqdn: ds.fqdn.clone(),
                dpath: ds.dpath.clone(),
                api_key: ds.api_key.clone(),
                password: ds.password.clone(),
            };
            insert(
                &mut tables.datastores,
                "datastore",
                ds.id.clone(),
                datastore,
                &mut problems,
            );
        }

        for ct in &config.content_info {
            let datastore_id = if ct.ds_id.is_empty() {
                ct.ds_ids_list.first().cloned().unwrap_or_default()
            } else {
                ct.ds_id.clone()
            };
            if !tables.datastores.contains_key(&datastore_id) {
                problems.push(format!(
                    "content tree {}: datastore {datastore_id:?} is not in the configuration",
                    ct.uuid
                ));
            }
            let sha256 = ct.sha256.to_ascii_lowercase();
            let hex = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
            if !sha256.is_empty() && !hex {
                problems.push(format!(
                    "content tree {}: sha256 {:?} is not 64 hex digits",
                    ct.uuid, ct.sha256
                ));
            }
            let tree = ContentTree {
                uuid: ct.uuid.clone(),
                datastore_id,
                url: ct.url.clone(),
                format: ct.iformat,
                sha256,
                max_size_bytes: ct.max_size_bytes,
                name: ct.display_name.clone(),
            };
            insert(
                &mut tables.content_trees,
                "content tree",
                ct.uuid.clone(),
                tree,
                &mut problems,
            );
        }

        for v in &config.volumes {
            let origin = match &v.origin {
                Some(o) if o.r#type == VolumeContentOriginType::VcotBlank as i32 => {
                    VolumeOrigin::Blank
                }
                Some(o) if o.r#type == VolumeContentOriginType::VcotDownload as i32 => {
                    if !tables
                        .content_trees
                        .contains_key(&o.download_content_tree_id)
                    {
                        problems.push(format!(
                            "volume {}: content tree {:?} is not in the configuration",
                            v.uuid, o.download_content_tree_id
                        ));
                    }
                    VolumeOrigin::ContentTree(o.download_content_tree_id.clone())
                }
                Some(o) => {
                    problems.push(format!(
                        "volume {}: unknown origin type {}",
                        v.uuid, o.r#type
                    ));
                    VolumeOrigin::Blank
                }
                None => {
                    problems.push(format!("volume {}: no origin", v.uuid));
                    VolumeOrigin::Blank
                }
            };
            let max_size_bytes = u64::try_from(v.maxsizebytes).unwrap_or_else(|_| {
                problems.push(format!(
                    "volume {}: negative size {}",
                    v.uuid, v.maxsizebytes
                ));
                0
            });
            let volume = Volume {
                uuid: v.uuid.clone(),
                name: v.display_name.clone(),
                origin,
                max_size_bytes,
                generation: v.generation_count,
            };
            insert(
                &mut tables.volumes,
                "volume",
                v.uuid.clone(),
                volume,
                &mut problems,
            );
        }

        for ni in &config.network_instances {
            let id = ni.uuidandversion.clone().unwrap_or_default();
            let ip = ni.ip.clone().unwrap_or_default();
            let range = ip.dhcp_range.clone().unwrap_or_default();
            let instance = NetworkInstance {
                uuid: id.uuid.clone(),
                name: ni.displayname.clone(),
                kind: ni.inst_type,
                subnet: ip.subnet,
                gateway: ip.gateway,
                dhcp_start: range.start,
                dhcp_end: range.end,
                dns: ip.dns,
            };
            insert(
                &mut tables.network_instances,
                "network instance",
                id.uuid,
                instance,
                &mut problems,
            );
        }

        for app in &config.apps {
            let id = app.uuidandversion.clone().unwrap_or_default();
            let resources = app.fixedresources.clone().unwrap_or_default();
            let volumes = app
                .volume_ref_list
                .iter()
                .map(|r| {
                    if !tables.volumes.contains_key(&r.uuid) {
                        problems.push(format!(
                            "app {}: volume {:?} is not in the configuration",
                            id.uuid, r.uuid
                        ));
                    }
                    VolumeRef {
                        uuid: r.uuid.clone(),
                        generation: r.generation_count,
                    }
                })
                .collect();
            let interfaces = app
                .interfaces
                .iter()
                .map(|i| {
                    if !tables.network_instances.contains_key(&i.network_id) {
                        problems.push(format!(
                            "app {}: interface {:?}: network instance {:?} is not in the configuration",
                            id.uuid, i.name, i.network_id
                        ));
                    }
                    let acls: Vec<Ace> = i.acls.iter().map(ace).collect();
                    if let Err(e) = router::ace::rules_of(&acls, None) {
                        problems.push(format!(
                            "app {}: interface {:?}: {e}",
                            id.uuid, i.name
                        ));
                    }
                    AppInterface {
                        name: i.name.clone(),
                        network_id: i.network_id.clone(),
                        addr: i.addr.clone(),
                        mac: i.mac_address.clone(),
                        acls,
                    }
                })
                .collect();
            let instance = AppInstance {
                uuid: id.uuid.clone(),
                version: id.version.clone(),
                name: app.displayname.clone(),
                activate: app.activate,
                memory_kib: u64::from(resources.memory),
                vcpus: resources.vcpus,
                volumes,
                interfaces,
                restart_counter: app.restart.as_ref().map_or(0, |c| c.counter),
                purge_counter: app.purge.as_ref().map_or(0, |c| c.counter),
                start_delay_s: app.start_delay_in_seconds,
                cmdline: user_data_cmdline(&app.user_data).unwrap_or_else(|why| {
                    problems.push(format!("app {}: userData: {why}", id.uuid));
                    String::new()
                }),
            };
            insert(&mut tables.apps, "app", id.uuid, instance, &mut problems);
        }

        if let Some(b) = &config.baseos {
            // An empty BaseOS message is no base OS.
            let empty = b.content_tree_uuid.is_empty() && b.base_os_version.is_empty();
            if !empty || b.activate {
                if !tables.content_trees.contains_key(&b.content_tree_uuid) {
                    problems.push(format!(
                        "base OS {:?}: content tree {:?} is not in the configuration",
                        b.base_os_version, b.content_tree_uuid
                    ));
                }
                tables.base_os = Some(BaseOs {
                    content_tree_uuid: b.content_tree_uuid.clone(),
                    version: b.base_os_version.clone(),
                    activate: b.activate,
                });
            }
        }

        if problems.is_empty() {
            Ok(tables)
        } else {
            Err(ConfigError(problems))
        }
    }
}

/// An ACE as the controller sent it (checked by the caller).
fn ace(a: &lichen_api::config::Ace) -> Ace {
    Ace {
        id: a.id,
        name: a.name.clone(),
        matches: a
            .matches
            .iter()
            .map(|m| (m.r#type.clone(), m.value.clone()))
            .collect(),
        actions: a
            .actions
            .iter()
            .map(|x| AceAction {
                drop: x.drop,
                limit: x.limit,
                limit_rate: x.limitrate,
                limit_unit: x.limitunit.clone(),
                limit_burst: x.limitburst,
                portmap: x.portmap,
                app_port: x.app_port,
            })
            .collect(),
        direction: a.dir,
    }
}

/// `config` with every id and UUID, and every reference to one, in lowercase.
/// An app's command line from EVE's `userData`: base64 (standard alphabet, padded, as EVE's
/// controller sends it; spaces and line breaks in it ignored), then
/// [`launcher_api::check::cmdline_from_user_data`].
fn user_data_cmdline(user_data: &str) -> Result<String, String> {
    use base64ct::{Base64, Encoding};
    let compact: String = user_data.split_ascii_whitespace().collect();
    let bytes = Base64::decode_vec(&compact).map_err(|_| "not base64".to_string())?;
    launcher_api::check::cmdline_from_user_data(&bytes)
}

fn lowercase_ids(config: &EdgeDevConfig) -> EdgeDevConfig {
    fn lower(id: &mut str) {
        id.make_ascii_lowercase();
    }
    let mut config = config.clone();
    for ds in &mut config.datastores {
        lower(&mut ds.id);
    }
    for ct in &mut config.content_info {
        lower(&mut ct.uuid);
        lower(&mut ct.ds_id);
        ct.ds_ids_list.iter_mut().for_each(|d| lower(d));
    }
    for v in &mut config.volumes {
        lower(&mut v.uuid);
        if let Some(o) = &mut v.origin {
            lower(&mut o.download_content_tree_id);
        }
    }
    for ni in &mut config.network_instances {
        if let Some(id) = &mut ni.uuidandversion {
            lower(&mut id.uuid);
        }
    }
    for app in &mut config.apps {
        if let Some(id) = &mut app.uuidandversion {
            lower(&mut id.uuid);
        }
        for r in &mut app.volume_ref_list {
            lower(&mut r.uuid);
        }
        for i in &mut app.interfaces {
            lower(&mut i.network_id);
        }
    }
    if let Some(b) = &mut config.baseos {
        lower(&mut b.content_tree_uuid);
    }
    config
}

/// Adds `value` at `key`, unless the key is empty or taken (a problem either way).
fn insert<T>(
    table: &mut BTreeMap<String, T>,
    what: &str,
    key: String,
    value: T,
    problems: &mut Vec<String>,
) {
    use alloc::collections::btree_map::Entry;
    if key.is_empty() {
        problems.push(format!("{what} with no id"));
        return;
    }
    match table.entry(key) {
        Entry::Occupied(e) => problems.push(format!("two of {what} {}", e.key())),
        Entry::Vacant(e) => drop(e.insert(value)),
    }
}

impl ConfigTables {
    /// A one-line summary: how many objects of each kind.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} apps, {} network instances, {} volumes, {} content trees, {} datastores, {} config items",
            self.apps.len(),
            self.network_instances.len(),
            self.volumes.len(),
            self.content_trees.len(),
            self.datastores.len(),
            self.items.items.len()
        );
        if let Some(b) = &self.base_os {
            s.push_str(&format!(", base OS {}", b.version));
        }
        s.to_string()
    }
}

#[cfg(test)]
#[path = "tables_tests.rs"]
pub(crate) mod tests;
