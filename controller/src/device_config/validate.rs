//! The checks of a device configuration before it is stored: what the device cannot fix itself.
//!
//! Every field of `EdgeDevConfig` is accepted; these checks cover what can be judged from the
//! configuration alone: identities (UUIDs, labels, names) well formed and unique, every
//! reference between objects resolving, and numbers within their protocol ranges. What the
//! operator wrote is untrusted: nothing here panics, and every problem is reported (not only
//! the first).

use std::collections::{HashMap, HashSet};

use lichen_api::common::CipherBlock;
use lichen_api::config::{
    eve_binary_artifact::BinaryBlob, DisksConfig, Drive, EdgeDevConfig, UuiDandVersion,
};

/// Port labels every EVE device knows without declaring them: all ports, management ports, and
/// management ports that cost nothing.
const PREDEFINED_PORT_LABELS: &[&str] = &["all", "uplink", "freeuplink"];

/// Checks `config` for device `device` (whose UUID `id` may repeat but not contradict). Returns
/// every problem found, each a sentence naming the object and the field.
pub fn validate(config: &EdgeDevConfig, device: &str) -> Result<(), Vec<String>> {
    let mut check = Checker::default();
    if let Some(id) = &config.id {
        if !id.uuid.is_empty() && id.uuid != device {
            check.problem(format!(
                "id.uuid is {}, but this is device {device}",
                id.uuid
            ));
        }
    }
    let ids = check.identities(config);
    check.objects(config, &ids);
    check.ports(config, &ids);
    check.secrets(config, &ids);
    check.device_settings(config, &ids);
    if check.problems.is_empty() {
        Ok(())
    } else {
        Err(check.problems)
    }
}

/// The identities a configuration declares, lower-cased where EVE compares UUIDs.
#[derive(Default)]
struct Identities {
    network_instances: HashSet<String>,
    volumes: HashSet<String>,
    content_trees: HashSet<String>,
    datastores: HashSet<String>,
    apps: HashSet<String>,
    networks: HashSet<String>,
    patch_envelopes: HashSet<String>,
    cipher_contexts: HashSet<String>,
    scep_profiles: HashSet<String>,
    /// Logical labels of physical I/O (ports a VLAN or bond may sit on, or 802.1X applies to).
    physical_ports: HashSet<String>,
    /// Assignment groups of physical I/O (what app adapters name for pass-through).
    assignment_groups: HashSet<String>,
    /// Logical labels of bonds.
    bonds: HashSet<String>,
    /// Every name a network instance, route or system adapter may use for a port: logical labels
    /// of physical I/O, VLANs and bonds, shared labels, and the predefined labels.
    port_names: HashSet<String>,
    /// Whether the configuration declares the device's ports at all (`deviceIoList`); lichen
    /// nodes name their ports themselves, so port names are only checked against a declared list.
    ports_declared: bool,
}

/// Collects problems.
#[derive(Default)]
struct Checker {
    problems: Vec<String>,
}

fn uuid_of(id: &Option<UuiDandVersion>) -> &str {
    id.as_ref().map_or("", |id| id.uuid.as_str())
}

impl Checker {
    fn problem(&mut self, text: String) {
        self.problems.push(text);
    }

    /// UUID identities: well formed and unique within their kind.
    fn uuids<'a>(
        &mut self,
        what: &str,
        ids: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> HashSet<String> {
        let mut seen = HashSet::new();
        for (name, id) in ids {
            if uuid::Uuid::parse_str(id).is_err() {
                self.problem(format!("{what} {name:?}: {id:?} is not a UUID"));
            } else if !seen.insert(id.to_lowercase()) {
                self.problem(format!("{what} {name:?}: UUID {id} is used twice"));
            }
        }
        seen
    }

    /// Name identities: not empty and unique within `seen` (shared by kinds that share names).
    fn names<'a>(
        &mut self,
        what: &str,
        field: &str,
        names: impl IntoIterator<Item = &'a str>,
        seen: &mut HashSet<String>,
    ) {
        for (index, name) in names.into_iter().enumerate() {
            if name.is_empty() {
                self.problem(format!("{what} #{}: {field} is empty", index + 1));
            } else if !seen.insert(name.to_owned()) {
                self.problem(format!("{what} {name:?}: {field} is used twice"));
            }
        }
    }

    /// Reports `id` unless it is in `set` (UUIDs compared without case).
    fn reference(&mut self, owner: &str, name: &str, id: &str, set: &HashSet<String>, kind: &str) {
        if !set.contains(id) && !set.contains(&id.to_lowercase()) {
            self.problem(format!(
                "{owner} {name:?} refers to {kind} {id:?}, which is not configured"
            ));
        }
    }

    /// Reports a number outside `range` (a protocol limit).
    fn range(&mut self, owner: &str, name: &str, field: &str, value: u32, low: u32, high: u32) {
        if !(low..=high).contains(&value) {
            self.problem(format!(
                "{owner} {name:?}: {field} {value} is outside {low}..={high}"
            ));
        }
    }

    fn identities(&mut self, config: &EdgeDevConfig) -> Identities {
        let mut ids = Identities {
            network_instances: self.uuids(
                "network instance",
                config
                    .network_instances
                    .iter()
                    .map(|ni| (ni.displayname.as_str(), uuid_of(&ni.uuidandversion))),
            ),
            volumes: self.uuids(
                "volume",
                config
                    .volumes
                    .iter()
                    .map(|v| (v.display_name.as_str(), v.uuid.as_str())),
            ),
            content_trees: self.uuids(
                "content tree",
                config
                    .content_info
                    .iter()
                    .map(|c| (c.display_name.as_str(), c.uuid.as_str())),
            ),
            datastores: self.uuids(
                "datastore",
                config
                    .datastores
                    .iter()
                    .map(|d| (d.fqdn.as_str(), d.id.as_str())),
            ),
            apps: self.uuids(
                "app",
                config
                    .apps
                    .iter()
                    .map(|a| (a.displayname.as_str(), uuid_of(&a.uuidandversion))),
            ),
            networks: self.uuids(
                "network",
                config.networks.iter().map(|n| ("", n.id.as_str())),
            ),
            patch_envelopes: self.uuids(
                "patch envelope",
                config
                    .patch_envelopes
                    .iter()
                    .map(|p| (p.display_name.as_str(), p.uuid.as_str())),
            ),
            ports_declared: !config.device_io_list.is_empty(),
            ..Identities::default()
        };
        let mut contexts = HashSet::new();
        self.names(
            "cipher context",
            "contextId",
            config.cipher_contexts.iter().map(|c| c.context_id.as_str()),
            &mut contexts,
        );
        ids.cipher_contexts = contexts;
        let mut profiles = HashSet::new();
        self.names(
            "SCEP profile",
            "profileName",
            config.scep_profiles.iter().map(|p| p.profile_name.as_str()),
            &mut profiles,
        );
        ids.scep_profiles = profiles;

        // Physical I/O, VLANs and bonds share one namespace of logical labels.
        let mut labels = HashSet::new();
        self.names(
            "physical I/O",
            "logicallabel",
            config
                .device_io_list
                .iter()
                .map(|io| io.logicallabel.as_str()),
            &mut labels,
        );
        ids.physical_ports = labels.clone();
        ids.assignment_groups = config
            .device_io_list
            .iter()
            .map(|io| io.assigngrp.clone())
            .filter(|group| !group.is_empty())
            .collect();
        self.names(
            "bond",
            "logicallabel",
            config.bonds.iter().map(|b| b.logicallabel.as_str()),
            &mut labels,
        );
        ids.bonds = config
            .bonds
            .iter()
            .map(|b| b.logicallabel.clone())
            .collect();
        self.names(
            "VLAN",
            "logicallabel",
            config.vlans.iter().map(|v| v.logicallabel.as_str()),
            &mut labels,
        );
        ids.port_names = labels;
        ids.port_names.extend(
            config
                .system_adapter_list
                .iter()
                .flat_map(|a| a.shared_labels.iter().cloned()),
        );
        ids.port_names
            .extend(PREDEFINED_PORT_LABELS.iter().map(|l| (*l).to_owned()));
        ids
    }

    /// References between apps, volumes, content trees, datastores, network instances and
    /// patch envelopes.
    fn objects(&mut self, config: &EdgeDevConfig, ids: &Identities) {
        for app in &config.apps {
            let name = app.displayname.as_str();
            for interface in &app.interfaces {
                self.reference(
                    "app",
                    name,
                    &interface.network_id,
                    &ids.network_instances,
                    "network instance",
                );
                if interface.access_vlan_id != 0 {
                    self.range(
                        "app",
                        name,
                        "interfaces[].accessVlanId",
                        interface.access_vlan_id,
                        2,
                        4093,
                    );
                }
            }
            for volume in &app.volume_ref_list {
                self.reference("app", name, &volume.uuid, &ids.volumes, "volume");
            }
            for adapter in &app.adapters {
                self.reference(
                    "app",
                    name,
                    &adapter.name,
                    &ids.assignment_groups,
                    "physical I/O assignment group",
                );
            }
            if let Some(patch) = app.patch_ref.as_ref().filter(|p| !p.id.is_empty()) {
                self.reference(
                    "app",
                    name,
                    &patch.id,
                    &ids.patch_envelopes,
                    "patch envelope",
                );
            }
            self.drives("app", name, &app.drives, ids);
        }
        for volume in &config.volumes {
            if let Some(origin) = volume
                .origin
                .as_ref()
                .filter(|o| !o.download_content_tree_id.is_empty())
            {
                self.reference(
                    "volume",
                    &volume.display_name,
                    &origin.download_content_tree_id,
                    &ids.content_trees,
                    "content tree",
                );
            }
        }
        for tree in &config.content_info {
            let stores = tree
                .ds_ids_list
                .iter()
                .chain(Some(&tree.ds_id).filter(|id| !id.is_empty()));
            for store in stores {
                self.reference(
                    "content tree",
                    &tree.display_name,
                    store,
                    &ids.datastores,
                    "datastore",
                );
            }
        }
        if let Some(base) = config
            .baseos
            .as_ref()
            .filter(|b| !b.content_tree_uuid.is_empty())
        {
            self.reference(
                "baseos",
                &base.base_os_version,
                &base.content_tree_uuid,
                &ids.content_trees,
                "content tree",
            );
        }
        for base in &config.base {
            self.drives("base", &base.base_os_version, &base.drives, ids);
        }
        for envelope in &config.patch_envelopes {
            let name = envelope.display_name.as_str();
            for app in &envelope.app_inst_ids_allowed {
                self.reference("patch envelope", name, app, &ids.apps, "app");
            }
            for artifact in &envelope.artifacts {
                if let Some(BinaryBlob::VolumeRef(blob)) = &artifact.binary_blob {
                    self.reference(
                        "patch envelope",
                        name,
                        &blob.image_id,
                        &ids.volumes,
                        "volume",
                    );
                }
            }
        }
    }

    /// The legacy drives of an app or base image name their datastore.
    fn drives(&mut self, owner: &str, name: &str, drives: &[Drive], ids: &Identities) {
        for image in drives.iter().filter_map(|d| d.image.as_ref()) {
            if !image.ds_id.is_empty() {
                self.reference(owner, name, &image.ds_id, &ids.datastores, "datastore");
            }
        }
    }

    /// VLANs, bonds, system adapters, network instances' ports and 802.1X.
    fn ports(&mut self, config: &EdgeDevConfig, ids: &Identities) {
        let lower = |ids: &Identities| -> HashSet<String> {
            ids.physical_ports.union(&ids.bonds).cloned().collect()
        };
        let vlan_parents = lower(ids);
        let mut vlan_ids = HashSet::new();
        for vlan in &config.vlans {
            let name = vlan.logicallabel.as_str();
            self.reference(
                "VLAN",
                name,
                &vlan.lower_layer_name,
                &vlan_parents,
                "physical I/O or bond",
            );
            self.range("VLAN", name, "vlanId", vlan.vlan_id, 1, 4094);
            if !vlan_ids.insert((vlan.lower_layer_name.as_str(), vlan.vlan_id)) {
                self.problem(format!(
                    "VLAN {name:?}: VLAN {} on {:?} is configured twice",
                    vlan.vlan_id, vlan.lower_layer_name
                ));
            }
        }
        let mut bonded: HashMap<&str, &str> = HashMap::new();
        for bond in &config.bonds {
            let name = bond.logicallabel.as_str();
            if bond.lower_layer_names.is_empty() {
                self.problem(format!("bond {name:?}: lowerLayerNames is empty"));
            }
            for port in &bond.lower_layer_names {
                self.reference("bond", name, port, &ids.physical_ports, "physical I/O");
                if let Some(other) = bonded.insert(port, name) {
                    self.problem(format!(
                        "bond {name:?}: physical I/O {port:?} is already in bond {other:?}"
                    ));
                }
            }
        }
        let networks = &ids.networks;
        for adapter in &config.system_adapter_list {
            let name = adapter.name.as_str();
            if !adapter.network_uuid.is_empty() {
                self.reference(
                    "system adapter",
                    name,
                    &adapter.network_uuid,
                    networks,
                    "network",
                );
            }
            if ids.ports_declared {
                self.reference("system adapter", name, name, &ids.port_names, "port");
                if !adapter.lower_layer_name.is_empty() {
                    self.reference(
                        "system adapter",
                        name,
                        &adapter.lower_layer_name,
                        &ids.port_names,
                        "port",
                    );
                }
            }
        }
        for ni in &config.network_instances {
            let name = ni.displayname.as_str();
            if ids.ports_declared {
                if let Some(port) = ni.port.as_ref().filter(|p| !p.name.is_empty()) {
                    self.reference(
                        "network instance",
                        name,
                        &port.name,
                        &ids.port_names,
                        "port",
                    );
                }
                for route in ni.static_routes.iter().filter(|r| !r.port.is_empty()) {
                    self.reference(
                        "network instance",
                        name,
                        &route.port,
                        &ids.port_names,
                        "port",
                    );
                }
                for access in &ni.vlan_access_ports {
                    self.reference(
                        "network instance",
                        name,
                        &access.access_port,
                        &ids.port_names,
                        "port",
                    );
                }
            }
            for access in &ni.vlan_access_ports {
                self.range(
                    "network instance",
                    name,
                    "vlanAccessPorts[].vlanId",
                    access.vlan_id,
                    2,
                    4093,
                );
            }
        }
        for pnac in &config.pnacs {
            let name = pnac.logicallabel.as_str();
            self.reference("PNAC", name, name, &ids.physical_ports, "physical I/O");
            if !pnac.cert_enrollment_profile_name.is_empty() {
                self.reference(
                    "PNAC",
                    name,
                    &pnac.cert_enrollment_profile_name,
                    &ids.scep_profiles,
                    "SCEP profile",
                );
            }
        }
    }

    /// Every encrypted block names a cipher context of the configuration.
    fn secrets(&mut self, config: &EdgeDevConfig, ids: &Identities) {
        let mut blocks: Vec<(&str, &str, &CipherBlock)> = Vec::new();
        for app in &config.apps {
            blocks.extend(
                app.cipher_data
                    .iter()
                    .map(|b| ("app", &*app.displayname, b)),
            );
        }
        for store in &config.datastores {
            blocks.extend(
                store
                    .cipher_data
                    .iter()
                    .map(|b| ("datastore", &*store.fqdn, b)),
            );
        }
        for network in &config.networks {
            let wireless = network.wireless.iter();
            for wifi in wireless.clone().flat_map(|w| &w.wifi_cfg) {
                blocks.extend(
                    wifi.cipher_data
                        .iter()
                        .map(|b| ("network", &*network.id, b)),
                );
            }
            let points = wireless
                .flat_map(|w| &w.cellular_cfg)
                .flat_map(|c| &c.access_points);
            for point in points {
                blocks.extend(
                    point
                        .cipher_data
                        .iter()
                        .map(|b| ("network", &*network.id, b)),
                );
            }
        }
        for profile in &config.scep_profiles {
            let name = profile.profile_name.as_str();
            blocks.extend(
                profile
                    .scep_challenge_password
                    .iter()
                    .map(|b| ("SCEP profile", name, b)),
            );
        }
        if let Some(cluster) = &config.cluster {
            let name = cluster.cluster_name.as_str();
            blocks.extend(
                cluster
                    .encrypted_cluster_token
                    .iter()
                    .map(|b| ("cluster", name, b)),
            );
        }
        for envelope in &config.patch_envelopes {
            let name = envelope.display_name.as_str();
            for artifact in &envelope.artifacts {
                blocks.extend(
                    artifact
                        .metadata_cipher_data
                        .iter()
                        .map(|b| ("patch envelope", name, b)),
                );
                let block = match &artifact.binary_blob {
                    Some(BinaryBlob::EncryptedInline(inline)) => inline.cipher_data.as_ref(),
                    Some(BinaryBlob::EncryptedVolumeref(blob)) => blob.cipher_data.as_ref(),
                    _ => None,
                };
                blocks.extend(block.map(|b| ("patch envelope", name, b)));
            }
        }
        for (owner, name, block) in blocks {
            self.reference(
                owner,
                name,
                &block.cipher_context_id,
                &ids.cipher_contexts,
                "cipher context",
            );
        }
    }

    /// Device-wide settings: the disk layout, the local operator console, config items.
    fn device_settings(&mut self, config: &EdgeDevConfig, ids: &Identities) {
        if let Some(disks) = &config.disks {
            let mut seen = HashSet::new();
            self.disks(disks, &mut seen);
        }
        if let Some(loc) = &config.loc_config {
            for store in &loc.datastore_collect_info_id {
                self.reference(
                    "locConfig",
                    &loc.loc_url,
                    store,
                    &ids.datastores,
                    "datastore",
                );
            }
        }
        let mut keys = HashSet::new();
        for item in &config.config_items {
            if item.key.is_empty() {
                self.problem("configItems: an item has an empty key".to_owned());
            } else if !keys.insert(item.key.as_str()) {
                self.problem(format!("configItems: key {:?} is given twice", item.key));
            }
        }
    }

    /// A disk belongs to one place of the layout.
    fn disks<'a>(&mut self, layout: &'a DisksConfig, seen: &mut HashSet<&'a str>) {
        for disk in layout.disks.iter().filter_map(|d| d.disk.as_ref()) {
            let name = if disk.name.is_empty() {
                disk.logical_name.as_str()
            } else {
                disk.name.as_str()
            };
            if name.is_empty() {
                self.problem("disks: a disk has neither name nor logicalName".to_owned());
            } else if !seen.insert(name) {
                self.problem(format!("disks: disk {name:?} is used twice"));
            }
        }
        for child in &layout.children {
            self.disks(child, seen);
        }
    }
}

#[cfg(test)]
mod tests {
    use lichen_api::config::{bond_adapter::Monitoring, Format};
    use prost::Message;

    use super::*;
    use crate::device_config::{parse, serve, to_yaml};

    /// A configuration with every top-level field of the official `EdgeDevConfig`.
    pub(crate) const EVERY_FIELD: &str = include_str!("every_field.yaml");
    const DEVICE: &str = "6f1d5b4e-9f7a-4a51-8d55-1f0c2f3b7a10";

    fn every_field() -> EdgeDevConfig {
        parse(EVERY_FIELD).unwrap()
    }

    #[test]
    fn every_official_field_is_accepted_checked_and_carried() {
        let config = every_field();
        validate(&config, DEVICE).unwrap();
        assert_eq!(config.vlans[0].vlan_id, 100);
        assert!(matches!(
            config.bonds[0].monitoring,
            Some(Monitoring::Mii(ref mii)) if mii.interval == 100
        ));
        assert_eq!(config.content_info[1].iformat, Format::Pvc as i32);
        assert_eq!(config.shutdown.as_ref().unwrap().counter, 1);
        assert!(
            config
                .edgeview
                .as_ref()
                .unwrap()
                .dev_policy
                .unwrap()
                .allow_dev
        );
        assert_eq!(config.disks.as_ref().unwrap().children.len(), 1);
        assert_eq!(config.device_io_list[0].phyaddrs["Ifname"], "eth0");
        assert_eq!(config.scep_profiles[0].profile_name, "corp");
        assert_eq!(config.controller_epoch, 3);

        // YAML and JSON round trips, and the device gets exactly this in its protobuf.
        assert_eq!(parse(&to_yaml(&config)).unwrap(), config);
        assert_eq!(
            parse(&serde_json::to_string(&config).unwrap()).unwrap(),
            config
        );
        let served = serve(DEVICE, 7, config.clone());
        assert_eq!(EdgeDevConfig::decode(&served.bytes[..]).unwrap(), config);
    }

    #[test]
    fn unknown_fields_and_enum_names_are_still_refused() {
        let error = parse("vlans: [{ logicallabel: v, vlanTag: 3 }]").unwrap_err();
        assert!(error.contains("vlanTag"), "{error}");
        let error = parse("bonds: [{ logicallabel: b, bondMode: BOND_MODE_FASTEST }]").unwrap_err();
        assert!(error.contains("BOND_MODE_FASTEST"), "{error}");
    }

    /// Validates `config` and returns its problems (it must have some).
    fn problems(config: &EdgeDevConfig) -> Vec<String> {
        validate(config, DEVICE).expect_err("problems expected")
    }

    fn has(problems: &[String], parts: &[&str]) -> bool {
        problems
            .iter()
            .any(|p| parts.iter().all(|part| p.contains(part)))
    }

    #[test]
    fn dangling_port_references_are_reported() {
        let mut config = every_field();
        config.vlans[0].lower_layer_name = "eth9".into();
        config.vlans[1].vlan_id = 4095;
        config.bonds[0].lower_layer_names.push("eth1".into());
        config.bonds[0].lower_layer_names.push("wlan0".into());
        config.system_adapter_list[0].network_uuid = "3f2b1c4d-0000-4a7b-8c9d-0e1f2a3b4c5d".into();
        config.system_adapter_list[1].name = "vlan999".into();
        config.network_instances[0].port.as_mut().unwrap().name = "nowhere".into();
        config.network_instances[0].static_routes[0].port = "eth7".into();
        config.network_instances[1].vlan_access_ports[0].vlan_id = 1;
        config.pnacs[0].logicallabel = "vlan100".into();
        config.pnacs[0].cert_enrollment_profile_name = "home".into();
        config.apps[0].adapters[0].name = "USB-B".into();
        let found = problems(&config);
        assert!(
            has(&found, &["VLAN \"vlan100\"", "eth9", "not configured"]),
            "{found:#?}"
        );
        assert!(has(&found, &["vlanId 4095"]), "{found:#?}");
        assert!(has(&found, &["\"eth1\" is already in bond"]), "{found:#?}");
        assert!(has(&found, &["bond \"bond0\"", "wlan0"]), "{found:#?}");
        assert!(
            has(
                &found,
                &["system adapter \"eth0\"", "network \"3f2b1c4d-0000"]
            ),
            "{found:#?}"
        );
        assert!(
            has(&found, &["system adapter \"vlan999\"", "port"]),
            "{found:#?}"
        );
        assert!(
            has(&found, &["network instance \"local\"", "\"nowhere\""]),
            "{found:#?}"
        );
        assert!(
            has(&found, &["network instance \"local\"", "\"eth7\""]),
            "{found:#?}"
        );
        assert!(has(&found, &["vlanAccessPorts[].vlanId 1"]), "{found:#?}");
        assert!(
            has(&found, &["PNAC \"vlan100\"", "physical I/O"]),
            "{found:#?}"
        );
        assert!(has(&found, &["SCEP profile \"home\""]), "{found:#?}");
        assert!(has(&found, &["assignment group \"USB-B\""]), "{found:#?}");
        assert_eq!(found.len(), 12, "{found:#?}");
    }

    #[test]
    fn dangling_object_and_secret_references_are_reported() {
        let mut config = every_field();
        config.patch_envelopes[0].app_inst_ids_allowed[0] =
            "7e8f9a0b-0000-4e3f-a4b5-c6d7e8f90a07".into();
        config.apps[0].patch_ref.as_mut().unwrap().id =
            "8a9b0c1d-0000-4a5b-8c6d-7e8f9a0b1c2d".into();
        config.base[0].drives[0].image.as_mut().unwrap().ds_id =
            "5b0e7d2a-0000-4e1a-8b6d-7f9a0c1e2d03".into();
        config
            .cluster
            .as_mut()
            .unwrap()
            .encrypted_cluster_token
            .as_mut()
            .unwrap()
            .cipher_context_id = "ctx-2".into();
        config
            .loc_config
            .as_mut()
            .unwrap()
            .datastore_collect_info_id[0] = "nope".into();
        config.config_items.push(config.config_items[0].clone());
        let disk = config.disks.as_ref().unwrap().disks[0].clone();
        config.disks.as_mut().unwrap().children[0].disks.push(disk);
        config
            .cipher_contexts
            .push(config.cipher_contexts[0].clone());
        config.device_io_list.push(config.device_io_list[1].clone());
        let found = problems(&config);
        assert!(
            has(&found, &["patch envelope \"certs\" refers to app"]),
            "{found:#?}"
        );
        assert!(
            has(&found, &["app \"nginx\" refers to patch envelope"]),
            "{found:#?}"
        );
        assert!(
            has(&found, &["base \"14.4.0\" refers to datastore"]),
            "{found:#?}"
        );
        assert!(
            has(&found, &["cluster \"plant7\"", "cipher context \"ctx-2\""]),
            "{found:#?}"
        );
        assert!(
            has(&found, &["locConfig", "datastore \"nope\""]),
            "{found:#?}"
        );
        assert!(
            has(&found, &["timer.config.interval", "twice"]),
            "{found:#?}"
        );
        assert!(
            has(&found, &["disk \"/dev/sda\" is used twice"]),
            "{found:#?}"
        );
        assert!(
            has(
                &found,
                &["cipher context \"ctx-1\": contextId is used twice"]
            ),
            "{found:#?}"
        );
        assert!(
            has(
                &found,
                &["physical I/O \"eth1\": logicallabel is used twice"]
            ),
            "{found:#?}"
        );
        assert_eq!(found.len(), 9, "{found:#?}");
    }

    #[test]
    fn ports_are_only_checked_against_a_declared_device_io_list() {
        // Lichen nodes name their ports themselves: without deviceIoList, port names are free.
        let mut config = every_field();
        config.device_io_list.clear();
        config.bonds.clear();
        config.vlans.clear();
        config.pnacs.clear();
        config.apps[0].adapters.clear();
        config.network_instances[0].port.as_mut().unwrap().name = "eth5".into();
        validate(&config, DEVICE).unwrap();
    }
}
