//! domainmgr's reconciler: from the domains apps should have (`zedmanager/DomainConfig`) and
//! the app domains the launcher reports (its domain service, services/lib/launcher-api), the
//! next request to make and each app's `domainmgr/DomainStatus`. No I/O: `main.rs` carries
//! requests and replies over the channel; the host tests drive it directly.
//!
//! The rules (docs/apps.md):
//! - an activated app gets a domain of its configuration's `generation`: created, then
//!   started; a domain of another generation is stopped at once and made anew (a restart);
//! - a deactivated app's domain is stopped (with a grace for a clean poweroff) and the app
//!   kept, halted; a deleted app's domain is destroyed and the app forgotten;
//! - a domain that crashed, or powered off by itself, stays down until the generation changes
//!   (zedmanager decides about restarts and their backoff);
//! - a request the launcher refuses (beyond the node's limits, a bad volume) makes the app's
//!   state `Error` with the launcher's reason, and is not made again for the same
//!   configuration: other apps are untouched;
//! - after domainmgr restarts it adopts the domains the launcher reports: a running app is
//!   left running.
#![no_std]
#![warn(missing_docs)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use launcher_api::{check, AppDomain, AppSpec, AppState, DiskUse, Event, Extent, Op, Refusal};
use topics::domainmgr::{DomainState, DomainStatus};
use topics::zedmanager::DomainConfig;

/// How long a deactivated app's guest may take to power off before its domain is destroyed.
pub const STOP_GRACE_MS: u32 = 2000;

/// What domainmgr knows of one app.
#[derive(Clone, Debug, Default)]
struct Tracked {
    /// The launcher's view of its domain (`None`: the launcher holds no such app).
    state: Option<AppState>,
    domid: Option<u32>,
    /// The generation its current (or last) domain was made for; `None` for an adopted domain
    /// (taken to be the configuration's).
    generation: Option<u32>,
    /// Whether domainmgr stopped it (a halted app it stopped comes back when activated).
    stopped_by_us: bool,
    /// The configuration a refused request was for, and why.
    refused: Option<(DomainConfig, String)>,
    /// Domains made for it.
    boots: u32,
}

/// The reconciler.
#[derive(Debug, Default)]
pub struct Reconciler {
    apps: BTreeMap<String, Tracked>,
}

/// A request to make, for the app `name`.
pub type Action = Op;

impl Reconciler {
    /// An empty reconciler.
    pub fn new() -> Reconciler {
        Reconciler::default()
    }

    /// A new connection's welcome: the launcher's app domains replace what was known of them
    /// (a restarted domainmgr adopts them).
    pub fn welcome(&mut self, domains: Vec<AppDomain>) {
        for tracked in self.apps.values_mut() {
            tracked.state = None;
            tracked.domid = None;
        }
        for domain in domains {
            let tracked = self.apps.entry(domain.name).or_default();
            tracked.state = Some(domain.state);
            tracked.domid = domain.domid;
        }
    }

    /// A state change the launcher reported.
    pub fn event(&mut self, event: Event) {
        if event.state == AppState::Destroyed {
            if let Some(tracked) = self.apps.get_mut(&event.name) {
                tracked.state = None;
                tracked.domid = None;
            }
            return;
        }
        let tracked = self.apps.entry(event.name).or_default();
        tracked.domid = if event.state.has_domain() {
            event.domid
        } else {
            None
        };
        tracked.state = Some(event.state);
    }

    /// The launcher refused `action` (made for `config`, absent for a destroy). A refusal of
    /// the configuration itself (invalid, beyond the limits, a bad volume, Xen failing it) is
    /// the app's error until its configuration changes; one that only says domainmgr's view was
    /// behind (exists, unknown, wrong state) is not: the events that follow correct the view.
    pub fn refused(&mut self, action: &Action, config: Option<&DomainConfig>, refusal: &Refusal) {
        use launcher_api::RefusalKind::{Invalid, OverLimit, Platform, Volume};
        if !matches!(refusal.kind, Invalid | OverLimit | Volume | Platform) {
            return;
        }
        let name = action_name(action);
        let tracked = self.apps.entry(name.to_string()).or_default();
        if let Some(config) = config {
            tracked.refused = Some((config.clone(), refusal.message.clone()));
        }
    }

    /// The next request to make, given every app's configuration (a synchronized view), or
    /// `None` when everything is as it should be. The caller makes it, then reports the
    /// launcher's answer ([`Reconciler::refused`]) and events ([`Reconciler::event`]) before
    /// asking again.
    pub fn next_action<'a>(
        &mut self,
        configs: impl Iterator<Item = (&'a str, &'a DomainConfig)> + Clone,
    ) -> Option<Action> {
        for (name, config) in configs.clone() {
            if let Some(action) = self.decide(name, config) {
                return Some(action);
            }
        }
        // Apps that were deleted: their domains go.
        let deleted = self.apps.iter().find(|(name, tracked)| {
            tracked.state.is_some() && !configs.clone().any(|(n, _)| n == name.as_str())
        });
        if let Some((name, _)) = deleted {
            return Some(Op::Destroy { name: name.clone() });
        }
        // Forget what is gone from both sides.
        self.apps.retain(|name, tracked| {
            tracked.state.is_some() || configs.clone().any(|(n, _)| n == name.as_str())
        });
        None
    }

    fn decide(&mut self, name: &str, config: &DomainConfig) -> Option<Action> {
        if check::name(name).is_err() {
            return None;
        }
        let tracked = self.apps.entry(name.to_string()).or_default();
        if tracked.generation.is_none() && tracked.state.is_some() {
            // Adopted from the launcher's welcome: taken to be of the current generation.
            tracked.generation = Some(config.generation);
        }
        if tracked
            .refused
            .as_ref()
            .is_some_and(|(refused, _)| refused == config)
        {
            return None;
        }
        tracked.refused = None;
        let same_generation = tracked.generation.is_none_or(|g| g == config.generation);
        let create = || Op::Create {
            name: name.to_string(),
            spec: spec(config),
        };
        let stop = |grace_ms| Op::Stop {
            name: name.to_string(),
            grace_ms,
        };
        if !config.activate {
            return match tracked.state {
                Some(AppState::Created | AppState::Running) => {
                    tracked.stopped_by_us = true;
                    Some(stop(STOP_GRACE_MS))
                }
                _ => None,
            };
        }
        match &tracked.state {
            None => Some(create()),
            Some(AppState::Created) if same_generation => Some(Op::Start {
                name: name.to_string(),
            }),
            Some(AppState::Created | AppState::Running) if !same_generation => {
                tracked.stopped_by_us = true;
                Some(stop(0))
            }
            Some(AppState::Halted) if tracked.stopped_by_us || !same_generation => Some(create()),
            Some(AppState::Crashed(_)) if !same_generation => Some(create()),
            _ => None,
        }
    }

    /// The launcher accepted a create for `config`: a domain of its generation exists.
    pub fn created(&mut self, name: &str, config: &DomainConfig) {
        let tracked = self.apps.entry(name.to_string()).or_default();
        tracked.generation = Some(config.generation);
        tracked.stopped_by_us = false;
        tracked.boots += 1;
    }

    /// The status to publish for `name` with configuration `config`.
    pub fn status(&self, name: &str, config: &DomainConfig) -> DomainStatus {
        let tracked = self.apps.get(name).cloned().unwrap_or_default();
        let mut status = DomainStatus {
            name: config.name.clone(),
            state: DomainState::Pending,
            domid: tracked.domid,
            generation: tracked.generation.unwrap_or(config.generation),
            boots: tracked.boots,
            error: String::new(),
        };
        if let Err(refusal) = check::name(name) {
            status.state = DomainState::Error;
            status.error = refusal.message;
            return status;
        }
        if let Some((refused, why)) = &tracked.refused {
            if refused == config {
                status.state = DomainState::Error;
                status.error = why.clone();
                return status;
            }
        }
        status.state = match &tracked.state {
            None if config.activate => DomainState::Pending,
            None => DomainState::Halted,
            Some(AppState::Created) => DomainState::Booting,
            Some(AppState::Running) => DomainState::Running,
            Some(AppState::Stopping) => DomainState::Halting,
            Some(AppState::Halted | AppState::Destroyed) => DomainState::Halted,
            Some(AppState::Crashed(why)) => {
                status.error = why.clone();
                DomainState::Crashed
            }
        };
        status
    }
}

/// The launcher's spec of a configuration.
pub fn spec(config: &DomainConfig) -> AppSpec {
    AppSpec {
        kernel: extent(config.kernel),
        memory_mib: config.memory_mib,
        vcpus: config.vcpus,
        cmdline: config.cmdline.clone(),
        disks: config
            .disks
            .iter()
            .map(|d| DiskUse {
                extent: extent(d.extent),
                read_only: d.read_only,
            })
            .collect(),
        network: config.network.clone(),
    }
}

/// The launcher's extent of a volume's.
fn extent(e: topics::volumemgr::Extent) -> Extent {
    Extent {
        offset_mib: e.offset_mib,
        size_mib: e.size_mib,
    }
}

/// The app an action is about.
pub fn action_name(action: &Action) -> &str {
    match action {
        Op::Create { name, .. }
        | Op::Start { name }
        | Op::Stop { name, .. }
        | Op::Destroy { name } => name,
        Op::Hello { .. } | Op::List => "",
    }
}

#[cfg(test)]
mod tests;
