//! The downloader's progress record: the last [`RECORD_BYTES`] of the target volume say which
//! content (content tree UUID and expected SHA-256) the volume is receiving, how many bytes
//! from its start are committed (written and flushed), and whether the whole content was
//! verified. A downloader that restarts reads it and resumes from there; a volume whose record
//! says `Verified` for this content holds exactly it.
//!
//! The content is at most the volume's size minus the record, so the two never overlap (the
//! controller sizes volumes with that room: `deploy::VOLUME_SLACK`).
//!
//! **What the disk may hold, and what happens**: anything that is not a record of this version
//! with a good CRC (a blank volume, a torn write, another program's data) reads as no record:
//! the download starts from byte 0. A record for other content is likewise ignored. A record is
//! written only after the data it counts was flushed, and flushed itself before it counts.

use alloc::vec;

use crc::{Crc, CRC_64_XZ};
use kernel::block::{BlockDevice, Error};

/// Bytes the record takes at the end of the volume.
pub const RECORD_BYTES: u64 = 4096;

const MAGIC: &[u8; 8] = b"LICHENDL";
const VERSION: u32 = 1;
const CRC64: Crc<u64> = Crc::<u64>::new(&CRC_64_XZ);
/// Bytes covered by the CRC (the CRC follows them).
const BODY: usize = 8 + 4 + 1 + 1 + 64 + 32 + 8 + 8;

/// What the record says of its content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// This many bytes from the start are committed.
    Partial(u64),
    /// All of the content (this many bytes) is there and matched its SHA-256.
    Verified(u64),
}

/// A progress record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The content tree's UUID (at most 64 bytes).
    pub content: alloc::string::String,
    /// The SHA-256 the content must have.
    pub sha256: [u8; 32],
    /// Where the download stands.
    pub progress: Progress,
}

impl Record {
    /// Whether the record is about this content.
    pub fn is_for(&self, content: &str, sha256: &[u8; 32]) -> bool {
        self.content == content && &self.sha256 == sha256
    }

    /// The record's bytes (a whole [`RECORD_BYTES`] block).
    pub fn encode(&self) -> alloc::vec::Vec<u8> {
        let mut b = vec![0u8; RECORD_BYTES as usize];
        b[..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        let (state, bytes) = match self.progress {
            Progress::Partial(n) => (1u8, n),
            Progress::Verified(n) => (2u8, n),
        };
        b[12] = state;
        let name = self.content.as_bytes();
        let len = name.len().min(64);
        b[13] = len as u8;
        b[14..14 + len].copy_from_slice(&name[..len]);
        b[78..110].copy_from_slice(&self.sha256);
        b[110..118].copy_from_slice(&bytes.to_le_bytes());
        let crc = CRC64.checksum(&b[..BODY]);
        b[BODY..BODY + 8].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Reads a record; `None` if `b` does not hold a good one.
    pub fn decode(b: &[u8]) -> Option<Record> {
        if b.len() < BODY + 8 || &b[..8] != MAGIC {
            return None;
        }
        let crc = u64::from_le_bytes(b[BODY..BODY + 8].try_into().ok()?);
        if crc != CRC64.checksum(&b[..BODY])
            || u32::from_le_bytes(b[8..12].try_into().ok()?) != VERSION
        {
            return None;
        }
        let bytes = u64::from_le_bytes(b[110..118].try_into().ok()?);
        let progress = match b[12] {
            1 => Progress::Partial(bytes),
            2 => Progress::Verified(bytes),
            _ => return None,
        };
        let len = usize::from(b[13]);
        if len > 64 {
            return None;
        }
        let content = core::str::from_utf8(&b[14..14 + len]).ok()?.into();
        Some(Record {
            content,
            sha256: b[78..110].try_into().ok()?,
            progress,
        })
    }
}

/// Where the record lives on `disk`, as a sector, and the bytes of content the disk can hold
/// before it. `None` if the disk is too small for a record, or its sectors are larger than one.
pub fn layout(disk: &impl BlockDevice) -> Option<(u64, u64)> {
    let g = disk.geometry();
    let sector = u64::from(g.sector_size);
    if sector == 0 || sector > RECORD_BYTES || !RECORD_BYTES.is_multiple_of(sector) {
        return None;
    }
    let capacity = g.bytes().checked_sub(RECORD_BYTES)?;
    Some((capacity / sector, capacity))
}

/// Reads the record of `disk` (`Ok(None)`: none, or not a good one).
pub async fn read(disk: &mut impl BlockDevice) -> Result<Option<Record>, Error> {
    let Some((sector, _)) = layout(disk) else {
        return Ok(None);
    };
    let mut b = vec![0u8; RECORD_BYTES as usize];
    disk.read(sector, &mut b).await?;
    Ok(Record::decode(&b))
}

/// Writes `record` on `disk` and flushes it.
pub async fn write(disk: &mut impl BlockDevice, record: &Record) -> Result<(), Error> {
    let (sector, _) = layout(disk).ok_or(Error::OutOfRange)?;
    disk.write(sector, &record.encode()).await?;
    disk.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_reads_as_none() {
        let r = Record {
            content: "9c3e1a5b-7d2f-4b8a-a6c4-0e1f2a3b4c05".into(),
            sha256: [7; 32],
            progress: Progress::Partial(1 << 20),
        };
        let b = r.encode();
        assert_eq!(Record::decode(&b), Some(r.clone()));
        assert!(r.is_for("9c3e1a5b-7d2f-4b8a-a6c4-0e1f2a3b4c05", &[7; 32]));
        assert!(!r.is_for("9c3e1a5b-7d2f-4b8a-a6c4-0e1f2a3b4c05", &[8; 32]));
        let v = Record {
            progress: Progress::Verified(5),
            ..r
        };
        assert_eq!(Record::decode(&v.encode()), Some(v));
        for i in 0..BODY + 8 {
            let mut bad = b.clone();
            bad[i] ^= 0x40;
            assert_eq!(Record::decode(&bad), None, "byte {i} flipped");
        }
        assert_eq!(Record::decode(&[0; 4096]), None);
        assert_eq!(Record::decode(&b[..50]), None);
    }
}
