//! The EVE device API v2 as lichen speaks it.
//!
//! The protobuf types are generated from lichen's own `.proto` files, which keep lf-edge/eve-api's
//! package names, message names, field numbers and types for everything lichen uses, so the wire
//! format and `Any` type URLs match EVE's. On top of them:
//! - [`envelope`] signs and opens [`auth::AuthContainer`]s (ECDSA P-256 over SHA-256);
//! - [`cert`] hashes certificates the way EVE does and reads the few X.509 fields lichen needs.
//!
//! The crate is `no_std` + `alloc` by default, for lichen's unikernel services; the `std` feature
//! adds standard-library support and `json` adds the proto3 JSON mapping (serde) of every message.
#![no_std]

extern crate alloc;
#[cfg(feature = "std")]
#[macro_use]
extern crate std;

pub mod cert;
pub mod envelope;

/// Declares the module of one generated proto package, with its JSON impls under `json`.
macro_rules! proto_package {
    ($(#[$doc:meta])* $module:ident => $package:literal) => {
        $(#[$doc])*
        #[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
        pub mod $module {
            include!(concat!(env!("OUT_DIR"), "/", $package, ".rs"));
            #[cfg(feature = "json")]
            use std::prelude::rust_2021::*;
            #[cfg(feature = "json")]
            include!(concat!(env!("OUT_DIR"), "/", $package, ".serde.rs"));
        }
    };
}

proto_package!(
    /// `org.lfedge.eve.attest`: attestation (certificates, nonce, quote, integrity token).
    attest => "org.lfedge.eve.attest"
);
proto_package!(
    /// `org.lfedge.eve.auth`: the signed envelope around every body.
    auth => "org.lfedge.eve.auth"
);
proto_package!(
    /// `org.lfedge.eve.certs`: the controller's certificates.
    certs => "org.lfedge.eve.certs"
);
proto_package!(
    /// `org.lfedge.eve.common`: hash algorithms, cipher blocks, network addressing.
    common => "org.lfedge.eve.common"
);
proto_package!(
    /// `org.lfedge.eve.config`: the device configuration and the config route.
    config => "org.lfedge.eve.config"
);
proto_package!(
    /// `org.lfedge.eve.flowlog`: application network flows.
    flowlog => "org.lfedge.eve.flowlog"
);
proto_package!(
    /// `org.lfedge.eve.hardwarehealth`: memory ECC errors and disk S.M.A.R.T. attributes.
    hardwarehealth => "org.lfedge.eve.hardwarehealth"
);
proto_package!(
    /// `org.lfedge.eve.info`: status reports.
    info => "org.lfedge.eve.info"
);
proto_package!(
    /// `org.lfedge.eve.logs`: device log bundles.
    logs => "org.lfedge.eve.logs"
);
proto_package!(
    /// `org.lfedge.eve.metrics`: resource usage.
    metrics => "org.lfedge.eve.metrics"
);
proto_package!(
    /// `org.lfedge.eve.register`: onboarding.
    register => "org.lfedge.eve.register"
);
proto_package!(
    /// `org.lfedge.eve.uuid`: the device's UUID.
    uuid => "org.lfedge.eve.uuid"
);

/// The encoded `google.protobuf.FileDescriptorSet` of every message above (and the files they
/// import), for reading messages by descriptor.
#[cfg(feature = "json")]
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/file_descriptor_set.bin"));

/// The HTTP content type of every body on the device API.
pub const CONTENT_TYPE: &str = "application/x-proto-binary";

/// The path prefix of the device API v2 routes.
pub const API_PREFIX: &str = "/api/v2/edgedevice";

/// `google.protobuf.Timestamp`, as the generated types use it (from pbjson-types with `json`).
#[cfg(feature = "json")]
pub use pbjson_types::Timestamp;
/// `google.protobuf.Timestamp`, as the generated types use it (from pbjson-types with `json`).
#[cfg(not(feature = "json"))]
pub use prost_types::Timestamp;
