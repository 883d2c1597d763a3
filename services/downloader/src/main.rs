//! `downloader`: content trees from their datastores into their target volumes (EVE's
//! downloader, with the verifier's SHA-256 check folded in: see docs/download.md for why).
//!
//! For each content tree it streams the file over HTTP or HTTPS (TLS 1.3, verified against the
//! config partition's `root-certificate.pem`, with the datastore's credentials) onto the target
//! volume's block device, hashing it on the way; it commits progress on the volume, so that after
//! a restart it resumes with a `Range` request; a datastore that is down, slow, answers 404 or
//! cuts the body short is retried with backoff and jitter. Progress is published in
//! `downloader/DownloadStatus`; nothing is reported `Verified` unless size and SHA-256 match.
//!
//! On a node it fills the app volumes volumemgr places on the app data disk (`follow`): a
//! content tree's image, or zeros for a blank volume; `data=`: the data disk's name (default
//! `apps`). With `fqdn=` on the command line it instead makes that one download and exits
//! (microvm tests, benchmarks):
//! - `fqdn=`, `dpath=`, `url=`: the datastore (EVE's `DatastoreConfig.fqdn`, `dpath`) and the
//!   content tree's relative `URL`; `kind=http|https` when `fqdn` has no scheme;
//! - `api_key=`, `password=`: the datastore's credentials (HTTP Basic);
//! - `sha256=` (required), `max_size=` (bytes; default: what the volume holds);
//! - `volume=`: the target disk's name (default `volume`); `content=`, `name=`: the content
//!   tree's UUID and name, for the status (default: the sha256 and the URL);
//! - benchmarks: `fqdn=` may list several datastores (comma-separated) and `rounds=N` repeats
//!   the list N times: each download after the first starts from byte 0 on the same volume;
//!   `hash_probe_mib=N` first logs how long SHA-256 of N MiB in memory takes.
//!
//! Options of both modes: `retries=N`: give up after N failed attempts in a row (default:
//! never); `backoff_ms=`: the first pause (default 1000, doubling to 60 s); `timeout_s=`: the
//! bound on each connect and read (default 30); `commit_kib=`: commit every this many KiB
//! (default 1024); `rx_kib=`: the TCP receive buffer (default 64); `ip=`, `gw=`, `dns=`: the
//! network (kernel::net::config).
//!
//! Exit status (one download): 0 verified, 3 failed (the status says why); 1 when the disks, the
//! network or the bus fail it, 2 for a bad command line.

#![no_std]
#![no_main]

extern crate alloc;

mod follow;
mod net;

use alloc::format;
use alloc::string::{String, ToString};

use download::{Job, Policy, Source};
use kernel::{error, info, Args, Duration};
use topics::downloader::{DownloadState, DATA_DISK, DOWNLOAD_STATUS};
use topics::volumemgr::VOLUME_STATUS;
use topics::zedagent::{CONTENT_TREE, DATASTORE};

kernel::service! {
    main: main,
    memory_floor_mib: 8,
    needs: [uplink, disk],
    publishes: &[DOWNLOAD_STATUS.decl(), DATA_DISK.decl()],
    // Watched rather than subscribed: on a node zedagent and volumemgr publish them and they
    // are wired as subscriptions are; the one-download mode (`fqdn=`) needs none of them, and a
    // node of its own (scripts/bench apps) has no publisher of them.
    watches: &[DATASTORE.decl(), CONTENT_TREE.decl(), VOLUME_STATUS.decl()],
}

/// How long the network may take to get an address.
const ADDRESS_TIMEOUT: Duration = Duration::from_secs(60);

async fn main(args: Args) -> i32 {
    let (policy, timeout) = match policy_from(&args) {
        Ok(found) => found,
        Err(e) => {
            error!("downloader: {e}");
            return 2;
        }
    };
    if args.get("fqdn").is_none() {
        return match follow_config(&args, policy, timeout).await {
            Ok(()) => 0,
            Err(e) => {
                error!("downloader: {e}");
                1
            }
        };
    }
    let jobs = match jobs_from(&args) {
        Ok(jobs) => jobs,
        Err(e) => {
            error!("downloader: {e}");
            return 2;
        }
    };
    match run_one(&args, &jobs, policy, timeout).await {
        Ok(true) => 0,
        Ok(false) => 3,
        Err(e) => {
            error!("downloader: {e}");
            1
        }
    }
}

/// The retry policy and the I/O timeout the command line asks for.
fn policy_from(args: &Args) -> Result<(Policy, Duration), String> {
    let number = |key: &str| args.parse_value::<u64>(key).map_err(|e| format!("{e}"));
    let defaults = Policy::default();
    let policy = Policy {
        first_backoff_ms: number("backoff_ms")?.unwrap_or(defaults.first_backoff_ms),
        max_retries: args
            .parse_value::<u32>("retries")
            .map_err(|e| format!("{e}"))?,
        commit_every: number("commit_kib")?.map_or(defaults.commit_every, |k| k * 1024),
        ..defaults
    };
    let timeout = Duration::from_secs(number("timeout_s")?.unwrap_or(30).max(1));
    Ok((policy, timeout))
}

/// The TCP receive buffer the command line asks for (`rx_kib=`, 4 KiB to 4 MiB).
fn rx_buffer_from(args: &Args) -> Result<usize, String> {
    match args
        .parse_value::<usize>("rx_kib")
        .map_err(|e| format!("{e}"))?
    {
        None => Ok(net::RX_BUFFER),
        Some(kib @ 4..=4096) => Ok(kib * 1024),
        Some(kib) => Err(format!("rx_kib={kib}: expected 4 to 4096")),
    }
}

/// The downloads the command line asks for: one per datastore in `fqdn=` (comma-separated),
/// each made `rounds=` times (default 1; benchmarks), in turn.
fn jobs_from(args: &Args) -> Result<alloc::vec::Vec<Job>, String> {
    let fqdns = args.get("fqdn").ok_or("fqdn= is required")?;
    let rounds = match args
        .parse_value::<u32>("rounds")
        .map_err(|e| format!("{e}"))?
    {
        None => 1,
        Some(n @ 1..=100) => n,
        Some(n) => return Err(format!("rounds={n}: expected 1 to 100")),
    };
    let once = fqdns
        .split(',')
        .map(|fqdn| job_from(args, fqdn))
        .collect::<Result<alloc::vec::Vec<Job>, String>>()?;
    Ok((0..rounds).flat_map(|_| once.iter().cloned()).collect())
}

/// The download from datastore `fqdn` the command line asks for.
fn job_from(args: &Args, fqdn: &str) -> Result<Job, String> {
    let text = |key: &str| args.get(key).unwrap_or_default();
    let https = match args.get("kind") {
        Some("https") => true,
        Some("http") => false,
        None => !fqdn.starts_with("http://"),
        Some(other) => return Err(format!("kind={other}: expected http or https")),
    };
    let url = args.get("url").ok_or("url= is required")?;
    let source = Source::new(
        https,
        fqdn,
        text("dpath"),
        url,
        text("api_key"),
        text("password"),
    )?;
    let sha256_hex = args.get("sha256").ok_or("sha256= is required")?;
    Ok(Job {
        content: args.get("content").unwrap_or(sha256_hex).to_string(),
        name: args.get("name").unwrap_or(url).to_string(),
        source,
        sha256: download::engine::parse_sha256(sha256_hex)?,
        max_size: args
            .parse_value::<u64>("max_size")
            .map_err(|e| format!("{e}"))?
            .unwrap_or(0),
        volume: args.get("volume").unwrap_or("volume").to_string(),
        generation: 0,
    })
}

/// Starts the network and waits for an address.
async fn network(args: &Args) -> Result<(), String> {
    kernel::net::start(args).map_err(|e| format!("network: {e}"))?;
    let (address, prefix) = kernel::timeout(ADDRESS_TIMEOUT, kernel::net::wait_for_ipv4())
        .await
        .map_err(|_| "network: no IPv4 address".to_string())?
        .map_err(|e| format!("network: {e}"))?;
    info!("downloader: address {address}/{prefix}");
    Ok(())
}

/// Follows the configuration (a node).
async fn follow_config(args: &Args, policy: Policy, timeout: Duration) -> Result<(), String> {
    let mut disks = kernel::block::disks().await;
    let trust = pinned_root(&mut disks).await?;
    let name = args.get("data").unwrap_or("apps");
    let disk = disks
        .take(name)
        .map_err(|e| format!("the app data disk: {e}"))?;
    let node = bus_io::channel::node().await;
    network(args).await?;
    let net = net::KernelNet {
        trust,
        timeout,
        rx_buffer: rx_buffer_from(args)?,
        still_wanted: None,
    };
    follow::run(&node, disk, net, policy).await
}

/// Runs the downloads, in turn, onto the one volume (the first job's); whether all were
/// verified (it stops at the first that is not). The first one resumes from, or trusts, what the
/// volume's record says; each later one starts from byte 0 (its record is cleared first).
async fn run_one(
    args: &Args,
    jobs: &[Job],
    policy: Policy,
    timeout: Duration,
) -> Result<bool, String> {
    let first = jobs.first().ok_or("no download asked for")?;
    let mut disks = kernel::block::disks().await;
    let trust = pinned_root(&mut disks).await?;
    if jobs.iter().any(|job| job.source.tls) && trust.is_none() {
        return Err(
            "an HTTPS datastore needs the config partition's root-certificate.pem (disk `config`)"
                .into(),
        );
    }
    let mut volume = disks.take(&first.volume).map_err(|e| format!("{e}"))?;

    let node = bus_io::channel::node().await;
    let status = node.publish(&DOWNLOAD_STATUS).map_err(|e| format!("{e}"))?;
    network(args).await?;
    let mut net = net::KernelNet {
        trust,
        timeout,
        rx_buffer: rx_buffer_from(args)?,
        still_wanted: None,
    };
    if let Some(mib) = args
        .parse_value::<u32>("hash_probe_mib")
        .map_err(|e| format!("{e}"))?
    {
        hash_probe(mib);
    }
    for (n, job) in jobs.iter().enumerate() {
        let scheme = if job.source.tls { "https" } else { "http" };
        info!(
            "downloader: {} from {scheme}://{}:{}{} into {}",
            job.name, job.source.host, job.source.port, job.source.path, job.volume
        );
        if n > 0 {
            let fresh = download::record::Record {
                content: job.content.clone(),
                sha256: job.sha256,
                progress: download::record::Progress::Partial(0),
            };
            download::record::write(&mut volume, &fresh)
                .await
                .map_err(|e| format!("{}: {e}", job.volume))?;
        }
        let started = kernel::now();
        let mut last_state = None;
        let mut heap_peak = kernel::mem::heap_used();
        let last = download::download(job, &mut volume, &mut net, &policy, &mut |s| {
            heap_peak = heap_peak.max(kernel::mem::heap_used());
            if let Err(e) = status.publish(&job.content, s) {
                error!("downloader: cannot publish the status: {e}");
            }
            // Every state change, and progress at each commit.
            if last_state != Some(s.state) || s.state == DownloadState::Downloading {
                info!("downloader: {s}");
            }
            last_state = Some(s.state);
        })
        .await;
        let ms = started.elapsed().as_millis().max(1) as u64;
        info!(
            "downloader: {:?} after {} ms ({} KiB/s) over {scheme}, heap peak {} KiB (of {} KiB)",
            last.state,
            ms,
            last.bytes * 1000 / 1024 / ms,
            heap_peak / 1024,
            kernel::mem::heap_size() / 1024
        );
        if last.state != DownloadState::Verified {
            return Ok(false);
        }
        info!("downloader: verified sha256 {}", last.sha256);
    }
    Ok(true)
}

/// Benchmarks (`hash_probe_mib=N`): logs how long SHA-256 of N MiB in memory takes here, the
/// CPU's share of a download's cost (no network, no disk).
fn hash_probe(mib: u32) {
    use sha2::Digest;
    let block = alloc::vec![0x5au8; download::engine::CHUNK];
    let started = kernel::now();
    let mut hasher = sha2::Sha256::new();
    for _ in 0..u64::from(mib) * 1024 * 1024 / block.len() as u64 {
        hasher.update(&block);
    }
    let digest = hasher.finalize();
    let ms = started.elapsed().as_millis().max(1) as u64;
    info!(
        "downloader: hash probe: sha256 of {mib} MiB in memory in {ms} ms ({} KiB/s, {:02x}{:02x}..)",
        u64::from(mib) * 1024 * 1000 / ms,
        digest[0],
        digest[1]
    );
}

/// The root HTTPS datastores are verified against: `root-certificate.pem` of the config
/// partition (disk `config`), if there is one.
async fn pinned_root(disks: &mut kernel::block::Disks) -> Result<Option<tls::Trust>, String> {
    let Ok(mut disk) = disks.take("config") else {
        return Ok(None);
    };
    let partition = config_partition::ConfigPartition::read(&mut disk)
        .await
        .map_err(|e| format!("config partition: {e}"))?;
    let Some(pem) = partition.file("root-certificate.pem") else {
        return Ok(None);
    };
    let pem = core::str::from_utf8(pem).map_err(|_| "root-certificate.pem: not text")?;
    let der = device_api::x509::pem_block(pem, "CERTIFICATE")
        .map_err(|e| format!("root-certificate.pem: {e}"))?;
    let trust =
        tls::Trust::new(&der, net::unix_now).map_err(|e| format!("root-certificate.pem: {e}"))?;
    Ok(Some(trust))
}
