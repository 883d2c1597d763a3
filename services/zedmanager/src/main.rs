//! `zedmanager`: EVE's app manager. It follows `zedagent/AppInstance` (and `zedagent/Volume`
//! for the boot volume's name) and `domainmgr/DomainStatus`, runs each app's state machine
//! (src/lib.rs) and publishes `zedmanager/DomainConfig` for domainmgr and
//! `zedmanager/AppInstanceStatus` for info.
//!
//! Until volumemgr exists, an app's volumes are ready when their `zedagent/Volume`s are there:
//! each one's name is the node's app volume of that name (`[apps] volumes`); another name is
//! refused by the launcher and the app reports it as its error.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use kernel::{error, info, Args, Duration};
use topics::domainmgr::DOMAIN_STATUS;
use topics::zedagent::{APP_INSTANCE, VOLUME};
use topics::zedmanager::{APP_INSTANCE_STATUS, DOMAIN_CONFIG};
use zedmanager::App;

kernel::service! {
    main: main,
    memory_floor_mib: 4,
    publishes: &[DOMAIN_CONFIG.decl(), APP_INSTANCE_STATUS.decl()],
    subscribes: &[APP_INSTANCE.decl(), VOLUME.decl(), DOMAIN_STATUS.decl()],
}

/// The longest wait between two rounds when nothing changes.
const ROUND: Duration = Duration::from_millis(200);

async fn main(_args: Args) -> i32 {
    let node = bus_io::channel::node().await;
    let subscriptions = (
        node.subscribe(&APP_INSTANCE),
        node.subscribe(&VOLUME),
        node.subscribe(&DOMAIN_STATUS),
    );
    let publications = (
        node.publish(&DOMAIN_CONFIG),
        node.publish(&APP_INSTANCE_STATUS),
    );
    let ((Ok(apps), Ok(volumes), Ok(domains)), (Ok(configs), Ok(statuses))) =
        (subscriptions, publications)
    else {
        error!("zedmanager's topics are not all declared");
        return 1;
    };
    let mut state: BTreeMap<String, App> = BTreeMap::new();
    let mut known = usize::MAX;
    loop {
        while apps.try_next().is_some() || volumes.try_next().is_some() {}
        while domains.try_next().is_some() {}
        let now_ms = kernel::now().since_boot().as_millis() as u64;
        let synchronized = apps.with(|s| s.is_synchronized());
        if synchronized {
            let instances: Vec<_> = apps.with(|s| {
                s.iter()
                    .map(|(k, v)| (String::from(k), v.clone()))
                    .collect()
            });
            for (uuid, instance) in &instances {
                // Every volume's name, once all are known (volumemgr's job, to come).
                let names: Option<Vec<String>> = volumes.with(|s| {
                    instance
                        .volumes
                        .iter()
                        .map(|v| s.get(&v.uuid).map(|volume| volume.name.to_lowercase()))
                        .collect()
                });
                let domain = domains.with(|s| s.get(uuid).cloned());
                let step = state.entry(uuid.clone()).or_default().step(
                    instance,
                    domain.as_ref(),
                    names.as_deref().filter(|n| !n.is_empty()),
                    now_ms,
                );
                if let Some(config) = &step.domain {
                    if let Err(e) = configs.publish(uuid, config) {
                        error!("cannot publish the domain of {uuid}: {e}");
                    }
                }
                if let Err(e) = statuses.publish(uuid, &step.status) {
                    error!("cannot publish the status of {uuid}: {e}");
                }
            }
            if instances.len() != known {
                known = instances.len();
                info!(
                    "{known} apps; heap in use: {} KiB",
                    kernel::mem::heap_used() / 1024
                );
            }
            // Deleted apps: their domains and statuses go (domainmgr destroys the domains).
            state.retain(|uuid, _| {
                let keep = instances.iter().any(|(u, _)| u == uuid);
                if !keep {
                    let _ = configs.unpublish(uuid);
                    let _ = statuses.unpublish(uuid);
                }
                keep
            });
        }
        // Wake on any change, or after a round (start delays and backoffs end on time).
        let _ = kernel::timeout(ROUND, apps.next()).await;
    }
}
