//! zedmanager's app state machine: from an app's `zedagent/AppInstance`, the state of its
//! domain (`domainmgr/DomainStatus`) and the clock, the domain it should have
//! (`zedmanager/DomainConfig`, for domainmgr) and its `zedmanager/AppInstanceStatus` in EVE's
//! `ZSwState` terms. No I/O: `main.rs` feeds it; the host tests drive it.
//!
//! The rules (docs/apps.md):
//! - its volumes must be made (volumemgr's `Created`, with their extents of the app data disk)
//!   before anything boots: until then the app is `DOWNLOADING` while one is being filled,
//!   `CREATING_VOLUME` otherwise, and `ERROR` with the volume's error if one cannot be made;
//!   the first volume holds its kernel, the others become its disks;
//! - `start_delay_s` holds the first boot back that long after zedmanager started
//!   (`START_DELAYED`);
//! - activate / deactivate map to the domain's `activate`; deactivated, the app is `HALTED`;
//! - a change of `restart_counter` (or `purge_counter`), or a new version of the app (EVE's
//!   `app_replace`: a new image) restarts the app: a new domain generation (`RESTARTING` until
//!   it runs), one restart counted;
//! - a domain that crashed is restarted after a backoff (1 s, doubling per crash in a row,
//!   at most [`MAX_BACKOFF_MS`]; a run of [`STABLE_MS`] resets it), counted in `restarts` and
//!   `crashes`, with the crash's reason and time as the error meanwhile;
//! - domainmgr's error (a request beyond the node's limits) is the app's `ERROR`.
#![no_std]
#![warn(missing_docs)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;

use topics::domainmgr::{DomainState, DomainStatus};
use topics::volumemgr::{Extent, VolumeState, VolumeStatus};
use topics::zedagent::AppInstance;
use topics::zedmanager::{AppInstanceStatus, AppRecord, DiskConfig, DomainConfig, SwState};

/// The first crash restart's delay.
pub const FIRST_BACKOFF_MS: u64 = 1000;

/// The longest crash restart delay.
pub const MAX_BACKOFF_MS: u64 = 60_000;

/// How long a domain must run for its crashes in a row to be forgotten.
pub const STABLE_MS: u64 = 30_000;

/// Where an app's volumes stand (from `volumemgr/VolumeStatus`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Volumes {
    /// All made: their extents of the app data disk, in the app's order (the first holds its
    /// kernel, the others become its disks).
    Ready(Vec<Extent>),
    /// Not all made yet: what the app reports meanwhile (`DOWNLOADING` while one is being
    /// filled, `CREATING_VOLUME` otherwise; `BOOTING` while its network instance is not up).
    Waiting(SwState),
    /// One cannot be made: why.
    Failed(String),
    /// One must be made again (a purge: a new generation) and volumemgr waits for the app's
    /// domain to go first: the domain's configuration is withdrawn (`CREATING_VOLUME`).
    Remaking,
}

/// Where `app`'s volumes stand, from volumemgr's statuses (`status` looks one up by UUID). A
/// volume is ready when it is `Created` at the generation the app asks for; `Pending` with an
/// extent is one volumemgr must make again once no app domain uses it.
pub fn where_volumes_stand<'a>(
    app: &AppInstance,
    status: impl Fn(&str) -> Option<&'a VolumeStatus>,
) -> Volumes {
    if app.volumes.is_empty() {
        return Volumes::Failed("the app has no volume to boot from".into());
    }
    let mut extents = Vec::new();
    let mut waiting = SwState::CreatingVolume;
    let mut remaking = false;
    for v in &app.volumes {
        match status(&v.uuid) {
            Some(s) if s.state == VolumeState::Error => {
                return Volumes::Failed(alloc::format!("volume {}: {}", s.name, s.error))
            }
            Some(VolumeStatus {
                state: VolumeState::Created,
                extent: Some(extent),
                generation,
                ..
            }) if *generation == v.generation => extents.push(*extent),
            Some(s) if s.state == VolumeState::Filling => waiting = SwState::Downloading,
            Some(VolumeStatus {
                state: VolumeState::Pending,
                extent: Some(_),
                ..
            }) => remaking = true,
            _ => {}
        }
    }
    if extents.len() == app.volumes.len() {
        Volumes::Ready(extents)
    } else if remaking {
        Volumes::Remaking
    } else {
        Volumes::Waiting(waiting)
    }
}

/// What zedmanager keeps about one app between steps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct App {
    /// The generation of the domain it should have.
    pub generation: u32,
    /// Restarts so far (counter changes and crashes).
    pub restarts: u32,
    /// Crash restarts so far.
    pub crashes: u32,
    /// Crashes since the domain last ran for [`STABLE_MS`].
    crashes_in_a_row: u32,
    /// The restart and purge counters and the version last seen (`None` before the first
    /// configuration).
    counters: Option<(u32, u32, String)>,
    /// When a crash restart is due, ms.
    restart_at: Option<u64>,
    /// When the domain of the current generation was first seen running, ms.
    running_since: Option<u64>,
    /// The last error and when it was seen, ms.
    error: Option<(String, u64)>,
    /// The state last derived from a status of the current generation's domain: kept while
    /// domainmgr has no status for it (a restarted domainmgr has not reported again yet).
    last_reported: Option<SwState>,
}

/// What a step decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The domain the app should have; `None` while it should have none yet (no boot volume).
    pub domain: Option<DomainConfig>,
    /// The app's status.
    pub status: AppInstanceStatus,
    /// When to step again even if nothing changes, ms (a start delay or a backoff ending).
    pub wake_at: Option<u64>,
}

impl App {
    /// The app as a restarted zedmanager (or one on a rebooted node) finds it in its record:
    /// the same generation, counts and counters, so that the running domain is kept.
    pub fn restore(record: &AppRecord) -> App {
        App {
            generation: record.generation,
            restarts: record.restarts,
            crashes: record.crashes,
            counters: Some((
                record.restart_counter,
                record.purge_counter,
                record.version.clone(),
            )),
            ..App::default()
        }
    }

    /// What must outlive this zedmanager ([`App::restore`]); `None` before the first step.
    pub fn record(&self) -> Option<AppRecord> {
        let (restart_counter, purge_counter, version) = self.counters.clone()?;
        Some(AppRecord {
            generation: self.generation,
            restarts: self.restarts,
            crashes: self.crashes,
            restart_counter,
            purge_counter,
            version,
        })
    }

    /// One step at `now_ms` (ms since zedmanager started): `config`, its domain's status (for
    /// the generation it is about), where its volumes stand (and its network: see
    /// [`Volumes::Waiting`]), and the dom0 bridge its network card joins (`None`: no card).
    pub fn step(
        &mut self,
        config: &AppInstance,
        domain: Option<&DomainStatus>,
        volumes: &Volumes,
        bridge: Option<&str>,
        now_ms: u64,
    ) -> Step {
        let extents = match volumes {
            Volumes::Ready(extents) => extents.as_slice(),
            _ => &[],
        };
        let boot_volume = extents.first();
        let counters = (
            config.restart_counter,
            config.purge_counter,
            config.version.clone(),
        );
        match &self.counters {
            Some(seen) if *seen != counters => {
                self.generation += 1;
                self.restarts += 1;
                self.restart_at = None;
                self.running_since = None;
                self.last_reported = None;
            }
            _ => {}
        }
        self.counters = Some(counters);

        // The domain of the current generation, as domainmgr reports it.
        let current = domain.filter(|d| d.generation == self.generation);
        match current.map(|d| &d.state) {
            Some(DomainState::Running) => {
                let since = *self.running_since.get_or_insert(now_ms);
                if now_ms.saturating_sub(since) >= STABLE_MS {
                    self.crashes_in_a_row = 0;
                }
            }
            Some(DomainState::Crashed) if config.activate && self.restart_at.is_none() => {
                let shift = self.crashes_in_a_row.min(16);
                let delay = (FIRST_BACKOFF_MS << shift).min(MAX_BACKOFF_MS);
                self.crashes_in_a_row += 1;
                self.restart_at = Some(now_ms + delay);
                let why = current.map(|d| d.error.clone()).unwrap_or_default();
                let why = if why.starts_with("crashed") {
                    why
                } else {
                    alloc::format!("crashed: {why}")
                };
                self.error = Some((why, now_ms));
            }
            _ => {}
        }
        if let Some(at) = self.restart_at {
            if now_ms >= at {
                self.generation += 1;
                self.restarts += 1;
                self.crashes += 1;
                self.restart_at = None;
                self.running_since = None;
                self.last_reported = None;
            }
        }
        // A crash scheduled for restart is moot once the app is deactivated.
        if !config.activate {
            self.restart_at = None;
        }

        // The start delay holds back the first boot, not a domain a restarted zedmanager
        // finds running.
        let delay_until = u64::from(config.start_delay_s) * 1000;
        let up = domain.is_some_and(|d| {
            d.generation == self.generation
                && matches!(d.state, DomainState::Running | DomainState::Booting)
        });
        let delayed = config.activate && now_ms < delay_until && self.generation == 0 && !up;
        let domain_config = boot_volume.map(|kernel| DomainConfig {
            name: config.name.clone(),
            activate: config.activate && !delayed,
            kernel: *kernel,
            memory_mib: u32::try_from(config.memory_kib.div_ceil(1024)).unwrap_or(u32::MAX),
            vcpus: config.vcpus.max(1),
            cmdline: config.cmdline.clone(),
            disks: extents
                .iter()
                .skip(1)
                .map(|extent| DiskConfig {
                    extent: *extent,
                    read_only: false,
                })
                .collect::<Vec<_>>(),
            network: bridge.map(String::from),
            generation: self.generation,
        });

        let current = domain.filter(|d| d.generation == self.generation);
        let state = if let Volumes::Failed(why) = volumes {
            if self.error.as_ref().is_none_or(|(e, _)| e != why) {
                self.error = Some((why.clone(), now_ms));
            }
            SwState::Error
        } else if let Volumes::Waiting(state) = volumes {
            *state
        } else if boot_volume.is_none() {
            SwState::CreatingVolume
        } else if !config.activate {
            match current.map(|d| &d.state) {
                Some(DomainState::Running | DomainState::Booting | DomainState::Halting) => {
                    SwState::Halting
                }
                _ => SwState::Halted,
            }
        } else if delayed {
            SwState::StartDelayed
        } else if self.restart_at.is_some() {
            SwState::Restarting
        } else {
            match current.map(|d| &d.state) {
                Some(DomainState::Running) => SwState::Running,
                Some(DomainState::Error) => {
                    let why = current.map(|d| d.error.clone()).unwrap_or_default();
                    if self.error.as_ref().is_none_or(|(e, _)| *e != why) {
                        self.error = Some((why, now_ms));
                    }
                    SwState::Error
                }
                Some(DomainState::Halting) => SwState::Halting,
                Some(DomainState::Halted) => SwState::Halted,
                // No status at all: domainmgr has not reported (again) yet.
                None if domain.is_none() && self.last_reported.is_some() => {
                    self.last_reported.unwrap_or_default()
                }
                // Booting, or the old generation's domain still reported.
                _ if self.generation > 0 => SwState::Restarting,
                _ => SwState::Booting,
            }
        };
        if current.is_some() && config.activate && boot_volume.is_some() {
            self.last_reported = Some(state);
        }
        if state == SwState::Running {
            // A running app has no current error (the last crash stays counted).
            self.error = None;
        }
        let (error, error_at_ms) = self.error.clone().unwrap_or_default();
        let wake_at = match (delayed, self.restart_at) {
            (true, _) => Some(delay_until),
            (false, Some(at)) => Some(at),
            _ => self
                .running_since
                .filter(|_| self.crashes_in_a_row > 0)
                .map(|since| since + STABLE_MS),
        };
        Step {
            domain: domain_config,
            status: AppInstanceStatus {
                name: config.name.clone(),
                version: config.version.clone(),
                state,
                activated: config.activate,
                restarts: self.restarts,
                crashes: self.crashes,
                error,
                error_at_ms,
            },
            wake_at,
        }
    }
}

#[cfg(test)]
mod tests;
