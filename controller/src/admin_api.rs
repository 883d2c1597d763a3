//! The admin API's JSON documents, shared by the server and the admin CLI.
//!
//! Routes (under `/api/admin/v1`, all requiring `Authorization: Bearer <admin token>`):
//! - `GET /onboarding`, `POST /onboarding` ([`NewOnboarding`]), `DELETE /onboarding/{id}`;
//! - `GET /devices`, `GET /devices/{uuid}`, `DELETE /devices/{uuid}`;
//! - `GET /devices/{uuid}/config` (proto3 JSON `EdgeDevConfig`), `PUT /devices/{uuid}/config`
//!   (the configuration file, YAML or JSON) -> [`ConfigSet`];
//! - `GET /devices/{uuid}/reports?after=SEQ&kinds=info,logs&wait_ms=MS` -> [`Reports`] (long poll).
//! - `GET /onboarding/pending` -> [`PendingRegistration`]s (refused register attempts),
//!   `POST /onboarding/pending/{id}/admit` ([`Admit`]) -> [`OnboardingEntry`],
//!   `DELETE /onboarding/pending/{id}`;
//! - `GET /devices/{uuid}/status` -> [`DeviceStatus`] (the newest info per object);
//! - `GET /devices?with_status=true&offset=N&limit=M`: a page of devices (by UUID), each with
//!   its [`DeviceBrief`]; the header `X-Total-Count` says how many there are;
//! - `POST /devices/{uuid}/config/check` (a configuration file) -> [`ConfigCheck`];
//!   `PUT /devices/{uuid}/config?expect_version=N` refuses with 409 unless N is current.
//! - `POST /datastore` (a file, as the body; at most `--max-upload-bytes`) ->
//!   [`DatastoreUpload`]: the file is served to devices from the controller's datastore.
//!
//! The web UI calls the same routes with its session cookie instead of the bearer token (see
//! `server::ui`).

use serde::{Deserialize, Serialize};

/// An onboarding certificate and the serials it admits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OnboardingEntry {
    /// Hex of the first 16 bytes of the SHA-256 of the certificate's DER.
    pub id: String,
    /// The certificate's subject.
    pub subject: String,
    /// Admitted serial patterns (`*` is a wildcard).
    pub serials: Vec<String>,
    /// The certificate, PEM.
    pub cert_pem: String,
}

/// A request to admit devices with an onboarding certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewOnboarding {
    /// The onboarding certificate, PEM.
    pub cert_pem: String,
    /// Serial patterns (`*` is a wildcard; `["*"]` admits every serial).
    pub serials: Vec<String>,
}

/// A registered device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceSummary {
    /// Its UUID.
    pub uuid: String,
    /// The serial it registered with.
    pub serial: String,
    /// The onboarding certificate it registered with.
    pub onboarding_id: String,
    /// Its certificate's subject.
    pub subject: String,
    /// When it registered (seconds since the Unix epoch).
    pub registered_at: u64,
    /// When it was last heard from since the controller started (ms since the epoch).
    pub last_seen_ms: Option<u64>,
    /// The version of its configuration (0: never configured).
    pub config_version: u64,
    /// The `configHash` it is served.
    pub config_hash: String,
    /// What its newest device info says, when asked for (`?with_status=true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DeviceBrief>,
}

/// The gist of a device's newest device info report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceBrief {
    /// Its state as it reports it (`ZDEVICE_STATE_ONLINE`, ...); empty if it sent no info.
    pub state: String,
    /// The short version of its active software (base OS), if reported.
    pub version: String,
    /// Its host name, as it reports it.
    pub host_name: String,
}

/// A register attempt refused because its onboarding certificate or serial is not admitted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingRegistration {
    /// The queue entry's id (for admit and dismiss).
    pub id: String,
    /// The onboarding certificate's id (see [`OnboardingEntry::id`]).
    pub onboarding_id: String,
    /// The onboarding certificate's subject.
    pub subject: String,
    /// The serial the device registers with.
    pub serial: String,
    /// First attempt (ms since the Unix epoch).
    pub first_ms: u64,
    /// Latest attempt.
    pub last_ms: u64,
    /// How many attempts.
    pub attempts: u64,
}

/// How to admit a queued register attempt.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Admit {
    /// Serial patterns to admit with the attempt's onboarding certificate (added to those it
    /// already admits); empty: the attempt's serial only.
    #[serde(default)]
    pub serials: Vec<String>,
}

/// What a device says about itself and its objects: the newest info report of each.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DeviceStatus {
    /// Its newest `ZInfoDevice` (proto3 JSON) and when it arrived.
    pub device: Option<InfoItem>,
    /// Each app instance's newest `ZInfoApp`.
    pub apps: Vec<InfoItem>,
    /// Each network instance's newest `ZInfoNetworkInstance`.
    pub network_instances: Vec<InfoItem>,
    /// Each volume's newest `ZInfoVolume`.
    pub volumes: Vec<InfoItem>,
    /// Each content tree's newest `ZInfoContentTree`.
    pub content_trees: Vec<InfoItem>,
    /// Each network instance's counters (`ZMetricNetworkInstance`: frames, drops by an ACL and
    /// by a rate limit) from the device's newest metrics report, by `networkID`.
    #[serde(default)]
    pub network_metrics: Vec<InfoItem>,
}

/// One object's newest info.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InfoItem {
    /// The object's UUID (the device's for device info).
    pub object: String,
    /// When the report arrived (ms since the Unix epoch).
    pub received_at_ms: u64,
    /// The info content in proto3 JSON (`{"wireFields": ...}` if it cannot be mapped).
    pub info: serde_json::Value,
}

/// The result of checking a configuration file against a device's current one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConfigCheck {
    /// What is wrong with it (empty: it may be applied).
    pub problems: Vec<String>,
    /// The version the device is served now.
    pub current_version: u64,
    /// The current configuration as YAML (without `id`).
    pub current_yaml: String,
    /// The proposed one as it would be stored, as YAML (without `id`); empty if it does not parse.
    pub proposed_yaml: String,
}

/// The result of setting a configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConfigSet {
    /// The new version.
    pub version: u64,
    /// The new `configHash`.
    pub hash: String,
}

/// One report from a device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// Its sequence number: pass the last one seen as `after` to follow.
    pub seq: u64,
    /// `info`, `metrics`, `logs`, `flowlog`, `newlogs`, `applogs` or `appnewlogs`.
    pub kind: String,
    /// What it is about, if anything: an app, network instance, volume or content tree UUID.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub object: String,
    /// When it was received (ms since the Unix epoch).
    pub received_at_ms: u64,
    /// The message in proto3 JSON (newlogs: the array of its JSON lines).
    pub message: serde_json::Value,
}

/// A log line of a device (from its `logs` and `newlogs` reports).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogLine {
    /// The sequence number of the report it came in.
    pub seq: u64,
    /// When it was logged (ms since the Unix epoch).
    pub at_ms: u64,
    /// As the device wrote it, e.g. `info`, `error`.
    pub severity: String,
    /// The agent that logged it.
    pub source: String,
    /// The message.
    pub text: String,
}

/// One sample of a device's metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    /// When it was measured (the report's time, else its arrival), ms since the Unix epoch.
    pub at_ms: u64,
    /// Cumulative CPU time used, as the device counts it.
    pub cpu_total: u64,
    /// Cumulative CPU time available, in the same unit.
    pub cpu_system_total: u64,
    /// Share of the CPU used since the previous point (0 to 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_share: Option<f64>,
    /// Memory in use and available, MiB.
    pub memory_used_mib: u64,
    /// Memory available, MiB.
    pub memory_available_mib: u64,
    /// Bytes sent and received over all interfaces (cumulative).
    pub network_tx_bytes: u64,
    /// Bytes received over all interfaces (cumulative).
    pub network_rx_bytes: u64,
    /// Bytes per second sent since the previous point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_tx_per_s: Option<f64>,
    /// Bytes per second received since the previous point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_rx_per_s: Option<f64>,
}

/// A page of reports.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reports {
    /// Reports after the requested sequence number, oldest first.
    pub reports: Vec<Report>,
}

/// Where devices find the controller's datastore, and with what credentials (the fields of
/// its `DatastoreConfig`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DatastoreLocation {
    /// The `DatastoreConfig.id`.
    pub id: String,
    /// Its HTTPS `fqdn` as devices reach it (`https://host:port`).
    pub https_url: String,
    /// Its plain HTTP `fqdn`, when the controller also serves it without TLS.
    pub http_url: Option<String>,
    /// The `dpath` (the files are at `fqdn/dpath/<sha256>`).
    pub dpath: String,
    /// The `apiKey` (HTTP Basic user name).
    pub api_key: String,
    /// The `password`.
    pub password: String,
}

/// The answer to an upload (`POST /datastore`, the file as the body).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DatastoreUpload {
    /// The file: its SHA-256 (also its name in the datastore) and size.
    pub stored: crate::datastore::Stored,
    /// The datastore.
    pub location: DatastoreLocation,
}
