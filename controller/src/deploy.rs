//! `admin app deploy`: the configuration objects that run an app image from the controller's
//! datastore, written into a device's `EdgeDevConfig` as EVE's controller would send them:
//! a `DatastoreConfig` (the controller's datastore, with its credentials), a `ContentTree`
//! (the file: its URL relative to the datastore, its SHA-256 and size), a `Volume` made from
//! that content tree, and an `AppInstanceConfig` that uses the volume.
//!
//! The app gets one network interface (`eth0`) on a network instance named by `--network`
//! (`default` unless told otherwise): an existing one of that name, or a new local (NATed)
//! network instance, 10.1.0.0/24 with DHCP, made on first use. `--no-network` deploys an app
//! without one.
//!
//! Deploying an app under a name that is already deployed replaces its image (EVE's
//! `app_replace`): the app keeps its UUID, its version goes up by one, and the volumes and
//! content trees only it used are removed.

use lichen_api::common::{IpRange, Ipspec};
use lichen_api::config::{
    AddressType, AppInstanceConfig, ContentTree, DatastoreConfig, DsType, EdgeDevConfig, Format,
    NetworkAdapter, NetworkInstanceConfig, UuiDandVersion, VmConfig, VmMode, Volume,
    VolumeContentOrigin, VolumeContentOriginType, VolumeRef, ZNetworkInstType,
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

/// Writes the objects that deploy `upload` as `spec` into `config`.
pub fn deploy(
    config: &mut EdgeDevConfig,
    spec: &AppSpec,
    upload: &DatastoreUpload,
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
    let content_tree = ContentTree {
        uuid: new_uuid(),
        ds_id: location.id.clone(),
        ds_ids_list: vec![location.id.clone()],
        url: upload.stored.sha256.clone(),
        iformat: Format::Raw as i32,
        sha256: upload.stored.sha256.clone(),
        max_size_bytes: upload.stored.size,
        display_name: spec.name.clone(),
        ..Default::default()
    };
    let volume = Volume {
        uuid: new_uuid(),
        origin: Some(VolumeContentOrigin {
            r#type: VolumeContentOriginType::VcotDownload as i32,
            download_content_tree_id: content_tree.uuid.clone(),
        }),
        maxsizebytes: i64::try_from(volume_size(upload.stored.size))
            .map_err(|_| "the image is too large")?,
        display_name: spec.name.clone(),
        ..Default::default()
    };

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
        volume_ref_list: vec![VolumeRef {
            uuid: volume.uuid.clone(),
            ..Default::default()
        }],
        user_data: Base64::encode_string(&spec.user_data),
        ..Default::default()
    };
    config.apps.push(app);

    let deployed = Deployed {
        app: app_uuid,
        version,
        replaced: existing.is_some(),
        content_tree: content_tree.uuid.clone(),
        volume: volume.uuid.clone(),
    };
    config.content_info.push(content_tree);
    config.volumes.push(volume);
    // The replaced app's volumes, and their content trees, unless another app still uses them.
    remove_unused(config, old_volumes);
    Ok(deployed)
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
        }
    }

    #[test]
    fn user_data_goes_base64_and_what_the_node_would_refuse_is_refused_here() {
        let mut config = EdgeDevConfig::default();
        let mut with = spec();
        with.user_data = b"# the bus\nbroker=10.0.2.2:1883\n".to_vec();
        deploy(&mut config, &with, &upload(&"a".repeat(64), 10)).unwrap();
        assert_eq!(
            config.apps[0].user_data,
            "IyB0aGUgYnVzCmJyb2tlcj0xMC4wLjIuMjoxODgzCg=="
        );
        deploy(&mut config, &spec(), &upload(&"a".repeat(64), 10)).unwrap();
        assert_eq!(config.apps[0].user_data, "", "none: empty");

        let before = config.clone();
        let mut bad = spec();
        bad.user_data = vec![b'a'; 2000];
        let error = deploy(&mut config, &bad, &upload(&"b".repeat(64), 10)).unwrap_err();
        assert!(error.starts_with("user data: "), "{error}");
        bad.user_data = b"a=\xff".to_vec();
        assert!(deploy(&mut config, &bad, &upload(&"b".repeat(64), 10)).is_err());
        assert_eq!(config, before, "nothing written");
    }

    #[test]
    fn an_app_joins_the_named_network_instance_made_once() {
        let mut config = EdgeDevConfig::default();
        let first = deploy(&mut config, &spec(), &upload(&"a".repeat(64), 10)).unwrap();
        let mut other = spec();
        other.name = "other".into();
        deploy(&mut config, &other, &upload(&"b".repeat(64), 10)).unwrap();
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
        deploy(&mut config, &bare, &upload(&"c".repeat(64), 10)).unwrap();
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
        let done = deploy(&mut config, &spec(), &upload(&sha, 300_000)).unwrap();
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
    fn deploying_the_same_name_again_replaces_the_image() {
        let mut config = EdgeDevConfig::default();
        let first = deploy(&mut config, &spec(), &upload(&"ab".repeat(32), 10)).unwrap();
        let mut other = spec();
        other.name = "other".to_owned();
        deploy(&mut config, &other, &upload(&"cd".repeat(32), 10)).unwrap();
        let second = deploy(&mut config, &spec(), &upload(&"ef".repeat(32), 10)).unwrap();
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
        assert!(deploy(&mut config, &plain, &up).is_err());
        assert_eq!(config, EdgeDevConfig::default(), "nothing written");
        up.location.http_url = Some("http://10.0.2.2:8080".to_owned());
        deploy(&mut config, &plain, &up).unwrap();
        assert_eq!(config.datastores[0].d_type, DsType::DsHttp as i32);
        assert_eq!(config.datastores[0].fqdn, "http://10.0.2.2:8080");
    }
}
