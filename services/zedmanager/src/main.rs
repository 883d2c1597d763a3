//! `zedmanager`: EVE's app manager. It follows `zedagent/AppInstance`, its volumes'
//! `volumemgr/VolumeStatus` and `domainmgr/DomainStatus`, runs each app's state machine
//! (src/lib.rs) and publishes `zedmanager/DomainConfig` for domainmgr and
//! `zedmanager/AppInstanceStatus` for info.
//!
//! An app's network card joins its network instance's bridge, as zedrouter reports it
//! (`zedrouter/NetworkInstanceStatus`, watched): until the instance is online the app waits
//! (`BOOTING`), and an instance zedrouter refused is the app's `ERROR`. On a node without
//! zedrouter (no bus channel to it) the card joins dom0's own bridge, `lichenbr0`.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use kernel::{error, info, Args, Duration};
use topics::domainmgr::DOMAIN_STATUS;
use topics::volumemgr::VOLUME_STATUS;
use topics::zedagent::APP_INSTANCE;
use topics::zedmanager::{SwState, APP_INSTANCE_STATUS, DOMAIN_CONFIG};
use topics::zedrouter::{NetworkInstanceState, NetworkInstanceStatus, NETWORK_INSTANCE_STATUS};
use zedmanager::{where_volumes_stand, App, Volumes};

kernel::service! {
    main: main,
    memory_floor_mib: 4,
    publishes: &[DOMAIN_CONFIG.decl(), APP_INSTANCE_STATUS.decl()],
    subscribes: &[APP_INSTANCE.decl(), VOLUME_STATUS.decl(), DOMAIN_STATUS.decl()],
    watches: &[NETWORK_INSTANCE_STATUS.decl()],
}

/// dom0's own bridge (DHCP from dom0), for apps on a node without zedrouter.
const DOM0_BRIDGE: &str = "lichenbr0";

/// The longest wait between two rounds when nothing changes.
const ROUND: Duration = Duration::from_millis(200);

async fn main(_args: Args) -> i32 {
    let node = bus_io::channel::node().await;
    let subscriptions = (
        node.subscribe(&APP_INSTANCE),
        node.subscribe(&VOLUME_STATUS),
        node.subscribe(&DOMAIN_STATUS),
    );
    let publications = (
        node.publish(&DOMAIN_CONFIG),
        node.publish(&APP_INSTANCE_STATUS),
    );
    let ((Ok(apps), Ok(volumes), Ok(domains)), (Ok(configs), Ok(statuses)), Ok(networks)) = (
        subscriptions,
        publications,
        node.subscribe(&NETWORK_INSTANCE_STATUS),
    ) else {
        error!("zedmanager's topics are not all declared");
        return 1;
    };
    let routed = node.channels().iter().any(|c| c == "zedrouter");
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
                let mut ready = volumes.with(|s| where_volumes_stand(instance, |v| s.get(v)));
                let bridge = match instance.interfaces.first() {
                    None => Ok(None),
                    Some(_) if !routed => Ok(Some(String::from(DOM0_BRIDGE))),
                    Some(card) => networks.with(|s| bridge_of(s.get(&card.network_id))),
                };
                let bridge = match (bridge, &ready) {
                    (Ok(bridge), _) => bridge,
                    (Err(why), Volumes::Ready(_)) => {
                        ready = why;
                        None
                    }
                    (Err(_), _) => None,
                };
                let domain = domains.with(|s| s.get(uuid).cloned());
                let step = state.entry(uuid.clone()).or_default().step(
                    instance,
                    domain.as_ref(),
                    &ready,
                    bridge.as_deref(),
                    now_ms,
                );
                if let Some(config) = &step.domain {
                    if let Err(e) = configs.publish(uuid, config) {
                        error!("cannot publish the domain of {uuid}: {e}");
                    }
                } else if matches!(ready, Volumes::Remaking) {
                    // The domain goes (domainmgr destroys it), so that volumemgr may make
                    // its volume again.
                    let _ = configs.unpublish(uuid);
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

/// The bridge of a network instance as zedrouter reports it (`status`), or what the app waits
/// for.
fn bridge_of(status: Option<&NetworkInstanceStatus>) -> Result<Option<String>, Volumes> {
    match status {
        Some(s) if s.state == NetworkInstanceState::Online => Ok(Some(s.bridge.clone())),
        Some(s) if s.state == NetworkInstanceState::Error => Err(Volumes::Failed(alloc::format!(
            "network instance {}: {}",
            s.name,
            s.error
        ))),
        _ => Err(Volumes::Waiting(SwState::Booting)),
    }
}
