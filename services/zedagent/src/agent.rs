//! The agent's life with its controller (EVE's `client` and zedagent): onboarding (certs,
//! register, uuid), then configuration polls and info reports, every answer's signature
//! verified by the controller's signing certificate.
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
use device_api::tables::ConfigTables;
use kernel::{error, info, warn, Duration};
use lichen_api::config::{ConfigRequest, ConfigResponse};
use lichen_api::envelope::Signer;
use lichen_api::info::{ZInfoDevSw, ZInfoDevice, ZInfoMsg, ZInfoTypes};
use lichen_api::register::ZRegisterMsg;
use lichen_api::uuid::{UuidRequest, UuidResponse};
use prost::Message;
use topics::zedagent::{Checkpoint, Status};
use topics::Global;

use crate::link::{refusal, route, Link};

/// EVE's default `timer.config.interval`.
pub const DEFAULT_CONFIG_INTERVAL: Duration = Duration::from_secs(60);
/// The largest configuration checkpointed: the vault stores values of up to 256 KiB (with
/// the signing certificate besides).
const MAX_CHECKPOINT: usize = 240 * 1024;
/// The longest pause between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

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
        let mut r = [0u8; 2];
        let jitter = match tls::random::fill(&mut r) {
            Ok(()) => u16::from_le_bytes(r) as u64 % 501, // 0..=500 per mille
            Err(_) => 250,
        };
        let pause = self.next * (750 + jitter as u32) / 1000;
        kernel::sleep(pause).await;
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
    status: Status,
    status_table: Option<Publication<Global, Status>>,
    checkpoint_table: Option<Publication<Global, Checkpoint>>,
    fanout: Option<Fanout>,
    last_info: Option<ZInfoDevice>,
    boot_time: Option<u64>,
    /// Stop after this many answered polls (tests); `None`: never.
    pub polls_left: Option<u64>,
}

impl Agent {
    /// An agent for `boot` with `identity`, polling every `interval` until a configuration
    /// sets `timer.config.interval`.
    pub fn new(
        link: Link,
        boot: Bootstrap,
        identity: Identity,
        interval: Duration,
        status_table: Option<Publication<Global, Status>>,
        checkpoint_table: Option<Publication<Global, Checkpoint>>,
        fanout: Option<Fanout>,
    ) -> Agent {
        Agent {
            link,
            boot,
            device: identity.signer(),
            identity,
            signing: None,
            uuid: String::new(),
            config_hash: String::new(),
            interval,
            status: Status::default(),
            status_table,
            checkpoint_table,
            fanout,
            last_info: None,
            boot_time: unix_now(),
            polls_left: None,
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

    /// Onboards, then polls and reports until `polls_left` runs out (or forever).
    pub async fn run(&mut self) {
        self.onboard().await;
        let mut backoff = Backoff::new();
        loop {
            match self.poll().await {
                Ok(()) => {
                    backoff.reset();
                    self.report_info().await;
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
                    kernel::sleep(self.interval).await;
                }
                Err(PollError::Unknown(e)) => {
                    // The controller no longer knows this device (deleted, or its database
                    // restored): onboard again, as EVE's client does.
                    let pause = backoff.peek();
                    warn!(
                        "zedagent: config poll refused: {e}; onboarding again in about {} s",
                        pause.as_secs()
                    );
                    self.failed(e);
                    backoff.wait().await;
                    self.onboard().await;
                }
                Err(PollError::Failed(e)) => {
                    let pause = backoff.peek();
                    warn!(
                        "zedagent: config poll failed: {e}; retrying in about {} s",
                        pause.as_secs()
                    );
                    self.failed(e);
                    backoff.wait().await;
                }
            }
        }
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
        if self.uuid != uuid.uuid {
            // Another device for the controller: it has none of our reports.
            self.last_info = None;
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
                self.apply(&config, "controller")
                    .map_err(|e| format!("config refused: {e}"))?;
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
        if let Some(value) = tables.items.get("timer.config.interval") {
            match value.trim().parse::<u64>() {
                Ok(secs) if (1..=86400).contains(&secs) => {
                    self.interval = Duration::from_secs(secs)
                }
                _ => warn!("zedagent: ignoring timer.config.interval {value:?}"),
            }
        }
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
            "zedagent: config version {version} from the {source}: {}; polling every {} s",
            tables.summary(),
            self.interval.as_secs()
        );
        self.config_hash = response.config_hash.clone();
        self.status.config_version = version;
        self.status.config_source = source.to_string();
        self.publish_status();
        Ok(())
    }

    /// Sends the device's info when it changed since the last report the controller took.
    async fn report_info(&mut self) {
        let device = self.device_info();
        if self.last_info.as_ref() == Some(&device) {
            return;
        }
        let message = ZInfoMsg {
            ztype: ZInfoTypes::ZiDevice as i32,
            dev_id: self.uuid.clone(),
            info_content: Some(lichen_api::info::z_info_msg::InfoContent::Dinfo(
                device.clone(),
            )),
            at_time_stamp: unix_now().map(timestamp),
        };
        let body = self.device.seal_to_bytes(&message);
        let path = route(&format!("id/{}/info", self.uuid));
        match self.link.call("POST", &path, Some(&body)).await {
            Ok(r) if r.status == 201 => {
                info!("zedagent: info: device report delivered (201)");
                self.last_info = Some(device);
            }
            Ok(r) => self.failed(format!("info: {}", refusal(&r))),
            Err(e) => self.failed(format!("info: {e}")),
        }
    }

    fn device_info(&self) -> ZInfoDevice {
        let platform = match kernel::platform::kind() {
            kernel::platform::Kind::Xen => "xen-pvh",
            _ => "qemu-microvm",
        };
        ZInfoDevice {
            machine_arch: "x86_64".into(),
            cpu_arch: "x86_64".into(),
            platform: platform.into(),
            ncpu: 1,
            memory: kernel::mem::heap_size() >> 20,
            boot_time: self.boot_time.map(timestamp),
            sw_list: vec![ZInfoDevSw {
                activated: true,
                short_version: kernel::service().version.into(),
                long_version: format!("lichen zedagent {}", kernel::service().version),
                status: lichen_api::info::ZSwState::Running as i32,
                ..Default::default()
            }],
            host_name: self.boot.serial.clone(),
            state: lichen_api::info::ZDeviceState::ZdeviceStateOnline as i32,
            ..Default::default()
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

fn timestamp(secs: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: secs as i64,
        nanos: 0,
    }
}
