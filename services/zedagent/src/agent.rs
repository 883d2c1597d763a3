//! The agent's life with its controller (EVE's `client` and zedagent): onboarding (certs,
//! register, uuid), then configuration polls, info reports (queued until the controller takes
//! them: [`device_api::queue`]) and metrics, every answer's signature verified by the
//! controller's signing certificate.
//!
//! **What the controller may do, and what happens**: refuse (403 while the node is not
//! admitted: reported and retried with backoff), answer something that does not verify or
//! decode (refused, counted in the status, the last good configuration stays in force), hang or
//! drop the connection (a timeout, then backoff with jitter). Nothing unverified is acted on.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;

use bus_io::Publication;
use device_api::bootstrap::Bootstrap;
use device_api::checkpoint;
use device_api::controller::SigningCert;
use device_api::fanout::Fanout;
use device_api::identity::Identity;
use device_api::queue::Queue;
use device_api::tables::ConfigTables;
use kernel::{error, info, warn, Duration, Instant};
use lichen_api::config::{ConfigRequest, ConfigResponse};
use lichen_api::envelope::Signer;
use lichen_api::info::{z_info_msg::InfoContent, ZInfoDevice, ZInfoMsg};
use lichen_api::register::ZRegisterMsg;
use lichen_api::uuid::{UuidRequest, UuidResponse};
use prost::Message;
use topics::zedagent::{Checkpoint, Status};
use topics::Global;

use crate::objects::Watched;
use crate::reports;
use device_api::link::{refusal, route, Link};

/// EVE's default `timer.config.interval`.
pub const DEFAULT_CONFIG_INTERVAL: Duration = Duration::from_secs(60);
/// EVE's default `timer.metric.interval`.
pub const DEFAULT_METRIC_INTERVAL: Duration = Duration::from_secs(60);
/// How long a report waits for the vault to commit it before it is sent anyway.
const DURABLE_WAIT: Duration = Duration::from_secs(30);
/// The largest configuration checkpointed: the vault stores values of up to 256 KiB (with
/// the signing certificate besides).
const MAX_CHECKPOINT: usize = 240 * 1024;
/// The longest pause between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The shortest time between two looks at the objects' statuses: changes meanwhile (a
/// download's progress) are reported together.
const OBJECT_LOOK_INTERVAL: Duration = Duration::from_secs(2);

/// The wall clock in Unix seconds, if set.
pub fn unix_now() -> Option<u64> {
    kernel::wall_clock().and_then(|t| u64::try_from(t.as_secs()).ok())
}

/// Retry pauses: doubling from one second up to [`MAX_BACKOFF`], each with ±25 % jitter so
/// that a fleet does not come back in step.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            next: Duration::from_secs(1),
        }
    }

    fn reset(&mut self) {
        self.next = Duration::from_secs(1);
    }

    async fn wait(&mut self) -> Duration {
        let pause = self.take();
        kernel::sleep(pause).await;
        pause
    }

    /// The next pause (jittered), without waiting it.
    fn take(&mut self) -> Duration {
        let mut r = [0u8; 2];
        let jitter = match tls::random::fill(&mut r) {
            Ok(()) => u16::from_le_bytes(r) as u64 % 501, // 0..=500 per mille
            Err(_) => 250,
        };
        let pause = self.next * (750 + jitter as u32) / 1000;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        pause
    }

    fn peek(&self) -> Duration {
        self.next
    }
}

/// Why a config poll failed.
enum PollError {
    /// The controller does not know this device any more.
    Unknown(String),
    /// The controller answered with a configuration that is refused (it stays refused until
    /// the controller sends another).
    Refused(String),
    /// Anything else: retried.
    Failed(String),
}

impl From<String> for PollError {
    fn from(e: String) -> Self {
        PollError::Failed(e)
    }
}

/// zedagent's state.
pub struct Agent {
    link: Link,
    boot: Bootstrap,
    device: Signer,
    identity: Identity,
    signing: Option<SigningCert>,
    uuid: String,
    config_hash: String,
    interval: Duration,
    /// The metrics interval until a configuration sets `timer.metric.interval`.
    default_metric_interval: Duration,
    metric_interval: Duration,
    status: Status,
    status_table: Option<Publication<Global, Status>>,
    checkpoint_table: Option<Publication<Global, Checkpoint>>,
    fanout: Option<Fanout>,
    /// Info reports not delivered yet.
    info: Queue,
    /// The device info last queued (a new report is queued when it differs).
    last_info: Option<ZInfoDevice>,
    /// The last configuration refused, and when (reported in the device info).
    config_error: Option<(String, u64)>,
    boot_time: Option<u64>,
    /// Stop after this many answered polls (tests); `None`: never.
    pub polls_left: Option<u64>,
    /// The node's objects (apps, content trees) reported as they change.
    pub watched: Option<Watched>,
    /// Why the launcher's services could not be read last time (logged once per reason).
    services_error: Option<String>,
    /// The apps of the configuration in force: UUID to name and version (for app metrics).
    app_names: alloc::collections::BTreeMap<String, (String, String)>,
}

impl Agent {
    /// An agent for `boot` with `identity`, polling every `intervals.0` and sending metrics
    /// every `intervals.1` until a configuration sets `timer.config.interval` and
    /// `timer.metric.interval`, queueing its info reports in `info`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        link: Link,
        boot: Bootstrap,
        identity: Identity,
        intervals: (Duration, Duration),
        status_table: Option<Publication<Global, Status>>,
        checkpoint_table: Option<Publication<Global, Checkpoint>>,
        fanout: Option<Fanout>,
        info: Queue,
    ) -> Agent {
        Agent {
            link,
            boot,
            device: identity.signer(),
            identity,
            signing: None,
            uuid: String::new(),
            config_hash: String::new(),
            interval: intervals.0,
            default_metric_interval: intervals.1,
            metric_interval: intervals.1,
            status: Status {
                info_queued: info.len() as u64,
                ..Status::default()
            },
            status_table,
            checkpoint_table,
            fanout,
            info,
            last_info: None,
            config_error: None,
            boot_time: unix_now(),
            polls_left: None,
            watched: None,
            services_error: None,
            app_names: alloc::collections::BTreeMap::new(),
        }
    }

    /// Puts the checkpointed configuration in force, if it verifies.
    pub fn restore_checkpoint(&mut self, stored: &Checkpoint) {
        match checkpoint::open(stored, &self.boot.root_der, unix_now()) {
            Ok((response, _)) => match self.apply(&response, "checkpoint") {
                Ok(()) => info!(
                    "zedagent: the last good configuration is in force until the controller answers"
                ),
                Err(e) => {
                    error!("zedagent: the checkpointed configuration is refused: {e}");
                    self.failed(format!("checkpoint: {e}"));
                }
            },
            Err(e) => {
                error!("zedagent: the checkpointed configuration is refused: {e}");
                self.failed(format!("checkpoint: {e}"));
            }
        }
    }

    /// Onboards, then polls and reports until `polls_left` runs out (or forever): a config
    /// poll every `timer.config.interval` (sooner after a failure, with backoff), the device
    /// info queued whenever it changes and the queue sent after every answered poll, metrics
    /// every `timer.metric.interval` while the controller answers; the objects' reports
    /// queued as they change and sent at once while the controller answers.
    pub async fn run(&mut self) {
        self.record_info().await;
        self.record_objects().await;
        self.onboard().await;
        let mut backoff = Backoff::new();
        let mut next_poll = kernel::now();
        let mut next_metrics = kernel::now() + self.metric_interval;
        let mut reachable = false;
        loop {
            if kernel::now() >= next_poll {
                match self.poll().await {
                    Ok(()) => {
                        backoff.reset();
                        reachable = true;
                        self.record_info().await;
                        self.flush_info().await;
                        if let Some(left) = self.polls_left.as_mut() {
                            *left -= 1;
                            if *left == 0 {
                                info!(
                                    "zedagent: {} TLS handshakes (last {} ms), heap peak {} KiB of {} KiB",
                                    self.link.handshakes,
                                    self.link.last_handshake.as_millis(),
                                    self.link.heap_peak / 1024,
                                    kernel::mem::heap_size() / 1024
                                );
                                return;
                            }
                        }
                        next_poll = kernel::now() + self.interval;
                    }
                    Err(PollError::Unknown(e)) => {
                        // The controller no longer knows this device (deleted, or its database
                        // restored): onboard again, as EVE's client does.
                        reachable = false;
                        let pause = backoff.peek();
                        warn!(
                            "zedagent: config poll refused: {e}; onboarding again in about {} s",
                            pause.as_secs()
                        );
                        self.failed(e);
                        self.record_info().await;
                        backoff.wait().await;
                        self.onboard().await;
                        self.record_objects().await;
                        next_poll = kernel::now();
                    }
                    Err(PollError::Refused(e)) => {
                        // The controller answers: the refusal is reported in the device info,
                        // and the next poll comes at the usual interval.
                        backoff.reset();
                        reachable = true;
                        self.failed(e);
                        self.record_info().await;
                        self.flush_info().await;
                        next_poll = kernel::now() + self.interval;
                    }
                    Err(PollError::Failed(e)) => {
                        reachable = false;
                        let pause = backoff.take();
                        warn!(
                            "zedagent: config poll failed: {e}; retrying in about {} s",
                            pause.as_secs()
                        );
                        self.failed(e);
                        self.record_info().await;
                        next_poll = kernel::now() + pause;
                    }
                }
            }
            if kernel::now() >= next_metrics {
                // Metrics are lossy: none is sent (nor kept) while the controller is away.
                if reachable {
                    self.send_metrics().await;
                }
                next_metrics = kernel::now() + self.metric_interval;
            }
            let wake: Instant = next_poll.min(next_metrics);
            if self.wait_for_objects(wake).await {
                self.record_objects().await;
                if reachable {
                    self.flush_info().await;
                    self.send_flows().await;
                }
                kernel::sleep_until(wake.min(kernel::now() + OBJECT_LOOK_INTERVAL)).await;
            }
        }
    }

    /// Waits until `wake`, or less if an object's status changed first (then true).
    async fn wait_for_objects(&self, wake: Instant) -> bool {
        let Some(watched) = &self.watched else {
            kernel::sleep_until(wake).await;
            return false;
        };
        let left = wake.saturating_duration_since(kernel::now());
        kernel::timeout(left, watched.changed()).await.is_ok()
    }

    /// Queues a report for each object new, changed or gone since the last look.
    async fn record_objects(&mut self) {
        let Some(watched) = self.watched.as_mut() else {
            return;
        };
        let reports = watched.reports(unix_now().unwrap_or(0));
        if reports.is_empty() {
            return;
        }
        let count = reports.len();
        for report in reports {
            if let Err(e) = self.info.push(report.encode_to_vec()) {
                error!("zedagent: info: cannot queue an object's report: {e}");
            }
        }
        self.status.info_queued = self.info.len() as u64;
        self.publish_status();
        if kernel::timeout(DURABLE_WAIT, self.info.durable())
            .await
            .is_err()
        {
            warn!("zedagent: info: the vault has not committed the queue yet");
        }
        info!(
            "zedagent: info: {count} object reports queued ({} object reports waiting)",
            self.info.objects_waiting()
        );
    }

    /// certs, register, uuid: retried with backoff until all three succeed.
    async fn onboard(&mut self) {
        let mut backoff = Backoff::new();
        loop {
            match self.try_onboard().await {
                Ok(()) => return,
                Err(e) => {
                    let pause = backoff.peek();
                    warn!(
                        "zedagent: onboarding: {e}; retrying in about {} s",
                        pause.as_secs()
                    );
                    self.failed(e);
                    self.record_info().await;
                    backoff.wait().await;
                }
            }
        }
    }

    async fn try_onboard(&mut self) -> Result<(), String> {
        let response = self.link.call("GET", &route("certs"), None).await?;
        if response.status != 200 {
            return Err(format!("certs: {}", refusal(&response)));
        }
        let signing = SigningCert::from_certs(&response.body, &self.boot.root_der, unix_now())
            .map_err(|e| format!("certs: {e}"))?;
        info!("zedagent: controller signing certificate verified against the root");
        self.signing = Some(signing);

        let message = ZRegisterMsg {
            pem_cert: lichen_api::cert::encode_base64_pem(self.identity.cert_pem()),
            serial: self.boot.serial.clone(),
            ..Default::default()
        };
        let body = self.boot.onboarding.seal_to_bytes(&message);
        let response = self
            .link
            .call("POST", &route("register"), Some(&body))
            .await?;
        match response.status {
            201 => info!("zedagent: register: 201 Created (a new device)"),
            200 => info!("zedagent: register: 200 OK (known device)"),
            403 => {
                return Err(format!(
                    "register: 403 Forbidden for serial {:?} ({})",
                    self.boot.serial,
                    response.reason.as_deref().unwrap_or("not admitted")
                ));
            }
            _ => return Err(format!("register: {}", refusal(&response))),
        }

        let body = self.device.seal_to_bytes(&UuidRequest {});
        let response = self.link.call("POST", &route("uuid"), Some(&body)).await?;
        if response.status != 200 {
            return Err(format!("uuid: {}", refusal(&response)));
        }
        let uuid: UuidResponse = self.open(&response.body, "UuidResponse")?;
        if uuid.uuid.is_empty() {
            return Err("uuid: the controller sent no UUID".into());
        }
        if !self.uuid.is_empty() && self.uuid != uuid.uuid {
            warn!(
                "zedagent: the controller now calls this device {} (was {})",
                uuid.uuid, self.uuid
            );
        }
        info!("zedagent: onboarded as device {}", uuid.uuid);
        if !self.uuid.is_empty() && self.uuid != uuid.uuid {
            // Another device for the controller: it has none of our reports.
            self.last_info = None;
            if let Some(watched) = self.watched.as_mut() {
                watched.forget();
            }
        }
        self.uuid = uuid.uuid;
        self.status.uuid = self.uuid.clone();
        self.publish_status();
        Ok(())
    }

    /// One configuration poll.
    async fn poll(&mut self) -> Result<(), PollError> {
        let request = ConfigRequest {
            config_hash: self.config_hash.clone(),
            integrity_token: vec![],
        };
        let body = self.device.seal_to_bytes(&request);
        let path = route(&format!("id/{}/config", self.uuid));
        let response = self.link.call("POST", &path, Some(&body)).await?;
        match response.status {
            304 => {
                info!("zedagent: config unchanged (304)");
                self.status.polls += 1;
                self.publish_status();
                Ok(())
            }
            200 => {
                let config: ConfigResponse = self
                    .open(&response.body, "ConfigResponse")
                    .map_err(|e| format!("config refused: {e}"))?;
                let id = config.config.as_ref().and_then(|c| c.id.as_ref());
                match id {
                    Some(id) if id.uuid == self.uuid => {}
                    _ => {
                        return Err(PollError::Failed(
                            "config refused: it is not for this device".into(),
                        ))
                    }
                }
                self.status.polls += 1;
                if let Err(e) = self.apply(&config, "controller") {
                    let e = format!("config refused: {e}");
                    if self.config_error.as_ref().map(|(old, _)| old) != Some(&e) {
                        self.config_error = Some((e.clone(), unix_now().unwrap_or(0)));
                    }
                    error!("zedagent: {e}; the configuration in force stays");
                    return Err(PollError::Refused(e));
                }
                self.config_error = None;
                if let (Some(table), Some(signing)) = (&self.checkpoint_table, &self.signing) {
                    if response.body.len() > MAX_CHECKPOINT {
                        warn!(
                            "zedagent: the configuration ({} KiB) is too large to checkpoint ({} KiB at most)",
                            response.body.len() / 1024,
                            MAX_CHECKPOINT / 1024
                        );
                    } else if let Err(e) =
                        table.publish(&Global, &checkpoint::seal(signing, &response.body))
                    {
                        error!("zedagent: cannot checkpoint the configuration: {e}");
                    }
                }
                Ok(())
            }
            // Unknown signer (401) or a UUID that is not ours (403, 404).
            401 | 403 | 404 => Err(PollError::Unknown(format!(
                "config: {}",
                refusal(&response)
            ))),
            _ => Err(PollError::Failed(format!("config: {}", refusal(&response)))),
        }
    }

    /// Puts a verified configuration in force: its tables published on the bus, its timers
    /// taken. A configuration whose objects do not hold together is refused whole, and the
    /// one in force stays.
    fn apply(&mut self, response: &ConfigResponse, source: &str) -> Result<(), String> {
        let Some(config) = &response.config else {
            return Err("the response holds no configuration".into());
        };
        let tables = ConfigTables::from_config(config).map_err(|e| format!("{e}"))?;
        let version = config
            .id
            .as_ref()
            .map(|id| id.version.clone())
            .unwrap_or_default();
        if let Some(secs) = timer(&tables, "timer.config.interval") {
            self.interval = secs;
        }
        self.metric_interval =
            timer(&tables, "timer.metric.interval").unwrap_or(self.default_metric_interval);
        if let Some(fanout) = &self.fanout {
            match fanout.publish(&tables) {
                Ok(changes) => info!(
                    "zedagent: configuration tables: {} objects published, {} removed",
                    changes.published, changes.removed
                ),
                // The bus refused an object (too large): the others are published.
                Err(e) => error!("zedagent: cannot publish the configuration: {e}"),
            }
        }
        info!(
            "zedagent: config version {version} from the {source}: {}; polling every {} s, metrics every {} s",
            tables.summary(),
            self.interval.as_secs(),
            self.metric_interval.as_secs()
        );
        self.app_names = tables
            .apps
            .iter()
            .map(|(uuid, app)| (uuid.clone(), (app.name.clone(), app.version.clone())))
            .collect();
        self.config_hash = response.config_hash.clone();
        self.status.config_version = version;
        self.status.config_source = source.to_string();
        self.publish_status();
        Ok(())
    }

    /// Queues the device info when it differs from the last one queued.
    async fn record_info(&mut self) {
        let device = reports::device_info(
            self.boot_time,
            &self.boot.serial,
            self.config_error.as_ref(),
        );
        if self.last_info.as_ref() == Some(&device) {
            return;
        }
        let message = reports::info_message(device.clone(), unix_now());
        if let Err(e) = self.info.push(message.encode_to_vec()) {
            error!("zedagent: info: cannot queue the device report: {e}");
            return;
        }
        self.last_info = Some(device);
        self.status.info_queued = self.info.len() as u64;
        self.publish_status();
        if kernel::timeout(DURABLE_WAIT, self.info.durable())
            .await
            .is_err()
        {
            warn!("zedagent: info: the vault has not committed the queue yet");
        }
        info!(
            "zedagent: info: device report queued ({} waiting, {} dropped)",
            self.info.device_waiting(),
            self.info.dropped
        );
    }

    /// Sends the queued info reports, oldest first, each removed once the controller took it
    /// (201); stops at the first failure (the rest wait for the next answered poll).
    async fn flush_info(&mut self) {
        while let Some((seq, bytes)) = self.info.first() {
            let mut message = match ZInfoMsg::decode(bytes) {
                Ok(message) => message,
                Err(e) => {
                    error!("zedagent: info: queued report {seq} does not decode ({e}): dropped");
                    let _ = self.info.remove(seq);
                    continue;
                }
            };
            message.dev_id = self.uuid.clone();
            let kind = match &message.info_content {
                Some(InfoContent::Dinfo(_)) => "device",
                Some(InfoContent::Ainfo(_)) => "app",
                Some(InfoContent::Vinfo(_)) => "volume",
                Some(InfoContent::Cinfo(_)) => "content tree",
                Some(InfoContent::Niinfo(_)) => "network instance",
                _ => "other",
            };
            let body = self.device.seal_to_bytes(&message);
            let path = route(&format!("id/{}/info", self.uuid));
            match self.link.call("POST", &path, Some(&body)).await {
                Ok(r) if r.status == 201 => {
                    if let Err(e) = self.info.remove(seq) {
                        error!("zedagent: info: cannot unqueue report {seq}: {e}");
                        return;
                    }
                    self.status.info_delivered += 1;
                    self.status.info_queued = self.info.len() as u64;
                    self.publish_status();
                    // Each kind counts its own: "0 waiting" after a device report means
                    // every device report was delivered.
                    let waiting = match kind {
                        "device" => self.info.device_waiting(),
                        _ => self.info.objects_waiting(),
                    };
                    info!("zedagent: info: {kind} report delivered (201), {waiting} waiting");
                }
                Ok(r) => return self.failed(format!("info: {}", refusal(&r))),
                Err(e) => return self.failed(format!("info: {e}")),
            }
        }
    }

    /// Sends the device's metrics (lossy: a failure is counted, nothing is kept).
    async fn send_metrics(&mut self) {
        let services = match crate::services::read().await {
            Ok(services) => {
                self.services_error = None;
                services
            }
            Err(e) => {
                if self.services_error.as_ref() != Some(&e) {
                    warn!("zedagent: the node's services cannot be read: {e}");
                    self.services_error = Some(e);
                }
                alloc::vec::Vec::new()
            }
        };
        let mut message = reports::metrics(
            &self.uuid,
            self.boot_time,
            unix_now(),
            &services,
            &self.app_names,
        );
        if let Some(watched) = &self.watched {
            // zedrouter's network instances, their ACL and rate-limit drops.
            message.nm = watched.network_metrics();
        }
        let body = self.device.seal_to_bytes(&message);
        let path = route(&format!("id/{}/metrics", self.uuid));
        match self.link.call("POST", &path, Some(&body)).await {
            Ok(r) if r.status == 201 || r.status == 200 => {
                self.status.metrics_sent += 1;
                self.publish_status();
                info!(
                    "zedagent: metrics delivered ({}), {} services",
                    r.status,
                    services.len()
                );
            }
            Ok(r) => self.failed(format!("metrics: {}", refusal(&r))),
            Err(e) => self.failed(format!("metrics: {e}")),
        }
    }

    /// Posts the apps' flow logs that are due (lossy, as EVE's: a failure is counted).
    async fn send_flows(&mut self) {
        let Some(watched) = self.watched.as_mut() else {
            return;
        };
        let due = watched.flows_due(&self.uuid);
        if due.is_empty() {
            return;
        }
        let path = route(&format!("id/{}/flowlog", self.uuid));
        for (app, seq, message) in due {
            let body = self.device.seal_to_bytes(&message);
            let flows = message.flows.len();
            let dns = message.dns_reqs.len();
            let ok = match self.link.call("POST", &path, Some(&body)).await {
                Ok(r) if r.status == 201 || r.status == 200 => {
                    info!(
                        "zedagent: flowlog of {app} delivered: {flows} flows, {dns} DNS requests"
                    );
                    true
                }
                Ok(r) => {
                    self.failed(format!("flowlog: {}", refusal(&r)));
                    false
                }
                Err(e) => {
                    self.failed(format!("flowlog: {e}"));
                    false
                }
            };
            if let Some(watched) = self.watched.as_mut() {
                watched.flow_logs.posted(&app, seq, ok);
            }
        }
    }

    /// Verifies and decodes a controller response.
    fn open<M: Message + Default>(&self, body: &[u8], what: &'static str) -> Result<M, String> {
        let signing = self
            .signing
            .as_ref()
            .ok_or("no controller certificate yet")?;
        signing.open_message(body, what).map_err(|e| format!("{e}"))
    }

    fn failed(&mut self, why: String) {
        self.status.failures += 1;
        self.status.last_error = Some(why);
        self.publish_status();
    }

    fn publish_status(&self) {
        if let Some(table) = &self.status_table {
            let _ = table.publish(&Global, &self.status);
        }
    }
}

/// The value of config item `name` as a timer (1 s to a day), if the configuration sets one.
fn timer(tables: &ConfigTables, name: &str) -> Option<Duration> {
    let value = tables.items.get(name)?;
    match value.trim().parse::<u64>() {
        Ok(secs) if (1..=86400).contains(&secs) => Some(Duration::from_secs(secs)),
        _ => {
            warn!("zedagent: ignoring {name} {value:?}");
            None
        }
    }
}
