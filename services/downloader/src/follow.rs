//! The downloader on a node: it follows volumemgr's volumes (`volumemgr/VolumeStatus`) and
//! fills each one volumemgr reports `Filling`, on its extent of the app data disk: the content
//! tree's image (from `zedagent/Datastore` and `zedagent/ContentTree`) or zeros
//! (`download::config`), one at a time, publishing every step in `downloader/DownloadStatus`
//! (keyed by content tree UUID, or by volume UUID for zeros). It is the app data disk's only
//! writer; it publishes the disk's size (`downloader/DataDisk`) for volumemgr to place volumes.
//!
//! A fill whose volume, content tree or datastore changes or goes while it runs is cancelled
//! within a read (its status goes; a content volume that is gone for good also has its progress
//! record cleared, so that nothing half-downloaded is ever taken for it again). A fill that
//! failed (ERROR) is tried again only when its configuration changes, as in EVE; one that
//! verified is not made again for the same volume generation.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use bus_io::{Node, Subscription};
use download::config::{wanted, Wanted, Work};
use download::engine::CANCELLED;
use download::{Job, Policy};
use kernel::block::{BlockDevice, Disk, Window};
use kernel::{error, info, Duration, Instant};
use topics::downloader::{DataDisk, DownloadState, DownloadStatus, DATA_DISK, DOWNLOAD_STATUS};
use topics::volumemgr::{VolumeStatus, VOLUME_STATUS};
use topics::zedagent::{ContentTree, Datastore, CONTENT_TREE, DATASTORE};
use topics::Global;

/// The longest wait between two looks at the tables.
const ROUND: Duration = Duration::from_millis(500);
/// How often a running fill checks that it is still wanted.
const CHECK_EVERY: Duration = Duration::from_millis(250);
/// A MiB.
const MIB: u64 = 1 << 20;

/// The tables followed.
#[derive(Clone)]
struct Tables {
    stores: Subscription<Datastore>,
    trees: Subscription<ContentTree>,
    volumes: Subscription<VolumeStatus>,
}

impl Tables {
    fn synchronized(&self) -> bool {
        self.stores.with(|s| s.is_synchronized())
            && self.trees.with(|s| s.is_synchronized())
            && self.volumes.with(|s| s.is_synchronized())
    }

    /// What they ask for now.
    fn wanted(&self) -> Vec<Wanted> {
        let stores: Vec<Datastore> = self
            .stores
            .with(|s| s.iter().map(|(_, v)| v.clone()).collect());
        let trees: Vec<ContentTree> = self
            .trees
            .with(|s| s.iter().map(|(_, v)| v.clone()).collect());
        let volumes: Vec<(String, VolumeStatus)> = self.volumes.with(|s| {
            s.iter()
                .map(|(k, v)| (String::from(k), v.clone()))
                .collect()
        });
        wanted(&stores, &trees, &volumes)
    }

    /// Drops the events waiting (the views are what matter).
    fn drain(&self) {
        while self.stores.try_next().is_some()
            || self.trees.try_next().is_some()
            || self.volumes.try_next().is_some()
        {}
    }
}

/// Follows the tables forever, filling volumes on `disk` (the app data disk).
pub async fn run(
    node: &Node,
    mut disk: Disk,
    mut net: crate::net::KernelNet,
    policy: Policy,
) -> Result<(), String> {
    let e = |e: bus_io::NodeError| format!("{e}");
    let status = node.publish(&DOWNLOAD_STATUS).map_err(e)?;
    let data_disk = node.publish(&DATA_DISK).map_err(e)?;
    let tables = Tables {
        stores: node.subscribe(&DATASTORE).map_err(e)?,
        trees: node.subscribe(&CONTENT_TREE).map_err(e)?,
        volumes: node.subscribe(&VOLUME_STATUS).map_err(e)?,
    };
    let size_mib = disk.geometry().bytes() / MIB;
    data_disk
        .publish(&Global, &DataDisk { size_mib })
        .map_err(|e| format!("{e}"))?;
    info!("downloader: following volumemgr; app data disk {size_mib} MiB");
    // What was concluded (verified, or failed for good) for each fill, and for which one: a
    // change means filling again.
    let mut concluded: BTreeMap<String, Wanted> = BTreeMap::new();
    loop {
        tables.drain();
        if tables.synchronized() {
            let now_wanted = tables.wanted();
            // A concluded fill stays published while volumemgr still shows the volume filling
            // (it has not taken the result yet); then it goes.
            concluded.retain(|key, _| {
                let keep = now_wanted.iter().any(|w| &w.key == key);
                if !keep {
                    let _ = status.unpublish(key);
                }
                keep
            });
            let next = now_wanted
                .into_iter()
                .find(|w| concluded.get(&w.key) != Some(w));
            if let Some(w) = next {
                let Some(mut extent) = Window::new(
                    &mut disk,
                    w.extent.offset_mib.saturating_mul(MIB),
                    w.extent.size_mib.saturating_mul(MIB),
                ) else {
                    let failed = DownloadStatus {
                        name: w.name.clone(),
                        state: DownloadState::Error,
                        error: format!(
                            "extent at {} MiB of {} MiB lies outside the app data disk ({size_mib} MiB)",
                            w.extent.offset_mib, w.extent.size_mib
                        ),
                        volume: w.volume.clone(),
                        generation: w.generation,
                        ..DownloadStatus::default()
                    };
                    error!("downloader: {failed}");
                    let _ = status.publish(&w.key, &failed);
                    concluded.insert(w.key.clone(), w);
                    continue;
                };
                let base = DownloadStatus {
                    name: w.name.clone(),
                    volume: w.volume.clone(),
                    generation: w.generation,
                    ..DownloadStatus::default()
                };
                let last = match &w.work {
                    Err(why) => {
                        let failed = DownloadStatus {
                            state: DownloadState::Error,
                            error: why.clone(),
                            ..base
                        };
                        error!("downloader: {failed}");
                        let _ = status.publish(&w.key, &failed);
                        failed
                    }
                    Ok(Work::Zeros) => {
                        let mut still = still_wanted(&tables, &w);
                        download::zero::zero(
                            &mut extent,
                            base,
                            policy.commit_every * 8,
                            &mut || !still(),
                            &mut |s| publish(&status, &w.key, s),
                        )
                        .await
                    }
                    Ok(Work::Download(job)) => {
                        download_one(job, &w, &mut extent, &mut net, &policy, &tables, &status)
                            .await
                    }
                };
                if last.error == CANCELLED {
                    let gone = !tables.wanted().iter().any(|x| x.volume == w.volume);
                    let _ = status.unpublish(&w.key);
                    if let (true, Ok(Work::Download(job))) = (gone, &w.work) {
                        clear_record(&mut extent, job).await;
                    }
                } else {
                    concluded.insert(w.key.clone(), w);
                }
                continue; // Look at the tables again at once.
            }
        }
        let _ = kernel::timeout(ROUND, tables.volumes.next()).await;
    }
}

/// Publishes a fill's status, logging each change of state (and progress while downloading).
fn publish(status: &bus_io::Publication<String, DownloadStatus>, key: &str, s: &DownloadStatus) {
    if let Err(e) = status.publish(&String::from(key), s) {
        error!("downloader: cannot publish the status: {e}");
    }
    info!("downloader: {s}");
}

/// Whether the tables still ask for exactly `w`, looked up at most every [`CHECK_EVERY`].
fn still_wanted(tables: &Tables, w: &Wanted) -> impl FnMut() -> bool + 'static {
    let tables = tables.clone();
    let w = w.clone();
    let mut checked: Option<(Instant, bool)> = None;
    move || {
        let now = kernel::now();
        match checked {
            Some((at, wanted)) if now.saturating_duration_since(at) < CHECK_EVERY => wanted,
            _ => {
                let wanted = tables.wanted().contains(&w);
                checked = Some((now, wanted));
                wanted
            }
        }
    }
}

/// Runs one download, cancelled when the tables stop asking for exactly it.
async fn download_one<D: BlockDevice>(
    job: &Job,
    w: &Wanted,
    disk: &mut D,
    net: &mut crate::net::KernelNet,
    policy: &Policy,
    tables: &Tables,
    status: &bus_io::Publication<String, DownloadStatus>,
) -> DownloadStatus {
    net.still_wanted = Some(Box::new(still_wanted(tables, w)));
    let mut last_state = None;
    let last = download::download(job, disk, net, policy, &mut |s| {
        if let Err(e) = status.publish(&w.key, s) {
            error!("downloader: cannot publish the status: {e}");
        }
        if last_state != Some(s.state) || s.state == DownloadState::Downloading {
            info!("downloader: {s}");
        }
        last_state = Some(s.state);
    })
    .await;
    net.still_wanted = None;
    last
}

/// Forgets the progress on `disk` of a content tree whose volume is gone.
async fn clear_record<D: BlockDevice>(disk: &mut D, job: &Job) {
    let record = download::record::Record {
        content: job.content.clone(),
        sha256: job.sha256,
        progress: download::record::Progress::Partial(0),
    };
    if download::record::layout(disk).is_some() {
        if let Err(e) = download::record::write(disk, &record).await {
            error!(
                "downloader: volume {}: cannot clear the record: {e}",
                job.volume
            );
        }
    }
}
