//! The stored objects. They are protobuf messages so that the embedded log can encode them
//! compactly and read back records written by older versions.

/// An onboarding certificate that devices may register with, and the serials it admits.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Onboarding {
    /// Hex of the first 16 bytes of the SHA-256 of the certificate's DER.
    #[prost(string, tag = "1")]
    pub id: String,
    /// The certificate, DER.
    #[prost(bytes = "vec", tag = "2")]
    pub cert_der: Vec<u8>,
    /// Serial patterns; `*` matches any run of characters.
    #[prost(string, repeated, tag = "3")]
    pub serials: Vec<String>,
    /// The certificate's subject, for people.
    #[prost(string, tag = "4")]
    pub subject: String,
}

/// A registered device.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Device {
    /// The UUID the controller gave it.
    #[prost(string, tag = "1")]
    pub uuid: String,
    /// The serial it registered with.
    #[prost(string, tag = "2")]
    pub serial: String,
    /// The [`Onboarding::id`] it registered with.
    #[prost(string, tag = "3")]
    pub onboarding_id: String,
    /// Its device certificate, DER.
    #[prost(bytes = "vec", tag = "4")]
    pub cert_der: Vec<u8>,
    /// When it registered, in seconds since the Unix epoch.
    #[prost(uint64, tag = "5")]
    pub registered_at: u64,
    /// When it was last heard from, in milliseconds since the Unix epoch (0: never). Recorded
    /// in batches, so it may lag by a few seconds.
    #[prost(uint64, tag = "6")]
    pub last_seen_ms: u64,
}

/// The configuration served to a device.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeviceConfig {
    /// The device's UUID.
    #[prost(string, tag = "1")]
    pub uuid: String,
    /// Increases with every change.
    #[prost(uint64, tag = "2")]
    pub version: u64,
    /// The encoded `EdgeDevConfig`, exactly as served.
    #[prost(bytes = "vec", tag = "3")]
    pub config: Vec<u8>,
    /// The `configHash` of `config`.
    #[prost(string, tag = "4")]
    pub hash: String,
}

/// A report a device posted.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Telemetry {
    /// The device's UUID.
    #[prost(string, tag = "1")]
    pub uuid: String,
    /// A [`super::TelemetryKind`] code.
    #[prost(int32, tag = "2")]
    pub kind: i32,
    /// Its sequence number, set by the store.
    #[prost(uint64, tag = "3")]
    pub seq: u64,
    /// When it was received, in milliseconds since the Unix epoch.
    #[prost(uint64, tag = "4")]
    pub received_at_ms: u64,
    /// The payload as posted (a protobuf message, or gzip for newlogs).
    #[prost(bytes = "vec", tag = "5")]
    pub payload: Vec<u8>,
    /// The object it is about, for queries: an info report's app, network instance, volume or
    /// content tree UUID (the device's for device info); a flow log's app UUID; else empty.
    #[prost(string, tag = "6")]
    pub object: String,
    /// A log report's lines, for queries (stored beside the payload; not returned by
    /// [`super::Store::telemetry`]).
    #[prost(message, repeated, tag = "7")]
    pub lines: Vec<LogLine>,
}

/// One log line of a `logs` or `newlogs` report, as queried.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LogLine {
    /// The report's sequence number (set by the store).
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    /// The device's UUID (set by the store).
    #[prost(string, tag = "2")]
    pub uuid: String,
    /// When it was logged, in milliseconds since the Unix epoch (the report's arrival if the
    /// line carries no time).
    #[prost(uint64, tag = "3")]
    pub at_ms: u64,
    /// As the device wrote it, e.g. `info`, `error`.
    #[prost(string, tag = "4")]
    pub severity: String,
    /// The agent that logged it.
    #[prost(string, tag = "5")]
    pub source: String,
    /// The message.
    #[prost(string, tag = "6")]
    pub text: String,
}

/// A device's attestation state.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Attestation {
    /// The device's UUID.
    #[prost(string, tag = "1")]
    pub uuid: String,
    /// Increases by one with every change (see [`super::Store::put_attestation`]).
    #[prost(uint64, tag = "2")]
    pub version: u64,
    /// The certificates the device posted, one per type.
    #[prost(message, repeated, tag = "3")]
    pub certs: Vec<AttestCert>,
    /// The nonce the device must quote next (empty: none outstanding).
    #[prost(bytes = "vec", tag = "4")]
    pub nonce: Vec<u8>,
    /// The token the device must present in its config requests (empty: not required).
    #[prost(bytes = "vec", tag = "5")]
    pub integrity_token: Vec<u8>,
}

/// A certificate a device posted for attestation.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttestCert {
    /// Its `ZCertType`.
    #[prost(int32, tag = "1")]
    pub cert_type: i32,
    /// The certificate, PEM.
    #[prost(string, tag = "2")]
    pub pem: String,
    /// Whether the device may replace it.
    #[prost(bool, tag = "3")]
    pub mutable: bool,
}

/// One change, as written to the log of earlier versions (see [`super::legacy`]).
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Record {
    #[prost(oneof = "Change", tags = "1, 2, 3, 4, 5, 6")]
    pub change: Option<Change>,
}

/// The changes a [`Record`] can hold.
#[derive(Clone, PartialEq, prost::Oneof)]
pub(super) enum Change {
    #[prost(message, tag = "1")]
    PutOnboarding(Onboarding),
    #[prost(string, tag = "2")]
    RemoveOnboarding(String),
    #[prost(message, tag = "3")]
    InsertDevice(Device),
    #[prost(string, tag = "4")]
    RemoveDevice(String),
    #[prost(message, tag = "5")]
    SetConfig(DeviceConfig),
    #[prost(message, tag = "6")]
    AddTelemetry(Telemetry),
}
