//! A crash-safe key-value store over any [`kernel::block::BlockDevice`]: lichen's `/persist`,
//! and, encrypted with XChaCha20-Poly1305, its vault.
//!
//! - [`Store::get`] reads one value from disk and checks it; a value that fails its checksum
//!   (or, encrypted, its tag) is an error, never data.
//! - [`Store::commit`] applies a [`Batch`] of puts and deletes atomically and durably: when it
//!   returns `Ok` the batch is flushed; a power cut before that leaves all of it or none.
//! - Space is reclaimed by compaction inside `commit`, which never moves committed data
//!   without first making its new copy durable.
//! - [`Store::open`] refuses a blank, foreign, other-version or wrongly keyed disk; only
//!   [`Store::format`] writes a fresh store.
//!
//! The design (a log-structured store of our own, and why), its on-disk format, memory cost and
//! measurements are in docs/storage.md. Modules: [`format`] (on-disk layout and its decoders),
//! [`crypt`] (sealing, keys, key providers), `store` (the log, the index, compaction).
#![no_std]

extern crate alloc;
#[cfg(any(test, feature = "testing"))]
extern crate std;

pub mod crypt;
mod error;
pub mod format;
mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;

pub use crypt::{Key, KeyError, KeyProvider, SoftwareKey};
pub use error::Error;
pub use store::{Batch, FormatOptions, Stats, Store, DEFAULT_MAX_VALUE, MAX_KEY};

/// Runs a future that never waits (a memory or fault-injecting disk) to completion.
#[cfg(any(test, feature = "testing"))]
pub fn block_on<T>(f: impl core::future::Future<Output = T>) -> T {
    use core::task::{Context, Poll, Waker};
    let mut cx = Context::from_waker(Waker::noop());
    match core::pin::pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("block_on: the future waited, but nothing here can wake it"),
    }
}
