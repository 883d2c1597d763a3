//! What `zedagent` publishes (services/zedagent): the device's identity and its last good
//! configuration, both persistent, its state for diag, and the configuration in force as
//! typed tables for the pillars that follow it ([`config`], re-exported here).
//!
//! The identity holds the device's private key: no other service has a reason to subscribe to
//! it (the vault serves each peer only the topics it declares).

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::{Global, Topic};

pub mod config;
pub use config::*;

/// The device's identity (EVE: tpmmgr's soft mode, `/persist/certs`): a P-256 key made on
/// first boot and its self-signed device certificate, which the controller knows the device by.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The private key: the P-256 scalar, 32 bytes big-endian.
    pub key: Vec<u8>,
    /// The device certificate, DER.
    pub cert_der: Vec<u8>,
}

impl core::fmt::Debug for Identity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never the key.
        write!(f, "Identity {{ cert_der: {} bytes }}", self.cert_der.len())
    }
}

/// The device identity (one object), persistent.
pub const IDENTITY: Topic<Global, Identity> = Topic::persistent("zedagent/Identity", 1);

/// The last configuration that verified and decoded (EVE: `/persist/checkpoint`), used at boot
/// when the controller cannot be reached. It is kept as received: the signed response and the
/// certificate that signed it, so that it is verified again (against the pinned root) when
/// read back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The controller's signing certificate (PEM, as the `certs` route served it).
    pub signer_pem: String,
    /// The body of the config response: an `AuthContainer` around a `ConfigResponse`.
    pub response: Vec<u8>,
}

/// The last good configuration (one object), persistent.
pub const CHECKPOINT: Topic<Global, Checkpoint> = Topic::persistent("zedagent/Checkpoint", 1);

/// Where zedagent stands with the controller.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The device UUID, once the controller gave one.
    pub uuid: String,
    /// The version of the configuration in force (empty: none yet).
    pub config_version: String,
    /// Where it came from: `controller` or `checkpoint`.
    pub config_source: String,
    /// Config polls answered (200 or 304) since start.
    pub polls: u64,
    /// Requests that failed since start.
    pub failures: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// Info reports waiting for the controller (queued in the vault).
    pub info_queued: u64,
    /// Info reports the controller took (201) since start.
    pub info_delivered: u64,
    /// Metrics reports the controller took since start.
    pub metrics_sent: u64,
}

impl core::fmt::Display for Status {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.uuid.is_empty() {
            f.write_str("not onboarded")?;
        } else {
            write!(f, "device {}", self.uuid)?;
        }
        if !self.config_version.is_empty() {
            write!(
                f,
                ", config {} from the {}",
                self.config_version, self.config_source
            )?;
        }
        write!(
            f,
            ", {} polls, {} failures, info {} delivered {} queued, {} metrics",
            self.polls, self.failures, self.info_delivered, self.info_queued, self.metrics_sent
        )?;
        if let Some(e) = &self.last_error {
            write!(f, " (last: {e})")?;
        }
        Ok(())
    }
}

/// zedagent's state (one object).
pub const STATUS: Topic<Global, Status> = Topic::volatile("zedagent/Status", 2);

/// A report waiting for the controller (EVE: zedagent's deferred queue): an encoded
/// `ZInfoMsg` without its device UUID (set when sent, since a report may be made before the
/// controller gave one). Keyed by a sequence number, zero-padded so that key order is the
/// order they were made in; removed once the controller took it (201).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedInfo {
    /// The `ZInfoMsg`, protobuf-encoded.
    pub message: Vec<u8>,
}

/// The info reports not yet delivered, persistent: a zedagent restart or a controller outage
/// loses none.
pub const INFO_QUEUE: Topic<String, QueuedInfo> = Topic::persistent("zedagent/InfoQueue", 1);
