//! Xen netfront: the network card of a Xen domU, as a [`NetDevice`](super::device::NetDevice).
//!
//! The toolstack describes the card in xenstore under `device/vif/0` (`backend`, `backend-id`,
//! `mac`). The driver allocates one transmit and one receive ring (a page each, the netif ring
//! layout of xen/include/public/io/netif.h and ring.h), grants them to the backend, allocates
//! an unbound event channel, then a task does the handshake: it waits (watch) for the backend
//! to reach InitWait, writes `tx-ring-ref`, `rx-ring-ref`, `event-channel`, `request-rx-copy=1`,
//! `feature-rx-notify=1`, `feature-no-csum-offload=1` and `feature-sg=0` / `feature-gso-tcpv4=0`
//! in one transaction together with `state=4` (Connected), and waits for the backend to be
//! Connected. Nothing else is negotiated: one queue, one event channel, no scatter-gather, no
//! segmentation or checksum offload (so every frame is whole in one page and carries its real
//! checksums, both ways).
//!
//! Buffers are pages granted once, at start, and reused for the kernel's lifetime: 128 receive
//! pages (writable; the backend copies frames into them) and 128 transmit pages (read-only).
//! Pages move to the stack as [`Frame`](super::device::Frame)s and back, never shared.
//!
//! **Everything the backend writes is validated**: a response producer index may run ahead of
//! the consumer by at most the requests in flight (else the card is declared broken and left
//! alone, with a log line); each response must name a buffer id that is in flight; a receive
//! response's status (its length) and offset must put a 14..=1514-byte frame inside the page,
//! with no flags asking for fragments or extra segments we did not negotiate. Bad responses
//! are dropped and counted (`device_errors`, `rx_malformed`).

use core::fmt;

use crate::platform::xen::shared_ring::Slot;

#[cfg(target_os = "none")]
mod driver;
#[cfg(target_os = "none")]
pub use driver::Netfront;

/// Size of a shared ring page and of each buffer.
pub const PAGE: usize = 4096;
/// Bytes of a transmit slot (`netif_tx_request`, 12 bytes; its response is 4).
pub const TX_SLOT: usize = 12;
/// Bytes of a receive slot (`netif_rx_request` and `netif_rx_response`, 8 bytes each).
pub const RX_SLOT: usize = 8;
/// Receive buffers (pages) posted to the backend.
pub const RX_BUFFERS: usize = 128;
/// Transmit buffers (pages).
pub const TX_BUFFERS: usize = 128;
/// Shortest and longest Ethernet frame (header included, no FCS).
pub const MIN_FRAME: usize = 14;
/// Longest Ethernet frame (header included, no FCS).
pub const MAX_FRAME: usize = 1514;

/// `NETRXF_more_data`: the packet continues in the next response (needs `feature-sg`).
pub const NETRXF_MORE_DATA: u16 = 1 << 2;
/// `NETRXF_extra_info`: an extra-info slot follows (needs GSO features).
pub const NETRXF_EXTRA_INFO: u16 = 1 << 3;
/// `NETIF_RSP_OKAY`.
pub const RSP_OKAY: i16 = 0;
/// `NETIF_RSP_DROPPED`.
pub const RSP_DROPPED: i16 = -2;

/// Why the card could not be set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetfrontError {
    /// A xenstore request failed.
    Xenstore(&'static str),
    /// A xenstore value could not be parsed.
    BadValue(&'static str),
    /// Out of memory, grant references or event channels.
    Resources(&'static str),
}

impl fmt::Display for NetfrontError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetfrontError::Xenstore(what) => write!(f, "xenstore: cannot {what}"),
            NetfrontError::BadValue(what) => write!(f, "bad xenstore value for {what}"),
            NetfrontError::Resources(what) => write!(f, "out of {what}"),
        }
    }
}

/// Parses a MAC address written as `xx:xx:xx:xx:xx:xx`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for byte in mac.iter_mut() {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Parses a xenbus state (decimal, possibly NUL-terminated).
pub fn parse_state(text: &str) -> Option<u32> {
    text.trim_end_matches('\0').trim().parse().ok()
}

/// A receive response as the backend wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxResponse {
    /// Buffer id (echoed from the request).
    pub id: u16,
    /// Where the frame starts in the page.
    pub offset: u16,
    /// `NETRXF_*` flags.
    pub flags: u16,
    /// The frame's length, or a negative `NETIF_RSP_*` error.
    pub status: i16,
}

impl RxResponse {
    /// Reads a receive response from its ring slot.
    pub fn read(slot: &Slot<'_>) -> RxResponse {
        RxResponse {
            id: slot.u16(0),
            offset: slot.u16(2),
            flags: slot.u16(4),
            status: slot.u16(6) as i16,
        }
    }
}

/// Writes a receive request: buffer `id`, granted as `gref`.
pub fn write_rx_request(slot: &Slot<'_>, id: u16, gref: u32) {
    slot.set_u16(0, id);
    slot.set_u16(2, 0);
    slot.set_u32(4, gref);
}

/// Writes a transmit request: `len` bytes at the start of buffer `id`, granted as `gref`; no
/// flags (whole frame, real checksums).
pub fn write_tx_request(slot: &Slot<'_>, id: u16, gref: u32, len: u16) {
    slot.set_u32(0, gref);
    slot.set_u16(4, 0);
    slot.set_u16(6, 0);
    slot.set_u16(8, id);
    slot.set_u16(10, len);
}

/// A transmit response as the backend wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxResponse {
    /// Buffer id (echoed from the request).
    pub id: u16,
    /// A `NETIF_RSP_*` status.
    pub status: i16,
}

impl TxResponse {
    /// Reads a transmit response from its ring slot.
    pub fn read(slot: &Slot<'_>) -> TxResponse {
        TxResponse {
            id: slot.u16(0),
            status: slot.u16(2) as i16,
        }
    }
}

/// What to make of a transmit response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxVerdict {
    /// Buffer `id` is back; `status` is the backend's (0 sent, -2 dropped, other negative
    /// values errors).
    Done {
        /// Buffer id.
        id: usize,
        /// Whether the status is one the protocol defines (else: counted as a backend error).
        valid_status: bool,
    },
    /// The id names no buffer in flight: nothing to give back.
    BadId,
}

/// Checks a transmit response against the buffers in flight (`in_flight(id)`).
pub fn check_tx(r: TxResponse, in_flight: impl Fn(usize) -> bool) -> TxVerdict {
    let id = usize::from(r.id);
    if id >= TX_BUFFERS || !in_flight(id) {
        return TxVerdict::BadId;
    }
    TxVerdict::Done {
        id,
        valid_status: r.status <= RSP_OKAY,
    }
}

/// What to make of a receive response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxVerdict {
    /// A frame of `len` bytes at `offset` in buffer `id`.
    Frame {
        /// Buffer id.
        id: usize,
        /// Start in the page.
        offset: usize,
        /// Length.
        len: usize,
    },
    /// Buffer `id` is back, without a usable frame (error, malformed).
    Drop {
        /// Buffer id.
        id: usize,
        /// Whether the backend broke the protocol (else: a reported error or an odd size).
        protocol: bool,
    },
    /// The id names no buffer in flight: nothing to give back.
    BadId,
}

/// Checks a receive response against the buffers in flight (`in_flight(id)`).
pub fn check_rx(r: RxResponse, in_flight: impl Fn(usize) -> bool) -> RxVerdict {
    let id = usize::from(r.id);
    if id >= RX_BUFFERS || !in_flight(id) {
        return RxVerdict::BadId;
    }
    if r.flags & (NETRXF_MORE_DATA | NETRXF_EXTRA_INFO) != 0 {
        return RxVerdict::Drop { id, protocol: true };
    }
    if r.status <= 0 {
        return RxVerdict::Drop {
            id,
            protocol: false,
        };
    }
    let (offset, len) = (usize::from(r.offset), r.status as usize);
    if !(MIN_FRAME..=MAX_FRAME).contains(&len) || offset + len > PAGE {
        return RxVerdict::Drop { id, protocol: true };
    }
    RxVerdict::Frame { id, offset, len }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_and_states() {
        assert_eq!(
            parse_mac("00:16:3e:0a:Bc:ff"),
            Some([0, 0x16, 0x3e, 0x0a, 0xbc, 0xff])
        );
        assert_eq!(parse_mac("00:16:3e:0a:bc"), None);
        assert_eq!(parse_mac("00:16:3e:0a:bc:ff:00"), None);
        assert_eq!(parse_mac("0:16:3e:0a:bc:ff"), None);
        assert_eq!(parse_mac("zz:16:3e:0a:bc:ff"), None);
        assert_eq!(parse_state("4\0"), Some(4));
        assert_eq!(parse_state("x"), None);
    }

    #[test]
    fn receive_responses_are_checked() {
        let ok = |id| id != 7;
        let r = |id, offset, flags, status| RxResponse {
            id,
            offset,
            flags,
            status,
        };
        assert_eq!(
            check_rx(r(3, 0, 0, 60), ok),
            RxVerdict::Frame {
                id: 3,
                offset: 0,
                len: 60
            }
        );
        assert_eq!(check_rx(r(7, 0, 0, 60), ok), RxVerdict::BadId);
        assert_eq!(check_rx(r(128, 0, 0, 60), ok), RxVerdict::BadId);
        let dropped = |protocol| RxVerdict::Drop { id: 3, protocol };
        assert_eq!(check_rx(r(3, 0, 0, -1), ok), dropped(false));
        assert_eq!(check_rx(r(3, 0, 0, 0), ok), dropped(false));
        assert_eq!(check_rx(r(3, 0, 0, 13), ok), dropped(true));
        assert_eq!(check_rx(r(3, 0, 0, 1515), ok), dropped(true));
        assert_eq!(
            check_rx(r(3, 3000, 0, 1500), ok),
            dropped(true),
            "past the page"
        );
        assert_eq!(check_rx(r(3, 65535, 0, 100), ok), dropped(true));
        assert_eq!(check_rx(r(3, 0, NETRXF_MORE_DATA, 100), ok), dropped(true));
        assert_eq!(check_rx(r(3, 0, NETRXF_EXTRA_INFO, 100), ok), dropped(true));
        assert_eq!(
            check_rx(r(3, 2582, 0, 1514), ok),
            RxVerdict::Frame {
                id: 3,
                offset: 2582,
                len: 1514
            }
        );
    }

    #[test]
    fn transmit_responses_are_checked() {
        let ok = |id| id != 7;
        let r = |id, status| TxResponse { id, status };
        let done = |id, valid_status| TxVerdict::Done { id, valid_status };
        assert_eq!(check_tx(r(3, RSP_OKAY), ok), done(3, true));
        assert_eq!(check_tx(r(3, RSP_DROPPED), ok), done(3, true));
        assert_eq!(check_tx(r(3, -1), ok), done(3, true));
        assert_eq!(
            check_tx(r(3, 1), ok),
            done(3, false),
            "no positive statuses"
        );
        assert_eq!(check_tx(r(7, 0), ok), TxVerdict::BadId);
        assert_eq!(check_tx(r(128, 0), ok), TxVerdict::BadId);
    }

    #[test]
    fn slots_have_the_netif_layout() {
        use crate::platform::xen::shared_ring::{FrontRing, HEADER};
        #[repr(C, align(4096))]
        struct Page([u8; PAGE]);
        let base =
            alloc::boxed::Box::into_raw(alloc::boxed::Box::new(Page([0; PAGE]))).cast::<u8>();
        // `base` is a live, aligned page until freed at the end, used only through this pointer.
        // SAFETY: `HEADER + at + n` stays within the page.
        let raw = |at: usize, n: usize| unsafe {
            core::slice::from_raw_parts(base.add(HEADER + at), n).to_vec()
        };
        // SAFETY: as for `raw`.
        let poke = |at: usize, bytes: &[u8]| unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), base.add(at), bytes.len())
        };
        // SAFETY: the page outlives the ring.
        let mut ring = unsafe { FrontRing::init(base, PAGE, TX_SLOT) };
        write_tx_request(&ring.next_request().unwrap(), 0x0102, 0x0a0b_0c0d, 1514);
        // gref u32, offset u16, flags u16, id u16, size u16 (netif_tx_request).
        assert_eq!(
            raw(0, 12),
            [0x0d, 0x0c, 0x0b, 0x0a, 0, 0, 0, 0, 0x02, 0x01, 0xea, 0x05]
        );
        // SAFETY: as above.
        let mut ring = unsafe { FrontRing::init(base, PAGE, RX_SLOT) };
        write_rx_request(&ring.next_request().unwrap(), 7, 0x1122_3344);
        // id u16, pad u16, gref u32 (netif_rx_request).
        assert_eq!(raw(0, 8), [7, 0, 0, 0, 0x44, 0x33, 0x22, 0x11]);
        // The backend answers in the same slot: id, offset, flags, status (netif_rx_response).
        ring.push_requests();
        poke(HEADER, &[7, 0, 0x10, 0, 0, 0, 0x3c, 0]);
        poke(8, &1u32.to_le_bytes()); // rsp_prod
        let r = RxResponse::read(&ring.next_response().unwrap().unwrap());
        assert_eq!(
            r,
            RxResponse {
                id: 7,
                offset: 16,
                flags: 0,
                status: 60
            }
        );
        // SAFETY: from Box::into_raw above; the ring is no longer used.
        drop(unsafe { alloc::boxed::Box::from_raw(base.cast::<Page>()) });
    }
}
