//! The downloader's core (services/downloader): a content tree from its datastore, over HTTP/1.1
//! or HTTPS, into the block device of its target volume.
//!
//! - [`config`]: which fills volumemgr asks for (a content tree's image, or zeros), where;
//! - [`zero`]: a blank volume's fill;
//! - [`source`]: EVE's `DatastoreConfig` and `ContentTree` as one location with credentials;
//! - [`http`]: the request, the response head, and a streaming decoder of chunked bodies;
//! - [`record`]: the progress record on the volume, so that a restarted downloader resumes;
//! - [`engine`]: the download itself (streamed, hashed on the way, committed, retried with
//!   backoff, verified).
//!
//! The crate runs on the host as well (tests against a scripted datastore and a memory disk);
//! the image supplies the network ([`engine::Net`]: `kernel::net` TCP, `tls` for HTTPS).
//!
//! **What the datastore may do**: anything; see [`http`] and [`engine`]. Nothing it sends is
//! reported complete unless its size and SHA-256 match the content tree's.

#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

extern crate alloc;

pub mod config;
pub mod engine;
pub mod http;
pub mod record;
pub mod source;
pub mod zero;

pub use engine::{download, Job, Net, Policy, Stream};
pub use source::Source;
