//! The downloader on a node: it follows zedagent's configuration tables (`zedagent/Datastore`,
//! `zedagent/ContentTree`, `zedagent/Volume`) and downloads each content tree a volume is made
//! from into that volume's disk (`download::config`), one at a time, publishing every step in
//! `downloader/DownloadStatus` (keyed by content tree UUID).
//!
//! A download whose content tree, datastore or volume changes or goes while it runs is
//! cancelled within a read (its status goes; a content tree removed for good also has its
//! progress record cleared, so that nothing half-downloaded is ever taken for it again). A
//! content tree that failed (ERROR) is tried again only when its configuration changes, as in
//! EVE; one that verified is not downloaded again.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use bus_io::{Node, Subscription};
use download::config::{wanted, Wanted};
use download::engine::CANCELLED;
use download::{Job, Policy};
use kernel::block::Disk;
use kernel::{error, info, Duration, Instant};
use topics::downloader::{DownloadState, DownloadStatus, DOWNLOAD_STATUS};
use topics::zedagent::{ContentTree, Datastore, Volume, CONTENT_TREE, DATASTORE, VOLUME};

/// The longest wait between two looks at the tables.
const ROUND: Duration = Duration::from_millis(500);
/// How often a running download checks that it is still wanted.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// The three tables.
#[derive(Clone)]
struct Tables {
    stores: Subscription<Datastore>,
    trees: Subscription<ContentTree>,
    volumes: Subscription<Volume>,
}

impl Tables {
    fn synchronized(&self) -> bool {
        self.stores.with(|s| s.is_synchronized())
            && self.trees.with(|s| s.is_synchronized())
            && self.volumes.with(|s| s.is_synchronized())
    }

    /// What they ask for now.
    fn wanted(&self, disks: &[String]) -> Vec<Wanted> {
        let stores: Vec<Datastore> = self
            .stores
            .with(|s| s.iter().map(|(_, v)| v.clone()).collect());
        let trees: Vec<ContentTree> = self
            .trees
            .with(|s| s.iter().map(|(_, v)| v.clone()).collect());
        let volumes: Vec<Volume> = self
            .volumes
            .with(|s| s.iter().map(|(_, v)| v.clone()).collect());
        wanted(&stores, &trees, &volumes, |name| {
            disks.iter().any(|d| d == name)
        })
    }

    /// Drops the events waiting (the views are what matter).
    fn drain(&self) {
        while self.stores.try_next().is_some()
            || self.trees.try_next().is_some()
            || self.volumes.try_next().is_some()
        {}
    }
}

/// Follows the tables forever.
pub async fn run(
    node: &Node,
    mut disks: BTreeMap<String, Disk>,
    mut net: crate::net::KernelNet,
    policy: Policy,
) -> Result<(), String> {
    let status = node.publish(&DOWNLOAD_STATUS).map_err(|e| format!("{e}"))?;
    let tables = Tables {
        stores: node.subscribe(&DATASTORE).map_err(|e| format!("{e}"))?,
        trees: node.subscribe(&CONTENT_TREE).map_err(|e| format!("{e}"))?,
        volumes: node.subscribe(&VOLUME).map_err(|e| format!("{e}"))?,
    };
    let names: Vec<String> = disks.keys().cloned().collect();
    info!(
        "downloader: following the configuration; volumes it may write: {}",
        if names.is_empty() {
            String::from("none")
        } else {
            names.join(", ")
        }
    );
    // What was concluded (verified, or failed for good) for each content tree, and for which
    // job: a change of job means trying again.
    let mut concluded: BTreeMap<String, Result<Job, String>> = BTreeMap::new();
    loop {
        tables.drain();
        if tables.synchronized() {
            let now_wanted = tables.wanted(&names);
            concluded.retain(|content, _| {
                let keep = now_wanted.iter().any(|w| &w.content == content);
                if !keep {
                    let _ = status.unpublish(content);
                }
                keep
            });
            let next = now_wanted
                .into_iter()
                .find(|w| concluded.get(&w.content) != Some(&w.job));
            if let Some(w) = next {
                match &w.job {
                    Err(e) => {
                        error!("downloader: {} ({}): {e}", w.name, w.content);
                        let failed = DownloadStatus {
                            name: w.name.clone(),
                            state: DownloadState::Error,
                            error: e.clone(),
                            ..DownloadStatus::default()
                        };
                        let _ = status.publish(&w.content, &failed);
                        concluded.insert(w.content.clone(), w.job.clone());
                    }
                    Ok(job) => {
                        let disk = disks.get_mut(&job.volume).ok_or("a volume disk vanished")?;
                        let last =
                            download_one(job, disk, &mut net, &policy, &tables, &names, &status)
                                .await;
                        if last.error == CANCELLED {
                            let gone = !tables
                                .wanted(&names)
                                .iter()
                                .any(|x| x.content == job.content);
                            let _ = status.unpublish(&job.content);
                            if gone {
                                clear_record(disk, job).await;
                            }
                        } else {
                            concluded.insert(w.content.clone(), w.job.clone());
                        }
                        continue; // Look at the tables again at once.
                    }
                }
            }
        }
        let _ = kernel::timeout(ROUND, tables.trees.next()).await;
    }
}

/// Runs one download, cancelled when the tables stop asking for exactly it.
async fn download_one(
    job: &Job,
    disk: &mut Disk,
    net: &mut crate::net::KernelNet,
    policy: &Policy,
    tables: &Tables,
    names: &[String],
    status: &bus_io::Publication<String, DownloadStatus>,
) -> DownloadStatus {
    let still = {
        let tables = tables.clone();
        let names = names.to_vec();
        let job = job.clone();
        let mut checked: Option<(Instant, bool)> = None;
        move || {
            let now = kernel::now();
            match checked {
                Some((at, wanted)) if now.saturating_duration_since(at) < CHECK_EVERY => wanted,
                _ => {
                    let wanted = tables
                        .wanted(&names)
                        .iter()
                        .any(|w| w.job.as_ref() == Ok(&job));
                    checked = Some((now, wanted));
                    wanted
                }
            }
        }
    };
    net.still_wanted = Some(Box::new(still));
    let mut last_state = None;
    let last = download::download(job, disk, net, policy, &mut |s| {
        if let Err(e) = status.publish(&job.content, s) {
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

/// Forgets the progress on `disk` of a content tree that is gone.
async fn clear_record(disk: &mut Disk, job: &Job) {
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
