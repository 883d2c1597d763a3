//! Publishing the configuration in force on the bus: [`Fanout`] holds zedagent's publications
//! of the configuration tables (`topics::zedagent::config`) and makes each table say exactly
//! what a new [`ConfigTables`] holds: new and changed objects published, objects the new
//! configuration no longer holds unpublished (subscribers see them deleted), unchanged ones
//! left alone (the bus sends nothing for them).

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use bus_io::node::{Node, Publication};
use serde::de::DeserializeOwned;
use serde::Serialize;
use topics::zedagent::config::{
    AppInstance, BaseOs, ConfigItems, ContentTree, Datastore, NetworkInstance, Volume,
    APP_INSTANCE, BASE_OS, CONFIG_ITEMS, CONTENT_TREE, DATASTORE, NETWORK_INSTANCE, VOLUME,
};
use topics::{Global, Key};

use crate::tables::ConfigTables;

/// The configuration tables, published by one node.
pub struct Fanout {
    items: Publication<Global, ConfigItems>,
    datastores: Publication<String, Datastore>,
    content_trees: Publication<String, ContentTree>,
    volumes: Publication<String, Volume>,
    apps: Publication<String, AppInstance>,
    network_instances: Publication<String, NetworkInstance>,
    base_os: Publication<Global, BaseOs>,
}

/// What one [`Fanout::publish`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Objects added or changed.
    pub published: usize,
    /// Objects removed.
    pub removed: usize,
}

impl Fanout {
    /// Starts publishing every configuration table on `node` (its image must declare
    /// `topics::zedagent::config::TABLES` among what it publishes). The tables start empty.
    pub fn new(node: &Node) -> Result<Fanout, String> {
        fn open<K: Key, T: Serialize + DeserializeOwned + 'static>(
            node: &Node,
            topic: &topics::Topic<K, T>,
        ) -> Result<Publication<K, T>, String> {
            node.publish(topic).map_err(|e| format!("{e}"))
        }
        Ok(Fanout {
            items: open(node, &CONFIG_ITEMS)?,
            datastores: open(node, &DATASTORE)?,
            content_trees: open(node, &CONTENT_TREE)?,
            volumes: open(node, &VOLUME)?,
            apps: open(node, &APP_INSTANCE)?,
            network_instances: open(node, &NETWORK_INSTANCE)?,
            base_os: open(node, &BASE_OS)?,
        })
    }

    /// Makes every table hold what `tables` holds. The objects referred to go first
    /// (datastores, content trees, network instances, volumes, then apps and the base OS) and
    /// removals last, so that a subscriber following several tables rarely sees a reference
    /// to an object it has not seen yet.
    pub fn publish(&self, tables: &ConfigTables) -> Result<Changes, String> {
        let mut changes = Changes::default();
        let items = Some(&tables.items);
        let base_os = tables.base_os.as_ref();
        put(&self.items, &global(&items), &mut changes)?;
        put(&self.datastores, &refs(&tables.datastores), &mut changes)?;
        put(
            &self.content_trees,
            &refs(&tables.content_trees),
            &mut changes,
        )?;
        put(
            &self.network_instances,
            &refs(&tables.network_instances),
            &mut changes,
        )?;
        put(&self.volumes, &refs(&tables.volumes), &mut changes)?;
        put(&self.apps, &refs(&tables.apps), &mut changes)?;
        put(&self.base_os, &global(&base_os), &mut changes)?;
        remove(&self.apps, &refs(&tables.apps), &mut changes)?;
        remove(&self.base_os, &global(&base_os), &mut changes)?;
        remove(&self.volumes, &refs(&tables.volumes), &mut changes)?;
        remove(
            &self.network_instances,
            &refs(&tables.network_instances),
            &mut changes,
        )?;
        remove(
            &self.content_trees,
            &refs(&tables.content_trees),
            &mut changes,
        )?;
        remove(&self.datastores, &refs(&tables.datastores), &mut changes)?;
        remove(&self.items, &global(&items), &mut changes)?;
        Ok(changes)
    }
}

fn global<'a, T>(value: &Option<&'a T>) -> BTreeMap<Global, &'a T> {
    value.iter().map(|v| (Global, *v)).collect()
}

fn refs<T>(table: &BTreeMap<String, T>) -> BTreeMap<String, &T> {
    table.iter().map(|(k, v)| (k.clone(), v)).collect()
}

/// Publishes every object of `new` that the table does not hold as it is.
fn put<K: Key + Ord, T: Serialize + DeserializeOwned + PartialEq>(
    table: &Publication<K, T>,
    new: &BTreeMap<K, &T>,
    changes: &mut Changes,
) -> Result<(), String> {
    for (key, value) in new {
        let current = table.shared().with(|p| p.get(&key.to_key()));
        if current.as_ref() != Some(*value) {
            table
                .publish(key, value)
                .map_err(|e| format!("{}: {e}", key.to_key()))?;
            changes.published += 1;
        }
    }
    Ok(())
}

/// Unpublishes every object of the table that `new` does not hold.
fn remove<K: Key + Ord, T: Serialize + DeserializeOwned>(
    table: &Publication<K, T>,
    new: &BTreeMap<K, &T>,
    changes: &mut Changes,
) -> Result<(), String> {
    let new_keys: Vec<String> = new.keys().map(Key::to_key).collect();
    let vanished: Vec<String> = table.shared().with(|p| {
        p.keys()
            .filter(|k| !new_keys.iter().any(|n| n == k))
            .map(String::from)
            .collect()
    });
    for key in vanished {
        table
            .shared()
            .unpublish(&key)
            .map_err(|e| format!("{key}: {e}"))?;
        changes.removed += 1;
    }
    Ok(())
}

#[cfg(test)]
#[path = "fanout_tests.rs"]
mod tests;
