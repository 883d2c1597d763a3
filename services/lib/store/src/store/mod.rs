//! The store: a circular log of records on a block device, an index of live keys in memory.
//!
//! A commit is one record (header, sealed entries, CRC trailer) written after the previous one
//! and flushed: it is all there or, torn, fails its trailer CRC or a value's tag and ends the
//! log. Recovery replays the
//! log from the checkpoint's tail, accepting each record only if it is intact, has the next
//! sequence number, and an epoch no older than the previous record's and no newer than the
//! checkpoint's (so that a stale record of an earlier session, left beyond a torn end, is never
//! mistaken for the continuation of the log). Compaction copies the live entries of the oldest
//! records to the head, flushes, and only then moves the checkpoint's tail past them (flushed
//! again) before their space is reused. See docs/storage.md.
//!
//! What the disk may hold is anything: every byte read is checked before it is believed.

use crate::crypt::{Cipher, Key, KeyProvider, NonceParts};
use crate::error::Error;
use crate::format::{
    entry_len, parse_body, valid_sector_size, write_trailer, Checkpoint, EntryHeader, EntryKind,
    RecordHeader, RecordKind, Superblock, SuperblockError, CHECKPOINT_SECTOR, ENTRY_HEADER_LEN,
    HEADER_LEN, KEY_CHECK, KEY_CHECK_SEALED, LOG_START, SUPER_LEN, SUPER_SECTOR, TRAILER_LEN,
    VERSION,
};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use kernel::block::BlockDevice;

mod compact;
mod replay;

/// Largest value by default: 1 MiB.
pub const DEFAULT_MAX_VALUE: u32 = 1 << 20;
/// Largest key.
pub const MAX_KEY: usize = 255;

/// How to format a disk.
pub struct FormatOptions {
    /// The store's identity. **Must be random** (16 bytes from the platform's RNG): it
    /// separates this store's records and nonces from every other store's, including an
    /// earlier format of the same disk with the same key.
    pub id: [u8; 16],
    /// The vault key, or `None` for a plain (checksummed, unencrypted) store.
    pub key: Option<Key>,
    /// Largest value the store takes. Memory while committing and compacting peaks at about
    /// twice this (plus the commit's own values).
    pub max_value: u32,
}

impl FormatOptions {
    /// A plain store with values up to [`DEFAULT_MAX_VALUE`].
    pub fn new(id: [u8; 16]) -> FormatOptions {
        FormatOptions {
            id,
            key: None,
            max_value: DEFAULT_MAX_VALUE,
        }
    }
}

/// Puts and deletes to commit together. A key given twice keeps its last operation.
#[derive(Default, Debug, Clone)]
pub struct Batch {
    ops: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> &mut Batch {
        self.ops.insert(key.to_vec(), Some(value.to_vec()));
        self
    }

    /// Sets `key` to `value`, taking the value without a copy (large values).
    pub fn put_vec(&mut self, key: &[u8], value: Vec<u8>) -> &mut Batch {
        self.ops.insert(key.to_vec(), Some(value));
        self
    }

    /// Removes `key` (nothing if absent).
    pub fn delete(&mut self, key: &[u8]) -> &mut Batch {
        self.ops.insert(key.to_vec(), None);
        self
    }

    /// Operations in the batch.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch does nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Where a live value is: its record, the entry's byte offset in it, the value's length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Loc {
    record: u64,
    offset: u32,
    value_len: u32,
}

/// Figures about a store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Live keys.
    pub keys: usize,
    /// Bytes of their entries on disk.
    pub live_bytes: u64,
    /// Sectors of the log.
    pub capacity_sectors: u64,
    /// Sectors between the tail and the head (live data and garbage).
    pub used_sectors: u64,
    /// The current session's epoch.
    pub epoch: u64,
    /// Records written by compaction since open.
    pub compaction_records: u64,
    /// Bytes of live entries compaction copied since open.
    pub compaction_bytes: u64,
    /// Checkpoints written since open.
    pub checkpoints: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Writable,
    ReadOnly,
    Poisoned,
}

/// A crash-safe key-value store on a block device. See the crate docs.
pub struct Store<D: BlockDevice> {
    dev: D,
    sb: Superblock,
    ss: usize,
    log_end: u64,
    cipher: Cipher,
    index: BTreeMap<Box<[u8]>, Loc>,
    live_bytes: u64,
    tail: u64,
    tail_seq: u64,
    head: u64,
    next_seq: u64,
    checkpoint: Checkpoint,
    slot: u64,
    counter: u32,
    mode: Mode,
    stats: Stats,
}

impl<D: BlockDevice> Store<D> {
    /// Writes a fresh, empty store on `dev` (whatever it held is lost) and opens it.
    pub async fn format(mut dev: D, opts: &FormatOptions) -> Result<Store<D>, Error> {
        let g = dev.geometry();
        if g.read_only {
            return Err(Error::ReadOnly);
        }
        if !valid_sector_size(g.sector_size) {
            return Err(Error::UnsupportedSectorSize(g.sector_size));
        }
        let ss = g.sector_size as usize;
        let max_record = entry_len(EntryKind::Put, MAX_KEY, opts.max_value as usize, 16)
            .and_then(|e| e.checked_add(HEADER_LEN + TRAILER_LEN))
            .and_then(|r| u32::try_from(r).ok())
            .ok_or(Error::DiskTooSmall)?;
        let record_sectors = (max_record as u64).div_ceil(ss as u64);
        let min = LOG_START + 5 * record_sectors + 8;
        if g.sectors < min {
            return Err(Error::DiskTooSmall);
        }
        let cipher = Cipher::new(opts.key.as_ref());
        let mut sb = Superblock {
            sector_size: g.sector_size,
            sectors: g.sectors,
            id: opts.id,
            cipher: cipher.kind(),
            max_record,
            key_check: [0; KEY_CHECK_SEALED],
        };
        if opts.key.is_some() {
            let mut check = [0u8; KEY_CHECK_SEALED];
            let (text, tag) = check.split_at_mut(KEY_CHECK.len());
            text.copy_from_slice(&KEY_CHECK);
            let aad = sb.key_check_aad();
            cipher.seal(
                &sb.id,
                NonceParts {
                    epoch: 0,
                    counter: 0,
                },
                &[&aad],
                text,
                tag,
            );
            sb.key_check = check;
        }
        let mut sector = vec![0u8; ss];
        sector[..SUPER_LEN].copy_from_slice(&sb.encode());
        dev.write(SUPER_SECTOR, &sector).await?;
        dev.write(SUPER_SECTOR + 1, &sector).await?;
        let first = Checkpoint {
            generation: 1,
            epoch: 0,
            tail: LOG_START,
            tail_seq: 1,
            open_seq: 1,
        };
        sector.fill(0);
        sector[..crate::format::CHECKPOINT_LEN].copy_from_slice(&first.encode(&sb.id));
        dev.write(CHECKPOINT_SECTOR, &sector).await?;
        sector.fill(0);
        dev.write(CHECKPOINT_SECTOR + 1, &sector).await?;
        dev.write(LOG_START, &sector).await?;
        dev.flush().await?;
        Store::open(dev, opts.key.as_ref()).await
    }

    /// Opens the store on `dev` with `key` (`None` for a plain store), replaying its log.
    /// Refuses a blank, foreign, other-version or damaged disk, and a wrong key; never writes
    /// anything before those checks passed. On a writable device, starts a new epoch (one
    /// checkpoint write and flush).
    pub async fn open(mut dev: D, key: Option<&Key>) -> Result<Store<D>, Error> {
        let g = dev.geometry();
        if !valid_sector_size(g.sector_size) {
            return Err(Error::UnsupportedSectorSize(g.sector_size));
        }
        let ss = g.sector_size as usize;
        let mut sector = vec![0u8; ss];
        dev.read(SUPER_SECTOR, &mut sector).await?;
        let sb = match Superblock::decode(&sector) {
            Ok(sb) => sb,
            Err(SuperblockError::Corrupt) => {
                dev.read(SUPER_SECTOR + 1, &mut sector).await?;
                Superblock::decode(&sector).map_err(|_| Error::SuperblockCorrupt)?
            }
            Err(SuperblockError::Blank) => return Err(Error::NotFormatted),
            Err(SuperblockError::Foreign) => return Err(Error::Foreign),
            Err(SuperblockError::Version(found)) => {
                return Err(Error::WrongVersion {
                    found,
                    supported: VERSION,
                })
            }
        };
        let record_sectors = (sb.max_record as u64).div_ceil(ss as u64);
        if sb.sector_size != g.sector_size || sb.sectors > g.sectors {
            return Err(Error::GeometryMismatch);
        }
        if sb.sectors < LOG_START + 5 * record_sectors + 8 {
            return Err(Error::SuperblockCorrupt);
        }
        let cipher = match (sb.cipher, key) {
            (crate::format::CipherKind::Plain, None) => Cipher::Plain,
            (crate::format::CipherKind::Plain, Some(_)) => return Err(Error::NotEncrypted),
            (crate::format::CipherKind::XChaCha20Poly1305, None) => return Err(Error::KeyRequired),
            (crate::format::CipherKind::XChaCha20Poly1305, Some(k)) => {
                let cipher = Cipher::new(Some(k));
                let mut check = sb.key_check;
                let (text, tag) = check.split_at_mut(KEY_CHECK.len());
                let aad = sb.key_check_aad();
                let nonce = NonceParts {
                    epoch: 0,
                    counter: 0,
                };
                if cipher.open(&sb.id, nonce, &[&aad], text, tag).is_err() || text != KEY_CHECK {
                    return Err(Error::WrongKey);
                }
                cipher
            }
        };
        // The newest valid checkpoint.
        let mut best: Option<(u64, Checkpoint)> = None;
        for slot in 0..2 {
            dev.read(CHECKPOINT_SECTOR + slot, &mut sector).await?;
            if let Some(cp) = Checkpoint::decode(&sector, &sb.id) {
                if best.is_none_or(|(_, b)| cp.generation > b.generation) {
                    best = Some((slot, cp));
                }
            }
        }
        let (slot, checkpoint) = best.ok_or(Error::Corrupt {
            sector: CHECKPOINT_SECTOR,
        })?;
        if checkpoint.tail < LOG_START || checkpoint.tail >= sb.sectors {
            return Err(Error::Corrupt {
                sector: CHECKPOINT_SECTOR + slot,
            });
        }
        let mut store = Store {
            dev,
            sb,
            ss,
            log_end: sb.sectors,
            cipher,
            index: BTreeMap::new(),
            live_bytes: 0,
            tail: checkpoint.tail,
            tail_seq: checkpoint.tail_seq,
            head: checkpoint.tail,
            next_seq: checkpoint.tail_seq,
            checkpoint,
            slot,
            counter: 0,
            mode: if g.read_only {
                Mode::ReadOnly
            } else {
                Mode::Writable
            },
            stats: Stats::default(),
        };
        store.replay().await?;
        if store.mode == Mode::Writable {
            store.new_epoch().await?;
        }
        Ok(store)
    }

    /// Opens an encrypted store with the key `provider` gives.
    pub async fn open_vault(dev: D, provider: &mut impl KeyProvider) -> Result<Store<D>, Error> {
        let key = provider.key().await.map_err(Error::Key)?;
        Store::open(dev, Some(&key)).await
    }

    /// The value of `key`, read from disk and checked; `None` if absent. A value that fails
    /// its check is [`Error::Corrupt`], never returned.
    pub async fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let Some(&loc) = self.index.get(key) else {
            return Ok(None);
        };
        let tag = self.cipher.tag_len();
        let len = entry_len(EntryKind::Put, key.len(), loc.value_len as usize, tag)
            .ok_or(Error::Corrupt { sector: loc.record })?;
        let ss = self.ss as u64;
        let first = loc.record + u64::from(loc.offset) / ss;
        let skip = (u64::from(loc.offset) % ss) as usize;
        let sectors = (skip + len).div_ceil(self.ss);
        let mut buf = vec![0u8; sectors * self.ss];
        self.dev.read(first, &mut buf).await?;
        let corrupt = Error::Corrupt { sector: loc.record };
        let header_bytes: [u8; ENTRY_HEADER_LEN] = buf[skip..skip + ENTRY_HEADER_LEN]
            .try_into()
            .map_err(|_| corrupt)?;
        let header = EntryHeader::decode(&header_bytes).ok_or(corrupt)?;
        if header.kind != EntryKind::Put
            || usize::from(header.key_len) != key.len()
            || header.value_len != loc.value_len
        {
            return Err(corrupt);
        }
        let value_start = skip + ENTRY_HEADER_LEN + key.len() + tag;
        let value_end = value_start + loc.value_len as usize;
        let (value, rest) = buf[value_start..].split_at_mut(loc.value_len as usize);
        let nonce = value_nonce(&header);
        let aad: [&[u8]; 3] = [&self.sb.id, &header_bytes, key];
        self.cipher
            .open(&self.sb.id, nonce, &aad, value, &rest[..tag])
            .map_err(|_| corrupt)?;
        buf.truncate(value_end);
        buf.drain(..value_start);
        Ok(Some(buf))
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.index.contains_key(key)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the store has no keys.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Every key starting with `prefix`, in order.
    pub fn keys_with_prefix<'a>(&'a self, prefix: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.index
            .range::<[u8], _>((
                core::ops::Bound::Included(prefix),
                core::ops::Bound::Unbounded,
            ))
            .map(|(k, _)| &**k)
            .take_while(move |k| k.starts_with(prefix))
    }

    /// Figures about the store.
    pub fn stats(&self) -> Stats {
        Stats {
            keys: self.index.len(),
            live_bytes: self.live_bytes,
            capacity_sectors: self.capacity(),
            used_sectors: self.used(),
            epoch: self.checkpoint.epoch,
            ..self.stats
        }
    }

    /// The largest value this store takes.
    pub fn max_value(&self) -> usize {
        self.max_body() - ENTRY_HEADER_LEN - MAX_KEY - 2 * self.cipher.tag_len()
    }

    /// Where the next record goes (for tests that stage crashes by hand).
    #[cfg(test)]
    pub(crate) fn head_and_tail(&self) -> (u64, u64) {
        (self.head, self.tail)
    }

    /// Gives the device back.
    pub fn into_device(self) -> D {
        self.dev
    }

    /// Applies `batch` atomically: when this returns `Ok`, every put and delete in it is on
    /// disk and flushed; when it returns an error, none of it is visible, and after a crash the
    /// store comes back with all of it or none of it.
    pub async fn commit(&mut self, batch: Batch) -> Result<(), Error> {
        match self.mode {
            Mode::Writable => {}
            Mode::ReadOnly => return Err(Error::ReadOnly),
            Mode::Poisoned => return Err(Error::Poisoned),
        }
        let tag = self.cipher.tag_len();
        let max_value = self.max_value();
        let mut body_len = 0usize;
        let mut live_after = self.live_bytes;
        let mut ops = Vec::with_capacity(batch.ops.len());
        for (key, value) in batch.ops {
            if key.is_empty() {
                return Err(Error::EmptyKey);
            }
            if key.len() > MAX_KEY {
                return Err(Error::KeyTooLong(key.len()));
            }
            if let Some(v) = &value {
                if v.len() > max_value {
                    return Err(Error::ValueTooLarge(v.len()));
                }
            }
            let old = self.index.get(key.as_slice()).copied();
            if let Some(old) = old {
                live_after -= self.put_len(key.len(), old.value_len as usize) as u64;
            }
            let len = match &value {
                Some(v) => {
                    let l = self.put_len(key.len(), v.len());
                    live_after += l as u64;
                    l
                }
                // Deleting an absent key changes nothing: no tombstone.
                None if old.is_none() => continue,
                None => ENTRY_HEADER_LEN + key.len() + tag,
            };
            body_len = body_len.checked_add(len).ok_or(Error::CommitTooLarge)?;
            ops.push((key, value));
        }
        if ops.is_empty() {
            return Ok(());
        }
        if body_len > self.max_body() {
            return Err(Error::CommitTooLarge);
        }
        let sectors = self.sectors_for(body_len);
        if self.estimate(live_after) + 2 * sectors + self.reserve() + self.record_sectors()
            > self.capacity()
        {
            return Err(Error::DiskFull);
        }
        self.make_room(sectors).await?;
        if u64::from(self.counter) + 2 * ops.len() as u64 > u64::from(u32::MAX) {
            self.new_epoch().await?;
        }

        // Encode the body, each entry's key and value sealed in place, after room for the
        // header: the record is built in one buffer.
        let mut body = Vec::with_capacity(HEADER_LEN + body_len + TRAILER_LEN + self.ss);
        body.resize(HEADER_LEN, 0);
        let mut placed = Vec::with_capacity(ops.len());
        for (key, value) in &ops {
            let header = EntryHeader {
                kind: if value.is_some() {
                    EntryKind::Put
                } else {
                    EntryKind::Delete
                },
                key_len: key.len() as u8,
                value_len: value.as_ref().map_or(0, |v| v.len() as u32),
                nonce_epoch: self.checkpoint.epoch as u32,
                nonce_counter: self.counter,
            };
            self.counter += 2;
            placed.push((body.len() - HEADER_LEN, header.value_len));
            let hb = header.encode();
            body.extend_from_slice(&hb);
            let at = body.len();
            body.extend_from_slice(key);
            body.resize(at + key.len() + tag, 0);
            let (k, t) = body[at..].split_at_mut(key.len());
            let key_nonce = NonceParts {
                epoch: header.nonce_epoch,
                counter: header.nonce_counter,
            };
            self.cipher
                .seal(&self.sb.id, key_nonce, &[&self.sb.id, &hb], k, t);
            if let Some(v) = value {
                let at = body.len();
                body.extend_from_slice(v);
                body.resize(at + v.len() + tag, 0);
                let (val, t) = body[at..].split_at_mut(v.len());
                self.cipher.seal(
                    &self.sb.id,
                    value_nonce(&header),
                    &[&self.sb.id, &hb, key],
                    val,
                    t,
                );
            }
        }
        debug_assert_eq!(body.len(), HEADER_LEN + body_len);
        let record = self.append(body, ops.len() as u32).await?;
        self.flush().await?;
        for ((key, value), (offset, value_len)) in ops.into_iter().zip(placed) {
            let loc = Loc {
                record,
                offset: (HEADER_LEN + offset) as u32,
                value_len,
            };
            self.apply(key.into_boxed_slice(), value.is_some().then_some(loc));
        }
        Ok(())
    }

    // ---- writing ----

    /// Writes a record (`rec`: [`HEADER_LEN`] bytes of room for the header, then the body of
    /// `count` entries) at the head, behind a wrap marker if it does not fit before the end of
    /// the log; returns its first sector. The caller checked the
    /// space and flushes.
    async fn append(&mut self, mut rec: Vec<u8>, count: u32) -> Result<u64, Error> {
        let body_len = rec.len() - HEADER_LEN;
        let sectors = self.sectors_for(body_len);
        let tag = self.cipher.tag_len();
        if self.head + sectors > self.log_end {
            let marker = RecordHeader {
                kind: RecordKind::Wrap,
                seq: self.next_seq,
                epoch: self.checkpoint.epoch,
                body_len: 0,
                count: 0,
            };
            let mut buf = vec![0u8; self.ss];
            buf[..HEADER_LEN].copy_from_slice(&marker.encode(&self.sb.id));
            write_trailer(&mut buf, &marker, &[], tag, &self.sb.id);
            self.write(self.head, &buf).await?;
            self.next_seq += 1;
            self.head = LOG_START;
        }
        let header = RecordHeader {
            kind: RecordKind::Commit,
            seq: self.next_seq,
            epoch: self.checkpoint.epoch,
            body_len: body_len as u32,
            count,
        };
        // The entries were built by this code: they parse (cheaply: headers only).
        let entries = parse_body(&rec[HEADER_LEN..], count, tag).ok_or(Error::Poisoned)?;
        rec.resize(sectors as usize * self.ss, 0);
        rec[..HEADER_LEN].copy_from_slice(&header.encode(&self.sb.id));
        write_trailer(&mut rec, &header, &entries, tag, &self.sb.id);
        let at = self.head;
        self.write(at, &rec).await?;
        self.next_seq += 1;
        self.head = at + sectors;
        if self.head == self.log_end {
            self.head = LOG_START;
        }
        Ok(at)
    }

    async fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), Error> {
        if let Err(e) = self.dev.write(sector, data).await {
            self.mode = Mode::Poisoned;
            return Err(e.into());
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Error> {
        if let Err(e) = self.dev.flush().await {
            self.mode = Mode::Poisoned;
            return Err(e.into());
        }
        Ok(())
    }

    /// Writes `cp` to the slot not holding the current checkpoint, and flushes.
    async fn write_checkpoint(&mut self, cp: Checkpoint) -> Result<(), Error> {
        let slot = 1 - self.slot;
        let mut buf = vec![0u8; self.ss];
        buf[..crate::format::CHECKPOINT_LEN].copy_from_slice(&cp.encode(&self.sb.id));
        self.write(CHECKPOINT_SECTOR + slot, &buf).await?;
        self.flush().await?;
        self.slot = slot;
        self.checkpoint = cp;
        self.stats.checkpoints += 1;
        Ok(())
    }

    /// Starts a new epoch (durably) with a fresh nonce counter.
    async fn new_epoch(&mut self) -> Result<(), Error> {
        let epoch = self.checkpoint.epoch + 1;
        if epoch > u64::from(u32::MAX) {
            return Err(Error::DiskFull);
        }
        let cp = Checkpoint {
            generation: self.checkpoint.generation + 1,
            epoch,
            open_seq: self.next_seq,
            ..self.checkpoint
        };
        self.write_checkpoint(cp).await?;
        self.counter = 0;
        Ok(())
    }
}

/// The nonce a value is sealed with: its entry's counter plus one.
pub(super) fn value_nonce(h: &EntryHeader) -> NonceParts {
    NonceParts {
        epoch: h.nonce_epoch,
        counter: h.nonce_counter.wrapping_add(1),
    }
}
