//! Xen blkfront: a disk of a Xen domU, as a [`BlockDevice`](super::BlockDevice).
//!
//! The toolstack describes each disk in xenstore under `device/vbd/<id>` (`backend`,
//! `backend-id`). The driver reads the backend's geometry and features (`sectors`,
//! `sector-size`, `info`, `feature-flush-cache`, `feature-barrier`, `feature-persistent`), grants
//! a one-page request ring (blkif.h's layout over ring.h) and its data pages, binds an event
//! channel, and does the handshake: `ring-ref`, `event-channel`, `protocol=x86_64-abi`,
//! `feature-persistent=1` and `state=Initialised` in one transaction, then it waits for the
//! backend to be Connected.
//!
//! **Grant reuse**: each request slot owns [`SEGMENTS`] data pages, granted once at start and
//! used for every request (the persistent-grant protocol: the backend may keep them mapped).
//! Data is copied between the caller's buffer and those pages, so a caller that drops a
//! request's future never leaves the backend writing into freed memory.
//!
//! **Everything the backend writes is validated**: a response producer index may run ahead of
//! the consumer by at most the requests in flight ([`FrontRing`](crate::platform::xen::shared_ring::FrontRing));
//! each response must name a slot with a request in flight and echo that request's operation;
//! its status must be one blkif defines. A backend that breaks any of these is given up on
//! ([`Error::Broken`](super::Error::Broken) from then on): a disk that lies about completions
//! cannot be trusted with data. A defined error status fails that request only.

use core::fmt;

use crate::platform::xen::shared_ring::Slot;

#[cfg(target_os = "none")]
mod driver;
#[cfg(target_os = "none")]
pub use driver::Blkfront;

/// Bytes of a page (ring and data).
pub const PAGE: usize = 4096;
/// Bytes of a ring slot: `blkif_request` (112 on x86-64; its response is 16).
pub const SLOT: usize = 112;
/// Data segments (pages) per request: `BLKIF_MAX_SEGMENTS_PER_REQUEST`.
pub const SEGMENTS: usize = 11;
/// blkif addresses in 512-byte units.
pub const SECTOR: usize = 512;

/// `BLKIF_OP_READ`.
pub const OP_READ: u8 = 0;
/// `BLKIF_OP_WRITE`.
pub const OP_WRITE: u8 = 1;
/// `BLKIF_OP_WRITE_BARRIER`.
pub const OP_WRITE_BARRIER: u8 = 2;
/// `BLKIF_OP_FLUSH_DISKCACHE`.
pub const OP_FLUSH_DISKCACHE: u8 = 3;
/// `BLKIF_RSP_OKAY`.
pub const RSP_OKAY: i16 = 0;
/// `BLKIF_RSP_ERROR`.
pub const RSP_ERROR: i16 = -1;
/// `BLKIF_RSP_EOPNOTSUPP`.
pub const RSP_EOPNOTSUPP: i16 = -2;
/// `VDISK_READONLY` in the backend's `info`.
pub const VDISK_READONLY: u32 = 4;

/// Why a disk could not be set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlkfrontError {
    /// A xenstore request failed.
    Xenstore(&'static str),
    /// A xenstore value could not be parsed or makes no sense.
    BadValue(&'static str),
    /// Out of memory, grant references or event channels.
    Resources(&'static str),
}

impl fmt::Display for BlkfrontError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlkfrontError::Xenstore(what) => write!(f, "xenstore: cannot {what}"),
            BlkfrontError::BadValue(what) => write!(f, "bad xenstore value for {what}"),
            BlkfrontError::Resources(what) => write!(f, "out of {what}"),
        }
    }
}

/// The disk as the backend describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendInfo {
    /// Bytes per sector.
    pub sector_size: u32,
    /// Sectors (of `sector_size`).
    pub sectors: u64,
    /// Whether the disk is read-only.
    pub read_only: bool,
    /// The operation that flushes the write cache, if the backend has one.
    pub flush: Option<u8>,
}

/// Reads the backend's keys (`None` for a key that is absent). `sector-size` must be a power
/// of two from 512 to 4096 (a sector must fit a data page); `sectors` must be present.
pub fn parse_backend(
    sectors: Option<&str>,
    sector_size: Option<&str>,
    info: Option<&str>,
    mode: Option<&str>,
    flush_cache: Option<&str>,
    barrier: Option<&str>,
) -> Result<BackendInfo, BlkfrontError> {
    let number = |text: &str| text.trim_end_matches('\0').trim().parse::<u64>().ok();
    let sectors = sectors
        .and_then(number)
        .ok_or(BlkfrontError::BadValue("sectors"))?;
    let sector_size = match sector_size.map(number) {
        None => SECTOR as u64,
        Some(Some(s)) if s.is_power_of_two() && (SECTOR as u64..=PAGE as u64).contains(&s) => s,
        Some(_) => return Err(BlkfrontError::BadValue("sector-size")),
    } as u32;
    let info = match info.map(number) {
        None => 0,
        Some(Some(i)) => i,
        Some(None) => return Err(BlkfrontError::BadValue("info")),
    };
    let read_only = info & u64::from(VDISK_READONLY) != 0
        || mode.is_some_and(|m| m.trim_end_matches('\0') == "r");
    let on = |v: Option<&str>| v.and_then(number) == Some(1);
    let flush = if on(flush_cache) {
        Some(OP_FLUSH_DISKCACHE)
    } else if on(barrier) {
        Some(OP_WRITE_BARRIER)
    } else {
        None
    };
    Ok(BackendInfo {
        sector_size,
        sectors,
        read_only,
        flush,
    })
}

/// One data segment of a request: a granted page and the 512-byte sectors of it used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The page's grant reference.
    pub gref: u32,
    /// First 512-byte sector of the page transferred.
    pub first: u8,
    /// Last 512-byte sector of the page transferred (inclusive).
    pub last: u8,
}

/// The segments that carry `len` bytes (a whole number of 512-byte sectors, at most
/// `SEGMENTS` pages) from the start of consecutive pages `grefs`.
pub fn segments(grefs: &[u32], len: usize) -> impl Iterator<Item = Segment> + '_ {
    let pages = len.div_ceil(PAGE).min(grefs.len());
    (0..pages).map(move |i| {
        let bytes = (len - i * PAGE).min(PAGE);
        Segment {
            gref: grefs[i],
            first: 0,
            last: (bytes / SECTOR).saturating_sub(1) as u8,
        }
    })
}

/// Writes a request into a ring slot.
pub fn write_request(
    slot: &Slot<'_>,
    operation: u8,
    handle: u16,
    id: u64,
    sector: u64,
    segments: impl Iterator<Item = Segment>,
) {
    let mut count = 0u8;
    for (i, s) in segments.take(SEGMENTS).enumerate() {
        let at = 24 + 8 * i;
        slot.set_u32(at, s.gref);
        slot.set_u8(at + 4, s.first);
        slot.set_u8(at + 5, s.last);
        slot.set_u16(at + 6, 0);
        count += 1;
    }
    slot.set_u8(0, operation);
    slot.set_u8(1, count);
    slot.set_u16(2, handle);
    slot.set_u32(4, 0);
    slot.set_u64(8, id);
    slot.set_u64(16, sector);
}

/// A response as the backend wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    /// The request id echoed.
    pub id: u64,
    /// The operation echoed.
    pub operation: u8,
    /// `BLKIF_RSP_*`.
    pub status: i16,
}

impl Response {
    /// Reads a response from a ring slot.
    pub fn read(slot: &Slot<'_>) -> Response {
        Response {
            id: slot.u64(0),
            operation: slot.u8(8),
            status: slot.u16(10) as i16,
        }
    }
}

/// What a response means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Request slot `slot` is answered: done, or failed with the status given.
    Answered {
        /// The request slot.
        slot: usize,
        /// `Ok`, or the backend's error status.
        result: Result<(), i16>,
    },
    /// The response breaks the protocol (the reason): give up on the backend.
    Lie(&'static str),
}

/// Checks a response against the requests in flight: `in_flight(slot)` is the operation of
/// slot `slot`'s request if it has one in flight.
pub fn check_response(r: Response, in_flight: impl Fn(usize) -> Option<u8>) -> Verdict {
    let Ok(slot) = usize::try_from(r.id) else {
        return Verdict::Lie("response names no request");
    };
    let Some(operation) = in_flight(slot) else {
        return Verdict::Lie("response names no request in flight");
    };
    if r.operation != operation {
        return Verdict::Lie("response operation differs from the request's");
    }
    match r.status {
        RSP_OKAY => Verdict::Answered {
            slot,
            result: Ok(()),
        },
        RSP_ERROR | RSP_EOPNOTSUPP => Verdict::Answered {
            slot,
            result: Err(r.status),
        },
        _ => Verdict::Lie("response status is not one blkif defines"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_keys_are_read_and_checked() {
        let linux = parse_backend(
            Some("131072"),
            Some("512"),
            Some("0"),
            Some("w"),
            Some("1"),
            Some("1"),
        )
        .unwrap();
        assert_eq!(
            linux,
            BackendInfo {
                sector_size: 512,
                sectors: 131072,
                read_only: false,
                flush: Some(OP_FLUSH_DISKCACHE)
            }
        );
        let ro = parse_backend(Some("8"), None, Some("4"), None, None, Some("1")).unwrap();
        assert!(ro.read_only);
        assert_eq!(ro.flush, Some(OP_WRITE_BARRIER));
        let plain = parse_backend(Some("8\0"), None, None, Some("r"), Some("0"), None).unwrap();
        assert!(plain.read_only && plain.flush.is_none());
        assert_eq!(
            parse_backend(None, None, None, None, None, None),
            Err(BlkfrontError::BadValue("sectors"))
        );
        for bad in ["0", "1000", "8192", "x"] {
            assert_eq!(
                parse_backend(Some("8"), Some(bad), None, None, None, None),
                Err(BlkfrontError::BadValue("sector-size")),
                "{bad}"
            );
        }
        assert_eq!(
            parse_backend(Some("8"), None, Some("ro"), None, None, None),
            Err(BlkfrontError::BadValue("info"))
        );
    }

    #[test]
    fn segments_cover_whole_pages_then_the_rest() {
        let grefs = [10, 11, 12];
        let s: alloc::vec::Vec<_> = segments(&grefs, 2 * PAGE + 3 * SECTOR).collect();
        assert_eq!(
            s,
            [
                Segment {
                    gref: 10,
                    first: 0,
                    last: 7
                },
                Segment {
                    gref: 11,
                    first: 0,
                    last: 7
                },
                Segment {
                    gref: 12,
                    first: 0,
                    last: 2
                },
            ]
        );
        assert_eq!(segments(&grefs, 0).count(), 0);
        assert_eq!(
            segments(&grefs, 10 * PAGE).count(),
            3,
            "never more pages than granted"
        );
    }

    #[test]
    fn responses_must_match_a_request_in_flight() {
        let in_flight = |slot: usize| (slot == 2).then_some(OP_WRITE);
        let answer = |id, operation, status| {
            check_response(
                Response {
                    id,
                    operation,
                    status,
                },
                in_flight,
            )
        };
        assert_eq!(
            answer(2, OP_WRITE, 0),
            Verdict::Answered {
                slot: 2,
                result: Ok(())
            }
        );
        assert_eq!(
            answer(2, OP_WRITE, -1),
            Verdict::Answered {
                slot: 2,
                result: Err(-1)
            }
        );
        assert!(matches!(answer(3, OP_WRITE, 0), Verdict::Lie(_)));
        assert!(matches!(answer(u64::MAX, OP_WRITE, 0), Verdict::Lie(_)));
        assert!(matches!(answer(2, OP_READ, 0), Verdict::Lie(_)));
        assert!(matches!(answer(2, OP_WRITE, 7), Verdict::Lie(_)));
        assert!(matches!(answer(2, OP_WRITE, -3), Verdict::Lie(_)));
    }
}
