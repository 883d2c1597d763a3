//! The on-disk layout: superblock, checkpoints, records and entries, and their decoders.
//!
//! Everything here is pure (bytes in, values out) so that the decoders can be fuzzed. Every
//! integer is little-endian. What the disk may hold is anything at all: a torn write, a flipped
//! bit, another store's data, another program's data. A decoder answers `None` (or a
//! [`SuperblockError`]) for anything it cannot prove well-formed; it never panics and never
//! indexes outside its input.
//!
//! ```text
//! sector 0, 1   superblock (two identical copies, written only by `format`)
//! sector 2, 3   checkpoint slots A and B (the newest valid one wins)
//! sector 4..    the log: records, each starting on a sector boundary
//! ```

use crc::{Crc, Table, CRC_64_XZ};

/// The checksum of everything on disk: CRC-64/XZ, computed slice-by-16 (a 32 KiB table,
/// several times faster than a byte at a time).
pub const CRC64: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_XZ);

/// First bytes of a superblock.
pub const SUPER_MAGIC: [u8; 8] = *b"LICHENKV";
/// The format version this code writes and reads.
pub const VERSION: u32 = 3;
/// Sector of the first superblock copy (the second is the next sector).
pub const SUPER_SECTOR: u64 = 0;
/// Sector of checkpoint slot A (slot B is the next sector).
pub const CHECKPOINT_SECTOR: u64 = 2;
/// First sector of the log.
pub const LOG_START: u64 = 4;
/// Bytes of a superblock (the rest of its sector is zero).
pub const SUPER_LEN: usize = 88;
/// The fixed plaintext whose sealed form in the superblock proves a key right.
pub const KEY_CHECK: [u8; 16] = *b"lichen-store-key";
/// Bytes of the sealed key check (plaintext and a 16-byte tag).
pub const KEY_CHECK_SEALED: usize = 32;

/// How the store's entries are protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CipherKind {
    /// Checksummed (CRC-64) but readable by anyone holding the disk.
    Plain = 0,
    /// Encrypted and authenticated with XChaCha20-Poly1305.
    XChaCha20Poly1305 = 1,
}

impl CipherKind {
    fn from_u8(v: u8) -> Option<CipherKind> {
        match v {
            0 => Some(CipherKind::Plain),
            1 => Some(CipherKind::XChaCha20Poly1305),
            _ => None,
        }
    }
}

/// What `format` wrote and `open` checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// Sector size at format time.
    pub sector_size: u32,
    /// Sectors the store uses (the device may be larger, never smaller).
    pub sectors: u64,
    /// This store's identity: random at format. It seeds every checksum and nonce, so that
    /// records of an earlier format of the same disk are never taken for this one's.
    pub id: [u8; 16],
    /// Plain or encrypted.
    pub cipher: CipherKind,
    /// Largest record (bytes, header and trailer included) the store writes.
    pub max_record: u32,
    /// [`KEY_CHECK`] sealed with the store's key (zeros when plain).
    pub key_check: [u8; KEY_CHECK_SEALED],
}

/// Why a sector is not this store's superblock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuperblockError {
    /// All zeros: nothing was ever formatted here.
    Blank,
    /// Something else lives here (no lichen store magic).
    Foreign,
    /// A lichen store of another format version.
    Version(u32),
    /// The magic and version are right but the checksum or a field is wrong.
    Corrupt,
}

impl Superblock {
    /// The superblock's bytes (followed by zeros to the end of its sector).
    pub fn encode(&self) -> [u8; SUPER_LEN] {
        let mut b = [0u8; SUPER_LEN];
        b[0..8].copy_from_slice(&SUPER_MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.sector_size.to_le_bytes());
        b[16..24].copy_from_slice(&self.sectors.to_le_bytes());
        b[24..40].copy_from_slice(&self.id);
        b[40] = self.cipher as u8;
        b[44..48].copy_from_slice(&self.max_record.to_le_bytes());
        b[48..80].copy_from_slice(&self.key_check);
        let crc = CRC64.checksum(&b[..80]);
        b[80..88].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// The bytes the key check is bound to (everything before it).
    pub fn key_check_aad(&self) -> [u8; 48] {
        let mut aad = [0u8; 48];
        aad.copy_from_slice(&self.encode()[..48]);
        aad
    }

    /// Reads a superblock sector.
    pub fn decode(sector: &[u8]) -> Result<Superblock, SuperblockError> {
        if sector.len() < SUPER_LEN {
            return Err(SuperblockError::Corrupt);
        }
        if sector[..8] != SUPER_MAGIC {
            return Err(if sector.iter().all(|&b| b == 0) {
                SuperblockError::Blank
            } else {
                SuperblockError::Foreign
            });
        }
        let version = u32_at(sector, 8);
        if version != VERSION {
            return Err(SuperblockError::Version(version));
        }
        if u64_at(sector, 80) != CRC64.checksum(&sector[..80]) {
            return Err(SuperblockError::Corrupt);
        }
        if sector[41..44] != [0; 3] {
            return Err(SuperblockError::Corrupt);
        }
        let sector_size = u32_at(sector, 12);
        let cipher = CipherKind::from_u8(sector[40]).ok_or(SuperblockError::Corrupt)?;
        let mut id = [0u8; 16];
        id.copy_from_slice(&sector[24..40]);
        let mut key_check = [0u8; KEY_CHECK_SEALED];
        key_check.copy_from_slice(&sector[48..80]);
        let sb = Superblock {
            sector_size,
            sectors: u64_at(sector, 16),
            id,
            cipher,
            max_record: u32_at(sector, 44),
            key_check,
        };
        if !valid_sector_size(sector_size) || sb.sectors <= LOG_START || sb.max_record == 0 {
            return Err(SuperblockError::Corrupt);
        }
        Ok(sb)
    }
}

/// Whether the store works with sectors of `size` bytes: a power of two from 512 to 64 KiB.
pub fn valid_sector_size(size: u32) -> bool {
    size.is_power_of_two() && (512..=65536).contains(&size)
}

/// First bytes of a checkpoint.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"LKVCKPT3";
/// Bytes of a checkpoint.
pub const CHECKPOINT_LEN: usize = 56;

/// Where the live log starts, and the store's current epoch.
///
/// Written to the older slot, then flushed, before the space it frees is reused: the newest
/// valid slot always points to a record that is intact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Grows by one with every checkpoint written: the newest valid one wins.
    pub generation: u64,
    /// Grows by one every time the store is opened for writing (and when a session's nonce
    /// counter runs out): records and nonces of different sessions never collide.
    pub epoch: u64,
    /// Sector of the oldest record that may hold live data.
    pub tail: u64,
    /// Sequence number of that record.
    pub tail_seq: u64,
    /// The next sequence number when this epoch began: the end of the log its session found.
    /// A record from that number on belongs to this epoch or it is not part of the log (a
    /// stale record of an earlier session, which a later torn write may have made look whole
    /// again, is never taken for the continuation of the log).
    pub open_seq: u64,
}

impl Checkpoint {
    /// The checkpoint's bytes, bound to the store `id`.
    pub fn encode(&self, id: &[u8; 16]) -> [u8; CHECKPOINT_LEN] {
        let mut b = [0u8; CHECKPOINT_LEN];
        b[0..8].copy_from_slice(&CHECKPOINT_MAGIC);
        b[8..16].copy_from_slice(&self.generation.to_le_bytes());
        b[16..24].copy_from_slice(&self.epoch.to_le_bytes());
        b[24..32].copy_from_slice(&self.tail.to_le_bytes());
        b[32..40].copy_from_slice(&self.tail_seq.to_le_bytes());
        b[40..48].copy_from_slice(&self.open_seq.to_le_bytes());
        let crc = seeded_crc(id, &b[..48]);
        b[48..56].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Reads a checkpoint slot of the store `id`; `None` when torn, rotten or foreign.
    pub fn decode(sector: &[u8], id: &[u8; 16]) -> Option<Checkpoint> {
        if sector.len() < CHECKPOINT_LEN || sector[..8] != CHECKPOINT_MAGIC {
            return None;
        }
        if u64_at(sector, 48) != seeded_crc(id, &sector[..48]) {
            return None;
        }
        Some(Checkpoint {
            generation: u64_at(sector, 8),
            epoch: u64_at(sector, 16),
            tail: u64_at(sector, 24),
            tail_seq: u64_at(sector, 32),
            open_seq: u64_at(sector, 40),
        })
    }
}

/// First bytes of a record.
pub const RECORD_MAGIC: [u8; 4] = *b"LKVR";
/// Bytes of a record header.
pub const HEADER_LEN: usize = 40;
/// Bytes of a record trailer (the CRC of header and body).
pub const TRAILER_LEN: usize = 8;

/// What a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// One commit: entries applied together or not at all.
    Commit = 1,
    /// No entries: the log continues at its first sector.
    Wrap = 2,
}

/// A record's header: the first [`HEADER_LEN`] bytes of its first sector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Commit or wrap.
    pub kind: RecordKind,
    /// One more than the previous record's.
    pub seq: u64,
    /// The epoch of the session that wrote it (never less than the previous record's).
    pub epoch: u64,
    /// Bytes of entries after the header.
    pub body_len: u32,
    /// Entries in the body.
    pub count: u32,
}

impl RecordHeader {
    /// The header's bytes, bound to the store `id`.
    pub fn encode(&self, id: &[u8; 16]) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&RECORD_MAGIC);
        b[4] = self.kind as u8;
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..24].copy_from_slice(&self.epoch.to_le_bytes());
        b[24..28].copy_from_slice(&self.body_len.to_le_bytes());
        b[28..32].copy_from_slice(&self.count.to_le_bytes());
        let crc = seeded_crc(id, &b[..32]);
        b[32..40].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Reads a record header of the store `id`; `None` unless its own checksum holds.
    pub fn decode(bytes: &[u8], id: &[u8; 16]) -> Option<RecordHeader> {
        if bytes.len() < HEADER_LEN || bytes[..4] != RECORD_MAGIC || bytes[5..8] != [0; 3] {
            return None;
        }
        if u64_at(bytes, 32) != seeded_crc(id, &bytes[..32]) {
            return None;
        }
        let kind = match bytes[4] {
            1 => RecordKind::Commit,
            2 => RecordKind::Wrap,
            _ => return None,
        };
        let header = RecordHeader {
            kind,
            seq: u64_at(bytes, 8),
            epoch: u64_at(bytes, 16),
            body_len: u32_at(bytes, 24),
            count: u32_at(bytes, 28),
        };
        if kind == RecordKind::Wrap && (header.body_len != 0 || header.count != 0) {
            return None;
        }
        Some(header)
    }

    /// Bytes of the whole record: header, body, trailer (before sector padding).
    pub fn record_len(&self) -> usize {
        HEADER_LEN + self.body_len as usize + TRAILER_LEN
    }
}

/// The trailer CRC of a record: its header and, of each entry, everything but the value bytes
/// (entry header, sealed key, the value's tag). Value bytes are covered by their own tags,
/// which recovery checks as well: each byte of a commit is checksummed once, and a record torn
/// anywhere fails one check or the other. `bytes` holds the header and the body that
/// `entries` (from [`parse_body`]) tile.
pub fn record_crc(bytes: &[u8], entries: &[RawEntry], tag_len: usize, id: &[u8; 16]) -> u64 {
    let mut digest = CRC64.digest();
    digest.update(id);
    digest.update(&bytes[..HEADER_LEN]);
    let body = &bytes[HEADER_LEN..];
    for e in entries {
        digest.update(&body[e.offset..e.key.end]);
        if !e.value.is_empty() {
            digest.update(&body[e.value.end - tag_len..e.value.end]);
        }
    }
    digest.finalize()
}

/// Whether the trailer of a record (`bytes`: at least `record_len` bytes) matches
/// [`record_crc`].
pub fn trailer_ok(
    header: &RecordHeader,
    bytes: &[u8],
    entries: &[RawEntry],
    tag_len: usize,
    id: &[u8; 16],
) -> bool {
    let len = header.record_len();
    bytes.len() >= len
        && u64_at(bytes, len - TRAILER_LEN) == record_crc(bytes, entries, tag_len, id)
}

/// Writes the trailer of a record whose header and body are in place.
pub fn write_trailer(
    bytes: &mut [u8],
    header: &RecordHeader,
    entries: &[RawEntry],
    tag_len: usize,
    id: &[u8; 16],
) {
    let len = header.record_len();
    let crc = record_crc(bytes, entries, tag_len, id);
    bytes[len - TRAILER_LEN..len].copy_from_slice(&crc.to_le_bytes());
}

/// Bytes of an entry header.
pub const ENTRY_HEADER_LEN: usize = 14;

/// What an entry does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum EntryKind {
    /// Sets a key's value.
    Put = 1,
    /// Removes a key.
    Delete = 2,
}

/// An entry's fixed header; the sealed key and (for a put) the sealed value follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryHeader {
    /// Put or delete.
    pub kind: EntryKind,
    /// Bytes of the key (1 to 255).
    pub key_len: u8,
    /// Bytes of the value (0 for a delete).
    pub value_len: u32,
    /// Epoch half of the entry's nonce.
    pub nonce_epoch: u32,
    /// Counter half of the entry's nonce: the key is sealed with it, the value with it + 1.
    pub nonce_counter: u32,
}

impl EntryHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; ENTRY_HEADER_LEN] {
        let mut b = [0u8; ENTRY_HEADER_LEN];
        b[0] = self.kind as u8;
        b[1] = self.key_len;
        b[2..6].copy_from_slice(&self.value_len.to_le_bytes());
        b[6..10].copy_from_slice(&self.nonce_epoch.to_le_bytes());
        b[10..14].copy_from_slice(&self.nonce_counter.to_le_bytes());
        b
    }

    /// Reads an entry header; `None` for an unknown kind, an empty key or a delete with a value.
    pub fn decode(bytes: &[u8]) -> Option<EntryHeader> {
        if bytes.len() < ENTRY_HEADER_LEN {
            return None;
        }
        let kind = match bytes[0] {
            1 => EntryKind::Put,
            2 => EntryKind::Delete,
            _ => return None,
        };
        let header = EntryHeader {
            kind,
            key_len: bytes[1],
            value_len: u32_at(bytes, 2),
            nonce_epoch: u32_at(bytes, 6),
            nonce_counter: u32_at(bytes, 10),
        };
        if header.key_len == 0 || (kind == EntryKind::Delete && header.value_len != 0) {
            return None;
        }
        Some(header)
    }

    /// Bytes of the whole entry with tags of `tag_len` bytes; `None` if that overflows.
    pub fn entry_len(&self, tag_len: usize) -> Option<usize> {
        entry_len(
            self.kind,
            self.key_len as usize,
            self.value_len as usize,
            tag_len,
        )
    }
}

/// Bytes of an entry: header, sealed key, and for a put the sealed value.
pub fn entry_len(
    kind: EntryKind,
    key_len: usize,
    value_len: usize,
    tag_len: usize,
) -> Option<usize> {
    let key = ENTRY_HEADER_LEN
        .checked_add(key_len)?
        .checked_add(tag_len)?;
    match kind {
        EntryKind::Put => key.checked_add(value_len)?.checked_add(tag_len),
        EntryKind::Delete => Some(key),
    }
}

/// One entry found in a record body, as byte ranges of the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEntry {
    /// Offset of the entry in the body.
    pub offset: usize,
    /// Its header.
    pub header: EntryHeader,
    /// The sealed key: key bytes then tag.
    pub key: core::ops::Range<usize>,
    /// The sealed value: value bytes then tag (empty for a delete).
    pub value: core::ops::Range<usize>,
}

/// Splits a record body into its entries; `None` unless they tile the body exactly and number
/// `count`.
pub fn parse_body(body: &[u8], count: u32, tag_len: usize) -> Option<alloc::vec::Vec<RawEntry>> {
    let mut entries = alloc::vec::Vec::new();
    let mut at = 0usize;
    while at < body.len() {
        let header = EntryHeader::decode(&body[at..])?;
        let len = header.entry_len(tag_len)?;
        let end = at.checked_add(len)?;
        if end > body.len() {
            return None;
        }
        let key_start = at + ENTRY_HEADER_LEN;
        let key_end = key_start + header.key_len as usize + tag_len;
        let value = if header.kind == EntryKind::Put {
            key_end..end
        } else {
            end..end
        };
        entries.push(RawEntry {
            offset: at,
            header,
            key: key_start..key_end,
            value,
        });
        if entries.len() > count as usize {
            return None;
        }
        at = end;
    }
    (entries.len() == count as usize).then_some(entries)
}

/// A CRC-64 of `bytes` that also covers the store's identity.
pub fn seeded_crc(id: &[u8; 16], bytes: &[u8]) -> u64 {
    let mut digest = CRC64.digest();
    digest.update(id);
    digest.update(bytes);
    digest.finalize()
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(v)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: [u8; 16] = [7; 16];

    fn superblock() -> Superblock {
        Superblock {
            sector_size: 512,
            sectors: 1000,
            id: ID,
            cipher: CipherKind::Plain,
            max_record: 8192,
            key_check: [0; KEY_CHECK_SEALED],
        }
    }

    #[test]
    fn superblock_round_trips_and_refuses_what_is_not_ours() {
        let sb = superblock();
        let mut sector = [0u8; 512];
        sector[..SUPER_LEN].copy_from_slice(&sb.encode());
        assert_eq!(Superblock::decode(&sector), Ok(sb));
        assert_eq!(Superblock::decode(&[0u8; 512]), Err(SuperblockError::Blank));
        let mut ext4ish = [0u8; 512];
        ext4ish[56] = 0x53;
        assert_eq!(Superblock::decode(&ext4ish), Err(SuperblockError::Foreign));
        let mut v2 = sector;
        v2[8] = 4;
        assert_eq!(Superblock::decode(&v2), Err(SuperblockError::Version(4)));
        let mut rotten = sector;
        rotten[30] ^= 1;
        assert_eq!(Superblock::decode(&rotten), Err(SuperblockError::Corrupt));
        assert_eq!(
            Superblock::decode(&sector[..40]),
            Err(SuperblockError::Corrupt)
        );
        // A well-checksummed superblock with impossible fields is refused too.
        let bad = Superblock {
            sector_size: 1000,
            ..sb
        };
        assert_eq!(
            Superblock::decode(&bad.encode()),
            Err(SuperblockError::Corrupt)
        );
    }

    #[test]
    fn checkpoints_and_headers_are_bound_to_their_store() {
        let cp = Checkpoint {
            generation: 3,
            epoch: 9,
            tail: 44,
            tail_seq: 17,
            open_seq: 20,
        };
        let bytes = cp.encode(&ID);
        assert_eq!(Checkpoint::decode(&bytes, &ID), Some(cp));
        assert_eq!(Checkpoint::decode(&bytes, &[8; 16]), None);
        let mut torn = bytes;
        torn[20] ^= 0x80;
        assert_eq!(Checkpoint::decode(&torn, &ID), None);

        let h = RecordHeader {
            kind: RecordKind::Commit,
            seq: 5,
            epoch: 2,
            body_len: 10,
            count: 1,
        };
        let bytes = h.encode(&ID);
        assert_eq!(RecordHeader::decode(&bytes, &ID), Some(h));
        assert_eq!(RecordHeader::decode(&bytes, &[0; 16]), None);
        let mut flipped = bytes;
        flipped[9] ^= 4;
        assert_eq!(RecordHeader::decode(&flipped, &ID), None);
        let wrap = RecordHeader {
            kind: RecordKind::Wrap,
            body_len: 1,
            ..h
        };
        assert_eq!(RecordHeader::decode(&wrap.encode(&ID), &ID), None);
    }

    #[test]
    fn the_trailer_covers_everything_but_value_bytes() {
        let tag = 8;
        let put = EntryHeader {
            kind: EntryKind::Put,
            key_len: 3,
            value_len: 600,
            nonce_epoch: 0,
            nonce_counter: 0,
        };
        let mut body = alloc::vec::Vec::new();
        body.extend_from_slice(&put.encode());
        body.extend((0..3 + tag + 600 + tag).map(|i| i as u8));
        let h = RecordHeader {
            kind: RecordKind::Commit,
            seq: 1,
            epoch: 1,
            body_len: body.len() as u32,
            count: 1,
        };
        let mut rec = alloc::vec![0u8; 1024];
        rec[..HEADER_LEN].copy_from_slice(&h.encode(&ID));
        rec[HEADER_LEN..HEADER_LEN + body.len()].copy_from_slice(&body);
        let entries = parse_body(&body, 1, tag).unwrap();
        write_trailer(&mut rec, &h, &entries, tag, &ID);
        assert!(trailer_ok(&h, &rec, &entries, tag, &ID));
        let entry_start = HEADER_LEN + ENTRY_HEADER_LEN;
        for (at, covered) in [
            (0, true),
            (HEADER_LEN, true),
            (entry_start + 2, true),
            (entry_start + 3 + tag + 10, false),
            (h.record_len() - TRAILER_LEN - 1, true),
        ] {
            let mut torn = rec.clone();
            torn[at] ^= 1;
            assert_eq!(
                !trailer_ok(&h, &torn, &entries, tag, &ID),
                covered,
                "byte {at}"
            );
        }
        assert!(!trailer_ok(&h, &rec[..600], &entries, tag, &ID));
    }

    #[test]
    fn bodies_must_tile_exactly() {
        let tag = 8;
        let put = EntryHeader {
            kind: EntryKind::Put,
            key_len: 3,
            value_len: 5,
            nonce_epoch: 0,
            nonce_counter: 0,
        };
        let del = EntryHeader {
            kind: EntryKind::Delete,
            value_len: 0,
            ..put
        };
        let mut body = alloc::vec::Vec::new();
        body.extend_from_slice(&put.encode());
        body.extend_from_slice(&[1; 3 + 8 + 5 + 8]);
        body.extend_from_slice(&del.encode());
        body.extend_from_slice(&[2; 3 + 8]);
        let entries = parse_body(&body, 2, tag).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].key, 14..25);
        assert_eq!(entries[0].value, 25..38);
        assert_eq!(entries[1].offset, 38);
        assert!(entries[1].value.is_empty());
        assert_eq!(parse_body(&body, 1, tag), None);
        assert_eq!(parse_body(&body, 3, tag), None);
        assert_eq!(parse_body(&body[..body.len() - 1], 2, tag), None);
        let mut bad_delete = body.clone();
        bad_delete[38 + 2] = 1;
        assert_eq!(parse_body(&bad_delete, 2, tag), None);
        let huge = EntryHeader {
            value_len: u32::MAX,
            ..put
        };
        assert_eq!(parse_body(&huge.encode(), 1, tag), None);
        assert_eq!(
            EntryHeader::decode(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            None
        );
    }
}
