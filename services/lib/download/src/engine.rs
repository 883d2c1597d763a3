//! One content tree's download into its target volume: requests (a `Range` from what is
//! committed), streams the body through a small buffer onto the volume, hashes it on the way,
//! commits progress (data flushed, then the [`record`](crate::record)) every
//! [`Policy::commit_every`] bytes, retries what may pass with backoff and jitter, and reports
//! `Verified` only when the size and the SHA-256 match the content tree.
//!
//! **What the datastore may do, and what happens**: refuse the connection, stall (the
//! transport's timeout), answer 404 or 5xx, send a head that does not parse, close in the middle
//! of the body: the attempt fails, the bytes after the last commit are dropped, and the next
//! attempt resumes from the commit after a backoff (retried; `retries` counts them). Ignore the
//! `Range` (200): the download starts again from byte 0. Send a range other than the one asked
//! for: the download starts again from 0. Announce more bytes than the content tree's
//! `maxSizeBytes` or the volume can hold: ERROR, nothing more is written. Send other bytes than
//! the content tree's: ERROR with both hashes, the record is cleared, nothing is verified.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use kernel::block::BlockDevice;
use sha2::{Digest, Sha256};
use topics::downloader::{DownloadState, DownloadStatus};

use crate::http::{self, Dechunker, Framing};
use crate::record::{self, Progress, Record};
use crate::source::Source;

/// Bytes written to the volume at a time (a whole number of sectors of any size up to 4 KiB).
pub const CHUNK: usize = 64 * 1024;

/// What to download, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The content tree's UUID.
    pub content: String,
    /// Its display name.
    pub name: String,
    /// Where from.
    pub source: Source,
    /// The SHA-256 it must have.
    pub sha256: [u8; 32],
    /// The most bytes it may have (`maxSizeBytes`; 0: as many as the volume holds).
    pub max_size: u64,
    /// The target volume (its UUID on a node; a disk name for one download), for the status.
    pub volume: String,
    /// The target volume's generation, for the status.
    pub generation: i64,
}

/// How hard to try.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// The first pause before a retry, ms (doubling up to `max_backoff_ms`).
    pub first_backoff_ms: u64,
    /// The longest pause, ms.
    pub max_backoff_ms: u64,
    /// Give up (ERROR) after this many retries in a row without progress (`None`: never).
    pub max_retries: Option<u32>,
    /// Commit (flush the data, then the record) every this many bytes: a multiple of
    /// [`CHUNK`].
    pub commit_every: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            first_backoff_ms: 1000,
            max_backoff_ms: 60_000,
            max_retries: None,
            commit_every: 16 * CHUNK as u64,
        }
    }
}

/// A byte stream to the datastore (TCP, or TLS over TCP).
#[allow(async_fn_in_trait)]
pub trait Stream {
    /// Reads some bytes; 0 means the server closed the connection.
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, String>;
    /// Writes all of `data`.
    async fn write_all(&mut self, data: &[u8]) -> Result<(), String>;
}

/// What the download needs of its world: connections, time and randomness.
#[allow(async_fn_in_trait)]
pub trait Net {
    /// A connection.
    type Stream: Stream;
    /// Connects to `source` (with TLS if it says so).
    async fn connect(&mut self, source: &Source) -> Result<Self::Stream, String>;
    /// Waits `ms` milliseconds.
    async fn sleep(&mut self, ms: u64);
    /// A random number (for jitter).
    fn random(&mut self) -> u32;
    /// Whether the download is no longer wanted (its configuration changed or went): checked
    /// before each attempt, after each pause and after each read, so that a cancelled download
    /// stops within one read's timeout.
    fn cancelled(&mut self) -> bool {
        false
    }
}

/// The error of a download stopped by [`Net::cancelled`].
pub const CANCELLED: &str = "cancelled: the configuration no longer asks for it";

/// Reads a content tree's `sha256` (64 hex digits, either case).
pub fn parse_sha256(hex: &str) -> Result<[u8; 32], String> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return Err(format!(
            "sha256 {hex:?}: expected 64 hex digits (a content tree without one cannot be verified)"
        ));
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let digit = |b: u8| (b as char).to_digit(16);
        match (digit(pair[0]), digit(pair[1])) {
            (Some(h), Some(l)) => out[i] = (h * 16 + l) as u8,
            _ => return Err(format!("sha256 {hex:?}: not hex")),
        }
    }
    Ok(out)
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use core::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The pause before retry number `retry` (1, 2, ...): doubling from the first, capped, with
/// ±25 % jitter from `random`.
pub fn backoff_ms(policy: &Policy, retry: u32, random: u32) -> u64 {
    let base = policy
        .first_backoff_ms
        .saturating_mul(1u64 << retry.saturating_sub(1).min(20))
        .min(policy.max_backoff_ms);
    let spread = base / 2; // the jitter spans ±25 %
    if spread == 0 {
        return base;
    }
    base - spread / 2 + u64::from(random) % (spread + 1)
}

/// Why an attempt failed.
enum Failure {
    /// [`Net::cancelled`] said so: stop at once, state `Pending`.
    Cancelled,
    /// It may pass: retry after a pause.
    Retry(String),
    /// It will not: ERROR.
    Fatal(String),
}

impl Failure {
    fn message(self) -> String {
        match self {
            Failure::Cancelled => CANCELLED.into(),
            Failure::Retry(e) | Failure::Fatal(e) => e,
        }
    }
}

/// The download's state between attempts.
struct Transfer<'a, D> {
    disk: &'a mut D,
    sector: u64,
    /// Bytes of content the volume holds before the record.
    capacity: u64,
    /// Bytes received and hashed.
    received: u64,
    /// Bytes written to the volume (whole chunks).
    written: u64,
    /// Bytes flushed and counted by the record.
    committed: u64,
    /// Received bytes not written yet (less than a chunk).
    pending: Vec<u8>,
    hasher: Sha256,
    /// The hasher as it was at `committed`.
    committed_hasher: Sha256,
    commit_every: u64,
    content: String,
    sha256: [u8; 32],
}

impl<D: BlockDevice> Transfer<'_, D> {
    fn block(e: kernel::block::Error) -> Failure {
        Failure::Fatal(format!("target volume: {e}"))
    }

    /// Goes back to the last commit: what came after it is received again.
    fn rollback(&mut self) {
        self.pending.clear();
        self.written = self.committed;
        self.received = self.committed;
        self.hasher = self.committed_hasher.clone();
    }

    /// Starts over from byte 0 (forgetting the record).
    async fn restart(&mut self) -> Result<(), Failure> {
        self.committed = 0;
        self.committed_hasher = Sha256::new();
        self.rollback();
        self.write_record(Progress::Partial(0)).await
    }

    async fn write_record(&mut self, progress: Progress) -> Result<(), Failure> {
        let record = Record {
            content: self.content.clone(),
            sha256: self.sha256,
            progress,
        };
        record::write(self.disk, &record).await.map_err(Self::block)
    }

    /// Takes received body bytes.
    async fn append(&mut self, mut data: &[u8]) -> Result<bool, Failure> {
        let mut committed = false;
        if self.received + data.len() as u64 > self.capacity {
            return Err(Failure::Fatal(format!(
                "more than the {} bytes the target volume holds",
                self.capacity
            )));
        }
        self.received += data.len() as u64;
        while !data.is_empty() {
            let n = data.len().min(CHUNK - self.pending.len());
            // Hashed piece by piece, so that at a commit the hasher covers exactly the bytes
            // written.
            self.hasher.update(&data[..n]);
            self.pending.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.pending.len() == CHUNK {
                self.disk
                    .write(self.written / self.sector, &self.pending)
                    .await
                    .map_err(Self::block)?;
                self.written += CHUNK as u64;
                self.pending.clear();
                if self.written - self.committed >= self.commit_every {
                    self.commit().await?;
                    committed = true;
                }
            }
        }
        Ok(committed)
    }

    /// Makes the written chunks durable, then counts them in the record.
    async fn commit(&mut self) -> Result<(), Failure> {
        self.disk.flush().await.map_err(Self::block)?;
        self.write_record(Progress::Partial(self.written)).await?;
        self.committed = self.written;
        self.committed_hasher = self.hasher.clone();
        Ok(())
    }

    /// Writes the last partial chunk (padded to a sector) and flushes everything.
    async fn finish(&mut self) -> Result<(), Failure> {
        if !self.pending.is_empty() {
            let sector = self.sector as usize;
            let len = self.pending.len().div_ceil(sector) * sector;
            self.pending.resize(len, 0);
            self.disk
                .write(self.written / self.sector, &self.pending)
                .await
                .map_err(Self::block)?;
            self.pending.clear();
        }
        self.disk.flush().await.map_err(Self::block)
    }

    /// Hashes the first `len` bytes of the volume (what an earlier run committed).
    async fn hash_volume(&mut self, len: u64) -> Result<Sha256, Failure> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        let mut at = 0;
        while at < len {
            let n = (len - at).min(CHUNK as u64) as usize;
            let whole = n.div_ceil(self.sector as usize) * self.sector as usize;
            self.disk
                .read(at / self.sector, &mut buf[..whole])
                .await
                .map_err(Self::block)?;
            hasher.update(&buf[..n]);
            at += n as u64;
        }
        Ok(hasher)
    }
}

/// Downloads `job` into `disk`, reporting each step through `report`, until it is verified or
/// fails for good; returns the last status.
pub async fn download<D: BlockDevice, N: Net>(
    job: &Job,
    disk: &mut D,
    net: &mut N,
    policy: &Policy,
    report: &mut dyn FnMut(&DownloadStatus),
) -> DownloadStatus {
    let mut status = DownloadStatus {
        name: job.name.clone(),
        state: DownloadState::Pending,
        volume: job.volume.clone(),
        generation: job.generation,
        ..DownloadStatus::default()
    };
    let fail = |status: &mut DownloadStatus, report: &mut dyn FnMut(&DownloadStatus), e| {
        status.state = DownloadState::Error;
        status.error = e;
        report(status);
        status.clone()
    };
    let Some((_, capacity)) = record::layout(disk) else {
        return fail(
            &mut status,
            report,
            format!(
                "target volume {}: too small for the downloader's record, or sectors over 4 KiB",
                job.volume
            ),
        );
    };
    if job.max_size > capacity {
        return fail(
            &mut status,
            report,
            format!(
                "content tree of up to {} bytes does not fit volume {} ({} bytes for content)",
                job.max_size, job.volume, capacity
            ),
        );
    }
    let sector = u64::from(disk.geometry().sector_size);
    let mut t = Transfer {
        disk,
        sector,
        capacity: if job.max_size > 0 {
            job.max_size
        } else {
            capacity
        },
        received: 0,
        written: 0,
        committed: 0,
        pending: Vec::with_capacity(CHUNK),
        hasher: Sha256::new(),
        committed_hasher: Sha256::new(),
        commit_every: policy.commit_every.max(CHUNK as u64) / CHUNK as u64 * CHUNK as u64,
        content: job.content.clone(),
        sha256: job.sha256,
    };

    // What an earlier run left.
    let found = match record::read(t.disk).await {
        Ok(found) => found.filter(|r| r.is_for(&job.content, &job.sha256)),
        Err(e) => return fail(&mut status, report, format!("target volume: {e}")),
    };
    match found.map(|r| r.progress) {
        Some(Progress::Verified(n)) if n <= t.capacity => {
            // Verified before: checked again, from the volume, before it is reported.
            status.state = DownloadState::Verifying;
            report(&status);
            match t.hash_volume(n).await {
                Ok(h) if h.clone().finalize()[..] == job.sha256[..] => {
                    status.state = DownloadState::Verified;
                    (status.bytes, status.total) = (n, n);
                    status.sha256 = hex(&job.sha256);
                    report(&status);
                    return status;
                }
                Ok(_) => {}
                Err(f) => return fail(&mut status, report, f.message()),
            }
        }
        Some(Progress::Partial(n))
            if n <= t.capacity && n.is_multiple_of(CHUNK as u64) && n > 0 =>
        {
            match t.hash_volume(n).await {
                Ok(h) => {
                    t.committed_hasher = h;
                    t.committed = n;
                    t.rollback();
                }
                Err(f) => return fail(&mut status, report, f.message()),
            }
        }
        _ => {}
    }
    if t.committed == 0 {
        if let Err(f) = t.restart().await {
            return fail(&mut status, report, f.message());
        }
    }

    let mut failures_in_a_row = 0u32;
    let mut total = 0u64;
    loop {
        if net.cancelled() {
            return cancelled(&mut status, report);
        }
        status.state = DownloadState::Downloading;
        status.bytes = t.committed;
        report(&status);
        let start = t.committed;
        match attempt(job, &mut t, net, &mut status, &mut total, report).await {
            Ok(()) => break,
            Err(Failure::Cancelled) => return cancelled(&mut status, report),
            Err(Failure::Fatal(e)) => return fail(&mut status, report, e),
            Err(Failure::Retry(e)) => {
                t.rollback();
                if t.committed > start {
                    failures_in_a_row = 0;
                }
                failures_in_a_row += 1;
                status.retries += 1;
                status.error = e;
                status.bytes = t.committed;
                if policy
                    .max_retries
                    .is_some_and(|max| failures_in_a_row > max)
                {
                    let e = format!(
                        "gave up after {failures_in_a_row} failed attempts in a row: {}",
                        status.error
                    );
                    return fail(&mut status, report, e);
                }
                status.state = DownloadState::Pending;
                report(&status);
                let pause = backoff_ms(policy, failures_in_a_row, net.random());
                net.sleep(pause).await;
            }
        }
    }

    // Every byte is there: check it.
    status.state = DownloadState::Verifying;
    status.bytes = t.received;
    status.total = total;
    report(&status);
    let got: [u8; 32] = t.hasher.clone().finalize().into();
    status.sha256 = hex(&got);
    if t.received != total {
        let e = format!("received {} bytes, expected {total}", t.received);
        let _ = t.write_record(Progress::Partial(0)).await;
        return fail(&mut status, report, e);
    }
    if got != job.sha256 {
        let e = format!(
            "sha256 mismatch: the content tree says {}, the {} bytes received have {}",
            hex(&job.sha256),
            t.received,
            hex(&got)
        );
        let _ = t.write_record(Progress::Partial(0)).await;
        return fail(&mut status, report, e);
    }
    if let Err(f) = t.write_record(Progress::Verified(t.received)).await {
        return fail(&mut status, report, f.message());
    }
    status.state = DownloadState::Verified;
    status.error.clear();
    report(&status);
    status
}

/// A download stopped because it is no longer wanted: `Pending`, with [`CANCELLED`].
fn cancelled(
    status: &mut DownloadStatus,
    report: &mut dyn FnMut(&DownloadStatus),
) -> DownloadStatus {
    status.state = DownloadState::Pending;
    status.error = CANCELLED.into();
    report(status);
    status.clone()
}

/// One request and its response, from `t.received` on.
async fn attempt<D: BlockDevice, N: Net>(
    job: &Job,
    t: &mut Transfer<'_, D>,
    net: &mut N,
    status: &mut DownloadStatus,
    total: &mut u64,
    report: &mut dyn FnMut(&DownloadStatus),
) -> Result<(), Failure> {
    let source = &job.source;
    let mut stream = net.connect(source).await.map_err(|e| {
        Failure::Retry(format!(
            "{}:{}: cannot connect: {e}",
            source.host, source.port
        ))
    })?;
    let request = http::request(
        &source.host_header(),
        &source.path,
        t.received,
        source.authorization.as_deref(),
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| Failure::Retry(format!("sending the request: {e}")))?;

    let mut buf = vec![0u8; CHUNK];
    let mut have = 0;
    let (head, used) = loop {
        let n = stream
            .read(&mut buf[have..])
            .await
            .map_err(|e| Failure::Retry(format!("reading the response: {e}")))?;
        if n == 0 {
            return Err(Failure::Retry(
                "the datastore closed the connection before answering".into(),
            ));
        }
        have += n;
        if let Some(found) =
            http::parse_head(&buf[..have]).map_err(|e| Failure::Retry(format!("{e}")))?
        {
            break found;
        }
    };

    let asked = t.received;
    let announced = match head.status {
        200 => {
            if asked > 0 {
                // The server ignored the range: take the whole file from the start.
                t.restart().await?;
            }
            match head.framing {
                Framing::Length(n) => Some(n),
                _ => None,
            }
        }
        206 => {
            let range = head
                .range
                .ok_or(Failure::Retry("206 without a Content-Range".into()))?;
            if range.start != asked {
                t.restart().await?;
                return Err(Failure::Retry(format!(
                    "asked for bytes from {asked}, the datastore sent from {}: starting over",
                    range.start
                )));
            }
            Some(range.total)
        }
        416 if asked > 0 => {
            t.restart().await?;
            return Err(Failure::Retry(format!(
                "the datastore has no bytes from {asked} (416): starting over"
            )));
        }
        404 => {
            return Err(Failure::Retry(format!(
                "{} not found in the datastore (404)",
                source.path
            )))
        }
        other => {
            return Err(Failure::Retry(format!(
                "the datastore answered HTTP {other}"
            )))
        }
    };
    if let Some(n) = announced {
        if n > t.capacity {
            return Err(Failure::Fatal(format!(
                "the datastore has {n} bytes: more than the content tree's maxSizeBytes or the target volume allow ({})",
                t.capacity
            )));
        }
        *total = n;
        status.total = n;
    }

    // The body.
    let mut left = match head.framing {
        Framing::Length(n) => Some(n),
        _ => None,
    };
    let mut chunks = (head.framing == Framing::Chunked).then(Dechunker::new);
    let mut start = used;
    loop {
        // Bytes buf[start..have] are body bytes (or chunked coding) not handled yet.
        let mut at = start;
        while at < have {
            let piece = &buf[at..have];
            let (consumed, data) = match chunks.as_mut() {
                Some(d) => d
                    .feed(piece)
                    .map_err(|e| Failure::Retry(format!("chunked body: {e}")))?,
                None => {
                    let n = left.map_or(piece.len(), |l| piece.len().min(l as usize));
                    (n, 0..n)
                }
            };
            let data = &piece[data];
            if let Some(l) = left.as_mut() {
                *l -= data.len() as u64;
            }
            let committed = t.append(data).await?;
            if committed {
                status.bytes = t.committed;
                report(status);
            }
            if consumed == 0 {
                break;
            }
            at += consumed;
        }
        let done = match (&chunks, left) {
            (Some(d), _) => d.done(),
            (None, Some(l)) => l == 0,
            (None, None) => false,
        };
        if done {
            break;
        }
        have = stream
            .read(&mut buf)
            .await
            .map_err(|e| Failure::Retry(format!("reading the body: {e}")))?;
        if net.cancelled() {
            return Err(Failure::Cancelled);
        }
        start = 0;
        if have == 0 {
            if chunks.is_none() && left.is_none() {
                break; // Delimited by the close.
            }
            return Err(Failure::Retry(format!(
                "the datastore closed the connection after {} of {} bytes (truncated)",
                t.received,
                if *total > 0 {
                    alloc::string::ToString::to_string(total)
                } else {
                    "?".into()
                }
            )));
        }
    }
    if *total == 0 {
        *total = t.received;
        status.total = t.received;
    }
    t.finish().await
}

#[cfg(test)]
mod tests;
