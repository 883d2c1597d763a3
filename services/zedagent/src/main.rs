//! `zedagent`: the node's agent for its controller (EVE's zedagent, with EVE's one-shot
//! `client` folded in).
//!
//! At boot it reads the config partition (`config` disk: the controller's root certificate, the
//! onboarding certificate and key, the controller's address, the serial), restores or makes the
//! device identity (a P-256 key and a self-signed certificate, kept in the vault through the
//! persistent table `zedagent/Identity`), puts the last good configuration
//! (`zedagent/Checkpoint`) in force, and starts the network. Then, over TLS 1.3 verified against the
//! pinned root: `certs`, `register` (signed with the onboarding key; 403 is reported and
//! retried), `uuid`, and every `timer.config.interval` a config poll with the current hash
//! (304: unchanged), followed by an info report when the device's state changed. The node's
//! apps and content trees (zedmanager's and the downloader's statuses, watched on the bus) are
//! reported as they change. Every controller answer is verified against its signing
//! certificate before use.
//!
//! Options:
//! - `config_interval=SECS`: the poll interval until a configuration sets
//!   `timer.config.interval` (default 60, EVE's);
//! - `metric_interval=SECS`: the metrics interval until a configuration sets
//!   `timer.metric.interval` (default 60, EVE's);
//! - `polls=N`: exit 0 after N answered polls (tests, benchmarks);
//! - `identity=volatile`: **test mode for QEMU microvm without a vault**: the identity and the
//!   checkpoint live in memory only, so every boot is a new device. Refused under Xen, where a
//!   node's vault keeps them.
//! - `ip=`, `gw=`, `dns=`: the network (kernel::net::config).
//!
//! Exit status: 1 when the config partition, the network, the clock or the vault fail it, 2
//! for a bad command line.

#![no_std]
#![no_main]

extern crate alloc;

mod agent;

mod objects;
mod reports;
mod services;

use alloc::string::{String, ToString};

use device_api::bootstrap::Bootstrap;
use device_api::identity::Identity;
use device_api::queue::Queue;
use kernel::{error, info, warn, Args, Duration};
use topics::vault::STORED;
use topics::zedagent::{
    APP_INSTANCE, BASE_OS, CHECKPOINT, CONFIG_ITEMS, CONTENT_TREE, DATASTORE, IDENTITY, INFO_QUEUE,
    NETWORK_INSTANCE, STATUS, VOLUME,
};
use topics::Global;

kernel::service! {
    main: main,
    memory_floor_mib: 8,
    needs: [uplink, disk],
    publishes: &[
        IDENTITY.decl(),
        CHECKPOINT.decl(),
        INFO_QUEUE.decl(),
        STATUS.decl(),
        // topics::zedagent::config::TABLES
        CONFIG_ITEMS.decl(),
        DATASTORE.decl(),
        CONTENT_TREE.decl(),
        VOLUME.decl(),
        APP_INSTANCE.decl(),
        NETWORK_INSTANCE.decl(),
        BASE_OS.decl(),
    ],
    subscribes: &[STORED.decl()],
    watches: objects::WATCHES,
}

/// How long the network may take to get an address.
/// Who this pillar is, on its link's console lines.
const OWNER: &str = "zedagent";
/// The largest response body the controller may send (a configuration).
const MAX_BODY: usize = 1 << 20;
const ADDRESS_TIMEOUT: Duration = Duration::from_secs(60);

async fn main(args: Args) -> i32 {
    let volatile = match args.get("identity") {
        None | Some("vault") => false,
        Some("volatile") => true,
        Some(other) => {
            error!("zedagent: identity={other}: expected vault (the default) or volatile");
            return 2;
        }
    };
    if volatile && kernel::platform::kind() == kernel::platform::Kind::Xen {
        error!("zedagent: identity=volatile is a test mode for QEMU microvm; a node keeps its identity in the vault");
        return 2;
    }
    let (intervals, polls) = match (
        args.parse_value::<u64>("config_interval"),
        args.parse_value::<u64>("metric_interval"),
        args.parse_value::<u64>("polls"),
    ) {
        (Ok(c), Ok(m), Ok(p)) => (
            (
                c.map_or(agent::DEFAULT_CONFIG_INTERVAL, Duration::from_secs),
                m.map_or(agent::DEFAULT_METRIC_INTERVAL, Duration::from_secs),
            ),
            p,
        ),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            error!("zedagent: {e}");
            return 2;
        }
    };
    if intervals.0.is_zero() || intervals.1.is_zero() {
        error!("zedagent: config_interval and metric_interval are at least 1 s");
        return 2;
    }
    match start(&args, volatile, intervals, polls).await {
        Ok(()) => 0,
        Err(e) => {
            error!("zedagent: {e}");
            1
        }
    }
}

async fn start(
    args: &Args,
    volatile: bool,
    intervals: (Duration, Duration),
    polls: Option<u64>,
) -> Result<(), String> {
    use alloc::format;
    let boot = read_config_partition().await?;
    info!(
        "zedagent: controller {}:{}, serial {:?}",
        boot.host, boot.port, boot.serial
    );
    let now =
        agent::unix_now().ok_or("the wall clock is not set: certificates cannot be checked")?;
    // The card now: under Xen, finding it takes blocking xenstore reads, which must come
    // before the bus's tasks use xenstore (kernel::net::netfront). Its address comes last.
    kernel::net::start(args).map_err(|e| format!("network: {e}"))?;

    let node = bus_io::channel::node().await;
    let status = node.publish(&STATUS).map_err(|e| format!("{e}"))?;
    let (identity, checkpoints, queue) = if volatile {
        info!("zedagent: TEST MODE identity=volatile: a new identity that no reboot keeps");
        (new_identity(&boot, now)?, None, Queue::in_memory())
    } else {
        let table = node
            .publish_persistent(&IDENTITY)
            .await
            .map_err(|e| format!("{e}"))?;
        let stored = table.shared().with(|p| p.get("global"));
        let identity = match stored {
            Some(stored) => {
                let identity = Identity::restore(&stored.key, &stored.cert_der)
                    .map_err(|e| format!("{e}; the vault's copy is kept, not replaced"))?;
                info!("zedagent: device identity restored from the vault");
                identity
            }
            None => {
                let identity = new_identity(&boot, now)?;
                table
                    .publish(
                        &Global,
                        &topics::zedagent::Identity {
                            key: identity.key_bytes(),
                            cert_der: identity.cert_der().into(),
                        },
                    )
                    .map_err(|e| format!("{e}"))?;
                table.durable().await;
                info!("zedagent: device identity stored in the vault");
                identity
            }
        };
        let checkpoints = node
            .publish_persistent(&CHECKPOINT)
            .await
            .map_err(|e| format!("{e}"))?;
        let (queue, strays) = Queue::restore(
            node.publish_persistent(&INFO_QUEUE)
                .await
                .map_err(|e| format!("{e}"))?,
        );
        if strays > 0 {
            warn!(
                "zedagent: info: {strays} objects of the vault's queue were not reports: removed"
            );
        }
        if !queue.is_empty() {
            info!(
                "zedagent: info: {} reports restored from the vault and {} object reports, waiting for the controller",
                queue.device_waiting(),
                queue.objects_waiting()
            );
        }
        (identity, Some(checkpoints), queue)
    };
    info!(
        "zedagent: device certificate sha256 {}",
        hex(&identity.signer().cert_hash()[..8])
    );

    let trust = tls::Trust::new(&boot.root_der, agent::unix_now)
        .map_err(|e| format!("root-certificate.pem: {e}"))?;
    let link = device_api::link::Link::new(OWNER, trust, boot.host.clone(), boot.port, MAX_BODY);
    let stored = checkpoints
        .as_ref()
        .and_then(|table| table.shared().with(|p| p.get("global")));
    let fanout = device_api::fanout::Fanout::new(&node)?;
    let mut agent = agent::Agent::new(
        link,
        boot,
        identity,
        intervals,
        Some(status),
        checkpoints,
        Some(fanout),
        queue,
    );
    agent.polls_left = polls;
    agent.watched = Some(objects::Watched::new(&node).map_err(|e| format!("{e}"))?);
    if let Some(stored) = stored {
        agent.restore_checkpoint(&stored);
    }
    // The address last: the identity and the last good configuration do not need it.
    let (address, prefix) = kernel::timeout(ADDRESS_TIMEOUT, kernel::net::wait_for_ipv4())
        .await
        .map_err(|_| "network: no IPv4 address".to_string())?
        .map_err(|e| format!("network: {e}"))?;
    info!("zedagent: address {address}/{prefix}");
    agent.run().await;
    info!("zedagent: done after the polls asked for");
    Ok(())
}

/// Reads the config partition (disk `config`).
async fn read_config_partition() -> Result<Bootstrap, String> {
    use alloc::format;
    let mut disks = kernel::block::disks().await;
    let mut disk = disks.take("config").map_err(|e| format!("{e}"))?;
    let partition = config_partition::ConfigPartition::read(&mut disk)
        .await
        .map_err(|e| format!("{e}"))?;
    Bootstrap::read(|name| partition.file(name)).map_err(|e| format!("{e}"))
}

/// A new device identity, named after the serial.
fn new_identity(boot: &Bootstrap, now: u64) -> Result<Identity, String> {
    let name = if boot.serial.is_empty() {
        String::from("lichen device")
    } else {
        alloc::format!("lichen device {}", boot.serial)
    };
    let started = kernel::now();
    let identity = Identity::generate(&name, now).map_err(|e| alloc::format!("{e}"))?;
    info!(
        "zedagent: new device key and certificate ({}, valid 20 years) in {} ms",
        name,
        started.elapsed().as_millis()
    );
    Ok(identity)
}

fn hex(bytes: &[u8]) -> String {
    use core::fmt::Write;
    let mut out = String::new();
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}
