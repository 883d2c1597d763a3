//! What the controller keeps: onboarding certificates, devices, their configuration and what
//! they report. [`Store`] is the interface; [`sqlite::SqliteStore`] is the default backend (one
//! SQLite file in the state directory), [`postgres::PostgresStore`] the one several controllers
//! can share. [`legacy`] reads the log of earlier versions, for
//! `lichen-controller migrate`.
//!
//! Every write method returns only once the change is durable: an acknowledged write survives a
//! crash.

#[cfg(test)]
pub(crate) mod conformance;
pub mod legacy;
pub mod postgres;
mod record;
mod retention;
pub mod sqlite;

use std::{fmt, future::Future, pin::Pin};

pub use record::{AttestCert, Attestation, Device, DeviceConfig, LogLine, Onboarding, Telemetry};
pub use retention::{KindRetention, Retention};

/// The future returned by every [`Store`] method.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Why a store operation failed.
#[derive(Debug)]
pub enum StoreError {
    /// The device (or onboarding entry) does not exist.
    NotFound,
    /// A device with the same onboarding certificate and serial, or the same certificate, exists.
    Conflict,
    /// The backend failed (I/O, corruption, connection); nothing was acknowledged.
    Backend(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound => f.write_str("not found"),
            Self::Conflict => f.write_str("conflicts with an existing device"),
            Self::Backend(error) => write!(f, "storage failed: {error}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<std::io::Error> for StoreError {
    fn from(error: std::io::Error) -> Self {
        Self::Backend(error.to_string())
    }
}

/// The kinds of reports a device posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TelemetryKind {
    /// `ZInfoMsg` (route `info`).
    Info = 1,
    /// `ZMetricMsg` (route `metrics`).
    Metrics = 2,
    /// `LogBundle` (route `logs`).
    Logs = 3,
    /// `FlowMessage` (route `flowlog`).
    FlowLog = 4,
    /// Gzip of JSON log lines (route `newlogs`).
    NewLogs = 5,
    /// An app instance's `AppInstanceLogBundle` (route `apps/instanceid/{id}/logs`).
    AppLogs = 6,
    /// Gzip of an app instance's JSON log lines (route `apps/instanceid/{id}/newlogs`).
    AppNewLogs = 7,
    /// `ZHardwareHealth` (route `hardwarehealth`).
    HardwareHealth = 8,
}

impl TelemetryKind {
    /// Every kind, in route order.
    pub const ALL: [Self; 8] = [
        Self::Info,
        Self::Metrics,
        Self::Logs,
        Self::FlowLog,
        Self::NewLogs,
        Self::AppLogs,
        Self::AppNewLogs,
        Self::HardwareHealth,
    ];

    /// The kinds a device posts under `id/{uuid}/` (the others are per app instance).
    pub const DEVICE: [Self; 6] = [
        Self::Info,
        Self::Metrics,
        Self::Logs,
        Self::FlowLog,
        Self::NewLogs,
        Self::HardwareHealth,
    ];

    /// The kind's route and name, e.g. `"info"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Metrics => "metrics",
            Self::Logs => "logs",
            Self::FlowLog => "flowlog",
            Self::NewLogs => "newlogs",
            Self::AppLogs => "applogs",
            Self::AppNewLogs => "appnewlogs",
            Self::HardwareHealth => "hardwarehealth",
        }
    }

    /// The kind named `name` (see [`Self::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The kind stored as `code` (its discriminant).
    pub fn from_code(code: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| *kind as i32 == code)
    }
}

/// Which reports [`Store::telemetry`] returns: those matching every field set, by sequence
/// number (oldest first, or newest first), at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryQuery {
    /// One device's reports, or every device's.
    pub uuid: Option<String>,
    /// Kinds to include (empty: none).
    pub kinds: Vec<TelemetryKind>,
    /// Only sequence numbers above this.
    pub after_seq: u64,
    /// Only reports received at or after this (milliseconds since the Unix epoch).
    pub since_ms: Option<u64>,
    /// Only reports received before this.
    pub until_ms: Option<u64>,
    /// Only reports about this object (see [`Telemetry::object`]).
    pub object: Option<String>,
    /// Newest first instead of oldest first.
    pub newest_first: bool,
    /// At most this many.
    pub limit: usize,
}

/// Which log lines [`Store::logs`] returns: those matching every field set, by time (oldest
/// first, or newest first), at most `limit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// One device's lines, or every device's.
    pub uuid: Option<String>,
    /// Only lines logged at or after this (milliseconds since the Unix epoch).
    pub since_ms: Option<u64>,
    /// Only lines logged before this.
    pub until_ms: Option<u64>,
    /// Only lines with one of these severities (empty: any).
    pub severities: Vec<String>,
    /// Only lines whose text contains this (case-sensitive).
    pub text: Option<String>,
    /// Newest first instead of oldest first.
    pub newest_first: bool,
    /// At most this many.
    pub limit: usize,
}

impl TelemetryQuery {
    /// Every report of `kinds` from the device `uuid`, oldest first, at most `limit`.
    pub fn device(uuid: &str, kinds: &[TelemetryKind], limit: usize) -> Self {
        Self {
            uuid: Some(uuid.to_owned()),
            kinds: kinds.to_vec(),
            after_seq: 0,
            since_ms: None,
            until_ms: None,
            object: None,
            newest_first: false,
            limit,
        }
    }
}

/// What [`Store::config_request`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigRequestState {
    /// The device's configuration, if one was set.
    pub config: Option<DeviceConfig>,
    /// The token its config requests must carry (empty: none required).
    pub integrity_token: Vec<u8>,
}

/// The integrity token in an encoded [`Attestation`] record.
fn token_of(record: Option<&[u8]>) -> Result<Vec<u8>, StoreError> {
    record
        .map(|bytes| {
            <Attestation as prost::Message>::decode(bytes)
                .map(|attestation| attestation.integrity_token)
                .map_err(|error| StoreError::Backend(format!("attestation record: {error}")))
        })
        .transpose()
        .map(Option::unwrap_or_default)
}

/// Which devices [`Store::devices_by_contact`] returns, by when they were last heard from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContactQuery {
    /// Only devices heard from at or after this (milliseconds since the Unix epoch).
    pub seen_since: Option<u64>,
    /// Only devices not heard from since this (including never).
    pub not_seen_since: Option<u64>,
}

/// The controller's storage. Write methods resolve once the change is durable.
pub trait Store: Send + Sync + 'static {
    /// Adds an onboarding certificate, or replaces the serials of one with the same id.
    fn put_onboarding(&self, entry: Onboarding) -> StoreFuture<'_, ()>;
    /// Removes an onboarding certificate; devices it registered stay.
    fn remove_onboarding<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()>;
    /// Every onboarding certificate.
    fn onboarding(&self) -> StoreFuture<'_, Vec<Onboarding>>;

    /// Adds a registered device. Fails with [`StoreError::Conflict`] if another device has the same
    /// onboarding id and serial, or the same certificate.
    fn insert_device(&self, device: Device) -> StoreFuture<'_, ()>;
    /// Deletes a device with its configuration and reports.
    fn remove_device<'a>(&'a self, uuid: &'a str) -> StoreFuture<'a, ()>;
    /// Every device, by UUID.
    fn devices(&self) -> StoreFuture<'_, Vec<Device>>;
    /// The device with this UUID.
    fn device<'a>(&'a self, uuid: &'a str) -> StoreFuture<'a, Option<Device>>;
    /// The device whose certificate's SHA-256 (of its DER) starts with `hash` (16 or 32 bytes).
    fn device_by_cert_hash<'a>(&'a self, hash: &'a [u8]) -> StoreFuture<'a, Option<Device>>;
    /// The device registered with this onboarding id and serial.
    fn device_by_serial<'a>(
        &'a self,
        onboarding_id: &'a str,
        serial: &'a str,
    ) -> StoreFuture<'a, Option<Device>>;

    /// Replaces a device's configuration, if `config.version` is above the stored one's (else
    /// [`StoreError::Conflict`]: another writer got there first).
    fn set_config(&self, config: DeviceConfig) -> StoreFuture<'_, ()>;
    /// A device's configuration, if one was set.
    fn config<'a>(&'a self, uuid: &'a str) -> StoreFuture<'a, Option<DeviceConfig>>;

    /// What a config request needs, in one read: `None` if the device does not exist, else its
    /// configuration (if set) and the integrity token it must present (empty: none).
    fn config_request<'a>(&'a self, uuid: &'a str) -> StoreFuture<'a, Option<ConfigRequestState>>;
    /// A device's attestation state, if it has any.
    fn attestation<'a>(&'a self, uuid: &'a str) -> StoreFuture<'a, Option<Attestation>>;
    /// Replaces a device's attestation state, if `record.version` is one above the stored one's
    /// (0 when there is none); else [`StoreError::Conflict`] (another request changed it first).
    fn put_attestation(&self, record: Attestation) -> StoreFuture<'_, ()>;

    /// Records when devices were last heard from, as (UUID, milliseconds since the Unix epoch);
    /// a time earlier than the one stored is ignored, and so is an unknown device.
    fn record_contacts(&self, contacts: Vec<(String, u64)>) -> StoreFuture<'_, ()>;
    /// Devices by when they were last heard from, by UUID.
    fn devices_by_contact(&self, query: ContactQuery) -> StoreFuture<'_, Vec<Device>>;

    /// Records a report from a device and returns its sequence number (increasing, never
    /// reused, shared by all kinds and devices).
    fn add_telemetry(&self, report: Telemetry) -> StoreFuture<'_, u64>;
    /// The retained reports matching `query` (without their [`Telemetry::lines`]).
    fn telemetry(&self, query: TelemetryQuery) -> StoreFuture<'_, Vec<Telemetry>>;
    /// The log lines of retained reports matching `query`.
    fn logs(&self, query: LogQuery) -> StoreFuture<'_, Vec<LogLine>>;
    /// Deletes the reports `retention` no longer keeps at `now_ms`; returns how many.
    fn retire(&self, retention: Retention, now_ms: u64) -> StoreFuture<'_, u64>;

    /// A device's retained reports of `kinds` with a sequence number above `after`, oldest first,
    /// at most `limit`.
    fn telemetry_after<'a>(
        &'a self,
        uuid: &'a str,
        kinds: &'a [TelemetryKind],
        after: u64,
        limit: usize,
    ) -> StoreFuture<'a, Vec<Telemetry>> {
        let mut query = TelemetryQuery::device(uuid, kinds, limit);
        query.after_seq = after;
        self.telemetry(query)
    }
}
