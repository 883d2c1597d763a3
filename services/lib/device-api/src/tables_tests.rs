use alloc::string::ToString;
use alloc::vec;

use lichen_api::common::{IpRange, Ipspec};
use lichen_api::config::{
    Ace as PbAce, AceAction as PbAceAction, AceMatch, AppInstanceConfig, BaseOs as PbBaseOs,
    ConfigItem, ContentTree as PbContentTree, DatastoreConfig, InstanceOpsCmd, NetworkAdapter,
    NetworkInstanceConfig, UuiDandVersion, VmConfig, Volume as PbVolume, VolumeContentOrigin,
    VolumeRef as PbVolumeRef,
};

use super::*;

fn id(uuid: &str, version: &str) -> Option<UuiDandVersion> {
    Some(UuiDandVersion {
        uuid: uuid.into(),
        version: version.into(),
    })
}

/// A configuration with one object of every kind, every field the tables carry set.
pub(crate) fn full_config() -> EdgeDevConfig {
    EdgeDevConfig {
        id: id("dev-1", "7"),
        config_items: vec![
            ConfigItem {
                key: "timer.config.interval".into(),
                value: "10".into(),
            },
            ConfigItem {
                key: "timer.metric.interval".into(),
                value: "20".into(),
            },
        ],
        datastores: vec![
            DatastoreConfig {
                id: "ds-1".into(),
                d_type: 2,
                fqdn: "10.0.2.2:8443".into(),
                dpath: "/ds".into(),
                api_key: "user".into(),
                password: "secret".into(),
                ..Default::default()
            },
            DatastoreConfig {
                id: "ds-2".into(),
                d_type: 3,
                ..Default::default()
            },
        ],
        content_info: vec![PbContentTree {
            uuid: "ct-1".into(),
            ds_id: "ds-1".into(),
            url: "images/app.img".into(),
            iformat: 1,
            sha256: "AB".repeat(32),
            max_size_bytes: 1 << 20,
            display_name: "app image".into(),
            ..Default::default()
        }],
        volumes: vec![
            PbVolume {
                uuid: "vol-1".into(),
                origin: Some(VolumeContentOrigin {
                    r#type: VolumeContentOriginType::VcotDownload as i32,
                    download_content_tree_id: "ct-1".into(),
                }),
                generation_count: 4,
                maxsizebytes: 2 << 20,
                display_name: "root".into(),
                ..Default::default()
            },
            PbVolume {
                uuid: "vol-2".into(),
                origin: Some(VolumeContentOrigin {
                    r#type: VolumeContentOriginType::VcotBlank as i32,
                    download_content_tree_id: String::new(),
                }),
                ..Default::default()
            },
        ],
        network_instances: vec![NetworkInstanceConfig {
            uuidandversion: id("ni-1", "1"),
            displayname: "local".into(),
            inst_type: 2,
            ip: Some(Ipspec {
                subnet: "10.1.0.0/24".into(),
                gateway: "10.1.0.1".into(),
                dns: vec!["10.1.0.1".into(), "9.9.9.9".into()],
                dhcp_range: Some(IpRange {
                    start: "10.1.0.10".into(),
                    end: "10.1.0.99".into(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }],
        apps: vec![AppInstanceConfig {
            uuidandversion: id("app-1", "3"),
            displayname: "sensor".into(),
            fixedresources: Some(VmConfig {
                memory: 65536,
                vcpus: 2,
                ..Default::default()
            }),
            activate: true,
            interfaces: vec![NetworkAdapter {
                name: "eth0".into(),
                network_id: "ni-1".into(),
                addr: "10.1.0.5".into(),
                mac_address: "02:00:00:00:00:05".into(),
                acls: vec![PbAce {
                    id: 1,
                    name: "web".into(),
                    matches: vec![
                        AceMatch {
                            r#type: "protocol".into(),
                            value: "tcp".into(),
                        },
                        AceMatch {
                            r#type: "lport".into(),
                            value: "8080".into(),
                        },
                    ],
                    actions: vec![PbAceAction {
                        portmap: true,
                        app_port: 80,
                        ..Default::default()
                    }],
                    dir: 0,
                }],
                ..Default::default()
            }],
            restart: Some(InstanceOpsCmd {
                counter: 2,
                ops_time: String::new(),
            }),
            purge: Some(InstanceOpsCmd {
                counter: 1,
                ops_time: String::new(),
            }),
            volume_ref_list: vec![
                PbVolumeRef {
                    uuid: "vol-1".into(),
                    generation_count: 4,
                    mount_dir: String::new(),
                },
                PbVolumeRef {
                    uuid: "vol-2".into(),
                    generation_count: 0,
                    mount_dir: String::new(),
                },
            ],
            start_delay_in_seconds: 30,
            // "# options\nbroker=10.0.2.2:1883\nqos=1\n", base64 as EVE sends it.
            user_data: "IyBvcHRpb25zCmJyb2tlcj0xMC4wLjIuMjoxODgzCnFvcz0xCg==".into(),
            ..Default::default()
        }],
        baseos: Some(PbBaseOs {
            content_tree_uuid: "ct-1".into(),
            activate: true,
            base_os_version: "1.2.3".into(),
            retry_update: None,
        }),
        ..Default::default()
    }
}

#[test]
fn every_field_of_every_object_is_carried() {
    let tables = ConfigTables::from_config(&full_config()).unwrap();
    assert_eq!(
        tables.items.items,
        vec![
            ("timer.config.interval".to_string(), "10".to_string()),
            ("timer.metric.interval".to_string(), "20".to_string())
        ]
    );
    assert_eq!(tables.items.get("timer.metric.interval"), Some("20"));
    assert_eq!(
        tables.datastores["ds-1"],
        Datastore {
            id: "ds-1".into(),
            kind: DatastoreKind::Https,
            fqdn: "10.0.2.2:8443".into(),
            dpath: "/ds".into(),
            api_key: "user".into(),
            password: "secret".into(),
        }
    );
    assert_eq!(tables.datastores["ds-2"].kind, DatastoreKind::Other(3));
    assert_eq!(
        tables.content_trees["ct-1"],
        ContentTree {
            uuid: "ct-1".into(),
            datastore_id: "ds-1".into(),
            url: "images/app.img".into(),
            format: 1,
            sha256: "ab".repeat(32),
            max_size_bytes: 1 << 20,
            name: "app image".into(),
        }
    );
    assert_eq!(
        tables.volumes["vol-1"],
        Volume {
            uuid: "vol-1".into(),
            name: "root".into(),
            origin: VolumeOrigin::ContentTree("ct-1".into()),
            max_size_bytes: 2 << 20,
            generation: 4,
        }
    );
    assert_eq!(tables.volumes["vol-2"].origin, VolumeOrigin::Blank);
    assert_eq!(
        tables.network_instances["ni-1"],
        NetworkInstance {
            uuid: "ni-1".into(),
            name: "local".into(),
            kind: 2,
            subnet: "10.1.0.0/24".into(),
            gateway: "10.1.0.1".into(),
            dhcp_start: "10.1.0.10".into(),
            dhcp_end: "10.1.0.99".into(),
            dns: vec!["10.1.0.1".into(), "9.9.9.9".into()],
        }
    );
    assert_eq!(
        tables.apps["app-1"],
        AppInstance {
            uuid: "app-1".into(),
            version: "3".into(),
            name: "sensor".into(),
            activate: true,
            memory_kib: 65536,
            vcpus: 2,
            volumes: vec![
                VolumeRef {
                    uuid: "vol-1".into(),
                    generation: 4
                },
                VolumeRef {
                    uuid: "vol-2".into(),
                    generation: 0
                }
            ],
            interfaces: vec![AppInterface {
                name: "eth0".into(),
                network_id: "ni-1".into(),
                addr: "10.1.0.5".into(),
                mac: "02:00:00:00:00:05".into(),
                acls: vec![Ace {
                    id: 1,
                    name: "web".into(),
                    matches: vec![
                        ("protocol".into(), "tcp".into()),
                        ("lport".into(), "8080".into())
                    ],
                    actions: vec![AceAction {
                        portmap: true,
                        app_port: 80,
                        ..Default::default()
                    }],
                    direction: 0,
                }],
            }],
            restart_counter: 2,
            purge_counter: 1,
            start_delay_s: 30,
            cmdline: "broker=10.0.2.2:1883 qos=1".into(),
        }
    );
    assert_eq!(
        tables.base_os,
        Some(BaseOs {
            content_tree_uuid: "ct-1".into(),
            version: "1.2.3".into(),
            activate: true,
        })
    );
    assert_eq!(
        tables.summary(),
        "1 apps, 1 network instances, 2 volumes, 1 content trees, 2 datastores, 2 config items, base OS 1.2.3"
    );
}

#[test]
fn an_empty_configuration_is_empty_tables() {
    let tables = ConfigTables::from_config(&EdgeDevConfig::default()).unwrap();
    assert_eq!(tables, ConfigTables::default());
    // An empty BaseOS message names no base OS.
    let config = EdgeDevConfig {
        baseos: Some(PbBaseOs::default()),
        ..Default::default()
    };
    assert_eq!(ConfigTables::from_config(&config).unwrap().base_os, None);
}

#[test]
fn a_content_tree_names_its_datastore_from_the_list_when_ds_id_is_empty() {
    let mut config = full_config();
    config.content_info[0].ds_id.clear();
    config.content_info[0].ds_ids_list = vec!["ds-2".into(), "ds-1".into()];
    let tables = ConfigTables::from_config(&config).unwrap();
    assert_eq!(tables.content_trees["ct-1"].datastore_id, "ds-2");
}

fn refused(config: &EdgeDevConfig) -> String {
    ConfigTables::from_config(config).unwrap_err().to_string()
}

#[test]
fn references_to_objects_not_in_the_configuration_are_refused() {
    let mut config = full_config();
    config.content_info[0].ds_id = "ds-9".into();
    assert_eq!(
        refused(&config),
        "content tree ct-1: datastore \"ds-9\" is not in the configuration"
    );

    let mut config = full_config();
    config.volumes[0]
        .origin
        .as_mut()
        .unwrap()
        .download_content_tree_id = "ct-9".into();
    assert_eq!(
        refused(&config),
        "volume vol-1: content tree \"ct-9\" is not in the configuration"
    );

    let mut config = full_config();
    config.apps[0].volume_ref_list[1].uuid = "vol-9".into();
    config.apps[0].interfaces[0].network_id = "ni-9".into();
    assert_eq!(
        refused(&config),
        "app app-1: volume \"vol-9\" is not in the configuration; \
         app app-1: interface \"eth0\": network instance \"ni-9\" is not in the configuration"
    );

    // An ACE that does not parse refuses the configuration, naming the app and the rule.
    let mut config = full_config();
    config.apps[0].interfaces[0].acls[0].actions[0].app_port = 0;
    assert_eq!(
        refused(&config),
        "app app-1: interface \"eth0\": ACL rule 1: portmap: appPort is not a port"
    );

    let mut config = full_config();
    config.baseos.as_mut().unwrap().content_tree_uuid = "ct-9".into();
    assert_eq!(
        refused(&config),
        "base OS \"1.2.3\": content tree \"ct-9\" is not in the configuration"
    );
}

#[test]
fn objects_without_ids_twice_the_same_id_and_bad_values_are_refused() {
    let mut config = full_config();
    config.datastores[1].id = "ds-1".into();
    config.apps[0].uuidandversion = None;
    assert_eq!(refused(&config), "two of datastore ds-1; app with no id");

    let mut config = full_config();
    config.volumes[1].origin = None;
    config.volumes[0].maxsizebytes = -1;
    config.content_info[0].sha256 = "abc".into();
    assert_eq!(
        refused(&config),
        "content tree ct-1: sha256 \"abc\" is not 64 hex digits; \
         volume vol-1: negative size -1; volume vol-2: no origin"
    );

    let mut config = full_config();
    config.volumes[1].origin.as_mut().unwrap().r#type = 7;
    assert_eq!(refused(&config), "volume vol-2: unknown origin type 7");

    // User data that is not base64, or does not make a command line.
    let mut config = full_config();
    config.apps[0].user_data = "not base64!".into();
    assert_eq!(refused(&config), "app app-1: userData: not base64");
    let mut config = full_config();
    config.apps[0].user_data = "YT0xG2I9Mg==".into(); // "a=1\x1bb=2"
    assert_eq!(
        refused(&config),
        "app app-1: userData: the user data holds the control character '\\u{1b}'"
    );
    let mut config = full_config();
    config.apps[0].user_data = "YT0x\nYj0y\n".into(); // "a=1b=2", base64 over two lines
    let tables = ConfigTables::from_config(&config).unwrap();
    assert_eq!(tables.apps["app-1"].cmdline, "a=1b=2");
}

#[test]
fn ids_are_published_in_lowercase_and_references_match_whatever_their_case() {
    let mut config = full_config();
    config.datastores[0].id = "DS-1".into();
    config.volumes[0].uuid = "Vol-1".into();
    config.apps[0].uuidandversion = id("APP-1", "3");
    config.apps[0].interfaces[0].network_id = "NI-1".into();
    config.baseos.as_mut().unwrap().content_tree_uuid = "CT-1".into();
    let tables = ConfigTables::from_config(&config).unwrap();
    assert_eq!(tables.datastores["ds-1"].id, "ds-1");
    assert_eq!(tables.content_trees["ct-1"].datastore_id, "ds-1");
    assert_eq!(tables.volumes["vol-1"].uuid, "vol-1");
    let app = &tables.apps["app-1"];
    assert_eq!(app.uuid, "app-1");
    assert_eq!(app.volumes[0].uuid, "vol-1");
    assert_eq!(app.interfaces[0].network_id, "ni-1");
    assert_eq!(tables.base_os.unwrap().content_tree_uuid, "ct-1");
}
