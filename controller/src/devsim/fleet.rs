//! Many simulated devices: onboarding them, and running them (config polls, info on change,
//! periodic metrics and logs) while recording config poll latencies.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{reports, ConfigPoll, SimDevice, SimError};
use crate::client::HttpsClient;
use crate::pki::Identity;

/// The controller the devices talk to and what they onboard with.
#[derive(Clone)]
pub struct Target {
    /// A client for the controller; each device forks its own connection from it.
    pub client: HttpsClient,
    /// The controller's root certificate, DER.
    pub root_der: Arc<Vec<u8>>,
    /// The onboarding certificate and key the devices share.
    pub onboarding: Arc<Identity>,
    /// Where device identities are kept, if anywhere.
    pub identities: Option<PathBuf>,
    /// When set, a register refused with 403 (not admitted yet) is tried again after this
    /// long, as EVE devices keep trying; else onboarding fails.
    pub register_retry: Option<Duration>,
    /// How many devices [`onboard`] puts on one connection (1: each its own, as real devices;
    /// more: as through a proxy that pools connections, to simulate more devices than this
    /// process may open sockets). Requests are authenticated by their signature, not by the
    /// connection, so sharing changes nothing the controller checks.
    pub devices_per_connection: usize,
    /// The connection (client) of each group of devices, when they share.
    shared: Arc<Mutex<HashMap<usize, HttpsClient>>>,
}

impl Target {
    /// A target at `url` trusting the root `ca_pem`. With `identities`, device certificates and
    /// keys are kept in that directory (`<serial>.pem`, `<serial>.key`) and reused, as a real
    /// device keeps its own.
    pub fn new(
        url: &str,
        ca_pem: &str,
        onboarding: Identity,
        identities: Option<PathBuf>,
    ) -> Result<Self, SimError> {
        let client = HttpsClient::new(url, ca_pem)?;
        let root_der = lichen_api::cert::pem_to_der(ca_pem)
            .map_err(|error| SimError::Invalid(error.to_string()))?;
        Ok(Self {
            client,
            root_der: Arc::new(root_der),
            onboarding: Arc::new(onboarding),
            identities,
            register_retry: None,
            devices_per_connection: 1,
            shared: Arc::default(),
        })
    }

    /// The same target reached at `url` (another controller sharing the fleet's store).
    pub fn at(&self, url: &str, ca_pem: &str) -> Result<Self, SimError> {
        Ok(Self {
            client: HttpsClient::new(url, ca_pem)?,
            shared: Arc::default(),
            ..self.clone()
        })
    }

    /// A device with `serial` and its own connection: with a kept identity if there is one,
    /// else a new one.
    pub fn device(&self, serial: &str) -> Result<SimDevice, SimError> {
        self.device_with(self.client.fork(), serial)
    }

    /// A device on the connection of `group`: devices of one group take turns on it.
    pub fn device_in_group(&self, group: usize, serial: &str) -> Result<SimDevice, SimError> {
        let client = {
            let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            shared
                .entry(group)
                .or_insert_with(|| self.client.fork_single())
                .clone()
        };
        self.device_with(client, serial)
    }

    fn device_with(&self, client: HttpsClient, serial: &str) -> Result<SimDevice, SimError> {
        let io = |error: std::io::Error| SimError::Invalid(format!("device identity: {error}"));
        let root = Arc::clone(&self.root_der);
        let Some(dir) = &self.identities else {
            return SimDevice::new(client, root, &self.onboarding, serial).map_err(io);
        };
        let identity = if dir.join(format!("{serial}.pem")).exists() {
            Identity::load(dir, serial).map_err(io)?
        } else {
            let identity =
                Identity::self_signed(&format!("lichen simulated device {serial}")).map_err(io)?;
            std::fs::create_dir_all(dir).map_err(io)?;
            identity.save(dir, serial).map_err(io)?;
            identity
        };
        Ok(SimDevice::with_identity(
            client,
            root,
            &self.onboarding,
            serial,
            identity,
        ))
    }
}

/// Creates devices with `serials` and onboards them, `parallel` at a time: fetch the controller
/// certificates, register, and receive the first configuration (which carries the UUID).
pub async fn onboard(
    target: &Target,
    serials: Vec<String>,
    parallel: usize,
) -> Result<Vec<SimDevice>, SimError> {
    // Devices sharing a connection are far apart in the fleet (index mod groups), so that
    // neither onboarding nor evenly spread polls use one connection for two at once.
    let per = target.devices_per_connection.max(1);
    let groups = serials.len().div_ceil(per).max(1);
    let serials = Arc::new(serials);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..parallel.max(1) {
        let (target, serials, next) = (target.clone(), Arc::clone(&serials), Arc::clone(&next));
        workers.spawn(async move {
            let mut onboarded = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(serial) = serials.get(index) else {
                    return Ok(onboarded);
                };
                let mut device = if per > 1 {
                    target.device_in_group(index % groups, serial)?
                } else {
                    target.device(serial)?
                };
                device.fetch_certs().await?;
                loop {
                    match device.register().await {
                        Ok(_) => break,
                        Err(SimError::Status(http::StatusCode::FORBIDDEN, _))
                            if target.register_retry.is_some() =>
                        {
                            eprintln!("{serial}: not admitted yet; trying again");
                            tokio::time::sleep(target.register_retry.unwrap_or_default()).await;
                        }
                        Err(error) => return Err(error),
                    }
                }
                device.poll_config().await?;
                onboarded.push((index, device));
            }
        });
    }
    let mut devices = Vec::with_capacity(serials.len());
    while let Some(joined) = workers.join_next().await {
        let onboarded: Result<Vec<_>, SimError> =
            joined.map_err(|error| SimError::Invalid(error.to_string()))?;
        devices.extend(onboarded?);
    }
    devices.sort_by_key(|(index, _)| *index);
    Ok(devices.into_iter().map(|(_, device)| device).collect())
}

/// Config poll latencies and failures, recorded while `recording` is on.
#[derive(Default)]
pub struct Recorder {
    recording: AtomicBool,
    latencies_us: Mutex<Vec<u32>>,
    failures: AtomicU64,
}

impl Recorder {
    /// Starts or stops recording.
    pub fn record(&self, on: bool) {
        self.recording.store(on, Ordering::Relaxed);
    }

    fn poll_done(&self, elapsed: Duration, ok: bool) {
        if !self.recording.load(Ordering::Relaxed) {
            return;
        }
        if ok {
            let micros = u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX);
            self.latencies_us
                .lock()
                .expect("recorder lock")
                .push(micros);
        } else {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The recorded latencies (µs, unsorted) and the number of failed polls, clearing them.
    pub fn take(&self) -> (Vec<u32>, u64) {
        let latencies = std::mem::take(&mut *self.latencies_us.lock().expect("recorder lock"));
        (latencies, self.failures.swap(0, Ordering::Relaxed))
    }
}

/// How devices behave while running.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Time between config polls (EVE's default is 60 s).
    pub config_interval: Duration,
    /// Time between metrics and log posts; `None` posts none.
    pub report_interval: Option<Duration>,
    /// Print what happens to each device.
    pub verbose: bool,
    /// The text of simulated log lines (each followed by its message id).
    pub log_text: String,
}

/// Runs `devices` until `stop` resolves. Polls are spread evenly over the config interval.
pub async fn run(
    devices: Vec<SimDevice>,
    behaviour: Behaviour,
    recorder: Arc<Recorder>,
    stop: impl std::future::Future<Output = ()>,
) {
    let count = devices.len().max(1) as u32;
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (index, device) in devices.into_iter().enumerate() {
        let offset = behaviour.config_interval * index as u32 / count;
        tasks.spawn(live(
            device,
            behaviour.clone(),
            Arc::clone(&recorder),
            start + offset,
        ));
    }
    stop.await;
    tasks.shutdown().await;
}

/// One device's life: poll, report what changed, send metrics and logs now and then.
async fn live(
    mut device: SimDevice,
    behaviour: Behaviour,
    recorder: Arc<Recorder>,
    first: tokio::time::Instant,
) {
    let mut polls = tokio::time::interval_at(first, behaviour.config_interval);
    polls.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let born = Instant::now();
    let mut last_report: Option<Instant> = None;
    if behaviour.report_interval.is_some() {
        let info = reports::device_info(device.uuid().unwrap_or_default(), &device.serial);
        if let Err(error) = device.post_report("info", &info).await {
            eprintln!("{}: posting info: {error}", device.serial);
        }
    }
    let mut next_log_id = 0;
    loop {
        polls.tick().await;
        let started = Instant::now();
        let poll = device.poll_config().await;
        recorder.poll_done(started.elapsed(), poll.is_ok());
        let uuid = device.uuid().unwrap_or_default().to_owned();
        match poll {
            Ok(ConfigPoll::Changed(version)) => {
                if behaviour.verbose {
                    let config = device.config();
                    println!(
                        "{}: config version {version}: {} apps, {} network instances, {} volumes",
                        device.serial,
                        config.apps.len(),
                        config.network_instances.len(),
                        config.volumes.len()
                    );
                }
                let mut infos = vec![reports::device_info(&uuid, &device.serial)];
                infos.extend(reports::app_infos(&uuid, device.config()));
                infos.extend(reports::network_instance_infos(&uuid, device.config()));
                for info in infos {
                    if let Err(error) = device.post_report("info", &info).await {
                        eprintln!("{}: posting info: {error}", device.serial);
                    }
                }
            }
            Ok(ConfigPoll::Unchanged) => {}
            Err(error) => eprintln!("{}: config poll: {error}", device.serial),
        }
        let Some(every) = behaviour.report_interval else {
            continue;
        };
        if last_report.is_some_and(|at| at.elapsed() < every) {
            continue;
        }
        last_report = Some(Instant::now());
        let mut metrics = reports::metrics(&uuid, born.elapsed().as_secs());
        metrics.nm = reports::network_instance_metrics(device.config(), born.elapsed().as_secs());
        let logs = reports::logs(&uuid, next_log_id, 3, &behaviour.log_text);
        next_log_id += 3;
        let mut results = vec![
            device.post_report("metrics", &metrics).await,
            device.post_report("logs", &logs).await,
        ];
        let apps: Vec<String> = device
            .config()
            .apps
            .iter()
            .filter(|app| app.activate)
            .filter_map(|app| app.uuidandversion.as_ref().map(|id| id.uuid.clone()))
            .collect();
        for app in apps {
            let flows = reports::flows(&uuid, &app, next_log_id);
            results.push(device.post_report("flowlog", &flows).await);
        }
        for result in results {
            if let Err(error) = result {
                eprintln!("{}: posting reports: {error}", device.serial);
            }
        }
    }
}
