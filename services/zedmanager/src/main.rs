//! `zedmanager`: EVE's app manager. It follows `zedagent/AppInstance`, its volumes'
//! `volumemgr/VolumeStatus` and `domainmgr/DomainStatus`, runs each app's state machine
//! (src/lib.rs) and publishes `zedmanager/DomainConfig` for domainmgr and
//! `zedmanager/AppInstanceStatus` for info.
//!
//! An app's network card joins its network instance's bridge, as zedrouter reports it
//! (`zedrouter/NetworkInstanceStatus`, watched): until the instance is online the app waits
//! (`BOOTING`), and an instance zedrouter refused is the app's `ERROR`. On a node without
//! zedrouter (no bus channel to it) the card joins dom0's own bridge, `lichenbr0`.
//!
//! A restarted zedmanager (or one on a rebooted node) takes up each app where it was: its
//! generation and counts come back from `zedmanager/AppRecord`, which the vault keeps. It
//! serves its two tables only once it has heard every input and stepped each app once: an
//! empty table served meanwhile would tell domainmgr to destroy every app domain, and
//! zedagent to report every app deleted (EVE's restarted agents republish before their
//! subscribers act, too).

#![no_std]
#![no_main]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use kernel::{error, info, Args, Duration};
use topics::domainmgr::DOMAIN_STATUS;
use topics::vault::STORED;
use topics::volumemgr::VOLUME_STATUS;
use topics::zedagent::APP_INSTANCE;
use topics::zedmanager::{AppRecord, SwState, APP_INSTANCE_STATUS, APP_RECORD, DOMAIN_CONFIG};
use topics::zedrouter::{NetworkInstanceState, NetworkInstanceStatus, NETWORK_INSTANCE_STATUS};
use zedmanager::{where_volumes_stand, App, Volumes};

kernel::service! {
    main: main,
    memory_floor_mib: 4,
    publishes: &[DOMAIN_CONFIG.decl(), APP_INSTANCE_STATUS.decl(), APP_RECORD.decl()],
    subscribes: &[
        APP_INSTANCE.decl(),
        VOLUME_STATUS.decl(),
        DOMAIN_STATUS.decl(),
        STORED.decl(),
    ],
    watches: &[NETWORK_INSTANCE_STATUS.decl()],
}

/// dom0's own bridge (DHCP from dom0), for apps on a node without zedrouter.
const DOM0_BRIDGE: &str = "lichenbr0";

/// The longest wait between two rounds when nothing changes.
const ROUND: Duration = Duration::from_millis(200);

async fn main(_args: Args) -> i32 {
    match run().await {
        Ok(()) => 0,
        Err(e) => {
            error!("zedmanager: {e}");
            1
        }
    }
}

async fn run() -> Result<(), String> {
    let node = bus_io::channel::node().await;
    let e = |e: bus_io::NodeError| alloc::format!("{e}");
    let apps = node.subscribe(&APP_INSTANCE).map_err(e)?;
    let volumes = node.subscribe(&VOLUME_STATUS).map_err(e)?;
    let domains = node.subscribe(&DOMAIN_STATUS).map_err(e)?;
    let networks = node.subscribe(&NETWORK_INSTANCE_STATUS).map_err(e)?;
    let records = node
        .publish_persistent(&APP_RECORD)
        .await
        .map_err(|e| alloc::format!("{e}"))?;
    let routed = node.channels().iter().any(|c| c == "zedrouter");
    let mut state: BTreeMap<String, App> = records.shared().with(|p| {
        p.iter()
            .map(|(k, record)| (String::from(k), App::restore(&record)))
            .collect()
    });
    info!("{} apps restored from the vault", state.len());
    // DomainConfig and AppInstanceStatus, served once complete (see the crate's doc).
    let mut published = None;
    let mut known = usize::MAX;
    loop {
        while apps.try_next().is_some() || volumes.try_next().is_some() {}
        while domains.try_next().is_some() || networks.try_next().is_some() {}
        let now_ms = kernel::now().since_boot().as_millis() as u64;
        // Every input heard (zedrouter's only on a node that has it).
        let heard = apps.with(|s| s.is_synchronized())
            && volumes.with(|s| s.is_synchronized())
            && domains.with(|s| s.is_synchronized())
            && (!routed || networks.with(|s| s.is_synchronized()));
        if heard {
            let instances: Vec<_> = apps.with(|s| {
                s.iter()
                    .map(|(k, v)| (String::from(k), v.clone()))
                    .collect()
            });
            let mut steps = Vec::with_capacity(instances.len());
            let mut changed = false;
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
                let app = state.entry(uuid.clone()).or_default();
                let step = app.step(instance, domain.as_ref(), &ready, bridge.as_deref(), now_ms);
                changed |= remember(&records, uuid, app.record());
                steps.push((uuid, step, matches!(ready, Volumes::Remaking)));
            }
            // Deleted apps (restored ones included): their records, domains and statuses go
            // (domainmgr destroys the domains).
            let gone: Vec<String> = state
                .keys()
                .filter(|uuid| !instances.iter().any(|(u, _)| u == *uuid))
                .cloned()
                .collect();
            for uuid in &gone {
                state.remove(uuid);
                changed |= records.unpublish(uuid).unwrap_or(false);
            }
            // A domain of a new generation is asked for only once its record is kept.
            if changed {
                records.durable().await;
            }

            let (configs, statuses) = match &published {
                Some(tables) => tables,
                None => published.insert((
                    node.publish(&DOMAIN_CONFIG).map_err(e)?,
                    node.publish(&APP_INSTANCE_STATUS).map_err(e)?,
                )),
            };
            for (uuid, step, remaking) in &steps {
                if let Some(config) = &step.domain {
                    if let Err(e) = configs.publish(uuid, config) {
                        error!("cannot publish the domain of {uuid}: {e}");
                    }
                } else if *remaking {
                    // The domain goes (domainmgr destroys it), so that volumemgr may make
                    // its volume again.
                    let _ = configs.unpublish(uuid);
                }
                if let Err(e) = statuses.publish(uuid, &step.status) {
                    error!("cannot publish the status of {uuid}: {e}");
                }
            }
            for uuid in &gone {
                let _ = configs.unpublish(uuid);
                let _ = statuses.unpublish(uuid);
            }
            if instances.len() != known {
                known = instances.len();
                info!(
                    "{known} apps; heap in use: {} KiB",
                    kernel::mem::heap_used() / 1024
                );
            }
        }
        // Wake on any change, or after a round (start delays and backoffs end on time).
        let _ = kernel::timeout(ROUND, apps.next()).await;
    }
}

/// Puts an app's record in the vault when it changed; whether it did.
fn remember(
    records: &bus_io::Publication<String, AppRecord>,
    uuid: &str,
    record: Option<AppRecord>,
) -> bool {
    let Some(record) = record else { return false };
    if records.shared().with(|p| p.get(uuid)).as_ref() == Some(&record) {
        return false;
    }
    if let Err(e) = records.publish(&String::from(uuid), &record) {
        error!("cannot keep the record of {uuid}: {e}");
    }
    true
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
