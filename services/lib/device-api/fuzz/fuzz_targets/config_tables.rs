//! A configuration from the controller (after its signature verified: any bytes a compromised
//! or buggy controller could sign) decoded as `EdgeDevConfig` and converted into the bus's
//! tables by `device_api::tables`. Checked: no panic, and a configuration taken holds together:
//! every reference resolves, and every object of the input is in its table.
#![no_main]

use device_api::tables::ConfigTables;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use topics::zedagent::config::VolumeOrigin;

fuzz_target!(|data: &[u8]| {
    let Ok(config) = lichen_api::config::EdgeDevConfig::decode(data) else {
        return;
    };
    let Ok(tables) = ConfigTables::from_config(&config) else {
        return;
    };
    assert_eq!(tables.datastores.len(), config.datastores.len());
    assert_eq!(tables.content_trees.len(), config.content_info.len());
    assert_eq!(tables.volumes.len(), config.volumes.len());
    assert_eq!(tables.apps.len(), config.apps.len());
    assert_eq!(tables.network_instances.len(), config.network_instances.len());
    for tree in tables.content_trees.values() {
        assert!(tables.datastores.contains_key(&tree.datastore_id));
        assert!(tree.sha256.is_empty() || tree.sha256.len() == 64);
    }
    for volume in tables.volumes.values() {
        if let VolumeOrigin::ContentTree(id) = &volume.origin {
            assert!(tables.content_trees.contains_key(id));
        }
    }
    for app in tables.apps.values() {
        assert!(app.volumes.iter().all(|v| tables.volumes.contains_key(&v.uuid)));
        assert!(app
            .interfaces
            .iter()
            .all(|i| tables.network_instances.contains_key(&i.network_id)));
    }
    if let Some(base) = &tables.base_os {
        assert!(tables.content_trees.contains_key(&base.content_tree_uuid));
    }
});
