//! `volumemgr`: EVE's volume manager. It places every app volume the configuration asks for
//! (`zedagent/Volume`) on the node's app data disk, keeps where in the vault
//! (`volumemgr/Allocation`), has the downloader fill it (a content tree's image, or zeros) and
//! reports each volume's `volumemgr/VolumeStatus`; zedmanager boots an app once its volumes are
//! `Created`. The decisions are in src/lib.rs; this file feeds them and publishes them.
//!
//! Order matters for a power cut at any moment: an allocation is committed by the vault before
//! its status (which the downloader follows) names the extent, and a volume's `made` mark is
//! committed before it is reported `Created` (after which no fill ever touches it again).

#![no_std]
#![no_main]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::string::String;

use kernel::{error, info, Args, Duration};
use topics::domainmgr::DOMAIN_STATUS;
use topics::downloader::{DATA_DISK, DOWNLOAD_STATUS};
use topics::vault::STORED;
use topics::volumemgr::{Allocation, ALLOCATION, VOLUME_STATUS};
use topics::zedagent::{CONTENT_TREE, VOLUME};
use topics::zedmanager::DOMAIN_CONFIG;
use volumemgr::{plan, InUse, World};

kernel::service! {
    main: main,
    memory_floor_mib: 4,
    publishes: &[ALLOCATION.decl(), VOLUME_STATUS.decl()],
    subscribes: &[VOLUME.decl(), CONTENT_TREE.decl(), STORED.decl()],
    watches: &[
        DATA_DISK.decl(),
        DOWNLOAD_STATUS.decl(),
        DOMAIN_CONFIG.decl(),
        DOMAIN_STATUS.decl(),
    ],
}

/// The longest wait between two rounds when nothing changes.
const ROUND: Duration = Duration::from_millis(250);

/// A subscription's objects, by key.
fn table<T: Clone>(s: &bus_io::Subscription<T>) -> BTreeMap<String, T> {
    s.with(|s| {
        s.iter()
            .map(|(k, v)| (String::from(k), v.clone()))
            .collect()
    })
}

async fn main(_args: Args) -> i32 {
    match run().await {
        Ok(()) => 0,
        Err(e) => {
            error!("volumemgr: {e}");
            1
        }
    }
}

async fn run() -> Result<(), String> {
    let node = bus_io::channel::node().await;
    let e = |e: bus_io::NodeError| alloc::format!("{e}");
    let volumes = node.subscribe(&VOLUME).map_err(e)?;
    let trees = node.subscribe(&CONTENT_TREE).map_err(e)?;
    let disk = node.subscribe(&DATA_DISK).map_err(e)?;
    let fills = node.subscribe(&DOWNLOAD_STATUS).map_err(e)?;
    let configs = node.subscribe(&DOMAIN_CONFIG).map_err(e)?;
    let domains = node.subscribe(&DOMAIN_STATUS).map_err(e)?;
    let statuses = node.publish(&VOLUME_STATUS).map_err(e)?;
    let allocations = node
        .publish_persistent(&ALLOCATION)
        .await
        .map_err(|e| alloc::format!("{e}"))?;
    let stored: BTreeMap<String, Allocation> = allocations
        .shared()
        .with(|p| p.iter().map(|(k, v)| (String::from(k), v)).collect());
    info!(
        "volumemgr: {} volumes restored from the vault",
        stored.len()
    );

    let mut published: BTreeMap<String, topics::volumemgr::VolumeStatus> = BTreeMap::new();
    let mut stored = stored;
    loop {
        let synchronized =
            volumes.with(|s| s.is_synchronized()) && trees.with(|s| s.is_synchronized());
        if synchronized {
            let domain_configs = table(&configs);
            let domain_states = table(&domains);
            // A domain whose configuration is gone is being destroyed: its extents are not
            // known. Before both views are in, nothing is known either.
            let unknown = !configs.with(|s| s.is_synchronized())
                || !domains.with(|s| s.is_synchronized())
                || domain_states
                    .iter()
                    .any(|(app, d)| d.domid.is_some() && !domain_configs.contains_key(app));
            let in_use = InUse {
                extents: domain_configs.values().flat_map(|c| c.extents()).collect(),
                unknown,
            };
            let world = World {
                disk_mib: disk.with(|s| s.get("global").map(|d| d.size_mib)),
                volumes: &table(&volumes),
                trees: &table(&trees),
                fills: &table(&fills),
                in_use: &in_use,
            };
            let plan = plan(&world, &stored);
            if plan.allocations != stored {
                for key in stored.keys().filter(|k| !plan.allocations.contains_key(*k)) {
                    let _ = allocations.unpublish(key);
                }
                for (key, a) in &plan.allocations {
                    if stored.get(key) != Some(a) {
                        if let Err(e) = allocations.publish(key, a) {
                            error!("volumemgr: cannot store the allocation of {key}: {e}");
                        }
                    }
                }
                // Committed before any status names what changed.
                allocations.durable().await;
                stored = plan.allocations;
            }
            for key in published.keys().filter(|k| !plan.statuses.contains_key(*k)) {
                let _ = statuses.unpublish(key);
            }
            for (key, status) in &plan.statuses {
                if published.get(key) != Some(status) {
                    info!("volumemgr: {status}");
                    if let Err(e) = statuses.publish(key, status) {
                        error!("volumemgr: cannot publish the status of {key}: {e}");
                    }
                }
            }
            published = plan.statuses;
        }
        let _ = kernel::timeout(ROUND, volumes.next()).await;
        while volumes.try_next().is_some()
            || trees.try_next().is_some()
            || disk.try_next().is_some()
            || fills.try_next().is_some()
            || configs.try_next().is_some()
            || domains.try_next().is_some()
        {}
    }
}
