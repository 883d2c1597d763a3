//! `logs`: the node's log pillar (EVE's newlogd and loguploader, docs/logs.md).
//!
//! Every other service's kernel sends its log lines over a log channel the launcher wired
//! (`log-<service>` here, `log` there; the manifest's `logs = "logs"`); this pillar also takes
//! its own. Lines are batched as EVE's newlogs (JSON `LogEntry` lines, gzipped; newlog), each
//! batch sealed when full (32 KiB before compression) or `batch_interval` old, kept in the
//! persistent table `logs/Queue` (the vault) within `quota_kib`, oldest dropped and counted
//! when over, and acknowledged to its services once the vault committed it. The uploader posts
//! the oldest batch to the controller's `id/{uuid}/newlogs`, signed with the device key, and
//! removes it only when the controller answers 201.
//!
//! The device identity is zedagent's (`zedagent/Identity`, from the vault) and the UUID comes
//! from `zedagent/Status`; the controller's address and root certificate from the config
//! partition. Until they are known, batches wait in the queue.
//!
//! Options:
//! - `batch_interval=SECS`: the longest a batch stays open (default 10);
//! - `quota_kib=KIB`: the queue's quota (default 1024, at least 128);
//! - `device=config`: **test mode for QEMU microvm without a vault or zedagent**: the device
//!   certificate and key are `device.cert.pem` and `device.key.pem` in the config partition,
//!   the UUID is `uuid=`, the queue lives in memory, and `sources=a,b` names the log channels
//!   (`log-a`, `log-b`: virtio-console ports). Refused under Xen.
//! - `ip=`, `gw=`, `dns=`: the network (kernel::net::config).
//!
//! Exit status: 1 when the config partition or the network fail it, 2 for a bad command line.

#![no_std]
#![no_main]

extern crate alloc;

mod collector;
mod keeper;

mod sources;
mod upload;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::RefCell;

use device_api::bootstrap::Bootstrap;
use kernel::{error, info, warn, Args, Duration};
use newlog::batch::{Metadata, DEFAULT_MAX_RAW};
use topics::logs::{QUEUE, STATUS};
use topics::vault::STORED;
use topics::zedagent::{IDENTITY, STATUS as AGENT_STATUS};
use topics::Global;

use crate::collector::Collector;
use crate::keeper::{Kept, Store};
use crate::upload::{Counts, Device};

kernel::service! {
    main: main,
    memory_floor_mib: 8,
    needs: [uplink, disk],
    publishes: &[QUEUE.decl(), STATUS.decl()],
    subscribes: &[STORED.decl(), IDENTITY.decl(), AGENT_STATUS.decl()],
}

/// How long the network may take to get an address.
/// Who this pillar is, on its link's console lines.
const OWNER: &str = "logs";
/// The largest response body the controller may send (newlogs answers have none).
const MAX_BODY: usize = 64 * 1024;
const ADDRESS_TIMEOUT: Duration = Duration::from_secs(60);

/// What the command line says.
struct Options {
    interval: Duration,
    quota: u64,
    test_mode: bool,
}

fn options(args: &Args) -> Result<Options, String> {
    let interval = args
        .parse_value::<u64>("batch_interval")
        .map_err(|e| format!("{e}"))?
        .unwrap_or(10);
    let quota_kib = args
        .parse_value::<u64>("quota_kib")
        .map_err(|e| format!("{e}"))?
        .unwrap_or(1024);
    let test_mode = match args.get("device") {
        None | Some("node") => false,
        Some("config") => true,
        Some(other) => return Err(format!("device={other}: expected node or config")),
    };
    if test_mode && kernel::platform::kind() == kernel::platform::Kind::Xen {
        return Err("device=config is a test mode for QEMU microvm; a node's pillar uses zedagent's identity".into());
    }
    Ok(Options {
        interval: Duration::from_secs(interval.max(1)),
        quota: quota_kib.saturating_mul(1024),
        test_mode,
    })
}

async fn main(args: Args) -> i32 {
    let options = match options(&args) {
        Ok(options) => options,
        Err(e) => {
            error!("logs: {e}");
            return 2;
        }
    };
    match start(&args, options).await {
        Ok(()) => 0,
        Err(e) => {
            error!("logs: {e}");
            1
        }
    }
}

async fn start(args: &Args, options: Options) -> Result<(), String> {
    let (boot, device_files) = read_config_partition(options.test_mode).await?;
    let metadata = Metadata {
        dev_id: String::new(),
        eve_version: env!("CARGO_PKG_VERSION").into(),
    };
    let collector = Rc::new(RefCell::new(Collector::new(DEFAULT_MAX_RAW, metadata)));
    let own = collector.borrow_mut().add_source("logs");
    kernel::spawn(sources::own_source(collector.clone(), own));
    for channel in source_channels(args).await {
        let Some(service) = sources::service_of(&channel) else {
            continue;
        };
        let slot = collector.borrow_mut().add_source(service);
        kernel::spawn(sources::channel_source(collector.clone(), slot, channel));
    }

    let device = Rc::new(RefCell::new(Device::default()));
    let node = bus_io::channel::node().await;
    let status = node.publish(&STATUS).map_err(|e| format!("{e}"))?;
    let store = if let Some(signer) = device_files {
        info!("logs: TEST MODE device=config: the device from the config partition, the queue in memory");
        let uuid = args.get("uuid").ok_or("device=config needs uuid=")?;
        *device.borrow_mut() = Device {
            signer: Some(signer),
            uuid: uuid.into(),
        };
        collector.borrow_mut().metadata.dev_id = uuid.into();
        Store::Memory(BTreeMap::new())
    } else {
        follow_zedagent(&node, &device, &collector)?;
        let table = node
            .publish_persistent(&QUEUE)
            .await
            .map_err(|e| format!("{e}"))?;
        Store::Table(table)
    };
    let kept = Rc::new(RefCell::new(Kept::restore(options.quota, store)));
    {
        let kept = kept.borrow();
        info!(
            "logs: {} batches waiting from before ({} KiB); quota {} KiB, batches every {} s at most",
            kept.queue.len(),
            kept.queue.bytes() / 1024,
            kept.queue.quota() / 1024,
            options.interval.as_secs()
        );
    }
    kernel::spawn(keeper::run(
        collector.clone(),
        kept.clone(),
        options.interval,
    ));

    let counts = Rc::new(RefCell::new(Counts::default()));
    kernel::spawn(report(
        collector.clone(),
        kept.clone(),
        counts.clone(),
        status,
    ));

    let trust = tls::Trust::new(&boot.root_der, unix_now)
        .map_err(|e| format!("root-certificate.pem: {e}"))?;
    let link = device_api::link::Link::new(OWNER, trust, boot.host.clone(), boot.port, MAX_BODY);
    kernel::net::start(args).map_err(|e| format!("network: {e}"))?;
    let (address, prefix) = kernel::timeout(ADDRESS_TIMEOUT, kernel::net::wait_for_ipv4())
        .await
        .map_err(|_| "network: no IPv4 address".to_string())?
        .map_err(|e| format!("network: {e}"))?;
    info!(
        "logs: address {address}/{prefix}; uploading to {}:{}",
        boot.host, boot.port
    );
    upload::run(link, device, kept, counts).await;
    Ok(())
}

/// The log channels to read: under Xen the launcher's (`log-<service>`), under microvm those
/// `sources=` names.
async fn source_channels(args: &Args) -> Vec<String> {
    let mut channels = kernel::channel::wired().await;
    if let Some(list) = args.get("sources") {
        channels.extend(
            list.split(',')
                .filter(|s| !s.is_empty())
                .map(|s| format!("log-{s}")),
        );
    }
    channels.retain(|c| sources::service_of(c).is_some());
    channels
}

/// Follows zedagent's identity and status: the device's signer and UUID.
fn follow_zedagent(
    node: &bus_io::Node,
    device: &Rc<RefCell<Device>>,
    collector: &Rc<RefCell<Collector>>,
) -> Result<(), String> {
    let identity = node.subscribe(&IDENTITY).map_err(|e| format!("{e}"))?;
    let agent = node.subscribe(&AGENT_STATUS).map_err(|e| format!("{e}"))?;
    let d = device.clone();
    kernel::spawn(async move {
        loop {
            let _ = identity.next().await;
            let stored = identity.with(|view| view.get("global").cloned());
            let signer = stored.and_then(|id| {
                device_api::identity::Identity::restore(&id.key, &id.cert_der)
                    .map_err(|e| warn!("logs: zedagent's identity does not restore: {e}"))
                    .ok()
            });
            let changed = signer.is_some() != d.borrow().signer.is_some();
            d.borrow_mut().signer = signer.map(|i| i.signer());
            if changed {
                info!(
                    "logs: device identity {}",
                    if d.borrow().signer.is_some() {
                        "known"
                    } else {
                        "gone"
                    }
                );
            }
        }
    });
    let (d, c) = (device.clone(), collector.clone());
    kernel::spawn(async move {
        loop {
            let _ = agent.next().await;
            let uuid = agent
                .with(|view| view.get("global").map(|s| s.uuid.clone()))
                .unwrap_or_default();
            if uuid != d.borrow().uuid {
                info!("logs: device UUID {uuid:?}");
                c.borrow_mut().metadata.dev_id = uuid.clone();
                d.borrow_mut().uuid = uuid;
            }
        }
    });
    Ok(())
}

/// Publishes `logs/Status` when it changes (every 2 s at most).
async fn report(
    collector: Rc<RefCell<Collector>>,
    kept: Rc<RefCell<Kept>>,
    counts: Rc<RefCell<Counts>>,
    publication: bus_io::Publication<Global, topics::logs::Status>,
) {
    let mut last = None;
    loop {
        let status = {
            let (c, k, n) = (collector.borrow(), kept.borrow(), counts.borrow());
            let (batches_dropped, lines_dropped) = k.queue.dropped();
            topics::logs::Status {
                sources: c.connected().len() as u32,
                lines: c.lines,
                lines_lost: c.lost,
                queued: k.queue.len() as u64,
                queued_bytes: k.queue.bytes(),
                batches_dropped,
                lines_dropped,
                uploaded: n.uploaded,
                failures: n.failures,
                last_error: n.last_error.clone(),
                heap_bytes: kernel::mem::heap_used(),
            }
        };
        // The heap alone changing is not worth a message.
        let same = last.as_ref().is_some_and(|l: &topics::logs::Status| {
            topics::logs::Status {
                heap_bytes: l.heap_bytes,
                ..status.clone()
            } == *l
        });
        if !same {
            if let Err(e) = publication.publish(&Global, &status) {
                warn!("logs: cannot publish its status: {e}");
            }
            last = Some(status);
        }
        kernel::sleep(Duration::from_secs(2)).await;
    }
}

/// Reads the config partition (disk `config`): the controller and its root; in the test mode
/// also the device's signer (`device.cert.pem`, `device.key.pem`).
async fn read_config_partition(
    test_mode: bool,
) -> Result<(Bootstrap, Option<lichen_api::envelope::Signer>), String> {
    let mut disks = kernel::block::disks().await;
    let mut disk = disks.take("config").map_err(|e| format!("{e}"))?;
    let partition = config_partition::ConfigPartition::read(&mut disk)
        .await
        .map_err(|e| format!("{e}"))?;
    let boot = Bootstrap::read(|name| partition.file(name)).map_err(|e| format!("{e}"))?;
    if !test_mode {
        return Ok((boot, None));
    }
    // The device's files read as if they were the onboarding pair: the same checks (a P-256
    // key that belongs to the certificate) give its signer.
    let device = Bootstrap::read(|name| match name {
        "onboard.cert.pem" => partition.file("device.cert.pem"),
        "onboard.key.pem" => partition.file("device.key.pem"),
        other => partition.file(other),
    })
    .map_err(|e| format!("{e} (device.cert.pem / device.key.pem)"))?;
    Ok((boot, Some(device.onboarding)))
}

/// Now, in Unix seconds, for certificate checks.
fn unix_now() -> Option<u64> {
    kernel::wall_clock().and_then(|t| u64::try_from(t.as_secs()).ok())
}
