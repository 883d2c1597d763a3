//! Compaction and the space arithmetic of the circular log (all in sectors). Live entries of
//! the oldest records are copied to the head and flushed before a checkpoint (flushed too)
//! moves the tail past them: committed data is never without a durable copy.

use super::replay::Found;
use super::{Loc, Store};
use crate::error::Error;
use crate::format::{
    Checkpoint, EntryKind, RecordHeader, RecordKind, ENTRY_HEADER_LEN, HEADER_LEN, LOG_START,
    TRAILER_LEN,
};
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use kernel::block::BlockDevice;

impl<D: BlockDevice> Store<D> {
    /// Compacts until a record of `sectors` sectors fits with the reserve still free.
    pub(super) async fn make_room(&mut self, sectors: u64) -> Result<(), Error> {
        let mut written = 0u64;
        while self.free() < self.placement(sectors) + self.reserve() {
            if self.tail == self.head || written > 3 * self.capacity() {
                return Err(Error::DiskFull);
            }
            // Free a quarter of the log beyond what this commit needs, so that checkpoints
            // (a write and a flush each) come once per many commits, not with every one.
            let want = self.placement(sectors) + self.reserve() + self.capacity() / 4;
            written += self.compact_step(want).await?;
        }
        Ok(())
    }

    /// Moves the live entries of the oldest records to the head and the tail past those
    /// records; returns the sectors written.
    pub(super) async fn compact_step(&mut self, want_free: u64) -> Result<u64, Error> {
        // The largest copy record that fits in the free space, keeping one sector spare:
        // before the end of the log, or after a wrap (which skips what is before the end).
        let free = self.free().saturating_sub(1);
        let before_end = self.log_end - self.head;
        let copy_sectors = if free <= before_end {
            free
        } else {
            before_end.max(free - before_end)
        };
        let budget = (copy_sectors as usize * self.ss)
            .saturating_sub(HEADER_LEN + TRAILER_LEN)
            .min(self.max_body());

        // Header space, then the body (the record is built in place).
        let mut body = vec![0u8; HEADER_LEN];
        let mut count = 0u32;
        let mut moved: Vec<(Box<[u8]>, usize, u32)> = Vec::new();
        let (mut pos, mut seq) = (self.tail, self.tail_seq);
        while pos != self.head {
            let (header, bytes, entries) = match self.read_record(pos, seq).await? {
                Found::Record(h, b, entries) => (h, b, entries),
                _ => return Err(Error::Corrupt { sector: pos }),
            };
            let mut live = Vec::new();
            if header.kind == RecordKind::Commit {
                let rec_body = &bytes[HEADER_LEN..HEADER_LEN + header.body_len as usize];
                for (e, key) in entries {
                    if e.header.kind != EntryKind::Put {
                        continue; // A tombstone at the tail has nothing older left to hide.
                    }
                    let here = Loc {
                        record: pos,
                        offset: (HEADER_LEN + e.offset) as u32,
                        value_len: e.header.value_len,
                    };
                    if self.index.get(&key) == Some(&here) {
                        live.push((key, e.offset..e.value.end, e.header.value_len));
                    }
                }
                let live_len: usize = live.iter().map(|(_, r, _)| r.len()).sum();
                if body.len() - HEADER_LEN + live_len > budget {
                    if body.len() == HEADER_LEN {
                        return Err(Error::DiskFull);
                    }
                    break;
                }
                for (key, range, value_len) in live {
                    moved.push((key, body.len() - HEADER_LEN, value_len));
                    body.extend_from_slice(&rec_body[range]);
                    count += 1;
                }
            }
            pos = self.after(pos, &header);
            seq += 1;
            let freed = self.distance(self.tail, pos);
            let copy = if body.len() == HEADER_LEN {
                0
            } else {
                self.placement(self.sectors_for(body.len() - HEADER_LEN))
            };
            if self.free() + freed >= want_free + copy {
                break;
            }
        }
        let mut written = 0;
        if body.len() > HEADER_LEN {
            let body_len = body.len() - HEADER_LEN;
            let sectors = self.sectors_for(body_len);
            written = self.placement(sectors);
            let record = self.append(body, count).await?;
            self.flush().await?;
            self.stats.compaction_records += 1;
            self.stats.compaction_bytes += body_len as u64;
            for (key, offset, value_len) in moved {
                self.index.insert(
                    key,
                    Loc {
                        record,
                        offset: (HEADER_LEN + offset) as u32,
                        value_len,
                    },
                );
            }
        }
        let cp = Checkpoint {
            generation: self.checkpoint.generation + 1,
            tail: pos,
            tail_seq: seq,
            ..self.checkpoint
        };
        self.write_checkpoint(cp).await?;
        self.tail = pos;
        self.tail_seq = seq;
        Ok(written + 1)
    }

    // ---- space arithmetic (in sectors) ----

    pub(super) fn capacity(&self) -> u64 {
        self.log_end - LOG_START
    }

    /// Sectors from `a` forward to `b` around the log.
    pub(super) fn distance(&self, a: u64, b: u64) -> u64 {
        if b >= a {
            b - a
        } else {
            self.capacity() - (a - b)
        }
    }

    pub(super) fn used(&self) -> u64 {
        self.distance(self.tail, self.head)
    }

    pub(super) fn free(&self) -> u64 {
        self.capacity() - self.used()
    }

    /// Sectors a record of `sectors` takes at the head, counting what a wrap skips.
    pub(super) fn placement(&self, sectors: u64) -> u64 {
        if self.head + sectors <= self.log_end {
            sectors
        } else {
            self.log_end - self.head + sectors
        }
    }

    /// Where the record after the one at `pos` starts.
    pub(super) fn after(&self, pos: u64, header: &RecordHeader) -> u64 {
        let next = match header.kind {
            RecordKind::Wrap => LOG_START,
            RecordKind::Commit => pos + header.record_len().div_ceil(self.ss) as u64,
        };
        if next >= self.log_end {
            LOG_START
        } else {
            next
        }
    }

    pub(super) fn sectors_for(&self, body_len: usize) -> u64 {
        (HEADER_LEN + body_len + TRAILER_LEN).div_ceil(self.ss) as u64
    }

    pub(super) fn record_sectors(&self) -> u64 {
        (self.sb.max_record as u64).div_ceil(self.ss as u64)
    }

    pub(super) fn max_body(&self) -> usize {
        self.sb.max_record as usize - HEADER_LEN - TRAILER_LEN
    }

    /// Space kept free so that compaction can always write one copy record, even wrapped.
    pub(super) fn reserve(&self) -> u64 {
        2 * self.record_sectors() + 2
    }

    /// Sectors `live` bytes of entries take at most once compacted: copy records are more
    /// than half full on average (a record is closed only when the next entries do not fit),
    /// each with a header, a trailer and less than a sector of padding.
    pub(super) fn estimate(&self, live: u64) -> u64 {
        let records = 2 * live / self.max_body() as u64 + 1;
        (live + records * (HEADER_LEN + TRAILER_LEN) as u64).div_ceil(self.ss as u64) + records
    }

    pub(super) fn put_len(&self, key_len: usize, value_len: usize) -> usize {
        ENTRY_HEADER_LEN + key_len + value_len + 2 * self.cipher.tag_len()
    }
}
