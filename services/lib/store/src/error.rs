//! What can go wrong, each case with a message an operator understands.

use crate::crypt::KeyError;
use core::fmt;
use kernel::block;

/// Why a store operation failed. Nothing is committed half: a failed commit left the store
/// as it was before, or (after [`Error::Device`] from a write or flush) poisoned it until it
/// is opened again, which finds the commit either whole or absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The block device failed.
    Device(block::Error),
    /// The disk is blank: `format` it (explicitly) first.
    NotFormatted,
    /// The disk holds something that is not a lichen store; it is left alone.
    Foreign,
    /// A lichen store of another format version.
    WrongVersion {
        /// The version on disk.
        found: u32,
        /// The version this code reads.
        supported: u32,
    },
    /// The superblock's copies are both damaged.
    SuperblockCorrupt,
    /// The disk is smaller than the store on it, or has another sector size.
    GeometryMismatch,
    /// Sectors of this size are not supported (a power of two from 512 to 64 KiB).
    UnsupportedSectorSize(u32),
    /// The disk is too small for a store with values this large.
    DiskTooSmall,
    /// The store is encrypted and no key was given.
    KeyRequired,
    /// A key was given but the store is not encrypted.
    NotEncrypted,
    /// The key does not open this store (or the store is someone else's).
    WrongKey,
    /// The key provider gave no key.
    Key(KeyError),
    /// Keys are 1 to 255 bytes; this one is empty.
    EmptyKey,
    /// Keys are 1 to 255 bytes; this one is longer (its length).
    KeyTooLong(usize),
    /// A value is larger than the store's limit (its length).
    ValueTooLarge(usize),
    /// The commit's entries together exceed the largest record.
    CommitTooLarge,
    /// Not enough space for the commit; nothing of it was written.
    DiskFull,
    /// Committed data on disk fails its checksum (bit rot, or tampering): the sector where the
    /// damaged record starts. The data is not returned.
    Corrupt {
        /// First sector of the damaged record or entry.
        sector: u64,
    },
    /// The device is read-only.
    ReadOnly,
    /// An earlier write or flush failed; open the store again to learn what is on disk.
    Poisoned,
}

impl From<block::Error> for Error {
    fn from(e: block::Error) -> Error {
        Error::Device(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Device(e) => write!(f, "block device: {e}"),
            Error::NotFormatted => f.write_str("the disk is not formatted as a lichen store"),
            Error::Foreign => f.write_str("the disk holds something else than a lichen store"),
            Error::WrongVersion { found, supported } => {
                write!(
                    f,
                    "the store has format version {found}; this code reads version {supported}"
                )
            }
            Error::SuperblockCorrupt => {
                f.write_str("both copies of the store's superblock are damaged")
            }
            Error::GeometryMismatch => {
                f.write_str("the disk's size or sector size differs from the store's")
            }
            Error::UnsupportedSectorSize(s) => write!(f, "unsupported sector size {s}"),
            Error::DiskTooSmall => {
                f.write_str("the disk is too small for a store with values this large")
            }
            Error::KeyRequired => f.write_str("the store is encrypted and no key was given"),
            Error::NotEncrypted => f.write_str("a key was given but the store is not encrypted"),
            Error::WrongKey => f.write_str("the key does not open this store"),
            Error::Key(e) => write!(f, "vault key: {e}"),
            Error::EmptyKey => f.write_str("empty key"),
            Error::KeyTooLong(n) => write!(f, "key of {n} bytes (at most 255)"),
            Error::ValueTooLarge(n) => {
                write!(f, "value of {n} bytes is larger than the store allows")
            }
            Error::CommitTooLarge => f.write_str("the commit is larger than the largest record"),
            Error::DiskFull => f.write_str("the disk is full; nothing was committed"),
            Error::Corrupt { sector } => write!(f, "committed data at sector {sector} is damaged"),
            Error::ReadOnly => f.write_str("the disk is read-only"),
            Error::Poisoned => f.write_str("an earlier write failed; open the store again"),
        }
    }
}
