//! Recovery: replaying the log from the checkpoint's tail into the index, and reading one
//! record, checked (used by compaction too). What the disk holds may be anything: a record is
//! believed only when intact, next in sequence and of a plausible epoch.

use super::{Loc, Store};
use crate::crypt::NonceParts;
use crate::error::Error;
use crate::format::{
    parse_body, trailer_ok, EntryKind, RawEntry, RecordHeader, RecordKind, HEADER_LEN, LOG_START,
};
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use kernel::block::BlockDevice;

/// What is at a log position.
pub(super) enum Found {
    /// An intact record with the expected sequence number: header, bytes, and its entries
    /// with their opened keys (every key and value checked).
    Record(RecordHeader, Vec<u8>, Vec<(RawEntry, Box<[u8]>)>),
    /// A header with the expected sequence number whose record fails its CRC.
    Damaged(RecordHeader),
    /// Nothing of the log.
    Nothing,
}

impl<D: BlockDevice> Store<D> {
    /// Rebuilds the index from the checkpoint's tail to the end of the log.
    pub(super) async fn replay(&mut self) -> Result<(), Error> {
        let mut pos = self.tail;
        let mut seq = self.tail_seq;
        let mut last_epoch = 0;
        loop {
            let found = self.read_record(pos, seq).await?;
            let (header, entries) = match found {
                Found::Record(h, _, entries) if self.plausible(&h, last_epoch) => (h, entries),
                Found::Damaged(h) if self.plausible(&h, last_epoch) => {
                    // A torn last record ends the log; a damaged record followed by the next
                    // one is rot inside committed data: refuse rather than lose what follows.
                    let next = self.after(pos, &h);
                    if let Found::Record(n, _, _) | Found::Damaged(n) =
                        self.read_record(next, seq + 1).await?
                    {
                        if self.plausible(&n, h.epoch) {
                            return Err(Error::Corrupt { sector: pos });
                        }
                    }
                    break;
                }
                _ => {
                    // Nothing here: the end of the log, unless the next record starts within a
                    // record's reach (records are flushed one by one, so the next exists only
                    // if this one was durable): then this one's header rotted.
                    if self.next_within_reach(pos, seq + 1, last_epoch).await? {
                        return Err(Error::Corrupt { sector: pos });
                    }
                    break;
                }
            };
            // The log never laps its own tail.
            let end = self.after(pos, &header);
            if self.distance(self.tail, pos) + self.distance(pos, end).max(1) >= self.capacity() {
                break;
            }
            for (e, key) in entries {
                let loc = Loc {
                    record: pos,
                    offset: (HEADER_LEN + e.offset) as u32,
                    value_len: e.header.value_len,
                };
                self.apply(key, (e.header.kind == EntryKind::Put).then_some(loc));
            }
            last_epoch = header.epoch;
            pos = end;
            seq += 1;
        }
        self.head = pos;
        self.next_seq = seq;
        Ok(())
    }

    /// Whether a record may continue the log after one of epoch `last_epoch`: epochs never go
    /// back, none is newer than the checkpoint's, and from the checkpoint's `open_seq` on only
    /// the checkpoint's epoch wrote records.
    fn plausible(&self, h: &RecordHeader, last_epoch: u64) -> bool {
        let cp = &self.checkpoint;
        h.epoch >= last_epoch && h.epoch <= cp.epoch && (h.seq < cp.open_seq || h.epoch == cp.epoch)
    }

    /// Whether a record numbered `seq` (of an epoch from `min_epoch` to the checkpoint's)
    /// starts in the largest record's reach after `pos`, before the end of the log. (The one
    /// place two records share a flush is a wrap marker and the record at the start of the
    /// log, which this does not look at.)
    pub(super) async fn next_within_reach(
        &mut self,
        pos: u64,
        seq: u64,
        min_epoch: u64,
    ) -> Result<bool, Error> {
        let end = (pos + 1 + self.record_sectors()).min(self.log_end);
        if pos < LOG_START || pos + 1 >= end {
            return Ok(false);
        }
        let mut buf = vec![0u8; (end - pos - 1) as usize * self.ss];
        self.dev.read(pos + 1, &mut buf).await?;
        for sector in buf.chunks(self.ss) {
            let Some(h) = RecordHeader::decode(sector, &self.sb.id) else {
                continue;
            };
            if h.seq == seq && self.plausible(&h, min_epoch) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Reads the record expected at `pos` with sequence number `seq`.
    pub(super) async fn read_record(&mut self, pos: u64, seq: u64) -> Result<Found, Error> {
        if pos < LOG_START || pos >= self.log_end {
            return Ok(Found::Nothing);
        }
        let mut buf = vec![0u8; self.ss];
        self.dev.read(pos, &mut buf).await?;
        let Some(header) = RecordHeader::decode(&buf, &self.sb.id) else {
            return Ok(Found::Nothing);
        };
        if header.seq != seq || header.record_len() > self.sb.max_record as usize {
            return Ok(Found::Nothing);
        }
        let sectors = header.record_len().div_ceil(self.ss) as u64;
        if pos + sectors > self.log_end {
            return Ok(Found::Nothing);
        }
        if sectors > 1 {
            buf.resize(sectors as usize * self.ss, 0);
            self.dev.read(pos + 1, &mut buf[self.ss..]).await?;
        }
        let tag = self.cipher.tag_len();
        let body = &buf[HEADER_LEN..HEADER_LEN + header.body_len as usize];
        let entries = match header.kind {
            RecordKind::Wrap => Vec::new(),
            RecordKind::Commit => match parse_body(body, header.count, tag) {
                Some(entries) => entries,
                None => return Ok(Found::Damaged(header)),
            },
        };
        if !trailer_ok(&header, &buf, &entries, tag, &self.sb.id) {
            return Ok(Found::Damaged(header));
        }
        // The trailer does not cover value bytes: their tags do.
        let mut checked = Vec::with_capacity(entries.len());
        for e in entries {
            let Some(key) = self.open_key(body, &e) else {
                return Ok(Found::Damaged(header));
            };
            if e.header.kind == EntryKind::Put && !self.value_ok(body, &e, &key) {
                return Ok(Found::Damaged(header));
            }
            checked.push((e, key));
        }
        Ok(Found::Record(header, buf, checked))
    }

    /// Whether an entry's sealed value matches its tag.
    fn value_ok(&self, body: &[u8], e: &RawEntry, key: &[u8]) -> bool {
        let hb = e.header.encode();
        let (value, tag) = body[e.value.clone()].split_at(e.header.value_len as usize);
        let aad: [&[u8]; 3] = [&self.sb.id, &hb, key];
        self.cipher
            .verify(&self.sb.id, super::value_nonce(&e.header), &aad, value, tag)
    }

    /// Opens an entry's sealed key; `None` if it fails its check.
    pub(super) fn open_key(&self, body: &[u8], e: &RawEntry) -> Option<Box<[u8]>> {
        let hb = e.header.encode();
        let key_len = e.header.key_len as usize;
        let mut key: Box<[u8]> = body[e.key.start..e.key.start + key_len].into();
        let tag = &body[e.key.start + key_len..e.key.end];
        let nonce = NonceParts {
            epoch: e.header.nonce_epoch,
            counter: e.header.nonce_counter,
        };
        self.cipher
            .open(&self.sb.id, nonce, &[&self.sb.id, &hb], &mut key, tag)
            .ok()?;
        Some(key)
    }

    /// Sets (`Some`) or removes (`None`) a key's location, keeping the live byte count.
    pub(super) fn apply(&mut self, key: Box<[u8]>, loc: Option<Loc>) {
        let key_len = key.len();
        let old = match loc {
            Some(loc) => {
                self.live_bytes += self.put_len(key_len, loc.value_len as usize) as u64;
                self.index.insert(key, loc)
            }
            None => self.index.remove(&key),
        };
        if let Some(old) = old {
            self.live_bytes -= self.put_len(key_len, old.value_len as usize) as u64;
        }
    }
}
