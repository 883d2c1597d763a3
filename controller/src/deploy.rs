//! `admin app deploy`: the configuration objects that run an app image from the controller's
//! datastore, written into a device's `EdgeDevConfig` as EVE's controller would send them:
//! a `DatastoreConfig` (the controller's datastore, with its credentials), a `ContentTree`
//! (the file: its URL relative to the datastore, its SHA-256 and size), a `Volume` made from
//! that content tree, and an `AppInstanceConfig` that uses the volume.
//!
//! The app gets one network interface (`eth0`) on a network instance named by `--network`
//! (`default` unless told otherwise): an existing one of that name, or a new local (NATed)
//! network instance, 10.1.0.0/24 with DHCP, made on first use. `--no-network` deploys an app
//! without one. The interface's ACEs come from `--port-map` and `--acl` ([`parse_acl`],
//! [`port_map`]); with none, the node denies the app every connection (EVE's default).
//!
//! Deploying an app under a name that is already deployed replaces its image (EVE's
//! `app_replace`): the app keeps its UUID, its version goes up by one, and the volumes and
//! content trees only it used are removed.

use lichen_api::common::{IpRange, Ipspec};
use lichen_api::config::{
    Ace, AceAction, AceMatch, AddressType, AppInstanceConfig, ContentTree, DatastoreConfig, DsType,
    EdgeDevConfig, Format, NetworkAdapter, NetworkInstanceConfig, UuiDandVersion, VmConfig, VmMode,
    Volume, VolumeContentOrigin, VolumeContentOriginType, VolumeRef, ZNetworkInstType,
};

use base64ct::{Base64, Encoding};

use crate::admin_api::DatastoreUpload;

/// Room the node keeps after the content on a volume made from it (the downloader's record of
/// its progress lives in the volume's last 4 KiB: see docs/download.md).
pub const VOLUME_SLACK: u64 = 4096;

/// What to deploy.
#[derive(Clone, Debug)]
pub struct AppSpec {
    /// The app's display name (and the key for replacing it).
    pub name: String,
    /// Memory, KiB.
    pub memory_kib: u32,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// How the app is virtualized.
    pub mode: VmMode,
    /// Serve it over plain HTTP (`DsHttp`) rather than HTTPS.
    pub plain_http: bool,
    /// The network instance its interface attaches to, by name (`None`: no interface).
    pub network: Option<String>,
    /// Its user data (EVE's `userData`, sent base64): a lichen app's command line, as
    /// `launcher_api::check::cmdline_from_user_data` makes it on the node; empty: none.
    pub user_data: Vec<u8>,
    /// Its interface's ACEs, in order (ids from 1).
    pub acls: Vec<Ace>,
}

/// An ACE from `MATCHES->ACTION` (zedrouter's command-line syntax without the id, docs/router.md):
/// matches `type:value` separated by `,` (`ip`, `host`, `protocol`, `lport`, `fport`), action
/// `accept`, `drop`, `limit:RATE/UNIT/BURST` or `portmap:APP_PORT`. Checked as the node checks
/// it (`router::acl`), so a rule the node would refuse is refused here with the same reason.
pub fn parse_acl(id: i32, text: &str) -> Result<Ace, String> {
    let bad = |why: &str| format!("--acl {text:?}: {why}");
    let (matches, action) = text
        .split_once("->")
        .ok_or_else(|| bad("expected MATCHES->ACTION"))?;
    let matches: Vec<AceMatch> = matches
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(|m| {
            let (kind, value) = m
                .split_once(':')
                .ok_or_else(|| bad("a match is TYPE:VALUE"))?;
            Ok(AceMatch {
                r#type: kind.trim().into(),
                value: value.trim().into(),
            })
        })
        .collect::<Result<_, String>>()?;
    let action = action.trim();
    let (verb, arg) = action.split_once(':').unwrap_or((action, ""));
    let number = |s: &str, what: &str| s.parse::<u32>().map_err(|_| bad(what));
    let action = match verb {
        "accept" => None,
        "drop" => Some(AceAction {
            drop: true,
            ..Default::default()
        }),
        "limit" => {
            let parts: Vec<&str> = arg.split('/').collect();
            let [rate, unit, burst] = parts[..] else {
                return Err(bad("limit:RATE/UNIT/BURST"));
            };
            Some(AceAction {
                limit: true,
                limitrate: number(rate, "limit: RATE is a number")?,
                limitunit: unit.into(),
                limitburst: number(burst, "limit: BURST is a number")?,
                ..Default::default()
            })
        }
        "portmap" => Some(AceAction {
            portmap: true,
            app_port: number(arg, "portmap:APP_PORT")?,
            ..Default::default()
        }),
        _ => {
            return Err(bad(
                "the action is accept, drop, limit:RATE/UNIT/BURST or portmap:APP_PORT",
            ))
        }
    };
    let ace = Ace {
        id,
        matches,
        actions: action.into_iter().collect(),
        ..Default::default()
    };
    check(&ace).map_err(|e| bad(&e))?;
    Ok(ace)
}

/// The ACE of `--port-map [udp:]UPLINK_PORT:APP_PORT` (TCP unless `udp:`): connections to the
/// node's uplink port go to the app's port.
pub fn port_map(id: i32, text: &str) -> Result<Ace, String> {
    let (protocol, ports) = match text.strip_prefix("udp:") {
        Some(rest) => ("udp", rest),
        None => ("tcp", text.strip_prefix("tcp:").unwrap_or(text)),
    };
    let (uplink, app) = ports
        .split_once(':')
        .ok_or_else(|| format!("--port-map {text:?}: expected [udp:]UPLINK_PORT:APP_PORT"))?;
    parse_acl(
        id,
        &format!("protocol:{protocol},lport:{uplink}->portmap:{app}"),
    )
    .map_err(|e| e.replace("--acl", "--port-map"))
}

/// Checks an ACE as the node will (`router::acl::Rule::from_ace`).
fn check(ace: &Ace) -> Result<(), String> {
    let matches: Vec<(&str, &str)> = ace
        .matches
        .iter()
        .map(|m| (m.r#type.as_str(), m.value.as_str()))
        .collect();
    let actions: Vec<router::acl::AceAction> = ace
        .actions
        .iter()
        .map(|a| router::acl::AceAction {
            drop: a.drop,
            limit: a.limit,
            limit_rate: a.limitrate,
            limit_unit: a.limitunit.clone(),
            limit_burst: a.limitburst,
            portmap: a.portmap,
            app_port: a.app_port,
        })
        .collect();
    router::acl::Rule::from_ace(
        ace.id,
        &ace.name,
        &matches,
        &actions,
        router::acl::Direction::Both,
    )
    .map(drop)
    .map_err(|e| e.reason)
}

/// What [`deploy`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployed {
    /// The app instance's UUID.
    pub app: String,
    /// Its new version.
    pub version: String,
    /// Whether an app of that name was replaced.
    pub replaced: bool,
    /// The content tree's UUID.
    pub content_tree: String,
    /// The volume's UUID.
    pub volume: String,
}

/// The size of a volume holding `content` bytes: the content and [`VOLUME_SLACK`], rounded up
/// to a whole MiB.
pub fn volume_size(content: u64) -> u64 {
    const MIB: u64 = 1 << 20;
    (content + VOLUME_SLACK).div_ceil(MIB) * MIB
}

/// Writes the objects that deploy `upload` as `spec` into `config`; each of `disks` becomes a
/// volume of its own (its content tree from the same datastore), the app's disks in order
/// after the image's volume.
pub fn deploy(
    config: &mut EdgeDevConfig,
    spec: &AppSpec,
    upload: &DatastoreUpload,
    disks: &[DatastoreUpload],
) -> Result<Deployed, String> {
    // The node would refuse the whole configuration for user data it cannot use: say so now.
    launcher_api::check::cmdline_from_user_data(&spec.user_data)
        .map_err(|why| format!("user data: {why}"))?;
    let location = &upload.location;
    let (kind, fqdn) = if spec.plain_http {
        let url = location.http_url.clone().ok_or(
            "the controller serves no plain HTTP datastore (start it with --datastore-http)",
        )?;
        (DsType::DsHttp, url)
    } else {
        (DsType::DsHttps, location.https_url.clone())
    };
    let datastore = DatastoreConfig {
        id: location.id.clone(),
        d_type: kind as i32,
        fqdn,
        api_key: location.api_key.clone(),
        password: location.password.clone(),
        dpath: location.dpath.clone(),
        ..Default::default()
    };
    config.datastores.retain(|d| d.id != datastore.id);
    config.datastores.push(datastore);

    let new_uuid = || uuid::Uuid::new_v4().to_string();
    let mut trees = Vec::new();
    let mut volumes = Vec::new();
    for (i, upload) in std::iter::once(upload).chain(disks).enumerate() {
        let name = match i {
            0 => spec.name.clone(),
            i => format!("{}-disk{i}", spec.name),
        };
        let (tree, volume) = content_volume(upload, &location.id, &name)?;
        trees.push(tree);
        volumes.push(volume);
    }
    let existing = config.apps.iter().position(|a| a.displayname == spec.name);
    let (app_uuid, version, old_volumes) = match existing {
        Some(i) => {
            let app = config.apps.remove(i);
            let id = app.uuidandversion.unwrap_or_default();
            let version = id.version.parse::<u64>().unwrap_or(0) + 1;
            let old: Vec<String> = app.volume_ref_list.into_iter().map(|v| v.uuid).collect();
            (id.uuid, version.to_string(), old)
        }
        None => (new_uuid(), "1".to_owned(), Vec::new()),
    };
    let interfaces = match &spec.network {
        None => Vec::new(),
        Some(name) => vec![NetworkAdapter {
            name: "eth0".into(),
            network_id: network_instance(config, name),
            acls: spec.acls.clone(),
            ..Default::default()
        }],
    };
    let app = AppInstanceConfig {
        uuidandversion: Some(UuiDandVersion {
            uuid: app_uuid.clone(),
            version: version.clone(),
        }),
        displayname: spec.name.clone(),
        fixedresources: Some(VmConfig {
            memory: spec.memory_kib,
            maxmem: spec.memory_kib,
            vcpus: spec.vcpus,
            virtualization_mode: spec.mode as i32,
            ..Default::default()
        }),
        activate: true,
        interfaces,
        volume_ref_list: volumes
            .iter()
            .map(|v| VolumeRef {
                uuid: v.uuid.clone(),
                ..Default::default()
            })
            .collect(),
        user_data: Base64::encode_string(&spec.user_data),
        ..Default::default()
    };
    config.apps.push(app);

    let deployed = Deployed {
        app: app_uuid,
        version,
        replaced: existing.is_some(),
        content_tree: trees[0].uuid.clone(),
        volume: volumes[0].uuid.clone(),
    };
    config.content_info.extend(trees);
    config.volumes.extend(volumes);
    // The replaced app's volumes, and their content trees, unless another app still uses them.
    remove_unused(config, old_volumes);
    Ok(deployed)
}

/// A content tree for `upload` in datastore `ds_id` and the volume made from it, both named
/// `name`.
fn content_volume(
    upload: &DatastoreUpload,
    ds_id: &str,
    name: &str,
) -> Result<(ContentTree, Volume), String> {
    let new_uuid = || uuid::Uuid::new_v4().to_string();
    let content_tree = ContentTree {
        uuid: new_uuid(),
        ds_id: ds_id.to_owned(),
        ds_ids_list: vec![ds_id.to_owned()],
        url: upload.stored.sha256.clone(),
        iformat: Format::Raw as i32,
        sha256: upload.stored.sha256.clone(),
        max_size_bytes: upload.stored.size,
        display_name: name.to_owned(),
        ..Default::default()
    };
    let volume = Volume {
        uuid: new_uuid(),
        origin: Some(VolumeContentOrigin {
            r#type: VolumeContentOriginType::VcotDownload as i32,
            download_content_tree_id: content_tree.uuid.clone(),
        }),
        maxsizebytes: i64::try_from(volume_size(upload.stored.size))
            .map_err(|_| format!("{name}: the image is too large"))?,
        display_name: name.to_owned(),
        ..Default::default()
    };
    Ok((content_tree, volume))
}

/// Removes `volumes` no app refers to any more, and the content trees no volume is made from;
/// returns how many volumes went.
pub fn remove_unused(config: &mut EdgeDevConfig, volumes: Vec<String>) -> usize {
    let used_volumes: Vec<&str> = config
        .apps
        .iter()
        .flat_map(|a| a.volume_ref_list.iter().map(|v| v.uuid.as_str()))
        .collect();
    let unused: Vec<String> = volumes
        .into_iter()
        .filter(|v| !used_volumes.contains(&v.as_str()))
        .collect();
    let before = config.volumes.len();
    config.volumes.retain(|v| !unused.contains(&v.uuid));
    let removed = before - config.volumes.len();
    let used_trees: Vec<String> = config
        .volumes
        .iter()
        .filter_map(|v| v.origin.as_ref())
        .map(|o| o.download_content_tree_id.clone())
        .collect();
    config.content_info.retain(|c| used_trees.contains(&c.uuid));
    removed
}

/// The UUID of the network instance named `name`, made (local, NATed, 10.1.0.0/24 with DHCP)
/// if there is none.
fn network_instance(config: &mut EdgeDevConfig, name: &str) -> String {
    if let Some(id) = config
        .network_instances
        .iter()
        .find(|ni| ni.displayname == name)
        .and_then(|ni| ni.uuidandversion.as_ref())
    {
        return id.uuid.clone();
    }
    let uuid = uuid::Uuid::new_v4().to_string();
    config.network_instances.push(NetworkInstanceConfig {
        uuidandversion: Some(UuiDandVersion {
            uuid: uuid.clone(),
            version: "1".into(),
        }),
        displayname: name.into(),
        inst_type: ZNetworkInstType::ZnetInstLocal as i32,
        activate: true,
        ip_type: AddressType::Ipv4 as i32,
        ip: Some(Ipspec {
            subnet: "10.1.0.0/24".into(),
            gateway: "10.1.0.1".into(),
            dns: vec!["10.1.0.1".into()],
            dhcp_range: Some(IpRange {
                start: "10.1.0.10".into(),
                end: "10.1.0.250".into(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    uuid
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin_api::DatastoreLocation;
    use crate::datastore::Stored;

    fn upload(sha256: &str, size: u64) -> DatastoreUpload {
        DatastoreUpload {
            stored: Stored {
                sha256: sha256.to_owned(),
                size,
            },
            location: DatastoreLocation {
                id: "5b0e7d2a-3c4f-4e1a-8b6d-7f9a0c1e2d03".to_owned(),
                https_url: "https://10.0.2.2:8443".to_owned(),
                http_url: None,
                dpath: "datastore".to_owned(),
                api_key: "lichen".to_owned(),
                password: "secret".to_owned(),
            },
        }
    }

    fn spec() -> AppSpec {
        AppSpec {
            name: "echo".to_owned(),
            memory_kib: 32 * 1024,
            vcpus: 1,
            mode: VmMode::Pv,
            plain_http: false,
            network: Some("default".into()),
            user_data: Vec::new(),
            acls: Vec::new(),
        }
    }

    #[test]
    fn user_data_goes_base64_and_what_the_node_would_refuse_is_refused_here() {
        let mut config = EdgeDevConfig::default();
        let mut with = spec();
        with.user_data = b"# the bus\nbroker=10.0.2.2:1883\n".to_vec();
        deploy(&mut config, &with, &upload(&"a".repeat(64), 10), &[]).unwrap();
        assert_eq!(
            config.apps[0].user_data,
            "IyB0aGUgYnVzCmJyb2tlcj0xMC4wLjIuMjoxODgzCg=="
        );
        deploy(&mut config, &spec(), &upload(&"a".repeat(64), 10), &[]).unwrap();
        assert_eq!(config.apps[0].user_data, "", "none: empty");

        let before = config.clone();
        let mut bad = spec();
        bad.user_data = vec![b'a'; 2000];
        let error = deploy(&mut config, &bad, &upload(&"b".repeat(64), 10), &[]).unwrap_err();
        assert!(error.starts_with("user data: "), "{error}");
        bad.user_data = b"a=\xff".to_vec();
        assert!(deploy(&mut config, &bad, &upload(&"b".repeat(64), 10), &[]).is_err());
        assert_eq!(config, before, "nothing written");
    }

    #[test]
    fn port_maps_and_acls_become_the_interfaces_aces_or_are_refused_with_the_nodes_reason() {
        let map = port_map(1, "8080:7").unwrap();
        assert_eq!(
            map.matches
                .iter()
                .map(|m| (m.r#type.as_str(), m.value.as_str()))
                .collect::<Vec<_>>(),
            vec![("protocol", "tcp"), ("lport", "8080")]
        );
        assert!(map.actions[0].portmap && map.actions[0].app_port == 7);
        assert_eq!(port_map(2, "udp:5353:53").unwrap().matches[0].value, "udp");
        let allow = parse_acl(3, "ip:10.77.0.1,protocol:tcp->accept").unwrap();
        assert!(allow.actions.is_empty() && allow.id == 3);
        let limit = parse_acl(4, "protocol:udp->limit:10/s/5").unwrap();
        assert_eq!(
            (
                limit.actions[0].limitrate,
                limit.actions[0].limitunit.as_str(),
                limit.actions[0].limitburst
            ),
            (10, "s", 5)
        );
        let refused = |r: Result<Ace, String>| r.unwrap_err();
        assert!(refused(port_map(1, "8080")).contains("UPLINK_PORT:APP_PORT"));
        assert!(refused(port_map(1, "8080:0")).contains("appPort"));
        assert!(refused(parse_acl(1, "fport:http->accept")).contains("not a port"));
        assert!(refused(parse_acl(1, "protocol:tcp->allow")).contains("the action is"));
        assert!(refused(parse_acl(1, "protocol:tcp->limit:1/fortnight/2")).contains("unit"));

        let mut config = EdgeDevConfig::default();
        let mut spec = spec();
        spec.acls = vec![map, allow];
        deploy(&mut config, &spec, &upload("aa", 1000), &[]).unwrap();
        assert_eq!(config.apps[0].interfaces[0].acls.len(), 2);
    }

    #[test]
    fn an_app_joins_the_named_network_instance_made_once() {
        let mut config = EdgeDevConfig::default();
        let first = deploy(&mut config, &spec(), &upload(&"a".repeat(64), 10), &[]).unwrap();
        let mut other = spec();
        other.name = "other".into();
        deploy(&mut config, &other, &upload(&"b".repeat(64), 10), &[]).unwrap();
        assert_eq!(config.network_instances.len(), 1, "one `default`, shared");
        let ni = &config.network_instances[0];
        assert_eq!(ni.inst_type, ZNetworkInstType::ZnetInstLocal as i32);
        let ni_uuid = ni.uuidandversion.as_ref().unwrap().uuid.clone();
        for app in &config.apps {
            assert_eq!(app.interfaces.len(), 1);
            assert_eq!(app.interfaces[0].network_id, ni_uuid);
        }
        assert_eq!(
            config.apps[0].uuidandversion.as_ref().unwrap().uuid,
            first.app
        );
        assert_eq!(crate::device_config::validate(&config, "device"), Ok(()));
        let mut bare = spec();
        bare.name = "bare".into();
        bare.network = None;
        deploy(&mut config, &bare, &upload(&"c".repeat(64), 10), &[]).unwrap();
        assert!(config.apps[2].interfaces.is_empty());
    }

    #[test]
    fn volumes_leave_room_and_are_whole_mib() {
        assert_eq!(volume_size(0), 1 << 20);
        assert_eq!(volume_size((1 << 20) - 4096), 1 << 20);
        assert_eq!(volume_size((1 << 20) - 4095), 2 << 20);
    }

    #[test]
    fn a_deploy_writes_eve_objects_that_reference_each_other() {
        let mut config = EdgeDevConfig::default();
        let sha = "ab".repeat(32);
        let done = deploy(&mut config, &spec(), &upload(&sha, 300_000), &[]).unwrap();
        assert!(!done.replaced);
        crate::device_config::validate(&config, "0b7e0f43-52b5-4b36-9f0c-8f3c5b4f1b0a")
            .expect("the objects pass the controller's own checks");
        // As EVE's protos name them, in the proto3 JSON mapping.
        let json = serde_json::to_value(&config).unwrap();
        let ds = &json["datastores"][0];
        assert_eq!(ds["dType"], "DsHttps");
        assert_eq!(ds["fqdn"], "https://10.0.2.2:8443");
        assert_eq!(ds["dpath"], "datastore");
        assert_eq!(ds["apiKey"], "lichen");
        let tree = &json["contentInfo"][0];
        assert_eq!(tree["URL"], sha.as_str());
        assert_eq!(tree["sha256"], sha.as_str());
        assert_eq!(tree["iformat"], "RAW");
        assert_eq!(tree["maxSizeBytes"], "300000");
        assert_eq!(tree["dsIdsList"][0], ds["id"]);
        let volume = &json["volumes"][0];
        assert_eq!(volume["origin"]["type"], "VCOT_DOWNLOAD");
        assert_eq!(volume["origin"]["downloadContentTreeID"], tree["uuid"]);
        assert_eq!(volume["maxsizebytes"], "1048576");
        let app = &json["apps"][0];
        assert_eq!(app["displayname"], "echo");
        assert_eq!(app["activate"], true);
        assert_eq!(app["uuidandversion"]["version"], "1");
        assert_eq!(app["fixedresources"]["memory"], 32768);
        assert_eq!(app["volumeRefList"][0]["uuid"], volume["uuid"]);
        // The file read back as a configuration file gives the same configuration.
        let text = serde_yaml::to_string(&config).unwrap();
        assert_eq!(crate::device_config::parse(&text).unwrap(), config);
    }

    #[test]
    fn disks_become_volumes_of_their_own_after_the_images() {
        let mut config = EdgeDevConfig::default();
        let disk = upload(&"cd".repeat(32), 8 << 20);
        let done = deploy(&mut config, &spec(), &upload(&"ab".repeat(32), 10), &[disk]).unwrap();
        crate::device_config::validate(&config, "0b7e0f43-52b5-4b36-9f0c-8f3c5b4f1b0a")
            .expect("the objects pass the controller's own checks");
        let json = serde_json::to_value(&config).unwrap();
        let refs = &json["apps"][0]["volumeRefList"];
        assert_eq!(
            refs[0]["uuid"],
            done.volume.as_str(),
            "the image's volume first"
        );
        let root = &json["volumes"][1];
        assert_eq!(refs[1]["uuid"], root["uuid"]);
        assert_eq!(root["displayName"], "echo-disk1");
        assert_eq!(root["maxsizebytes"], ((9u64) << 20).to_string());
        let tree = &json["contentInfo"][1];
        assert_eq!(root["origin"]["downloadContentTreeID"], tree["uuid"]);
        assert_eq!(tree["sha256"], "cd".repeat(32).as_str());
        // Replacing the app drops both volumes and both content trees.
        deploy(&mut config, &spec(), &upload(&"ef".repeat(32), 10), &[]).unwrap();
        assert_eq!(config.volumes.len(), 1);
        assert_eq!(config.content_info.len(), 1);
    }

    #[test]
    fn deploying_the_same_name_again_replaces_the_image() {
        let mut config = EdgeDevConfig::default();
        let first = deploy(&mut config, &spec(), &upload(&"ab".repeat(32), 10), &[]).unwrap();
        let mut other = spec();
        other.name = "other".to_owned();
        deploy(&mut config, &other, &upload(&"cd".repeat(32), 10), &[]).unwrap();
        let second = deploy(&mut config, &spec(), &upload(&"ef".repeat(32), 10), &[]).unwrap();
        assert!(second.replaced);
        assert_eq!(second.app, first.app);
        assert_eq!(second.version, "2");
        assert_eq!(config.apps.len(), 2);
        assert_eq!(config.volumes.len(), 2, "the replaced volume is gone");
        assert_eq!(config.content_info.len(), 2);
        assert!(config.volumes.iter().all(|v| v.uuid != first.volume));
        assert!(config
            .content_info
            .iter()
            .all(|c| c.uuid != first.content_tree));
        assert_eq!(
            config.datastores.len(),
            1,
            "one datastore, updated in place"
        );
        crate::device_config::validate(&config, "0b7e0f43-52b5-4b36-9f0c-8f3c5b4f1b0a").unwrap();
    }

    #[test]
    fn plain_http_needs_the_controller_to_serve_it() {
        let mut config = EdgeDevConfig::default();
        let mut plain = spec();
        plain.plain_http = true;
        let mut up = upload(&"ab".repeat(32), 10);
        assert!(deploy(&mut config, &plain, &up, &[]).is_err());
        assert_eq!(config, EdgeDevConfig::default(), "nothing written");
        up.location.http_url = Some("http://10.0.2.2:8080".to_owned());
        deploy(&mut config, &plain, &up, &[]).unwrap();
        assert_eq!(config.datastores[0].d_type, DsType::DsHttp as i32);
        assert_eq!(config.datastores[0].fqdn, "http://10.0.2.2:8080");
    }
}
