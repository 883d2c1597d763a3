//! The node's config partition (EVE's `/config`): what a node is given before it first boots.
//!
//! It is a small read-only disk named `config` holding a ustar archive (POSIX.1-1988, what
//! `tar --format=ustar` and Python's `tarfile` write; `img/mkconfig` makes one) of plain files:
//! the vault's key (`vault.key`), later the controller's root certificate, the onboarding
//! certificate and key, the controller's address and the serial. [`ConfigPartition::read`]
//! loads every regular file into memory, within [`MAX_FILE`] bytes each and [`MAX_TOTAL`] in
//! all.
//!
//! **What the disk may hold, and what happens**: anything. Every header's checksum is
//! verified, sizes are parsed strictly (octal digits only) and bounded, a file must lie inside
//! the disk, names must be printable, relative and without `..`; a header that breaks any of
//! these fails the whole read with an [`Error`] naming the block, so a damaged partition is
//! never half believed. Directories are skipped; links, devices and other kinds are refused.

#![no_std]
#![warn(missing_docs)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use kernel::block::{self, BlockDevice};

/// Bytes of a tar block.
pub const BLOCK: usize = 512;
/// The largest file read.
pub const MAX_FILE: usize = 64 * 1024;
/// The most bytes read in all.
pub const MAX_TOTAL: usize = 1024 * 1024;

/// Why the config partition could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The disk failed.
    Disk(block::Error),
    /// The disk's sectors are not a whole number of tar blocks, or larger.
    SectorSize(u32),
    /// The first block is not a ustar header: the disk holds something else.
    NotAnArchive,
    /// A header at this block is damaged (the reason).
    BadHeader {
        /// The block number.
        block: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A file is larger than [`MAX_FILE`], or all of them than [`MAX_TOTAL`].
    TooLarge(String),
    /// The archive runs past the end of the disk.
    Truncated,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Disk(e) => write!(f, "config partition: {e}"),
            Error::SectorSize(s) => write!(f, "config partition: sectors of {s} bytes are not supported"),
            Error::NotAnArchive => f.write_str("config partition: not a ustar archive"),
            Error::BadHeader { block, reason } => {
                write!(f, "config partition: damaged header at block {block}: {reason}")
            }
            Error::TooLarge(name) => write!(
                f,
                "config partition: {name} is too large ({MAX_FILE} bytes a file, {MAX_TOTAL} in all)"
            ),
            Error::Truncated => f.write_str("config partition: the archive runs past the end of the disk"),
        }
    }
}

/// The files of the config partition, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigPartition {
    files: BTreeMap<String, Vec<u8>>,
}

impl ConfigPartition {
    /// Reads every file of the archive on `disk`.
    pub async fn read(disk: &mut impl BlockDevice) -> Result<ConfigPartition, Error> {
        let geometry = disk.geometry();
        let sector = geometry.sector_size as usize;
        if sector == 0 || sector > 64 * 1024 || !sector.is_multiple_of(BLOCK) {
            return Err(Error::SectorSize(geometry.sector_size));
        }
        let blocks = geometry.bytes() / BLOCK as u64;
        let mut reader = Reader {
            disk,
            sector,
            cached: None,
            buffer: vec![0; sector],
        };
        let mut files = BTreeMap::new();
        let mut total = 0usize;
        let mut at = 0u64;
        let mut zero_blocks = 0;
        while at < blocks {
            let header = reader.block(at).await?;
            if header.iter().all(|&b| b == 0) {
                zero_blocks += 1;
                if zero_blocks == 2 || at == 0 {
                    break;
                }
                at += 1;
                continue;
            }
            let entry = parse_header(&header).map_err(|reason| {
                if at == 0 {
                    Error::NotAnArchive
                } else {
                    Error::BadHeader { block: at, reason }
                }
            })?;
            let data_blocks = entry.size.div_ceil(BLOCK as u64);
            if at + 1 + data_blocks > blocks {
                return Err(Error::Truncated);
            }
            if entry.kind == Kind::File {
                let size = entry.size as usize;
                total += size;
                if size > MAX_FILE || total > MAX_TOTAL {
                    return Err(Error::TooLarge(entry.name));
                }
                let mut data = Vec::with_capacity(size);
                for i in 0..data_blocks {
                    let block = reader.block(at + 1 + i).await?;
                    let take = (size - data.len()).min(BLOCK);
                    data.extend_from_slice(&block[..take]);
                }
                files.insert(entry.name, data);
            }
            at += 1 + data_blocks;
            zero_blocks = 0;
        }
        Ok(ConfigPartition { files })
    }

    /// The contents of file `name`, if the partition has it.
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).map(Vec::as_slice)
    }

    /// The names of the files, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }
}

/// Reads tar blocks from sectors, keeping the last sector read.
struct Reader<'a, D> {
    disk: &'a mut D,
    sector: usize,
    cached: Option<u64>,
    buffer: Vec<u8>,
}

impl<D: BlockDevice> Reader<'_, D> {
    async fn block(&mut self, block: u64) -> Result<[u8; BLOCK], Error> {
        let byte = block * BLOCK as u64;
        let (sector, offset) = (
            byte / self.sector as u64,
            (byte % self.sector as u64) as usize,
        );
        if self.cached != Some(sector) {
            self.cached = None;
            self.disk
                .read(sector, &mut self.buffer)
                .await
                .map_err(Error::Disk)?;
            self.cached = Some(sector);
        }
        let mut out = [0u8; BLOCK];
        out.copy_from_slice(&self.buffer[offset..offset + BLOCK]);
        Ok(out)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    File,
    Directory,
}

#[derive(Debug, PartialEq, Eq)]
struct Entry {
    name: String,
    size: u64,
    kind: Kind,
}

/// Parses an octal field: digits, then NULs or spaces.
fn octal(field: &[u8]) -> Option<u64> {
    let digits = field
        .iter()
        .position(|&b| b == 0 || b == b' ')
        .unwrap_or(field.len());
    if digits == 0 || field[digits..].iter().any(|&b| b != 0 && b != b' ') {
        return None;
    }
    field[..digits].iter().try_fold(0u64, |n, &b| {
        (b'0'..=b'7')
            .contains(&b)
            .then(|| n.checked_mul(8)?.checked_add(u64::from(b - b'0')))
            .flatten()
    })
}

/// A NUL-terminated text field.
fn text(field: &[u8]) -> Result<&str, &'static str> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    let text = core::str::from_utf8(&field[..end]).map_err(|_| "name is not UTF-8")?;
    if text.chars().any(char::is_control) {
        return Err("name has a control character");
    }
    Ok(text)
}

fn parse_header(h: &[u8; BLOCK]) -> Result<Entry, &'static str> {
    if &h[257..262] != b"ustar" {
        return Err("no ustar magic");
    }
    let stored = octal(&h[148..156]).ok_or("checksum field is not octal")?;
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                u64::from(b' ')
            } else {
                u64::from(b)
            }
        })
        .sum();
    if sum != stored {
        return Err("checksum does not match");
    }
    let size = octal(&h[124..136]).ok_or("size is not octal")?;
    let prefix = text(&h[345..500])?;
    let name = text(&h[0..100])?;
    let mut full = String::new();
    if !prefix.is_empty() {
        full.push_str(prefix);
        full.push('/');
    }
    full.push_str(name);
    let full = String::from(full.trim_start_matches("./").trim_end_matches('/'));
    if full.is_empty() || full.starts_with('/') || full.split('/').any(|part| part == "..") {
        return Err("name is empty, absolute or climbs out with ..");
    }
    let kind = match h[156] {
        b'0' | 0 => Kind::File,
        b'5' => Kind::Directory,
        _ => return Err("not a regular file or directory"),
    };
    Ok(Entry {
        name: full,
        size: if kind == Kind::Directory { 0 } else { size },
        kind,
    })
}

#[cfg(test)]
mod tests;
