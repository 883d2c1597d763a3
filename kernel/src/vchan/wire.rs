//! libxenvchan's wire format and the byte-ring I/O over shared pages, without any Xen call:
//! this module builds on the host, where its tests play both sides (and a hostile peer).
//!
//! Page 0 (the control page), little-endian:
//!
//! | offset | field                                                               |
//! |--------|---------------------------------------------------------------------|
//! | 0      | `left` ring indices `{cons: u32, prod: u32}`: client -> server data |
//! | 8      | `right` ring indices: server -> client data                         |
//! | 16, 18 | `left_order`, `right_order` (u16): log2 of each ring's size         |
//! | 20, 21 | `cli_live`, `srv_live` (u8): 0 closed, 1 connected, 2 not yet       |
//! | 22, 23 | `cli_notify`, `srv_notify` (u8): bits [`NOTIFY_WRITE`], [`NOTIFY_READ`] |
//! | 24..   | grant refs (u32): the left ring's pages, then the right ring's      |
//!
//! A ring of order 10 lives in page 0 at offset 1024, one of order 11 at offset 2048; larger
//! rings have `2^(order - 12)` pages of their own, which need not be contiguous in memory.
//!
//! Every value the peer can change is checked before use: orders once, at connection time (and
//! copied), indices on every access. A side keeps its own index (the read ring's consumer, the
//! write ring's producer) privately and only publishes it, so a peer that overwrites it cannot
//! move it; a peer index that is impossible (`prod - cons > size`) breaks the channel for good.

use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{fence, AtomicU16, AtomicU32, AtomicU8, Ordering};

use crate::platform::xen::ring::{self, CorruptRing};

/// Size of a page.
pub const PAGE: usize = 4096;
/// Smallest ring order.
pub const MIN_ORDER: u8 = 10;
/// Largest ring order.
pub const MAX_ORDER: u8 = 20;
/// Notify bit: "tell me when you wrote".
pub const NOTIFY_WRITE: u8 = 1;
/// Notify bit: "tell me when you read".
pub const NOTIFY_READ: u8 = 2;
/// Live byte: closed.
pub const LIVE_CLOSED: u8 = 0;
/// Live byte: connected.
pub const LIVE_CONNECTED: u8 = 1;
/// Live byte (client's): the client has not connected yet.
pub const LIVE_WAITING: u8 = 2;

const LEFT: usize = 0;
const RIGHT: usize = 8;
const LEFT_ORDER: usize = 16;
const RIGHT_ORDER: usize = 18;
const CLI_LIVE: usize = 20;
const SRV_LIVE: usize = 21;
const CLI_NOTIFY: usize = 22;
const SRV_NOTIFY: usize = 23;
const GRANTS: usize = 24;
/// Most grant refs page 0 can hold.
pub const MAX_GRANTS: usize = (PAGE - GRANTS) / 4;

/// What went wrong on a channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// Ring orders outside 10..=20, or two rings placed in the same part of page 0.
    BadOrders {
        /// Left ring order as found.
        left: u16,
        /// Right ring order as found.
        right: u16,
    },
    /// The peer left impossible ring indices: the channel is cut off.
    Corrupt(CorruptRing),
    /// The peer closed the channel, or its domain is gone.
    Closed,
    /// The peer's control page is in a state the protocol does not allow.
    Protocol(&'static str),
    /// A xenstore value is not what the protocol says.
    BadValue(&'static str),
    /// Setting up failed (grants, mappings, event channels, xenstore, memory).
    Setup(alloc::string::String),
    /// No peer turned up on the named manifest channel in time.
    NoPeer(alloc::string::String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadOrders { left, right } => {
                write!(f, "bad vchan ring orders: left {left}, right {right}")
            }
            Error::Corrupt(c) => write!(f, "vchan peer cut off: {c}"),
            Error::Closed => f.write_str("vchan closed by the peer"),
            Error::Protocol(what) => write!(f, "vchan protocol violation: {what}"),
            Error::BadValue(what) => write!(f, "bad vchan xenstore value: {what}"),
            Error::Setup(what) => write!(f, "vchan setup failed: {what}"),
            Error::NoPeer(name) => write!(f, "no peer on vchan channel {name}"),
        }
    }
}

/// Checks a pair of ring orders: each within 10..=20, and the in-page rings (orders 10 and 11)
/// not both in the same place.
pub fn check_orders(left: u16, right: u16) -> Result<(), Error> {
    let valid = |o: u16| (u16::from(MIN_ORDER)..=u16::from(MAX_ORDER)).contains(&o);
    if !valid(left) || !valid(right) || (left < 12 && left == right) {
        return Err(Error::BadOrders { left, right });
    }
    Ok(())
}

/// Pages a ring of `order` needs besides page 0.
pub fn ring_pages(order: u8) -> usize {
    if order >= 12 {
        1 << (order - 12)
    } else {
        0
    }
}

/// Parses a decimal xenstore value (a grant ref or a port): digits only, fits in a u32.
pub fn parse_decimal(value: &str, what: &'static str) -> Result<u32, Error> {
    let value = value.trim_end_matches('\0');
    if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::BadValue(what));
    }
    value.parse().map_err(|_| Error::BadValue(what))
}

/// The control page (page 0) of a channel.
#[derive(Clone, Copy)]
pub struct Control {
    base: *mut u8,
}

impl Control {
    /// Wraps page 0.
    ///
    /// # Safety
    /// `base` must be a page-aligned, mapped, writable page that outlives the value (and every
    /// [`Channel`] built on it); only the peer may change it meanwhile.
    pub unsafe fn new(base: *mut u8) -> Self {
        Control { base }
    }

    fn u8_at(&self, offset: usize) -> &AtomicU8 {
        // SAFETY: `offset` < PAGE (callers use the constants above); the page is live per `new`.
        unsafe { &*(self.base.add(offset) as *const AtomicU8) }
    }

    fn u16_at(&self, offset: usize) -> &AtomicU16 {
        // SAFETY: as for `u8_at`; the offsets used are 2-byte aligned in an aligned page.
        unsafe { &*(self.base.add(offset) as *const AtomicU16) }
    }

    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: as for `u8_at`; the offsets used are 4-byte aligned in an aligned page.
        unsafe { &*(self.base.add(offset) as *const AtomicU32) }
    }

    /// Server side: fills in a fresh control page for rings of `left_order` and `right_order`
    /// (already checked) whose pages are granted as `grants` (left's, then right's).
    pub fn init_server(&self, left_order: u8, right_order: u8, grants: &[u32]) {
        for offset in [LEFT, LEFT + 4, RIGHT, RIGHT + 4] {
            self.u32_at(offset).store(0, Ordering::Relaxed);
        }
        self.u16_at(LEFT_ORDER)
            .store(u16::from(left_order), Ordering::Relaxed);
        self.u16_at(RIGHT_ORDER)
            .store(u16::from(right_order), Ordering::Relaxed);
        for (i, g) in grants.iter().enumerate() {
            self.u32_at(GRANTS + 4 * i).store(*g, Ordering::Relaxed);
        }
        self.u8_at(CLI_NOTIFY)
            .store(NOTIFY_WRITE, Ordering::Relaxed);
        self.u8_at(SRV_NOTIFY).store(0, Ordering::Relaxed);
        self.u8_at(CLI_LIVE).store(LIVE_WAITING, Ordering::Relaxed);
        self.u8_at(SRV_LIVE)
            .store(LIVE_CONNECTED, Ordering::Release);
    }

    /// Client side: reads (once) and checks the orders and grant refs the server published.
    /// Returns `(left_order, right_order, grants)`.
    pub fn read_layout(&self) -> Result<(u8, u8, Vec<u32>), Error> {
        let left = self.u16_at(LEFT_ORDER).load(Ordering::Acquire);
        let right = self.u16_at(RIGHT_ORDER).load(Ordering::Acquire);
        check_orders(left, right)?;
        let (left, right) = (left as u8, right as u8);
        let count = ring_pages(left) + ring_pages(right);
        // At most 2 * 256 refs, which always fit; checked anyway.
        if count > MAX_GRANTS {
            return Err(Error::BadOrders {
                left: left.into(),
                right: right.into(),
            });
        }
        let grants = (0..count)
            .map(|i| self.u32_at(GRANTS + 4 * i).load(Ordering::Relaxed))
            .collect();
        Ok((left, right, grants))
    }

    /// The client's live byte.
    pub fn cli_live(&self) -> u8 {
        self.u8_at(CLI_LIVE).load(Ordering::Acquire)
    }

    /// The server's live byte.
    pub fn srv_live(&self) -> u8 {
        self.u8_at(SRV_LIVE).load(Ordering::Acquire)
    }

    /// Sets the live byte of `server`'s side or the client's.
    pub fn set_live(&self, server: bool, value: u8) {
        let offset = if server { SRV_LIVE } else { CLI_LIVE };
        self.u8_at(offset).store(value, Ordering::Release);
        fence(Ordering::SeqCst);
    }
}

/// Where one ring's bytes live: page-sized pieces (or a part of page 0), each at its own address.
pub struct RingMem {
    pages: Vec<*mut u8>,
    offset: usize,
    size: u32,
}

impl RingMem {
    /// A ring of `order` (10..=20): in `page0` for orders 10 and 11, else in `pages`
    /// (`2^(order-12)` of them, in ring order).
    ///
    /// # Safety
    /// Every address must be a mapped, writable page that outlives the value; only the peer
    /// may change it meanwhile.
    pub unsafe fn new(order: u8, page0: *mut u8, pages: Vec<*mut u8>) -> Self {
        debug_assert!((MIN_ORDER..=MAX_ORDER).contains(&order));
        let size = 1u32 << order;
        match order {
            10 | 11 => RingMem {
                pages: alloc::vec![page0],
                offset: size as usize,
                size,
            },
            _ => {
                assert_eq!(pages.len(), ring_pages(order), "ring page count");
                RingMem {
                    pages,
                    offset: 0,
                    size,
                }
            }
        }
    }

    /// The ring's size in bytes.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Calls `f(address, length)` for the page pieces of `len` bytes at ring position `pos`
    /// (`pos + len <= size`).
    fn each_piece(&self, pos: usize, len: usize, mut f: impl FnMut(*mut u8, usize)) {
        debug_assert!(pos + len <= self.size as usize);
        let (mut pos, mut left) = (pos, len);
        while left > 0 {
            let at = self.offset + pos;
            let (page, within) = (at / PAGE, at % PAGE);
            let n = left.min(PAGE - within);
            // SAFETY: `at` < offset + size, so `page` indexes `pages` (a small ring stays in
            // page 0 since offset + size = 2 * size <= PAGE) and `within + n` <= PAGE.
            f(unsafe { self.pages[page].add(within) }, n);
            pos += n;
            left -= n;
        }
    }

    fn copy_out(&self, pos: usize, dst: &mut [u8]) {
        let mut done = 0;
        self.each_piece(pos, dst.len(), |src, n| {
            // SAFETY: `src..src+n` is inside a live ring page (see each_piece) and `dst` has n
            // bytes left; the peer may write the page concurrently, which only garbles bytes it
            // has not published.
            unsafe { core::ptr::copy_nonoverlapping(src, dst[done..].as_mut_ptr(), n) };
            done += n;
        });
    }

    fn copy_in(&self, pos: usize, src: &[u8]) {
        let mut done = 0;
        self.each_piece(pos, src.len(), |dst, n| {
            // SAFETY: as in `copy_out`, in the other direction.
            unsafe { core::ptr::copy_nonoverlapping(src[done..].as_ptr(), dst, n) };
            done += n;
        });
    }
}

/// One side of a connected channel: reads its read ring, writes its write ring.
pub struct Channel {
    ctrl: Control,
    server: bool,
    read: RingMem,
    write: RingMem,
    /// Our consumer index of the read ring (the shared copy is only published).
    rd_cons: u32,
    /// Our producer index of the write ring.
    wr_prod: u32,
    broken: Option<CorruptRing>,
}

impl Channel {
    /// A side of the channel on `ctrl`: the server reads the left ring and writes the right
    /// one, the client the other way round. Starts from the indices found in the page.
    pub fn new(ctrl: Control, server: bool, read: RingMem, write: RingMem) -> Self {
        let (rd, wr) = if server { (LEFT, RIGHT) } else { (RIGHT, LEFT) };
        let rd_cons = ctrl.u32_at(rd).load(Ordering::Acquire);
        let wr_prod = ctrl.u32_at(wr + 4).load(Ordering::Acquire);
        Channel {
            ctrl,
            server,
            read,
            write,
            rd_cons,
            wr_prod,
            broken: None,
        }
    }

    /// The control page.
    pub fn control(&self) -> Control {
        self.ctrl
    }

    /// Whether this is the server's side.
    pub fn is_server(&self) -> bool {
        self.server
    }

    /// The read ring's size.
    pub fn read_size(&self) -> u32 {
        self.read.size
    }

    /// The write ring's size.
    pub fn write_size(&self) -> u32 {
        self.write.size
    }

    fn read_base(&self) -> usize {
        if self.server {
            LEFT
        } else {
            RIGHT
        }
    }

    fn write_base(&self) -> usize {
        if self.server {
            RIGHT
        } else {
            LEFT
        }
    }

    fn check(&mut self, r: Result<u32, CorruptRing>) -> Result<u32, Error> {
        if let Some(c) = self.broken {
            return Err(Error::Corrupt(c));
        }
        r.map_err(|c| {
            self.broken = Some(c);
            Error::Corrupt(c)
        })
    }

    /// Bytes ready to read.
    pub fn readable(&mut self) -> Result<u32, Error> {
        let prod = self
            .ctrl
            .u32_at(self.read_base() + 4)
            .load(Ordering::Acquire);
        let size = self.read.size;
        let r = ring::used(prod, self.rd_cons, size);
        self.check(r)
    }

    /// Room to write.
    pub fn writable(&mut self) -> Result<u32, Error> {
        let cons = self.ctrl.u32_at(self.write_base()).load(Ordering::Acquire);
        let size = self.write.size;
        let r = ring::free(self.wr_prod, cons, size);
        self.check(r)
    }

    /// Reads what is ready, up to `buf.len()` bytes, without waiting.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let ready = self.readable()? as usize;
        let n = ready.min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        fence(Ordering::Acquire);
        let size = self.read.size;
        let mut done = 0;
        for (pos, len) in ring::pieces(self.rd_cons, n as u32, size) {
            if len > 0 {
                self.read.copy_out(pos, &mut buf[done..done + len]);
                done += len;
            }
        }
        self.rd_cons = self.rd_cons.wrapping_add(n as u32);
        fence(Ordering::SeqCst);
        self.ctrl
            .u32_at(self.read_base())
            .store(self.rd_cons, Ordering::Release);
        Ok(n)
    }

    /// Writes as much of `buf` as fits, without waiting.
    pub fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        let room = self.writable()? as usize;
        let n = room.min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        fence(Ordering::SeqCst);
        let size = self.write.size;
        let mut done = 0;
        for (pos, len) in ring::pieces(self.wr_prod, n as u32, size) {
            if len > 0 {
                self.write.copy_in(pos, &buf[done..done + len]);
                done += len;
            }
        }
        self.wr_prod = self.wr_prod.wrapping_add(n as u32);
        fence(Ordering::Release);
        self.ctrl
            .u32_at(self.write_base() + 4)
            .store(self.wr_prod, Ordering::Release);
        Ok(n)
    }

    /// Asks the peer for an event when it does `bit` ([`NOTIFY_WRITE`] or [`NOTIFY_READ`]):
    /// call before re-checking the indices and waiting.
    pub fn request_notify(&self, bit: u8) {
        let peer = if self.server { CLI_NOTIFY } else { SRV_NOTIFY };
        self.ctrl.u8_at(peer).fetch_or(bit, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// After doing `bit`: clears the peer's request for it and says whether the peer asked
    /// (then it must be sent an event).
    pub fn take_notify(&self, bit: u8) -> bool {
        fence(Ordering::SeqCst);
        let own = if self.server { SRV_NOTIFY } else { CLI_NOTIFY };
        self.ctrl.u8_at(own).fetch_and(!bit, Ordering::SeqCst) & bit != 0
    }

    /// The peer's live byte.
    pub fn peer_live(&self) -> u8 {
        if self.server {
            self.ctrl.cli_live()
        } else {
            self.ctrl.srv_live()
        }
    }

    /// Sets our live byte.
    pub fn set_live(&self, value: u8) {
        self.ctrl.set_live(self.server, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::boxed::Box;
    use std::vec;

    /// Page-aligned test memory.
    #[repr(C, align(4096))]
    struct Page([u8; PAGE]);

    fn page() -> *mut u8 {
        Box::into_raw(Box::new(Page([0; PAGE]))) as *mut u8
    }

    /// Both sides over the same memory, the ring pages allocated one by one (not contiguous).
    fn pair(left: u8, right: u8) -> (Channel, Channel) {
        check_orders(left.into(), right.into()).unwrap();
        let p0 = page();
        let lp: Vec<*mut u8> = (0..ring_pages(left)).map(|_| page()).collect();
        let rp: Vec<*mut u8> = (0..ring_pages(right)).map(|_| page()).collect();
        // SAFETY: the test pages are leaked, so they outlive everything.
        let ctrl = unsafe { Control::new(p0) };
        let grants: Vec<u32> = (100..100 + (lp.len() + rp.len()) as u32).collect();
        ctrl.init_server(left, right, &grants);
        let (l, r, g) = ctrl.read_layout().unwrap();
        assert_eq!((l, r, g), (left, right, grants));
        // SAFETY: as above.
        let server = unsafe {
            Channel::new(
                ctrl,
                true,
                RingMem::new(left, p0, lp.clone()),
                RingMem::new(right, p0, rp.clone()),
            )
        };
        // SAFETY: as above.
        let client = unsafe {
            Channel::new(
                ctrl,
                false,
                RingMem::new(right, p0, rp),
                RingMem::new(left, p0, lp),
            )
        };
        assert_eq!(ctrl.cli_live(), LIVE_WAITING);
        client.set_live(LIVE_CONNECTED);
        (server, client)
    }

    fn pattern(n: usize, seed: u32) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    fn pump(from: &mut Channel, to: &mut Channel, data: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut sent = 0;
        let mut buf = vec![0u8; chunk];
        while out.len() < data.len() {
            let end = (sent + chunk).min(data.len());
            sent += from.write(&data[sent..end]).unwrap();
            let n = to.read(&mut buf).unwrap();
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    #[test]
    fn orders_are_checked() {
        assert!(check_orders(10, 11).is_ok());
        assert!(check_orders(11, 10).is_ok());
        assert!(check_orders(12, 20).is_ok());
        assert!(check_orders(10, 10).is_err(), "both rings at offset 1024");
        assert!(check_orders(11, 11).is_err());
        assert!(check_orders(9, 12).is_err());
        assert!(check_orders(12, 21).is_err());
        assert!(check_orders(0xffff, 12).is_err());
    }

    #[test]
    fn decimal_values_are_checked() {
        assert_eq!(parse_decimal("42", "x"), Ok(42));
        assert_eq!(parse_decimal("4294967295", "x"), Ok(u32::MAX));
        for bad in ["", "-1", "4294967296", "12a", " 1", "0x10", "99999999999"] {
            assert!(parse_decimal(bad, "x").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn data_crosses_every_ring_shape_in_both_directions() {
        for (left, right) in [(10, 11), (11, 10), (12, 10), (13, 14), (16, 12)] {
            let (mut server, mut client) = pair(left, right);
            let data = pattern(300_000, u32::from(left) * 31 + u32::from(right));
            for chunk in [1, 1000, 4096, 70_000] {
                assert_eq!(pump(&mut client, &mut server, &data, chunk), data);
                assert_eq!(pump(&mut server, &mut client, &data, chunk), data);
            }
        }
    }

    #[test]
    fn a_full_ring_takes_no_more_and_indices_wrap() {
        let (mut server, mut client) = pair(10, 11);
        // Start the client's write ring (left) just before 2^32.
        let near = u32::MAX - 100;
        server.ctrl.u32_at(LEFT).store(near, Ordering::Relaxed);
        server.ctrl.u32_at(LEFT + 4).store(near, Ordering::Relaxed);
        server.rd_cons = near;
        client.wr_prod = near;
        let data = pattern(1024, 7);
        assert_eq!(client.write(&data).unwrap(), 1024);
        assert_eq!(client.write(b"more").unwrap(), 0, "the ring is full");
        let mut buf = vec![0u8; 2000];
        assert_eq!(server.read(&mut buf).unwrap(), 1024);
        assert_eq!(&buf[..1024], &data[..]);
        assert_eq!(server.read(&mut buf).unwrap(), 0);
        assert!(client.wr_prod < 1024, "wrapped past 2^32");
    }

    #[test]
    fn notify_bits_follow_libxenvchan() {
        let (mut server, mut client) = pair(12, 12);
        // The server wants to hear about the client's writes.
        server.request_notify(NOTIFY_WRITE);
        client.write(b"x").unwrap();
        assert!(client.take_notify(NOTIFY_WRITE));
        assert!(!client.take_notify(NOTIFY_WRITE), "cleared once taken");
        let mut b = [0u8; 1];
        server.read(&mut b).unwrap();
        assert!(!server.take_notify(NOTIFY_READ), "nobody asked");
    }

    #[test]
    fn a_peer_with_impossible_indices_is_cut_off() {
        let (mut server, mut client) = pair(12, 13);
        // The client claims more data than the ring holds.
        server.ctrl.u32_at(LEFT + 4).store(4097, Ordering::Relaxed);
        let mut buf = vec![0u8; 8192];
        assert!(matches!(server.read(&mut buf), Err(Error::Corrupt(_))));
        // Even if it fixes the index, the channel stays broken.
        server.ctrl.u32_at(LEFT + 4).store(0, Ordering::Relaxed);
        assert!(matches!(server.read(&mut buf), Err(Error::Corrupt(_))));

        // The server moves its consumer index of the client's ring ahead of the producer.
        let (_server, mut client2) = pair(12, 13);
        client2.ctrl.u32_at(LEFT).store(50, Ordering::Relaxed);
        assert!(matches!(client2.write(b"abc"), Err(Error::Corrupt(_))));

        // A peer overwriting *our* published index does not move it.
        client.ctrl.u32_at(RIGHT).store(12345, Ordering::Relaxed);
        assert_eq!(client.rd_cons, 0);
        assert_eq!(client.readable().unwrap(), 0);
    }

    #[test]
    fn a_client_refuses_bad_layouts() {
        let p0 = page();
        // SAFETY: leaked test page.
        let ctrl = unsafe { Control::new(p0) };
        ctrl.init_server(12, 12, &[1, 2]);
        ctrl.u16_at(LEFT_ORDER).store(21, Ordering::Relaxed);
        assert!(ctrl.read_layout().is_err());
        ctrl.u16_at(LEFT_ORDER).store(11, Ordering::Relaxed);
        ctrl.u16_at(RIGHT_ORDER).store(11, Ordering::Relaxed);
        assert!(ctrl.read_layout().is_err());
        ctrl.u16_at(LEFT_ORDER).store(20, Ordering::Relaxed);
        ctrl.u16_at(RIGHT_ORDER).store(20, Ordering::Relaxed);
        let (_, _, grants) = ctrl.read_layout().unwrap();
        assert_eq!(grants.len(), 512);
    }
}
