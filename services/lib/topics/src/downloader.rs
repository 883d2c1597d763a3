//! What `downloader` publishes (services/downloader): the progress of every volume it fills,
//! keyed by the content tree's UUID for a download (EVE: `DownloaderStatus`, with the
//! verifier's result folded in: see docs/download.md) and by the volume's UUID for zeros.
//!
//! Volatile: at start the downloader finds what it had committed on each target volume (its
//! progress record) and publishes again from there.

use alloc::string::String;
use serde::{Deserialize, Serialize};

use crate::{Global, Topic};

/// Where a download stands (the part of EVE's `ZSwState` sequence that is the downloader's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DownloadState {
    /// Known, not started (no target volume yet, or waiting to retry).
    #[default]
    Pending,
    /// Bytes are arriving (EVE's DOWNLOADING).
    Downloading,
    /// Every byte arrived; its size and SHA-256 are being checked (EVE's VERIFYING).
    Verifying,
    /// Size and SHA-256 match the content tree: the volume holds exactly the image (EVE's
    /// VERIFIED / LOADED). Nothing else is ever reported complete.
    Verified,
    /// Failed for good until the configuration changes (`error` says why; a SHA-256 mismatch
    /// gives both hashes). A failure that may pass (datastore down, 404, a truncated body) is
    /// retried instead, and shows as `Downloading` or `Pending` with `error` and `retries`.
    Error,
}

/// The progress of one content tree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadStatus {
    /// The content tree's display name.
    pub name: String,
    /// Where it stands.
    pub state: DownloadState,
    /// Bytes received and committed to the target volume so far (on a retry or after a
    /// restart, the download resumes from there).
    pub bytes: u64,
    /// The size the datastore announced (0: not known yet).
    pub total: u64,
    /// The last error (empty: none). Kept while retrying, so that an operator sees why.
    pub error: String,
    /// Attempts that failed and were retried since the downloader started.
    pub retries: u32,
    /// The SHA-256 of the bytes received, lowercase hex, once they all arrived.
    pub sha256: String,
    /// The volume it fills (its UUID: `volumemgr/VolumeStatus`'s key).
    pub volume: String,
    /// The generation of the volume it fills (volumemgr takes a fill as the volume's only
    /// for the generation it was made for).
    pub generation: i64,
}

impl core::fmt::Display for DownloadStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} {:?} {}/{} bytes on {}",
            self.name, self.state, self.bytes, self.total, self.volume
        )?;
        if self.retries > 0 {
            write!(f, ", {} retries", self.retries)?;
        }
        if !self.error.is_empty() {
            write!(f, ": {}", self.error)?;
        }
        Ok(())
    }
}

/// Every content tree's download, by content tree UUID.
pub const DOWNLOAD_STATUS: Topic<String, DownloadStatus> =
    Topic::volatile("downloader/DownloadStatus", 2);

/// The node's app data disk, as the downloader (its only writer) found it: volumemgr places
/// volumes within it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataDisk {
    /// Its size in whole MiB.
    pub size_mib: u64,
}

/// The app data disk, once the downloader has opened it (absent on a node without one).
pub const DATA_DISK: Topic<Global, DataDisk> = Topic::volatile("downloader/DataDisk", 1);
