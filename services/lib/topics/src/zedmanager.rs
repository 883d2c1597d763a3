//! What `zedmanager` publishes (services/zedmanager, docs/apps.md): the domain each app should
//! have, for domainmgr, and each app's state as EVE reports it.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::volumemgr::Extent;
use crate::Topic;

/// The domain an app should have (EVE's `DomainConfig`), keyed by the app's UUID.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainConfig {
    /// The app's display name.
    pub name: String,
    /// Whether the domain should run; false: stopped (halted), kept.
    pub activate: bool,
    /// The app volume holding its PVH kernel (an ELF image at its offset 0): its extent of the
    /// app data disk (`volumemgr/VolumeStatus`).
    pub kernel: Extent,
    /// Memory, MiB.
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// The guest's command line.
    pub cmdline: String,
    /// Volumes it gets as disks, in order.
    pub disks: Vec<DiskConfig>,
    /// The dom0 bridge its network card joins (its network instance's, from zedrouter's
    /// status; `lichenbr0`, dom0's own, on a node without zedrouter); `None`: no card.
    pub network: Option<String>,
    /// Bumped to have the domain made anew (a restart, by the controller's counter or after a
    /// crash); domainmgr replaces a domain made for another generation.
    pub generation: u32,
}

/// A volume an app gets as a disk.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskConfig {
    /// The volume's extent of the app data disk.
    pub extent: Extent,
    /// Whether the app may only read it.
    pub read_only: bool,
}

impl DomainConfig {
    /// Every extent of the app data disk the domain uses: its kernel's, then its disks'.
    pub fn extents(&self) -> impl Iterator<Item = Extent> + '_ {
        core::iter::once(self.kernel).chain(self.disks.iter().map(|d| d.extent))
    }
}

/// The domains apps should have.
pub const DOMAIN_CONFIG: Topic<String, DomainConfig> =
    Topic::volatile("zedmanager/DomainConfig", 2);

/// EVE's `ZSwState`, the states an app goes through as info reports them (the protobuf's
/// numbers in [`SwState::eve_number`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SwState {
    /// Nothing yet.
    #[default]
    Initial,
    /// Content being downloaded.
    Downloading,
    /// Content being verified.
    Verifying,
    /// Content verified and kept.
    Loaded,
    /// Volumes being made.
    CreatingVolume,
    /// Volumes made.
    CreatedVolume,
    /// Its domain being built and started.
    Booting,
    /// Its domain runs.
    Running,
    /// Its domain being stopped.
    Halting,
    /// No domain (stopped, or powered off).
    Halted,
    /// Waiting to be booted again (a restart, or the backoff after a crash).
    Restarting,
    /// Waiting for its `start_delay_s`.
    StartDelayed,
    /// Failed: see the error text.
    Error,
}

impl SwState {
    /// The value of EVE's `ZSwState` enum (services/lib/api/proto/info/info.proto).
    pub fn eve_number(self) -> i32 {
        match self {
            SwState::Initial => 1,
            SwState::Downloading => 2,
            SwState::Booting => 6,
            SwState::Running => 7,
            SwState::Halting => 8,
            SwState::Halted => 9,
            SwState::Restarting => 10,
            SwState::CreatingVolume => 14,
            SwState::CreatedVolume => 15,
            SwState::Verifying => 16,
            SwState::Loaded => 19,
            SwState::Error => 21,
            SwState::StartDelayed => 22,
        }
    }

    /// EVE's name of the state.
    pub fn name(self) -> &'static str {
        match self {
            SwState::Initial => "INITIAL",
            SwState::Downloading => "DOWNLOAD_STARTED",
            SwState::Verifying => "VERIFYING",
            SwState::Loaded => "LOADED",
            SwState::CreatingVolume => "CREATING_VOLUME",
            SwState::CreatedVolume => "CREATED_VOLUME",
            SwState::Booting => "BOOTING",
            SwState::Running => "RUNNING",
            SwState::Halting => "HALTING",
            SwState::Halted => "HALTED",
            SwState::Restarting => "RESTARTING",
            SwState::StartDelayed => "START_DELAYED",
            SwState::Error => "ERROR",
        }
    }
}

/// An app's state (EVE's `AppInstanceStatus`), keyed by its UUID.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInstanceStatus {
    /// Its display name.
    pub name: String,
    /// The configuration version it follows.
    pub version: String,
    /// Where it is.
    pub state: SwState,
    /// Whether it should run.
    pub activated: bool,
    /// Restarts so far: the controller's restart counter and crash restarts.
    pub restarts: u32,
    /// Crash restarts so far.
    pub crashes: u32,
    /// The last error, empty when none.
    pub error: String,
    /// When the error was seen, ms since zedmanager started (0: none).
    pub error_at_ms: u64,
}

impl core::fmt::Display for AppInstanceStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "app {} {} restarts {} crashes {}",
            self.name,
            self.state.name(),
            self.restarts,
            self.crashes
        )?;
        if !self.error.is_empty() {
            write!(f, " error {:?}", self.error)?;
        }
        Ok(())
    }
}

/// Every app's state.
pub const APP_INSTANCE_STATUS: Topic<String, AppInstanceStatus> =
    Topic::volatile("zedmanager/AppInstanceStatus", 1);

/// What zedmanager must not forget about an app across its own restart or the node's reboot,
/// keyed by the app's UUID (persistent: the vault keeps it). Without it a restarted zedmanager
/// would count from generation 0 again, and domainmgr would replace the app's running domain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    /// The generation of the domain the app should have ([`DomainConfig::generation`]).
    pub generation: u32,
    /// Restarts so far ([`AppInstanceStatus::restarts`]).
    pub restarts: u32,
    /// Crash restarts so far ([`AppInstanceStatus::crashes`]).
    pub crashes: u32,
    /// The controller's restart counter last acted on.
    pub restart_counter: u32,
    /// The controller's purge counter last acted on.
    pub purge_counter: u32,
    /// The app's version last acted on (a new one is EVE's `app_replace`).
    pub version: String,
}

/// Every app's record.
pub const APP_RECORD: Topic<String, AppRecord> = Topic::persistent("zedmanager/AppRecord", 1);
