//! What the controller keeps: onboarding certificates, devices, their configuration and what
//! they report. [`Store`] is the interface; [`embedded::EmbeddedStore`] is the default backend
//! (a checksummed, fsynced append-only log). Another backend (e.g. PostgreSQL) implements the same
//! trait.
//!
//! Every write method returns only once the change is durable: an acknowledged write survives a
//! crash.

pub mod embedded;
mod record;

use std::{fmt, future::Future, pin::Pin};

pub use record::{Device, DeviceConfig, Onboarding, Telemetry};

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
}

impl TelemetryKind {
    /// Every kind, in route order.
    pub const ALL: [Self; 5] = [
        Self::Info,
        Self::Metrics,
        Self::Logs,
        Self::FlowLog,
        Self::NewLogs,
    ];

    /// The kind's route and name, e.g. `"info"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Metrics => "metrics",
            Self::Logs => "logs",
            Self::FlowLog => "flowlog",
            Self::NewLogs => "newlogs",
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

    /// Replaces a device's configuration.
    fn set_config(&self, config: DeviceConfig) -> StoreFuture<'_, ()>;
    /// A device's configuration, if one was set.
    fn config<'a>(&'a self, uuid: &'a str) -> StoreFuture<'a, Option<DeviceConfig>>;

    /// Records a report from a device and returns its sequence number (increasing).
    fn add_telemetry(&self, report: Telemetry) -> StoreFuture<'_, u64>;
    /// A device's retained reports of `kinds` with a sequence number above `after`, oldest first,
    /// at most `limit`.
    fn telemetry_after<'a>(
        &'a self,
        uuid: &'a str,
        kinds: &'a [TelemetryKind],
        after: u64,
        limit: usize,
    ) -> StoreFuture<'a, Vec<Telemetry>>;
}
