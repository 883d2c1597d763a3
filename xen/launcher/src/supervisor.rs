//! Supervision: starting the services in dependency order, wiring them in xenstore, following
//! their consoles, noticing how each run ends and restarting per policy with backoff.
//!
//! A start is a batch: every service of the batch is created paused (in order), then all of them
//! (and their running peers) are wired in xenstore, then they are unpaused in order, so that each
//! finds its peers' domids from its first instruction. A run ends when its domain shuts down
//! (poweroff is a success unless `data/exit-status` says otherwise; a crash is a failure), when it
//! outlives its timeout, or when its domain disappears.
//!
//! A service with `standby = true` gets a second domain, built and left paused once its run
//! started (under the same name: `xl domid` finds the running one, which has the lower domid).
//! When the run fails, the standby takes over: no domain to build, and the first failure in a
//! row restarts at once (later ones in a row wait their backoff). A new standby is prepared after
//! each takeover; it is destroyed when the service is done.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use launcher_api::FromLauncher;

use crate::apps::{self, Apps};
use crate::backoff::{Decision, Outcome};
use crate::domain_service::Link;
use crate::manifest::{Manifest, ResolvedImages, Service};
use crate::order;
use crate::platform::{BootFiles, Created, DomainState, Platform, ShutdownReason};
use crate::say;
use crate::status::{self, Row};
use crate::wiring;

/// How often the services' rows are rewritten for their reader when nothing changed (the CPU
/// times move on): a few times per metrics interval of zedagent's.
const SERVICES_REFRESH: Duration = Duration::from_secs(10);

/// How long after a standby domain could not be built the next attempt is made.
const STANDBY_RETRY: Duration = Duration::from_secs(10);

/// Timing knobs of the supervision loop.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// How long the loop sleeps between rounds (console lines are read once a round).
    pub tick: Duration,
    /// How often domain states are polled when nothing signalled a change.
    pub poll_interval: Duration,
    /// How often they are polled while a domain is dying: a domain destroyed from outside
    /// lingers until its peers unmap its pages, and its final release may go unsignalled.
    pub dying_poll_interval: Duration,
    /// How long to let xenconsoled drain a console after its domain shut down.
    pub settle: Duration,
    /// How long a run lasts before its standby domain is prepared: building one competes with
    /// the new run's start (and its peers' reconnection) for dom0.
    pub standby_after: Duration,
    /// How long after a restart its peers' entries are rewritten in full (permissions too):
    /// what they wait for (the new `peer-domid`) is written at once, the rest need not compete
    /// with their reconnection.
    pub rewire_after: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            tick: Duration::from_millis(10),
            poll_interval: Duration::from_secs(3),
            dying_poll_interval: Duration::from_millis(200),
            settle: Duration::from_millis(300),
            standby_after: Duration::from_secs(2),
            rewire_after: Duration::from_secs(2),
        }
    }
}

/// Where a service is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Not started yet.
    Waiting,
    /// Its domain exists (created, maybe still paused).
    Running { domid: u32, since: Instant },
    /// Waiting to be restarted.
    Backoff { until: Instant },
    /// Done, successfully.
    Exited,
    /// Done, failed.
    Failed(String),
    /// Stopped by a node shutdown.
    Stopped,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Waiting => "waiting",
            State::Running { .. } => "running",
            State::Backoff { .. } => "backoff",
            State::Exited => "exited",
            State::Failed(_) => "failed",
            State::Stopped => "stopped",
        }
    }

    fn is_final(&self) -> bool {
        matches!(self, State::Exited | State::Failed(_) | State::Stopped)
    }
}

/// One supervised service.
struct Unit {
    name: String,
    service: Service,
    files: BootFiles,
    state: State,
    restarts: u32,
    failures_in_a_row: u32,
    last_domid: Option<u32>,
    started_once: bool,
    /// A built, paused domain ready to take over (`standby = true`).
    standby: Option<u32>,
    /// The entries written for the domain that is to run next, with its peers' domids then: a
    /// standby's when it was prepared, a new domain's when the platform registered it
    /// ([`crate::platform::Created::wired`]). Written again at the start only if those changed.
    written_wiring: Option<wiring::Wiring>,
    /// After a standby could not be built: not again before this.
    standby_retry: Option<Instant>,
}

/// Runs a node's services on a [`Platform`].
pub struct Supervisor<P: Platform> {
    manifest: Manifest,
    units: Vec<Unit>,
    platform: P,
    options: Options,
    last_poll: Option<Instant>,
    /// Whether the last poll found one of our domains dying.
    saw_dying: bool,
    last_status: String,
    /// The domain service, when the manifest has an `[apps]` table.
    apps: Option<Apps>,
    /// Its channel to the manager, while the manager runs.
    link: Option<Link>,
    /// App domains whose consoles are followed.
    app_consoles: BTreeSet<String>,
    /// The services' rows in xenstore, for the services that watch `launcher/Services`.
    services: status::Publisher,
    /// Services whose entries are to be rewritten in full, and when.
    rewire: Option<(Instant, BTreeSet<String>)>,
}

/// How one run ended, given how its domain shut down and the exit status it left.
pub fn outcome_of(reason: ShutdownReason, exit_status: Option<i64>) -> Outcome {
    match (reason, exit_status) {
        (ShutdownReason::Poweroff, None | Some(0)) => Outcome::Success,
        (ShutdownReason::Poweroff, Some(status)) => {
            Outcome::Failure(format!("exited with status {status}"))
        }
        // Lichen guests never reboot on purpose: Xen turns a triple fault into a reboot.
        (ShutdownReason::Reboot, _) => Outcome::Failure("rebooted (a triple fault?)".into()),
        (ShutdownReason::Crash, None) => Outcome::Failure("crashed".into()),
        (ShutdownReason::Crash, Some(status)) => {
            Outcome::Failure(format!("crashed (exit status {status})"))
        }
        (reason @ ShutdownReason::Other(_), _) => Outcome::Failure(reason.to_string()),
    }
}

impl<P: Platform> Supervisor<P> {
    /// A supervisor for a validated manifest and its resolved images.
    pub fn new(
        manifest: Manifest,
        images: &ResolvedImages,
        platform: P,
        options: Options,
    ) -> Supervisor<P> {
        let order = order::start_order(&manifest)
            .unwrap_or_else(|_| manifest.services.keys().cloned().collect());
        let units = order
            .into_iter()
            .filter_map(|name| {
                let service = manifest.services.get(&name)?.clone();
                let (kernel, ramdisk) = images.services.get(&name)?.clone();
                Some(Unit {
                    name,
                    service,
                    files: BootFiles {
                        kernel,
                        ramdisk,
                        kernel_window: None,
                    },
                    state: State::Waiting,
                    restarts: 0,
                    failures_in_a_row: 0,
                    last_domid: None,
                    started_once: false,
                    standby: None,
                    written_wiring: None,
                    standby_retry: None,
                })
            })
            .collect();
        let apps = manifest
            .apps
            .clone()
            .map(|config| Apps::new(config, "/sys/block".into()));
        Supervisor {
            manifest,
            units,
            platform,
            options,
            last_poll: None,
            saw_dying: false,
            last_status: String::new(),
            apps,
            link: None,
            app_consoles: BTreeSet::new(),
            services: status::Publisher::new(readers(images), SERVICES_REFRESH),
            rewire: None,
        }
    }

    /// Runs until every service is done or `stop` is raised (then tears every domain down).
    /// Returns the node's exit status: 0 when no service failed, 1 otherwise.
    pub fn run(&mut self, stop: &AtomicBool) -> i32 {
        say!(
            "node `{}`: {} services",
            self.manifest.name,
            self.units.len()
        );
        loop {
            if stop.load(Ordering::SeqCst) {
                self.teardown();
                break;
            }
            let now = Instant::now();
            self.start_due(now);
            self.pump_consoles(false);
            self.check_domains(now);
            self.rewire_if_due(now);
            self.prepare_standbys(now);
            self.serve_apps(now);
            self.print_status_if_changed();
            self.publish_services(now);
            if self.units.iter().all(|u| u.state.is_final()) {
                break;
            }
            let work_done = self
                .units
                .iter()
                .filter(|u| !u.service.daemon)
                .all(|u| u.state.is_final());
            if work_done && self.units.iter().any(|u| !u.service.daemon) {
                say!(
                    "node `{}`: every service but its daemons is done",
                    self.manifest.name
                );
                self.teardown();
                break;
            }
            std::thread::sleep(self.options.tick);
        }
        // App domains do not outlive the node, however it ended.
        self.link = None;
        if let Some(apps) = &mut self.apps {
            apps.teardown(&mut self.platform);
        }
        self.pump_consoles(true);
        self.print_status_if_changed();
        let failed: Vec<&str> = self
            .units
            .iter()
            .filter(|u| matches!(u.state, State::Failed(_)))
            .map(|u| u.name.as_str())
            .collect();
        if failed.is_empty() {
            say!("node `{}` finished: no service failed", self.manifest.name);
            0
        } else {
            say!(
                "node `{}` finished: failed: {}",
                self.manifest.name,
                failed.join(", ")
            );
            1
        }
    }

    /// Starts what is due: waiting services (all at once, or one at a time in a sequential node
    /// once the ones before are done) and services whose backoff has elapsed.
    fn start_due(&mut self, now: Instant) {
        let mut batch = Vec::new();
        if self.manifest.sequential {
            let busy = self
                .units
                .iter()
                .any(|u| matches!(u.state, State::Running { .. } | State::Backoff { .. }));
            if !busy {
                batch.extend(self.units.iter().position(|u| u.state == State::Waiting));
            }
        } else {
            batch.extend((0..self.units.len()).filter(|&i| self.units[i].state == State::Waiting));
        }
        batch.extend(
            (0..self.units.len()).filter(
                |&i| matches!(self.units[i].state, State::Backoff { until } if until <= now),
            ),
        );
        if !batch.is_empty() {
            self.start(&batch);
        }
    }

    /// Creates the batch's domains paused, wires them, then unpauses them, in order.
    fn start(&mut self, batch: &[usize]) {
        let mut created = Vec::new();
        for &i in batch {
            let domids = self.running_domids();
            let unit = &mut self.units[i];
            if let Some(domid) = unit.standby.take() {
                say!("{}: standby domain {domid} takes over", unit.name);
                unit.state = State::Running {
                    domid,
                    since: Instant::now(),
                };
                unit.last_domid = Some(domid);
                created.push(i);
                continue;
            }
            say!("{}: create requested", unit.name);
            let manifest = &self.manifest;
            let name = unit.name.clone();
            let entries = |domid| {
                let mut domids = domids.clone();
                domids.insert(name.clone(), domid);
                wiring::service_wiring(manifest, &name, &domids)
            };
            match self
                .platform
                .create_paused(&unit.name, &unit.service, &unit.files, &entries)
            {
                Ok(Created { domid, wired }) => {
                    say!("{}: created domain {domid} (paused)", unit.name);
                    unit.written_wiring = wired;
                    unit.state = State::Running {
                        domid,
                        since: Instant::now(),
                    };
                    unit.last_domid = Some(domid);
                    unit.started_once = true;
                    created.push(i);
                }
                Err(e) => self.finish_run(
                    i,
                    Outcome::Failure(format!("cannot create its domain: {e}")),
                ),
            }
        }
        if created.is_empty() {
            return;
        }

        // The new domains' own entries (naming their running peers) before they run; the
        // running peers' entries (naming the new domains) once they run: a peer waits for its
        // `peer-domid` to change anyway, and a restart need not wait for it.
        let wired_at = Instant::now();
        let own: BTreeSet<String> = created
            .iter()
            .map(|&i| self.units[i].name.clone())
            .collect();
        // A standby taking over was wired when prepared, a domain the builder made when it was
        // registered: unless a peer changed domain since, its entries are already right.
        let domids = self.running_domids();
        let mut to_write = own.clone();
        for &i in &created {
            let name = self.units[i].name.clone();
            if let Some(written) = self.units[i].written_wiring.take() {
                if written == wiring::service_wiring(&self.manifest, &name, &domids) {
                    to_write.remove(&name);
                }
            }
        }
        let mut peers = BTreeSet::new();
        for &i in &created {
            peers.extend(self.running_peers(&self.units[i].name));
        }
        let peers: BTreeSet<String> = peers.difference(&own).cloned().collect();
        if !to_write.is_empty() {
            self.write_wiring(&to_write);
            say!(
                "xenstore entries written for {} in {:.3} s",
                to_write.iter().cloned().collect::<Vec<_>>().join(", "),
                wired_at.elapsed().as_secs_f64()
            );
        }

        for &i in &created {
            let State::Running { domid, .. } = self.units[i].state else {
                continue;
            };
            if self
                .apps
                .as_ref()
                .is_some_and(|a| a.manager() == self.units[i].name)
            {
                // Served before the manager runs, so that it finds the channel at once.
                self.link = Some(Link::new(domid));
            }
        }
        for &i in &created {
            let State::Running { domid, .. } = self.units[i].state else {
                continue;
            };
            let name = self.units[i].name.clone();
            say!("{name}: unpause requested");
            match self.platform.unpause(domid) {
                Ok(()) => {
                    say!("{name}: unpaused");
                    self.units[i].state = State::Running {
                        domid,
                        since: Instant::now(),
                    };
                    if let Some(input) = self.units[i].service.console_input.clone() {
                        self.platform.send_console_input(&name, domid, &input);
                    }
                }
                Err(e) => {
                    if let Err(e) = self.platform.destroy(domid) {
                        say!("{name}: cannot destroy domain {domid}: {e}");
                    }
                    self.finish_run(
                        i,
                        Outcome::Failure(format!("cannot unpause its domain: {e}")),
                    );
                }
            }
        }
        if !peers.is_empty() {
            // What the peers wait for: the new domids (and server paths), in one batch.
            let wired_at = Instant::now();
            let domids = self.running_domids();
            let mut update = wiring::Wiring::default();
            for peer in &peers {
                for &i in &created {
                    let name = &self.units[i].name;
                    let writes = wiring::peer_update(&self.manifest, peer, name, &domids).writes;
                    update.writes.extend(writes);
                }
            }
            if let Err(e) = self.platform.write_store(&update) {
                say!("cannot point the peers at their new domains: {e}");
            }
            say!(
                "xenstore entries of their peers {} pointed at the new domains in {:.3} s",
                peers.iter().cloned().collect::<Vec<_>>().join(", "),
                wired_at.elapsed().as_secs_f64()
            );
            // The rest of their entries (permissions naming the new domain) a little later.
            let due = Instant::now() + self.options.rewire_after;
            let (_, pending) = self.rewire.get_or_insert_with(|| (due, BTreeSet::new()));
            pending.extend(peers);
        }
        self.print_status_if_changed();
        self.prepare_standbys(Instant::now());
    }

    /// Rewrites in full the entries of the services whose peers restarted, once due.
    fn rewire_if_due(&mut self, now: Instant) {
        if !matches!(self.rewire, Some((due, _)) if due <= now) {
            return;
        }
        let Some((_, services)) = self.rewire.take() else {
            return;
        };
        // Those that stopped meanwhile have no entries to write.
        let running = self.running_domids();
        let services: BTreeSet<String> = services
            .into_iter()
            .filter(|s| running.contains_key(s))
            .collect();
        if services.is_empty() {
            return;
        }
        let wired_at = Instant::now();
        self.write_wiring(&services);
        say!(
            "xenstore entries of {} rewritten in {:.3} s",
            services.into_iter().collect::<Vec<_>>().join(", "),
            wired_at.elapsed().as_secs_f64()
        );
    }

    /// Builds a paused standby domain for each service that wants one, has none and has run for
    /// [`Options::standby_after`], and writes its entries as they will be when it takes over
    /// (its running peers' domids), so that taking over need not wait for xenstore.
    fn prepare_standbys(&mut self, now: Instant) {
        let after = self.options.standby_after;
        for i in 0..self.units.len() {
            let unit = &self.units[i];
            let wanted = unit.service.standby
                && unit.standby.is_none()
                && matches!(unit.state, State::Running { since, .. }
                    if now.saturating_duration_since(since) >= after)
                && unit.standby_retry.is_none_or(|at| at <= now);
            if !wanted {
                continue;
            }
            let name = unit.name.clone();
            let (manifest, domids) = (&self.manifest, self.running_domids());
            let entries = |domid| {
                let mut domids = domids.clone();
                domids.insert(name.clone(), domid);
                wiring::service_wiring(manifest, &name, &domids)
            };
            match self
                .platform
                .create_paused(&name, &unit.service, &unit.files, &entries)
            {
                Ok(Created { domid, wired }) => {
                    let wired = match wired {
                        Some(wired) => Some(wired),
                        None => {
                            let entries = entries(domid);
                            match self.platform.write_store(&entries) {
                                Ok(()) => Some(entries),
                                Err(e) => {
                                    say!(
                                        "{name}: cannot write its standby's xenstore entries: {e}"
                                    );
                                    None
                                }
                            }
                        }
                    };
                    say!("{name}: standby domain {domid} prepared (paused)");
                    self.units[i].standby = Some(domid);
                    self.units[i].written_wiring = wired;
                }
                Err(e) => {
                    say!("{name}: cannot prepare a standby domain: {e}");
                    self.units[i].standby_retry = Some(now + STANDBY_RETRY);
                }
            }
        }
    }

    /// Destroys `i`'s standby domain, if it has one.
    fn drop_standby(&mut self, i: usize) {
        self.units[i].written_wiring = None;
        if let Some(domid) = self.units[i].standby.take() {
            if let Err(e) = self.platform.destroy(domid) {
                say!(
                    "{}: cannot destroy standby domain {domid}: {e}",
                    self.units[i].name
                );
            }
        }
    }

    /// The running services that share a channel with `service`.
    fn running_peers(&self, service: &str) -> BTreeSet<String> {
        let domids = self.running_domids();
        self.manifest
            .channels_of(service)
            .flat_map(|channel| [&channel.server, &channel.client])
            .filter(|peer| *peer != service && domids.contains_key(*peer))
            .cloned()
            .collect()
    }

    /// Writes the xenstore entries of `services` from the domids of the running services. A
    /// service whose entries could not be written (xenstored busy: a transaction that kept
    /// meeting others, `EAGAIN`) has them written again in full with the next rewiring, due
    /// `rewire_after` from now: its peers would otherwise never find it, or find a domain
    /// that is gone.
    fn write_wiring(&mut self, services: &BTreeSet<String>) {
        let domids = self.running_domids();
        let mut failed = BTreeSet::new();
        for name in services {
            let entries = wiring::service_wiring(&self.manifest, name, &domids);
            if let Err(e) = self.platform.write_store(&entries) {
                say!(
                    "{name}: cannot write its xenstore entries: {e}; again in {:.1} s",
                    self.options.rewire_after.as_secs_f64()
                );
                failed.insert(name.clone());
            }
        }
        if !failed.is_empty() {
            let due = Instant::now() + self.options.rewire_after;
            let (_, pending) = self.rewire.get_or_insert_with(|| (due, BTreeSet::new()));
            pending.extend(failed);
        }
    }

    fn running_domids(&self) -> HashMap<String, u32> {
        self.units
            .iter()
            .filter_map(|u| match u.state {
                State::Running { domid, .. } => Some((u.name.clone(), domid)),
                _ => None,
            })
            .collect()
    }

    /// Prints new console lines of every service that has run, prefixed with its name; with
    /// `flush`, also a last line that has no line end yet.
    fn pump_consoles(&mut self, flush: bool) {
        for unit in self.units.iter().filter(|u| u.started_once) {
            for line in self.platform.console_lines(&unit.name, flush) {
                crate::log::line(format!("{} {} | {line}", crate::log::stamp(), unit.name));
            }
        }
        for name in &self.app_consoles {
            for line in self.platform.console_lines(name, flush) {
                crate::log::line(format!("{} {name} | {line}", crate::log::stamp()));
            }
        }
    }

    /// Ends runs whose domain shut down, disappeared or outlived its timeout.
    fn check_domains(&mut self, now: Instant) {
        for i in 0..self.units.len() {
            let unit = &self.units[i];
            let (State::Running { domid, since }, Some(timeout)) =
                (&unit.state, unit.service.timeout_s)
            else {
                continue;
            };
            if now.duration_since(*since) > Duration::from_secs(timeout) {
                let domid = *domid;
                say!(
                    "{}: still running after {timeout} s: stopping domain {domid}",
                    unit.name
                );
                if let Err(e) = self.platform.destroy(domid) {
                    say!("{}: cannot destroy domain {domid}: {e}", self.units[i].name);
                }
                self.finish_run(i, Outcome::Failure(format!("timed out after {timeout} s")));
            }
        }

        let apps_run = self.apps.as_ref().is_some_and(Apps::has_domains);
        if !apps_run
            && !self
                .units
                .iter()
                .any(|u| matches!(u.state, State::Running { .. }))
        {
            return;
        }
        let changed = self.platform.domains_changed();
        let due = self
            .last_poll
            .is_none_or(|at| now.duration_since(at) >= self.poll_interval());
        if !changed && !due {
            return;
        }
        self.last_poll = Some(now);
        let domains = match self.platform.domains() {
            Ok(domains) => domains,
            Err(e) => {
                say!("cannot list domains: {e}");
                return;
            }
        };
        self.saw_dying = false;
        if let Some(apps) = &mut self.apps {
            let events = apps.check_domains(&domains, &mut self.platform);
            self.deliver(events);
        }
        for i in 0..self.units.len() {
            let State::Running { domid, .. } = self.units[i].state else {
                continue;
            };
            match domains.get(&domid) {
                Some(DomainState::Alive) => {}
                // Destroyed from outside: it lingers as dying until its peers unmap its
                // rings, but its run is over; the restart need not wait for that.
                Some(DomainState::Dying) => {
                    self.saw_dying = true;
                    let why = format!("its domain {domid} disappeared");
                    self.finish_run(i, Outcome::Failure(why));
                }
                Some(DomainState::Shutdown(reason)) => self.end_run(i, domid, *reason),
                None => {
                    let why = format!("its domain {domid} disappeared");
                    self.finish_run(i, Outcome::Failure(why));
                }
            }
        }
    }

    /// How long after a poll the next one is due when nothing signalled a change.
    fn poll_interval(&self) -> Duration {
        if self.saw_dying {
            self.options.dying_poll_interval
        } else {
            self.options.poll_interval
        }
    }

    /// Collects what a shut-down domain left (console, exit status), destroys it and decides.
    fn end_run(&mut self, i: usize, domid: u32, reason: ShutdownReason) {
        std::thread::sleep(self.options.settle);
        self.pump_consoles(true);
        let exit_status = self.platform.exit_status(domid);
        let name = self.units[i].name.clone();
        let status_note = exit_status
            .map(|s| format!(", exit status {s}"))
            .unwrap_or_default();
        say!("{name}: domain {domid} {reason}{status_note}");
        if matches!(reason, ShutdownReason::Reboot | ShutdownReason::Crash) {
            if let Some(report) = self.platform.vcpu_report(domid) {
                say!("{name}: domain {domid}'s vCPU 0 at its end: {report}");
            }
        }
        if let Err(e) = self.platform.destroy(domid) {
            say!("{name}: cannot destroy domain {domid}: {e}");
        }
        self.finish_run(i, outcome_of(reason, exit_status));
    }

    /// Applies the restart policy to a run that ended.
    fn finish_run(&mut self, i: usize, outcome: Outcome) {
        if self
            .apps
            .as_ref()
            .is_some_and(|a| a.manager() == self.units[i].name)
        {
            // The app domains stay; the next manager finds them in its welcome.
            self.link = None;
        }
        let unit = &mut self.units[i];
        let decision = unit
            .service
            .restart_policy()
            .decide(&outcome, unit.failures_in_a_row);
        unit.failures_in_a_row = match outcome {
            Outcome::Failure(_) => unit.failures_in_a_row + 1,
            Outcome::Success => 0,
        };
        let what = match &outcome {
            Outcome::Success => "exited successfully".to_string(),
            Outcome::Failure(why) => why.clone(),
        };
        match decision {
            Decision::Restart(mut delay) => {
                // A standby is ready: the first failure in a row takes it at once.
                if unit.standby.is_some() && unit.failures_in_a_row == 1 {
                    delay = Duration::ZERO;
                }
                unit.restarts += 1;
                unit.state = State::Backoff {
                    until: Instant::now() + delay,
                };
                say!(
                    "{}: {what}; restart {} in {:.1} s",
                    unit.name,
                    unit.restarts,
                    delay.as_secs_f64()
                );
            }
            Decision::Exited => {
                unit.state = State::Exited;
                say!("{}: {what}", unit.name);
            }
            Decision::Failed(why) => {
                say!("{}: failed: {why}", unit.name);
                unit.state = State::Failed(why);
            }
        }
        if self.units[i].state.is_final() {
            self.drop_standby(i);
        }
        // Its peers must not go on finding its old domain in their entries; when its standby
        // takes over at once, rewriting them for the new domain (in `start`) does that.
        let name = self.units[i].name.clone();
        let now = Instant::now();
        let restarting_now = self.units[i].standby.is_some()
            && matches!(self.units[i].state, State::Backoff { until } if until <= now);
        let peers = self.running_peers(&name);
        if !peers.is_empty() && !restarting_now {
            self.write_wiring(&peers);
            say!(
                "{name}: removed from the channel entries of {}",
                peers.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
        self.print_status_if_changed();
    }

    /// Serves the domain service: the manager's requests, and stops whose grace ended.
    fn serve_apps(&mut self, now: Instant) {
        let Some(apps) = &mut self.apps else {
            return;
        };
        let mut out = Vec::new();
        if let Some(link) = &mut self.link {
            let polled = link.poll();
            if polled.connected {
                say!("domain service: the manager connected");
                apps.connected();
            }
            for payload in polled.payloads {
                out.extend(apps.handle(&payload, &mut self.platform));
            }
        }
        out.extend(apps.tick(now, &mut self.platform));
        self.deliver(out);
    }

    /// Logs the domain service's messages and sends them to the manager, if connected.
    fn deliver(&mut self, messages: Vec<FromLauncher>) {
        for message in messages {
            match &message {
                FromLauncher::Event(event) => {
                    let domid = event
                        .domid
                        .map(|d| format!(" (domain {d})"))
                        .unwrap_or_default();
                    say!("app {}: {}{domid}", event.name, event.state);
                    self.app_consoles.insert(apps::domain_name(&event.name));
                }
                FromLauncher::Reply {
                    id,
                    result: Err(refusal),
                } => {
                    say!("domain service: request {id} refused: {refusal}");
                }
                FromLauncher::Reply { .. } => {}
            }
            if let Some(link) = &mut self.link {
                link.send(&message);
            }
        }
    }

    /// Node shutdown: destroys every domain; nothing is started any more.
    fn teardown(&mut self) {
        say!("node shutdown: tearing all domains down");
        self.link = None;
        if let Some(apps) = &mut self.apps {
            apps.teardown(&mut self.platform);
        }
        for i in 0..self.units.len() {
            self.drop_standby(i);
        }
        for unit in &mut self.units {
            if let State::Running { domid, .. } = unit.state {
                if let Err(e) = self.platform.destroy(domid) {
                    say!("{}: cannot destroy domain {domid}: {e}", unit.name);
                }
            }
            if !unit.state.is_final() {
                unit.state = State::Stopped;
            }
        }
    }

    /// Each service's row of the status table.
    fn rows(&self) -> Vec<Row> {
        self.units
            .iter()
            .map(|u| Row {
                service: u.name.clone(),
                domid: match u.state {
                    State::Running { domid, .. } => Some(domid),
                    _ => u.last_domid,
                },
                state: u.state.name().to_string(),
                restarts: u.restarts,
                memory: u.service.memory,
            })
            .collect()
    }

    /// Writes the services' rows (with Xen's CPU and memory figures) for their reader when due.
    fn publish_services(&mut self, now: Instant) {
        let mut rows = self.rows();
        // A service not running has no domain to measure (its last one is gone or going).
        for (row, unit) in rows.iter_mut().zip(&self.units) {
            if !matches!(unit.state, State::Running { .. }) {
                row.domid = None;
            }
        }
        // The app domains too, for the apps' metrics.
        if let Some(apps) = &self.apps {
            rows.extend(apps.rows());
        }
        if !self.services.due(&rows, now) {
            return;
        }
        let usage = self.platform.usage();
        let wiring = self
            .services
            .write(&rows, &usage, &self.running_domids(), now);
        if let Err(e) = self.platform.write_store(&wiring) {
            say!("cannot write the services' status in xenstore: {e}");
        }
    }

    fn print_status_if_changed(&mut self) {
        let rows = self.rows();
        let table = status::render(&rows);
        if table != self.last_status {
            say!("status:");
            for line in table.lines() {
                crate::log::line(format!("{}   {line}", crate::log::stamp()));
            }
            self.last_status = table;
        }
    }
}

/// The services whose image watches `launcher/Services`: those allowed to read the rows.
fn readers(images: &ResolvedImages) -> Vec<String> {
    images
        .declarations
        .iter()
        .filter(|(_, parsed)| {
            parsed.as_ref().is_some_and(|p| {
                p.watches
                    .iter()
                    .any(|t| t.name == launcher_api::services::READER)
            })
        })
        .map(|(name, _)| name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;
    use crate::wiring::Wiring;
    use std::collections::VecDeque;
    use std::path::PathBuf;
    use std::sync::Arc;

    /// What a fake domain does once unpaused.
    #[derive(Clone, Copy, Debug)]
    enum Script {
        /// Powers off, optionally leaving an exit status.
        Poweroff(Option<i64>),
        /// Crashes.
        Crash,
        /// Runs until destroyed.
        Forever,
        /// Is destroyed from outside (`xl destroy`): dying at the next look, then gone.
        Vanishes,
        /// Its creation fails.
        CreateFails,
    }

    /// A platform whose domains follow per-service scripts (the last step repeats).
    struct Fake {
        scripts: HashMap<String, VecDeque<Script>>,
        domains: HashMap<u32, (String, DomainState, Script)>,
        exit_statuses: HashMap<u32, i64>,
        next_domid: u32,
        calls: Vec<String>,
        wirings: Vec<Wiring>,
        /// For each of `wirings`, how many calls were made before it.
        wired_after: Vec<usize>,
        stop_when_all_unpaused: Option<(Arc<AtomicBool>, usize)>,
        unpaused: usize,
        /// Whether it signals domain changes (else the supervisor must poll).
        signals_changes: bool,
        /// How many of the next `write_store` calls fail (xenstored busy).
        store_failures: usize,
        /// Whether it writes a new domain's own entries when it creates it, as the launcher's
        /// builder does (else the supervisor writes them, as after `xl create`).
        wires_at_create: bool,
        /// The entries written at creation (`wires_at_create`), in order.
        registered: Vec<Wiring>,
    }

    impl Fake {
        fn new(scripts: &[(&str, &[Script])]) -> Fake {
            Fake {
                scripts: scripts
                    .iter()
                    .map(|(n, s)| (n.to_string(), s.iter().copied().collect()))
                    .collect(),
                domains: HashMap::new(),
                exit_statuses: HashMap::new(),
                next_domid: 1,
                calls: Vec::new(),
                wirings: Vec::new(),
                wired_after: Vec::new(),
                stop_when_all_unpaused: None,
                unpaused: 0,
                signals_changes: true,
                store_failures: 0,
                wires_at_create: false,
                registered: Vec::new(),
            }
        }

        fn next_step(&mut self, name: &str) -> Script {
            let steps = self
                .scripts
                .get_mut(name)
                .expect("no script for this service");
            if steps.len() > 1 {
                steps.pop_front().unwrap()
            } else {
                steps[0]
            }
        }

        fn count(&self, prefix: &str) -> usize {
            self.calls.iter().filter(|c| c.starts_with(prefix)).count()
        }
    }

    impl Platform for Fake {
        fn create_paused(
            &mut self,
            name: &str,
            _: &Service,
            _: &BootFiles,
            entries: &dyn Fn(u32) -> Wiring,
        ) -> Result<Created, String> {
            self.calls.push(format!("create {name}"));
            let step = self.next_step(name);
            if let Script::CreateFails = step {
                return Err("out of memory".into());
            }
            let domid = self.next_domid;
            self.next_domid += 1;
            self.domains
                .insert(domid, (name.to_string(), DomainState::Alive, step));
            let wired = self.wires_at_create.then(|| entries(domid));
            self.registered.extend(wired.clone());
            Ok(Created { domid, wired })
        }

        fn unpause(&mut self, domid: u32) -> Result<(), String> {
            let (name, state, step) = self.domains.get_mut(&domid).ok_or("no such domain")?;
            self.calls.push(format!("unpause {name}"));
            match *step {
                Script::Poweroff(status) => {
                    *state = DomainState::Shutdown(ShutdownReason::Poweroff);
                    if let Some(status) = status {
                        self.exit_statuses.insert(domid, status);
                    }
                }
                Script::Crash => *state = DomainState::Shutdown(ShutdownReason::Crash),
                Script::Forever | Script::Vanishes | Script::CreateFails => {}
            }
            self.unpaused += 1;
            if let Some((stop, after)) = &self.stop_when_all_unpaused {
                if self.unpaused >= *after {
                    stop.store(true, Ordering::SeqCst);
                }
            }
            Ok(())
        }

        fn destroy(&mut self, domid: u32) -> Result<(), String> {
            let (name, ..) = self.domains.remove(&domid).ok_or("no such domain")?;
            self.calls.push(format!("destroy {name}"));
            Ok(())
        }

        fn domains(&mut self) -> Result<HashMap<u32, DomainState>, String> {
            self.domains.retain(|_, (_, state, step)| {
                !matches!((*step, *state), (Script::Vanishes, DomainState::Dying))
            });
            for (_, state, step) in self.domains.values_mut() {
                if matches!(step, Script::Vanishes) {
                    *state = DomainState::Dying;
                }
            }
            Ok(self
                .domains
                .iter()
                .map(|(id, (_, state, _))| (*id, *state))
                .collect())
        }

        fn domains_changed(&mut self) -> bool {
            self.signals_changes
        }

        fn exit_status(&mut self, domid: u32) -> Option<i64> {
            self.exit_statuses.get(&domid).copied()
        }

        fn write_store(&mut self, wiring: &Wiring) -> Result<(), String> {
            if self.store_failures > 0 {
                self.store_failures -= 1;
                self.calls.push("write_store failed".into());
                return Err("xenstore: EAGAIN".into());
            }
            self.wirings.push(wiring.clone());
            self.wired_after.push(self.calls.len());
            Ok(())
        }

        fn send_console_input(&mut self, name: &str, _: u32, input: &str) {
            self.calls.push(format!("input {name} {input}"));
        }

        fn console_lines(&mut self, _: &str, _: bool) -> Vec<String> {
            Vec::new()
        }

        /// Each domain has used its domid in seconds of CPU and holds 256 pages.
        fn usage(&mut self) -> HashMap<u32, crate::platform::Usage> {
            self.domains
                .keys()
                .map(|&id| {
                    let usage = crate::platform::Usage {
                        cpu_ns: u64::from(id) * 1_000_000_000,
                        pages: 256,
                    };
                    (id, usage)
                })
                .collect()
        }
    }

    fn options() -> Options {
        Options {
            tick: Duration::from_millis(1),
            poll_interval: Duration::ZERO,
            dying_poll_interval: Duration::ZERO,
            settle: Duration::ZERO,
            standby_after: Duration::ZERO,
            rewire_after: Duration::ZERO,
        }
    }

    fn supervise(manifest: &str, fake: Fake) -> (i32, Supervisor<Fake>, Duration) {
        supervise_until(manifest, fake, &AtomicBool::new(false))
    }

    fn supervise_until(
        manifest: &str,
        fake: Fake,
        stop: &AtomicBool,
    ) -> (i32, Supervisor<Fake>, Duration) {
        let manifest = Manifest::parse(manifest).unwrap();
        let images = ResolvedImages {
            services: manifest
                .services
                .keys()
                .map(|n| (n.clone(), (PathBuf::from(n), None)))
                .collect(),
            declarations: Default::default(),
        };
        let mut supervisor = Supervisor::new(manifest, &images, fake, options());
        let started = Instant::now();
        let status = supervisor.run(stop);
        (status, supervisor, started.elapsed())
    }

    fn states(supervisor: &Supervisor<Fake>) -> Vec<(&str, State, u32)> {
        supervisor
            .units
            .iter()
            .map(|u| (u.name.as_str(), u.state.clone(), u.restarts))
            .collect()
    }

    #[test]
    fn a_clean_poweroff_is_a_success() {
        let manifest = "[services.hello]\nimage = \"hello\"\nmemory = 8\nconsole_input = \"hi\"\n";
        let (status, supervisor, _) =
            supervise(manifest, Fake::new(&[("hello", &[Script::Poweroff(None)])]));
        assert_eq!(status, 0);
        assert_eq!(states(&supervisor), [("hello", State::Exited, 0)]);
        assert_eq!(
            supervisor.platform.calls,
            [
                "create hello",
                "unpause hello",
                "input hello hi",
                "destroy hello"
            ]
        );
    }

    #[test]
    fn daemons_are_stopped_once_the_other_services_are_done() {
        let manifest = "[services.vault]\nimage = \"v\"\nmemory = 8\ndaemon = true\n\
                        [services.work]\nimage = \"w\"\nmemory = 8\n";
        let fake = Fake::new(&[
            ("vault", &[Script::Forever]),
            ("work", &[Script::Poweroff(None)]),
        ]);
        let (status, supervisor, _) = supervise(manifest, fake);
        assert_eq!(status, 0);
        assert_eq!(
            states(&supervisor),
            [("vault", State::Stopped, 0), ("work", State::Exited, 0)]
        );
        assert_eq!(supervisor.platform.count("destroy"), 2);
    }

    #[test]
    fn a_crashing_service_is_restarted_with_backoff_then_failed() {
        let manifest =
            "[services.panicky]\nimage = \"p\"\nmemory = 8\nmax_restarts = 2\nbackoff_ms = 20\n";
        let (status, supervisor, took) =
            supervise(manifest, Fake::new(&[("panicky", &[Script::Crash])]));
        assert_eq!(status, 1);
        let [(_, State::Failed(why), 2)] = &states(&supervisor)[..] else {
            panic!("{:?}", states(&supervisor))
        };
        assert!(why.contains("crashed"), "{why}");
        assert_eq!(
            supervisor.platform.count("create"),
            3,
            "first run and two restarts"
        );
        assert_eq!(supervisor.platform.count("destroy"), 3);
        assert!(
            took >= Duration::from_millis(20 + 40),
            "backoff of 20 then 40 ms, took {took:?}"
        );
    }

    #[test]
    fn a_standby_domain_takes_over_at_once_and_is_replaced_then_dropped() {
        let manifest =
            "[services.s]\nimage = \"s\"\nmemory = 8\nbackoff_ms = 60000\nstandby = true\n";
        let script = [Script::Crash, Script::Poweroff(None)];
        let (status, supervisor, took) = supervise(manifest, Fake::new(&[("s", &script)]));
        assert_eq!(status, 0, "the standby's run succeeded");
        assert_eq!(states(&supervisor), [("s", State::Exited, 1)]);
        assert_eq!(
            supervisor.platform.calls,
            [
                "create s",  // the first run
                "unpause s", // crashes
                "create s",  // its standby, prepared once it runs
                "destroy s", // the crashed domain
                "unpause s", // the standby takes over: nothing built
                "create s",  // the next standby
                "destroy s", // the finished run
                "destroy s", // the unused standby, once the service is done
            ]
        );
        assert!(took < Duration::from_secs(10), "no 60 s backoff: {took:?}");
        assert!(
            supervisor.platform.domains.is_empty(),
            "nothing left behind"
        );
    }

    #[test]
    fn the_services_are_written_for_the_service_that_watches_them_and_no_other() {
        use launcher_api::services;
        let manifest = Manifest::parse(
            "[services.reporter]\nimage = \"r\"\nmemory = 8\n\
             [services.other]\nimage = \"o\"\nmemory = 16\n",
        )
        .unwrap();
        let watching = declare::Parsed {
            memory_floor_mib: 1,
            needs: Default::default(),
            publishes: vec![],
            subscribes: vec![],
            watches: vec![declare::ParsedTopic {
                name: services::READER.into(),
                schema: 1,
                persistence: declare::Persistence::Volatile,
            }],
        };
        let images = ResolvedImages {
            services: manifest
                .services
                .keys()
                .map(|n| (n.clone(), (PathBuf::from(n), None)))
                .collect(),
            declarations: [
                ("reporter".to_string(), Some(watching)),
                ("other".to_string(), None),
            ]
            .into_iter()
            .collect(),
        };
        let mut fake = Fake::new(&[
            ("reporter", &[Script::Forever]),
            ("other", &[Script::Crash, Script::Forever]),
        ]);
        let stop = Arc::new(AtomicBool::new(false));
        fake.stop_when_all_unpaused = Some((stop.clone(), 3));
        let mut supervisor = Supervisor::new(manifest, &images, fake, options());
        assert_eq!(supervisor.run(&stop), 0);
        let written: Vec<&Wiring> = supervisor
            .platform
            .wirings
            .iter()
            .filter(|w| w.writes.iter().any(|(path, _)| path == services::PATH))
            .collect();
        // Written when a state changed: both running; `other` crashed and waiting; both
        // running again, `other` restarted once.
        let values: Vec<Vec<services::Service>> = written
            .iter()
            .map(|w| services::parse(&w.writes[0].1).unwrap())
            .collect();
        let states = |rows: &[services::Service]| -> Vec<(String, String, u32)> {
            rows.iter()
                .map(|s| (s.name.clone(), s.state.clone(), s.restarts))
                .collect()
        };
        let last = values.last().expect("written");
        assert_eq!(
            states(last),
            [
                ("reporter".into(), "running".into(), 0),
                ("other".into(), "running".into(), 1)
            ],
            "{values:?}"
        );
        assert!(
            values
                .iter()
                .any(|rows| rows[1].state == "backoff" && rows[1].domid.is_none()),
            "{values:?}"
        );
        // Xen's figures for the running domains; the reader alone may read the value.
        let domid = last[0].domid.expect("running: a domain");
        assert_eq!(
            (last[0].cpu_ms, last[0].used_kib, last[0].memory_mib),
            (u64::from(domid) * 1000, 1024, 8)
        );
        assert_eq!(last[1].memory_mib, 16);
        for wiring in &written {
            assert_eq!(
                wiring.perms[0].perms,
                vec!["n0".to_string(), format!("r{domid}")]
            );
        }
    }

    #[test]
    fn a_domain_destroyed_from_outside_is_restarted() {
        let manifest = "[services.victim]\nimage = \"v\"\nmemory = 8\nbackoff_ms = 1\n";
        let script = [Script::Vanishes, Script::Poweroff(None)];
        let (status, supervisor, _) = supervise(manifest, Fake::new(&[("victim", &script)]));
        assert_eq!(status, 0, "the restarted run succeeded");
        assert_eq!(states(&supervisor), [("victim", State::Exited, 1)]);
        assert_eq!(supervisor.platform.count("create"), 2);
        assert_eq!(
            supervisor.platform.count("destroy"),
            1,
            "the vanished domain is not destroyed again"
        );
    }

    #[test]
    fn a_dying_domain_ends_its_run_at_once() {
        let manifest = "[services.victim]\nimage = \"v\"\nmemory = 8\nbackoff_ms = 1\n";
        let script = [Script::Vanishes, Script::Poweroff(None)];
        let mut fake = Fake::new(&[("victim", &script)]);
        fake.signals_changes = false;
        let manifest = Manifest::parse(manifest).unwrap();
        let images = ResolvedImages {
            services: [("victim".to_string(), (PathBuf::from("v"), None))].into(),
            declarations: Default::default(),
        };
        let options = Options {
            poll_interval: Duration::from_secs(2),
            dying_poll_interval: Duration::from_millis(10),
            ..options()
        };
        let mut supervisor = Supervisor::new(manifest, &images, fake, options);
        let started = Instant::now();
        assert_eq!(supervisor.run(&AtomicBool::new(false)), 0);
        // Polls: at the start (dying already: the run ends, restarted), 10 ms later (the new
        // run powered off). Waiting for the dying domain to go would take another poll.
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "took {took:?}");
        assert_eq!(states(&supervisor), [("victim", State::Exited, 1)]);
    }

    #[test]
    fn a_failure_then_a_success_exits() {
        let manifest = "[services.flaky]\nimage = \"f\"\nmemory = 8\nbackoff_ms = 1\n";
        let script = [
            Script::Poweroff(Some(3)),
            Script::CreateFails,
            Script::Poweroff(Some(0)),
        ];
        let (status, supervisor, _) = supervise(manifest, Fake::new(&[("flaky", &script)]));
        assert_eq!(status, 0);
        assert_eq!(states(&supervisor), [("flaky", State::Exited, 2)]);
    }

    #[test]
    fn never_means_one_run_and_a_nonzero_exit_status_fails() {
        let manifest = "[services.once]\nimage = \"o\"\nmemory = 8\nrestart = \"never\"\n";
        let (status, supervisor, _) = supervise(
            manifest,
            Fake::new(&[("once", &[Script::Poweroff(Some(2))])]),
        );
        assert_eq!(status, 1);
        assert_eq!(
            states(&supervisor),
            [("once", State::Failed("exited with status 2".into()), 0)]
        );
    }

    const CHANNELLED: &str = r#"
        [services.api]
        image = "api"
        memory = 8
        [services.bus]
        image = "bus"
        memory = 8
        [[channels]]
        name = "events"
        server = "bus"
        client = "api"
    "#;

    #[test]
    fn servers_start_first_and_both_sides_are_wired_before_unpausing() {
        let fake = Fake::new(&[
            ("api", &[Script::Poweroff(None)]),
            ("bus", &[Script::Poweroff(None)]),
        ]);
        let (status, supervisor, _) = supervise(CHANNELLED, fake);
        assert_eq!(status, 0);
        let calls = &supervisor.platform.calls;
        assert_eq!(
            calls[..4],
            ["create bus", "create api", "unpause bus", "unpause api"]
        );
        let wirings = &supervisor.platform.wirings;
        assert_eq!(
            wirings.len(),
            3,
            "both sides at the start, then the survivor when the first one stops"
        );
        let written: Vec<&(String, String)> = wirings.iter().flat_map(|w| &w.writes).collect();
        let bus_peer = (
            "/local/domain/1/data/lichen/channels/events/peer-domid".to_string(),
            "2".to_string(),
        );
        let api_peer = (
            "/local/domain/2/data/lichen/channels/events/peer-domid".to_string(),
            "1".to_string(),
        );
        assert!(
            written.contains(&&bus_peer) && written.contains(&&api_peer),
            "{written:?}"
        );
    }

    #[test]
    fn entries_written_at_creation_are_written_again_only_if_a_peer_came_later() {
        let mut fake = Fake::new(&[
            ("api", &[Script::Poweroff(None)]),
            ("bus", &[Script::Poweroff(None)]),
        ]);
        fake.wires_at_create = true;
        let (status, supervisor, _) = supervise(CHANNELLED, fake);
        assert_eq!(status, 0);
        let platform = &supervisor.platform;
        assert_eq!(
            platform.calls[..4],
            ["create bus", "create api", "unpause bus", "unpause api"]
        );
        let peer = |domid: u32, value: &str| {
            (
                format!("/local/domain/{domid}/data/lichen/channels/events/peer-domid"),
                value.to_string(),
            )
        };
        let registered: Vec<&(String, String)> =
            platform.registered.iter().flat_map(|w| &w.writes).collect();
        assert_eq!(platform.registered.len(), 2, "bus, then api");
        assert!(
            !registered.contains(&&peer(1, "2")),
            "bus was created before api had a domid: {registered:?}"
        );
        assert!(registered.contains(&&peer(2, "1")), "{registered:?}");
        // At the start, only bus's entries are written again (now naming api); then the
        // survivor's when the first one stops.
        let first = &platform.wirings[0];
        assert!(first.writes.contains(&peer(1, "2")), "{first:?}");
        assert!(
            first.paths().all(|p| p.starts_with("/local/domain/1/")),
            "api's own entries were already right: {first:?}"
        );
        assert_eq!(platform.wirings.len(), 2, "{:?}", platform.wirings);
    }

    #[test]
    fn a_restarted_server_is_rewired_on_both_sides() {
        let manifest = CHANNELLED.replace("image = \"bus\"", "image = \"bus\"\nbackoff_ms = 1");
        let fake = Fake::new(&[
            ("api", &[Script::Forever]),
            ("bus", &[Script::Crash, Script::Forever]),
        ]);
        let stop = Arc::new(AtomicBool::new(false));
        let mut fake = fake;
        fake.stop_when_all_unpaused = Some((stop.clone(), 3));
        let (status, supervisor, _) = supervise_until(&manifest, fake, &stop);
        assert_eq!(status, 0, "a node shutdown is not a failure");
        let api_dir = "/local/domain/2/data/lichen/channels/events";
        let unwired = &supervisor.platform.wirings[2];
        assert_eq!(
            unwired.removes,
            [
                format!("{api_dir}/peer-domid"),
                format!("{api_dir}/server-path")
            ],
            "while the server is down, the client's entries name no server"
        );
        assert!(unwired
            .perms
            .iter()
            .any(|p| p.path == api_dir && p.perms == ["n2"]));
        let last = supervisor
            .platform
            .wirings
            .iter()
            .rev()
            .take(2)
            .collect::<Vec<_>>();
        let written: Vec<&(String, String)> = last.iter().flat_map(|w| &w.writes).collect();
        let api_peer = (
            "/local/domain/2/data/lichen/channels/events/peer-domid".to_string(),
            "3".to_string(),
        );
        assert!(
            written.contains(&&api_peer),
            "the client learns the server's new domid: {written:?}"
        );
        assert_eq!(
            states(&supervisor),
            [("bus", State::Stopped, 1), ("api", State::Stopped, 0)]
        );
        assert_eq!(
            supervisor.platform.domains.len(),
            0,
            "all domains were torn down"
        );
    }

    #[test]
    fn a_takeover_points_the_peers_at_the_standby_at_once_and_rewrites_them_later() {
        let manifest = CHANNELLED.replace(
            "image = \"bus\"",
            "image = \"bus\"\nbackoff_ms = 60000\nstandby = true",
        );
        // bus (domain 1) is destroyed from outside; its standby (3) takes over; api is 2.
        let fake = Fake::new(&[
            ("api", &[Script::Forever]),
            ("bus", &[Script::Vanishes, Script::Forever]),
        ]);
        let stop = Arc::new(AtomicBool::new(false));
        let stopper = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            stopper.store(true, Ordering::SeqCst);
        });
        let manifest = Manifest::parse(&manifest).unwrap();
        let images = ResolvedImages {
            services: manifest
                .services
                .keys()
                .map(|n| (n.clone(), (PathBuf::from(n), None)))
                .collect(),
            declarations: Default::default(),
        };
        let options = Options {
            rewire_after: Duration::from_millis(100),
            ..options()
        };
        let mut supervisor = Supervisor::new(manifest, &images, fake, options);
        assert_eq!(supervisor.run(&stop), 0, "a node shutdown is not a failure");
        let fake = &supervisor.platform;
        let takeover = fake
            .calls
            .iter()
            .enumerate()
            .filter(|(_, c)| *c == "unpause bus")
            .nth(1)
            .map(|(i, _)| i)
            .expect("the standby was unpaused");
        assert_eq!(fake.calls[takeover - 1], "create bus", "{:?}", fake.calls);
        let api_dir = "/local/domain/2/data/lichen/channels/events";
        let update = Wiring {
            writes: vec![
                (
                    format!("{api_dir}/server-path"),
                    "/local/domain/3/data/lichen/channels/events".to_string(),
                ),
                (format!("{api_dir}/peer-domid"), "3".to_string()),
            ],
            ..Wiring::default()
        };
        let at = fake
            .wirings
            .iter()
            .position(|w| *w == update)
            .expect("api was pointed at the standby by its two entries alone");
        assert_eq!(
            fake.wired_after[at],
            takeover + 1,
            "right after the standby's unpause: {:?}",
            fake.calls
        );
        // Later (after the next standby was built), api's entries in full, naming domain 3.
        let full = fake.wirings[at + 1..]
            .iter()
            .position(|w| {
                w.perms
                    .iter()
                    .any(|p| p.path == api_dir && p.perms == ["n2", "r3"])
            })
            .map(|i| i + at + 1)
            .expect("api's entries rewritten in full");
        assert_eq!(fake.calls[fake.wired_after[full] - 1], "create bus");
        assert!(fake.wired_after[full] > takeover + 1);
        // Nothing rewrote api's entries to remove bus in between: the standby took over at once.
        assert!(fake.wirings[..full]
            .iter()
            .all(|w| !w.removes.contains(&format!("{api_dir}/peer-domid"))));
    }

    #[test]
    fn entries_that_could_not_be_written_are_written_again() {
        // The first two writes (both services' entries at start) fail: xenstored busy.
        let mut fake = Fake::new(&[("api", &[Script::Forever]), ("bus", &[Script::Forever])]);
        fake.store_failures = 2;
        let stop = Arc::new(AtomicBool::new(false));
        let stopper = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            stopper.store(true, Ordering::SeqCst);
        });
        let manifest = Manifest::parse(CHANNELLED).unwrap();
        let images = ResolvedImages {
            services: manifest
                .services
                .keys()
                .map(|n| (n.clone(), (PathBuf::from(n), None)))
                .collect(),
            declarations: Default::default(),
        };
        let options = Options {
            rewire_after: Duration::from_millis(20),
            ..options()
        };
        let mut supervisor = Supervisor::new(manifest, &images, fake, options);
        assert_eq!(supervisor.run(&stop), 0);
        let fake = &supervisor.platform;
        assert_eq!(fake.count("write_store failed"), 2, "{:?}", fake.calls);
        // Both services' entries were written in the end, each naming the other's domain.
        for (service, peer) in [("bus", "api"), ("api", "bus")] {
            let domid = |name: &str| {
                fake.calls
                    .iter()
                    .filter(|c| c.starts_with("create "))
                    .position(|c| c == &format!("create {name}"))
                    .map(|i| i + 1)
                    .unwrap()
            };
            let dir = format!(
                "/local/domain/{}/data/lichen/channels/events",
                domid(service)
            );
            let written = fake.wirings.iter().any(|w| {
                w.writes.iter().any(|(path, value)| {
                    path == &format!("{dir}/peer-domid") && *value == domid(peer).to_string()
                })
            });
            assert!(
                written,
                "{service}'s entries never written: {:?}",
                fake.wirings
            );
        }
    }

    #[test]
    fn a_standby_is_prepared_only_once_the_run_lasted_standby_after() {
        let manifest = "[services.s]\nimage = \"s\"\nmemory = 8\nstandby = true\n";
        let stop = Arc::new(AtomicBool::new(false));
        let stopper = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            stopper.store(true, Ordering::SeqCst);
        });
        let manifest = Manifest::parse(manifest).unwrap();
        let images = ResolvedImages {
            services: [("s".to_string(), (PathBuf::from("s"), None))].into(),
            declarations: Default::default(),
        };
        let run = |standby_after| {
            let options = Options {
                standby_after,
                ..options()
            };
            let fake = Fake::new(&[("s", &[Script::Forever])]);
            let mut supervisor = Supervisor::new(manifest.clone(), &images, fake, options);
            supervisor.run(&stop);
            supervisor.platform.calls
        };
        assert_eq!(
            run(Duration::from_secs(60)),
            ["create s", "unpause s", "destroy s"],
            "no standby within a 300 ms run"
        );
        stop.store(false, Ordering::SeqCst);
        let stopper = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            stopper.store(true, Ordering::SeqCst);
        });
        assert_eq!(
            run(Duration::from_millis(50)),
            [
                "create s",
                "unpause s",
                "create s",
                "destroy s",
                "destroy s"
            ],
            "a standby once the run lasted 50 ms"
        );
    }

    #[test]
    fn a_sequential_node_runs_one_service_at_a_time() {
        let manifest = format!("sequential = true\n{CHANNELLED}");
        let fake = Fake::new(&[
            ("api", &[Script::Poweroff(None)]),
            ("bus", &[Script::Poweroff(None)]),
        ]);
        let (_, supervisor, _) = supervise(&manifest, fake);
        let calls = &supervisor.platform.calls;
        assert_eq!(
            calls[..],
            [
                "create bus",
                "unpause bus",
                "destroy bus",
                "create api",
                "unpause api",
                "destroy api"
            ]
        );
    }

    #[test]
    fn a_service_that_outlives_its_timeout_fails() {
        let manifest =
            "[services.slow]\nimage = \"s\"\nmemory = 8\nrestart = \"never\"\ntimeout_s = 1\n";
        let (status, supervisor, took) =
            supervise(manifest, Fake::new(&[("slow", &[Script::Forever])]));
        assert_eq!(status, 1);
        assert_eq!(
            states(&supervisor),
            [("slow", State::Failed("timed out after 1 s".into()), 0)]
        );
        assert!(took >= Duration::from_secs(1));
        assert_eq!(supervisor.platform.count("destroy"), 1);
    }

    #[test]
    fn outcomes_follow_the_shutdown_reason_and_exit_status() {
        assert_eq!(outcome_of(ShutdownReason::Poweroff, None), Outcome::Success);
        assert_eq!(
            outcome_of(ShutdownReason::Poweroff, Some(0)),
            Outcome::Success
        );
        assert!(matches!(
            outcome_of(ShutdownReason::Poweroff, Some(1)),
            Outcome::Failure(_)
        ));
        assert!(matches!(
            outcome_of(ShutdownReason::Crash, Some(0)),
            Outcome::Failure(_)
        ));
        assert!(matches!(
            outcome_of(ShutdownReason::Reboot, None),
            Outcome::Failure(_)
        ));
        assert!(matches!(
            outcome_of(ShutdownReason::Other(4), None),
            Outcome::Failure(_)
        ));
    }
}
