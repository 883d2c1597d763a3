//! The device side of the EVE device API, as lichen's zedagent speaks it (the controller's side
//! is `controller/`; the wire types are `lichen-api`'s).
//!
//! - [`bootstrap`]: the config partition (root, onboarding certificate, controller, serial);
//! - [`identity`]: the device key and its self-signed certificate, made on first boot;
//! - [`controller`]: the controller's signing certificate, checked against the pinned root, and
//!   the envelopes it signs;
//! - [`checkpoint`]: the last good configuration, kept as received and verified again when read;
//! - [`http`]: HTTP/1.1 requests and responses over a TLS stream;
//! - [`queue`]: reports kept (in the vault) until the controller takes them;
//! - [`objects`]: the node's apps, content trees and volumes as info reports, made when they
//!   change;
//! - [`services`]: the node's services (the launcher's rows) as metric items;
//! - [`tables`]: the configuration in force as the bus's typed tables, references checked;
//! - [`fanout`]: those tables published, objects gone from the configuration unpublished;
//! - [`x509`]: PEM, a certificate's key and path validation, through webpki.
//!
//! Everything a controller or the network sends is checked here before zedagent acts on it;
//! each module says what its peer may send and what happens.

#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

extern crate alloc;

pub mod bootstrap;
pub mod checkpoint;
pub mod controller;
pub mod fanout;
pub mod flowlog;
pub mod http;
pub mod identity;
#[cfg(target_os = "none")]
pub mod link;
pub mod netinst;
pub mod objects;
pub mod queue;
pub mod services;
pub mod tables;
pub mod x509;

/// A Unix time (seconds) as a protobuf timestamp.
pub fn timestamp(secs: u64) -> lichen_api::Timestamp {
    lichen_api::Timestamp {
        seconds: i64::try_from(secs).unwrap_or(i64::MAX),
        nanos: 0,
    }
}
