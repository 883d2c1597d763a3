//! The domain service: app domains created, started, stopped and destroyed on request of the
//! manifest's app manager (domainmgr), within the limits of its `[apps]` table, with every state
//! change reported back (docs/apps.md; the protocol is services/lib/launcher-api).
//!
//! ```toml
//! [apps]
//! manager = "domainmgr"      # the one service that may ask (over its channel `domains`)
//! memory_mib = 64            # all app domains together
//! vcpus = 2                  # all app domains together
//! count = 2                  # app domains at once
//! data = "apps"              # the node disk every app volume lives on (an extent of it)
//! ```
//!
//! What the manager may corrupt: its requests, which are checked here one by one. It can only
//! name apps, never a domid, so it can never reach a pillar's domain (app domains are
//! `app-<name>` and only those this table holds are ever touched); a request that breaks a rule
//! or a limit, or that does not decode, is refused and changes nothing; a request that Xen
//! fails leaves nothing half-built behind.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use launcher_api::frame::decode;
use launcher_api::{
    check, AppDomain, AppSpec, AppState, Event, Extent, FromLauncher, Limits, Op, Refusal,
    RefusalKind, Reply, Request, VERSION,
};
use serde::Deserialize;

use crate::backoff::Outcome;
use crate::manifest::Service;
use crate::platform::{BootFiles, DomainState, Platform};
use crate::supervisor::outcome_of;
use crate::wiring::Wiring;

/// The largest `count` a node may allow.
pub const MAX_COUNT: u32 = 64;

/// A manifest's `[apps]` table.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AppsConfig {
    /// The service that may use the domain service.
    pub manager: String,
    /// Memory of all app domains together, MiB.
    pub memory_mib: u32,
    /// vCPUs of all app domains together.
    pub vcpus: u32,
    /// App domains at once.
    pub count: u32,
    /// The node disk app volumes live on, each an extent of it (volumemgr places them, the
    /// downloader fills them; docs/apps.md).
    pub data: String,
    /// The dom0 bridges an app's `network` may name (from the manifest's network instances,
    /// [`crate::network::app_bridges`]; never written in a manifest).
    #[serde(skip)]
    pub bridges: Vec<String>,
}

impl AppsConfig {
    /// What is wrong with the table, given the node's services and disks.
    pub fn check<'a>(
        &self,
        services: impl Iterator<Item = (&'a String, &'a Service)>,
        disks: &IndexMap<String, crate::disks::NodeDisk>,
    ) -> Vec<String> {
        let mut errors = Vec::new();
        let mut manager_found = false;
        for (name, _) in services {
            manager_found |= *name == self.manager;
            if name.starts_with("app-") {
                errors.push(format!(
                    "[apps]: service `{name}`: `app-` starts the names of app domains"
                ));
            }
        }
        if !manager_found {
            errors.push(format!(
                "[apps]: manager `{}` is not one of the node's services",
                self.manager
            ));
        }
        if !(1..=MAX_COUNT).contains(&self.count) {
            errors.push(format!("[apps]: count must be 1 to {MAX_COUNT}"));
        }
        if self.memory_mib < crate::manifest::MIN_MEMORY_MIB
            || self.memory_mib > crate::manifest::MAX_MEMORY_MIB
        {
            errors.push(format!(
                "[apps]: memory_mib = {} is outside {}..={}",
                self.memory_mib,
                crate::manifest::MIN_MEMORY_MIB,
                crate::manifest::MAX_MEMORY_MIB
            ));
        }
        if !(1..=crate::manifest::MAX_VCPUS).contains(&self.vcpus) {
            errors.push(format!(
                "[apps]: vcpus must be 1 to {}",
                crate::manifest::MAX_VCPUS
            ));
        }
        if !disks.contains_key(&self.data) {
            errors.push(format!(
                "[apps]: data disk `{}` is not one of the node's [disks]",
                self.data
            ));
        }
        errors
    }

    /// The limits as the protocol tells them, for a data disk of `data_mib` MiB.
    pub fn limits(&self, data_mib: u64) -> Limits {
        Limits {
            memory_mib: self.memory_mib,
            vcpus: self.vcpus,
            count: self.count,
            data_mib,
        }
    }
}

/// The longest platform error a refusal carries, in bytes (a reply frame holds 8192).
const MAX_ERROR: usize = 2048;

/// `text`, cut to [`MAX_ERROR`] bytes at a character boundary.
fn bounded(mut text: String) -> String {
    if text.len() > MAX_ERROR {
        let mut end = MAX_ERROR;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(" ...");
    }
    text
}

/// The Xen domain name of app `name`.
pub fn domain_name(name: &str) -> String {
    format!("app-{name}")
}

/// One app the launcher holds.
#[derive(Debug)]
struct Record {
    spec: AppSpec,
    state: AppState,
    domid: Option<u32>,
    /// The dom0 devices of its disk volumes, held while it has a domain.
    disks: Vec<crate::loopdev::Mapped>,
    /// While stopping: when the domain is destroyed if it has not powered off.
    stop_deadline: Option<Instant>,
}

/// The app domains and the requests that change them.
pub struct Apps {
    config: AppsConfig,
    /// Where the dom0 devices of volumes are found (`/sys/block`; a directory in tests).
    sys_block: PathBuf,
    table: IndexMap<String, Record>,
    /// Whether the current connection said hello.
    greeted: bool,
}

impl Apps {
    /// The domain service of a node with `[apps]` table `config`.
    pub fn new(config: AppsConfig, sys_block: PathBuf) -> Apps {
        Apps {
            config,
            sys_block,
            table: IndexMap::new(),
            greeted: false,
        }
    }

    /// The app data disk's size in MiB, from its dom0 device (0 when it cannot be found).
    fn data_mib(&self) -> u64 {
        crate::disks::find_device(&self.sys_block, &self.config.data)
            .ok()
            .and_then(|dev| {
                let name = dev.file_name()?.to_owned();
                std::fs::read_to_string(self.sys_block.join(name).join("size")).ok()
            })
            .and_then(|sectors| sectors.trim().parse::<u64>().ok())
            .map_or(0, |sectors| (sectors * 512) >> 20)
    }

    /// The manager service's name.
    pub fn manager(&self) -> &str {
        &self.config.manager
    }

    /// A new connection from the manager: it must say hello first.
    pub fn connected(&mut self) {
        self.greeted = false;
    }

    /// The domids of the app domains that exist.
    pub fn domids(&self) -> impl Iterator<Item = (&str, u32)> {
        self.table
            .iter()
            .filter_map(|(name, r)| Some((name.as_str(), r.domid?)))
    }

    /// The apps' rows for the services' status that zedagent reads (`app-<name>`, the domain's
    /// name): domain, state (one word) and memory; the supervisor adds Xen's CPU and memory
    /// figures, which zedagent reports as the app's metrics.
    pub fn rows(&self) -> Vec<crate::status::Row> {
        self.table
            .iter()
            .map(|(name, r)| crate::status::Row {
                service: domain_name(name),
                domid: r.domid,
                state: match &r.state {
                    AppState::Crashed(_) => "crashed".to_string(),
                    state => state.to_string(),
                },
                restarts: 0,
                memory: r.spec.memory_mib,
            })
            .collect()
    }

    /// Whether an app holds a domain (the supervisor then keeps watching domains).
    pub fn has_domains(&self) -> bool {
        self.table.values().any(|r| r.domid.is_some())
    }

    /// Handles one frame's payload; returns the events it caused, then the reply (so that a
    /// manager that has the reply has seen every change the request made).
    pub fn handle(&mut self, payload: &[u8], platform: &mut impl Platform) -> Vec<FromLauncher> {
        let Some(Request { id, op }) = decode::<Request>(payload) else {
            // The id is unknown: 0, as the protocol says for a request that does not decode.
            return vec![reply(
                0,
                Err(Refusal::new(
                    RefusalKind::Malformed,
                    format!("a frame of {} bytes that is not a request", payload.len()),
                )),
            )];
        };
        let mut events = Vec::new();
        let result = self.apply(op, platform, &mut events);
        let mut out: Vec<FromLauncher> = events.into_iter().map(FromLauncher::Event).collect();
        out.push(reply(id, result));
        out
    }

    fn apply(
        &mut self,
        op: Op,
        platform: &mut impl Platform,
        events: &mut Vec<Event>,
    ) -> Result<Reply, Refusal> {
        if let Op::Hello { version } = op {
            if version != VERSION {
                return Err(Refusal::new(
                    RefusalKind::Version,
                    format!("protocol version {version}, this launcher speaks {VERSION}"),
                ));
            }
            self.greeted = true;
            return Ok(Reply::Welcome {
                limits: self.config.limits(self.data_mib()),
                domains: self.list(),
            });
        }
        if !self.greeted {
            return Err(Refusal::new(
                RefusalKind::Version,
                "the first request must be Hello",
            ));
        }
        match op {
            Op::Hello { .. } => unreachable!("handled above"),
            Op::List => Ok(Reply::Domains(self.list())),
            Op::Create { name, spec } => self.create(name, spec, platform, events),
            Op::Start { name } => self.start(&name, platform, events),
            Op::Stop { name, grace_ms } => self.stop(&name, grace_ms, platform, events),
            Op::Destroy { name } => self.destroy(&name, platform, events),
        }
    }

    fn list(&self) -> Vec<AppDomain> {
        self.table
            .iter()
            .map(|(name, r)| AppDomain {
                name: name.clone(),
                domid: r.domid,
                state: r.state.clone(),
                spec: r.spec.clone(),
            })
            .collect()
    }

    fn record(&mut self, name: &str) -> Result<&mut Record, Refusal> {
        check::name(name)?;
        self.table
            .get_mut(name)
            .ok_or_else(|| Refusal::new(RefusalKind::Unknown, format!("no app named {name}")))
    }

    /// Checks `spec` against the limits, counting the domains of every app but `name`.
    fn fits(&self, name: &str, spec: &AppSpec) -> Result<(), Refusal> {
        let others = self
            .table
            .iter()
            .filter(|(n, r)| *n != name && r.state.has_domain());
        let (mut count, mut memory, mut vcpus) = (0u64, 0u64, 0u64);
        for (other, record) in others {
            count += 1;
            memory += u64::from(record.spec.memory_mib);
            vcpus += u64::from(record.spec.vcpus);
            // Two apps may boot from one volume; a disk is one app's only.
            let theirs = std::iter::once((record.spec.kernel, true))
                .chain(record.spec.disks.iter().map(|d| (d.extent, d.read_only)));
            let mine: Vec<(Extent, bool)> = std::iter::once((spec.kernel, true))
                .chain(spec.disks.iter().map(|d| (d.extent, d.read_only)))
                .collect();
            for (their, their_ro) in theirs {
                if let Some((mine, _)) = mine
                    .iter()
                    .find(|(m, ro)| m.overlaps(&their) && !(*ro && their_ro))
                {
                    return Err(Refusal::new(
                        RefusalKind::Volume,
                        format!("volume {mine} overlaps {their}, in use by app {other}"),
                    ));
                }
            }
        }
        let over = |what: &str, used: u64, asked: u32, limit: u32| {
            Refusal::new(
                RefusalKind::OverLimit,
                format!(
                    "{what}: {asked} asked, {used} in use by other apps, the node allows {limit}"
                ),
            )
        };
        let limits = &self.config;
        if count + 1 > u64::from(limits.count) {
            return Err(over("app domains", count, 1, limits.count));
        }
        if memory + u64::from(spec.memory_mib) > u64::from(limits.memory_mib) {
            return Err(over(
                "memory MiB",
                memory,
                spec.memory_mib,
                limits.memory_mib,
            ));
        }
        if vcpus + u64::from(spec.vcpus) > u64::from(limits.vcpus) {
            return Err(over("vCPUs", vcpus, spec.vcpus, limits.vcpus));
        }
        let data_mib = self.data_mib();
        for extent in std::iter::once(&spec.kernel).chain(spec.disks.iter().map(|d| &d.extent)) {
            if extent.end_mib() > data_mib || extent.end_mib() == u64::MAX {
                return Err(Refusal::new(
                    RefusalKind::Volume,
                    format!("volume {extent} lies outside the app data disk ({data_mib} MiB)"),
                ));
            }
        }
        Ok(())
    }

    fn create(
        &mut self,
        name: String,
        spec: AppSpec,
        platform: &mut impl Platform,
        events: &mut Vec<Event>,
    ) -> Result<Reply, Refusal> {
        check::name(&name)?;
        check::spec(&spec)?;
        if let Some(network) = spec
            .network
            .as_ref()
            .filter(|n| !self.config.bridges.contains(n))
        {
            return Err(Refusal::new(
                RefusalKind::Invalid,
                format!(
                    "network `{network:.64}` is not a bridge of this node ({})",
                    self.config.bridges.join(", ")
                ),
            ));
        }
        if let Some(existing) = self.table.get(&name) {
            if existing.state.has_domain() {
                return Err(Refusal::new(
                    RefusalKind::Exists,
                    format!("app {name} has a domain already ({})", existing.state),
                ));
            }
        }
        self.fits(&name, &spec)?;
        // Bounded: `xl`'s standard error can be long, and a reply must fit one frame.
        let platform_error = |e: String| Refusal::new(RefusalKind::Platform, bounded(e));
        let data = crate::disks::find_device(&self.sys_block, &self.config.data)
            .map_err(platform_error)?;
        let bytes = |mib: u64| mib << 20;
        // The image volume's head says what it holds: a Linux VM's bundle (checked before
        // anything is mapped, so a malformed one changes nothing) or a PVH kernel.
        let window = (bytes(spec.kernel.offset_mib), bytes(spec.kernel.size_mib));
        let head = platform
            .read_volume_head(&data, window.0, window.1)
            .map_err(|e| platform_error(format!("volume {}: {e}", spec.kernel)))?;
        let bundle = match crate::bundle::is_bundle(&head) {
            true => Some(crate::bundle::parse(&head, window.1).map_err(|e| {
                Refusal::new(
                    RefusalKind::Volume,
                    format!("volume {}: a malformed Linux bundle: {e}", spec.kernel),
                )
            })?),
            false => None,
        };
        let disks = spec
            .disks
            .iter()
            .map(|d| {
                let e = d.extent;
                platform.map_extent(&data, bytes(e.offset_mib), bytes(e.size_mib), d.read_only)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(platform_error)?;
        let devices: Vec<PathBuf> = disks.iter().map(|d| d.path.clone()).collect();
        let mut service = Service::app(&spec, &devices);
        // A Linux VM's bundle boots through xl from read-only loop devices over its kernel
        // and initramfs, held until xl has copied them into the domain; a PVH kernel through
        // the launcher's builder, read from the volume.
        let mut boot_devices = Vec::new();
        let files = if let Some(bundle) = bundle {
            let (offset, size) = bundle.kernel_pages();
            let kernel = platform
                .map_extent(&data, window.0 + offset, size, true)
                .map_err(platform_error)?;
            let ramdisk = match bundle.initramfs {
                Some((offset, size)) => Some(
                    platform
                        .map_extent(&data, window.0 + offset, size, true)
                        .map_err(platform_error)?,
                ),
                None => None,
            };
            service.cmdline = bundle.cmdline_with(&spec.cmdline);
            service.toolstack = crate::manifest::Toolstack::Xl;
            let files = BootFiles {
                kernel: kernel.path.clone(),
                ramdisk: ramdisk.as_ref().map(|r| r.path.clone()),
                kernel_window: None,
            };
            boot_devices.push(kernel);
            boot_devices.extend(ramdisk);
            files
        } else {
            BootFiles {
                kernel: data,
                ramdisk: None,
                kernel_window: Some(window),
            }
        };
        // An app's domain has no channels: no entries of its own beyond the registration.
        let domid = platform
            .create_paused(&domain_name(&name), &service, &files, &|_| {
                Wiring::default()
            })
            .map_err(platform_error)?
            .domid;
        drop(boot_devices);
        self.table.insert(
            name.clone(),
            Record {
                spec,
                state: AppState::Created,
                domid: Some(domid),
                disks,
                stop_deadline: None,
            },
        );
        events.push(Event {
            name,
            domid: Some(domid),
            state: AppState::Created,
        });
        Ok(Reply::Done)
    }

    fn start(
        &mut self,
        name: &str,
        platform: &mut impl Platform,
        events: &mut Vec<Event>,
    ) -> Result<Reply, Refusal> {
        let record = self.record(name)?;
        let (AppState::Created, Some(domid)) = (&record.state, record.domid) else {
            return Err(Refusal::new(
                RefusalKind::WrongState,
                format!("app {name} is {}, not created", record.state),
            ));
        };
        platform
            .unpause(domid)
            .map_err(|e| Refusal::new(RefusalKind::Platform, e))?;
        record.state = AppState::Running;
        events.push(Event {
            name: name.to_string(),
            domid: Some(domid),
            state: AppState::Running,
        });
        Ok(Reply::Done)
    }

    fn stop(
        &mut self,
        name: &str,
        grace_ms: u32,
        platform: &mut impl Platform,
        events: &mut Vec<Event>,
    ) -> Result<Reply, Refusal> {
        check::grace(grace_ms)?;
        let record = self.record(name)?;
        let Some(domid) = record.domid.filter(|_| record.state.has_domain()) else {
            return Err(Refusal::new(
                RefusalKind::WrongState,
                format!("app {name} is {}: nothing to stop", record.state),
            ));
        };
        if grace_ms == 0 || record.state == AppState::Created {
            let _ = platform.destroy(domid);
            record.domid = None;
            record.disks.clear();
            record.state = AppState::Halted;
            record.stop_deadline = None;
            events.push(Event {
                name: name.to_string(),
                domid: Some(domid),
                state: AppState::Halted,
            });
            return Ok(Reply::Done);
        }
        // Xen's way to ask a guest to power off (what `xl shutdown` writes).
        let ask = Wiring {
            writes: vec![(
                format!("/local/domain/{domid}/control/shutdown"),
                "poweroff".to_string(),
            )],
            ..Wiring::default()
        };
        if let Err(e) = platform.write_store(&ask) {
            crate::say!("app {name}: cannot ask domain {domid} to power off: {e}");
        }
        record.state = AppState::Stopping;
        record.stop_deadline = Some(Instant::now() + Duration::from_millis(grace_ms.into()));
        events.push(Event {
            name: name.to_string(),
            domid: Some(domid),
            state: AppState::Stopping,
        });
        Ok(Reply::Done)
    }

    fn destroy(
        &mut self,
        name: &str,
        platform: &mut impl Platform,
        events: &mut Vec<Event>,
    ) -> Result<Reply, Refusal> {
        let record = self.record(name)?;
        let domid = record.domid.take();
        if let Some(domid) = domid {
            if let Err(e) = platform.destroy(domid) {
                crate::say!("app {name}: cannot destroy domain {domid}: {e}");
            }
        }
        self.table.shift_remove(name);
        events.push(Event {
            name: name.to_string(),
            domid,
            state: AppState::Destroyed,
        });
        Ok(Reply::Done)
    }

    /// Ends stops whose grace is over: their domains are destroyed.
    pub fn tick(&mut self, now: Instant, platform: &mut impl Platform) -> Vec<FromLauncher> {
        let mut events = Vec::new();
        for (name, record) in &mut self.table {
            let (Some(deadline), Some(domid)) = (record.stop_deadline, record.domid) else {
                continue;
            };
            if now >= deadline {
                let _ = platform.destroy(domid);
                record.domid = None;
                record.disks.clear();
                record.disks.clear();
                record.stop_deadline = None;
                record.state = AppState::Halted;
                events.push(FromLauncher::Event(Event {
                    name: name.clone(),
                    domid: Some(domid),
                    state: AppState::Halted,
                }));
            }
        }
        events
    }

    /// Notices app domains that shut down or disappeared (`domains`: every domain's state):
    /// each is destroyed (after its exit status is read) and reported as halted or crashed.
    pub fn check_domains(
        &mut self,
        domains: &HashMap<u32, DomainState>,
        platform: &mut impl Platform,
    ) -> Vec<FromLauncher> {
        let mut events = Vec::new();
        for (name, record) in &mut self.table {
            let Some(domid) = record.domid else {
                continue;
            };
            let outcome = match domains.get(&domid) {
                Some(DomainState::Alive) => continue,
                Some(DomainState::Shutdown(reason)) => {
                    let status = platform.exit_status(domid);
                    let _ = platform.destroy(domid);
                    outcome_of(*reason, status)
                }
                Some(DomainState::Dying) | None => {
                    Outcome::Failure(format!("its domain {domid} disappeared"))
                }
            };
            let state = match outcome {
                _ if record.state == AppState::Stopping => AppState::Halted,
                Outcome::Success => AppState::Halted,
                Outcome::Failure(why) => AppState::Crashed(why),
            };
            crate::say!("app {name}: domain {domid} {state}");
            record.domid = None;
            record.disks.clear();
            record.stop_deadline = None;
            record.state = state.clone();
            events.push(FromLauncher::Event(Event {
                name: name.clone(),
                domid: Some(domid),
                state,
            }));
        }
        events
    }

    /// Node shutdown: every app domain is destroyed.
    pub fn teardown(&mut self, platform: &mut impl Platform) {
        for (name, record) in &mut self.table {
            if let Some(domid) = record.domid.take() {
                if let Err(e) = platform.destroy(domid) {
                    crate::say!("app {name}: cannot destroy domain {domid}: {e}");
                }
                record.disks.clear();
                record.state = AppState::Halted;
            }
        }
    }
}

fn reply(id: u32, result: Result<Reply, Refusal>) -> FromLauncher {
    FromLauncher::Reply { id, result }
}

#[cfg(test)]
mod tests;
