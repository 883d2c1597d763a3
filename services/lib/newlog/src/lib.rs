//! The logs pillar's logic, written once and tested on the host (docs/logs.md): EVE's newlogd
//! (collect every service's lines, batch them) and loguploader (keep the batches until the
//! controller accepts them), without the I/O, which is services/logs.
//!
//! - [`source`]: what the pillar knows of one service's line numbers: duplicates after a
//!   reconnection skipped, gaps counted as lost lines, what to acknowledge;
//! - [`batch`]: lines as newlogs JSON lines, batched up to a size, gzipped;
//! - [`gzip`]: a gzip member around DEFLATE (miniz_oxide), with a comment;
//! - [`queue`]: the batches waiting for the controller, within a quota, oldest dropped first.
#![no_std]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod batch;
pub mod gzip;
pub mod queue;
pub mod source;

pub use batch::{Builder, Entry};
pub use queue::Queue;
pub use source::Source;
