use alloc::vec;

use declare::{Declaration, Needs};
use topics::zedagent::config::TABLES;

use super::*;
use crate::tables::tests::full_config;

static ZEDAGENT: Declaration = Declaration {
    memory_floor_mib: 8,
    needs: Needs::NONE,
    publishes: TABLES,
    subscribes: &[],
    watches: &[],
};

fn node() -> Node {
    // No peers: the drivers the node spawns are never needed.
    Node::new("zedagent", &ZEDAGENT, drop, |_| {})
}

fn keys<K: Key, T: Serialize + DeserializeOwned>(table: &Publication<K, T>) -> Vec<String> {
    table
        .shared()
        .with(|p| p.keys().map(String::from).collect())
}

#[test]
fn every_table_holds_what_the_configuration_holds() {
    let fanout = Fanout::new(&node()).unwrap();
    let tables = ConfigTables::from_config(&full_config()).unwrap();
    let changes = fanout.publish(&tables).unwrap();
    assert_eq!(
        changes,
        Changes {
            published: 9,
            removed: 0
        }
    );
    assert_eq!(
        fanout.items.shared().with(|p| p.get("global")),
        Some(tables.items.clone())
    );
    assert_eq!(keys(&fanout.datastores), vec!["ds-1", "ds-2"]);
    assert_eq!(
        fanout.datastores.shared().with(|p| p.get("ds-1")).as_ref(),
        tables.datastores.get("ds-1")
    );
    assert_eq!(keys(&fanout.content_trees), vec!["ct-1"]);
    assert_eq!(keys(&fanout.volumes), vec!["vol-1", "vol-2"]);
    assert_eq!(keys(&fanout.network_instances), vec!["ni-1"]);
    assert_eq!(
        fanout.apps.shared().with(|p| p.get("app-1")).as_ref(),
        tables.apps.get("app-1")
    );
    assert_eq!(
        fanout.base_os.shared().with(|p| p.get("global")),
        tables.base_os
    );
    // The same configuration again changes nothing.
    assert_eq!(fanout.publish(&tables).unwrap(), Changes::default());
}

#[test]
fn objects_gone_from_the_configuration_are_unpublished_and_changed_ones_replaced() {
    let fanout = Fanout::new(&node()).unwrap();
    fanout
        .publish(&ConfigTables::from_config(&full_config()).unwrap())
        .unwrap();

    let mut config = full_config();
    config.apps.clear();
    config.volumes.remove(0);
    config.baseos = None;
    config.content_info.clear();
    config.datastores.remove(0);
    config.network_instances[0].displayname = "renamed".into();
    let changes = fanout
        .publish(&ConfigTables::from_config(&config).unwrap())
        .unwrap();
    assert_eq!(
        changes,
        Changes {
            published: 1,
            removed: 5
        }
    );
    assert!(keys(&fanout.apps).is_empty());
    assert_eq!(keys(&fanout.volumes), vec!["vol-2"]);
    assert!(keys(&fanout.content_trees).is_empty());
    assert_eq!(keys(&fanout.datastores), vec!["ds-2"]);
    assert!(keys(&fanout.base_os).is_empty());
    assert_eq!(
        fanout
            .network_instances
            .shared()
            .with(|p| p.get("ni-1"))
            .unwrap()
            .name,
        "renamed"
    );

    // An empty configuration empties every table but the (empty) config items.
    fanout.publish(&ConfigTables::default()).unwrap();
    for k in [
        keys(&fanout.datastores),
        keys(&fanout.volumes),
        keys(&fanout.network_instances),
    ] {
        assert!(k.is_empty());
    }
    assert_eq!(
        fanout.items.shared().with(|p| p.get("global")),
        Some(ConfigItems::default())
    );
}
