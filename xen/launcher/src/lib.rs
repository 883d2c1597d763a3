//! `lichen-launcher` as a library: the manifest and its checks, the bus wiring derived from the
//! images' declarations, the supervisor and the Xen toolstack it drives. The `lichen-launcher`
//! program (src/main.rs) is its command line; the fuzz targets (xen/launcher/fuzz) use the
//! parsers directly.

pub mod apps;
pub mod backoff;
pub mod builder;
pub mod bundle;
pub mod bus;
pub mod console;
pub mod daemons;
pub mod disks;
pub mod domain_service;
pub mod log;
pub mod logs;
pub mod loopdev;
pub mod manifest;
pub mod network;
pub mod order;
pub mod platform;
pub mod privcmd;
pub mod status;
pub mod supervisor;
pub mod toolstack;
pub mod wiring;
pub mod xenstore;
