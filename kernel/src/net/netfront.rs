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

/// `XenbusStateInitWait`.
#[cfg(target_os = "none")]
const STATE_INIT_WAIT: u32 = 2;
/// `XenbusStateConnected`.
#[cfg(target_os = "none")]
const STATE_CONNECTED: u32 = 4;
/// `XenbusStateClosing`.
#[cfg(target_os = "none")]
const STATE_CLOSING: u32 = 5;

/// Size of a shared ring page and of each buffer.
const PAGE: usize = 4096;
/// Bytes of the shared ring header (`req_prod`, `req_event`, `rsp_prod`, `rsp_event`, padding)
/// before the first entry.
#[cfg(target_os = "none")]
const RING_HEADER: usize = 64;
/// Entries of each ring: the largest power of two that fits (12-byte tx entries, 8-byte rx
/// entries: 256 for both).
#[cfg(target_os = "none")]
const RING_ENTRIES: u32 = 256;
#[cfg(target_os = "none")]
const REQ_PROD: usize = 0;
#[cfg(target_os = "none")]
const REQ_EVENT: usize = 4;
#[cfg(target_os = "none")]
const RSP_PROD: usize = 8;
#[cfg(target_os = "none")]
const RSP_EVENT: usize = 12;
#[cfg(target_os = "none")]
const TX_ENTRY: usize = 12;
#[cfg(target_os = "none")]
const RX_ENTRY: usize = 8;

/// Receive buffers (pages) posted to the backend.
pub const RX_BUFFERS: usize = 128;
/// Transmit buffers (pages).
pub const TX_BUFFERS: usize = 128;
/// Shortest and longest Ethernet frame (header included, no FCS).
const MIN_FRAME: usize = 14;
const MAX_FRAME: usize = 1514;

/// `NETRXF_more_data`: the packet continues in the next response (needs `feature-sg`).
const NETRXF_MORE_DATA: u16 = 1 << 2;
/// `NETRXF_extra_info`: an extra-info slot follows (needs GSO features).
const NETRXF_EXTRA_INFO: u16 = 1 << 3;
/// `NETIF_RSP_OKAY`.
#[cfg(target_os = "none")]
const RSP_OKAY: i16 = 0;
/// `NETIF_RSP_DROPPED`.
#[cfg(target_os = "none")]
const RSP_DROPPED: i16 = -2;

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

/// Whether the other end asked to be notified of requests `old..new` (its event index `event`
/// lies in that window; free-running indices).
pub fn needs_notify(old: u32, new: u32, event: u32) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

/// Whether a response producer index `rsp_prod` is possible: no further ahead of the consumer
/// `rsp_cons` than the requests produced (`req_prod`).
pub fn responses_valid(rsp_prod: u32, rsp_cons: u32, req_prod: u32) -> bool {
    rsp_prod.wrapping_sub(rsp_cons) <= req_prod.wrapping_sub(rsp_cons)
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

#[cfg(target_os = "none")]
pub use machine::Netfront;

#[cfg(target_os = "none")]
mod machine {
    use super::*;
    use alloc::format;
    use alloc::rc::Rc;
    use alloc::string::String;
    use alloc::vec::Vec;
    use core::cell::Cell;
    use core::ptr::{read_volatile, write_volatile};
    use core::sync::atomic::{fence, Ordering};

    use crate::net::device::{DeviceCounters, EventSource, Frame, NetDevice};
    use crate::platform::xen::evtchn::{self, Port};
    use crate::platform::xen::grant::{self, GrantRef};
    use crate::platform::xen::store;
    use crate::platform::xen::xenstore::{kind, payload};
    use crate::time::Duration;

    /// The frontend's directory (relative to this domain's xenstore home).
    const FRONT: &str = "device/vif/0";
    /// How long the backend may take for each step of the handshake.
    const HANDSHAKE_STEP: Duration = Duration::from_secs(30);
    /// Protocol errors logged in full; later ones are only counted.
    const LOGGED_ERRORS: u64 = 8;

    /// Where the handshake is.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Link {
        Connecting,
        Up,
        Failed,
    }

    /// A shared ring page.
    struct SharedRing {
        base: u64,
        entry: usize,
    }

    impl SharedRing {
        fn new(entry: usize) -> Result<SharedRing, NetfrontError> {
            let base = crate::mem::alloc_frames(1).ok_or(NetfrontError::Resources("memory"))?;
            let ring = SharedRing { base, entry };
            // Like SHARED_RING_INIT: ask to be told of the first request / response.
            ring.set(REQ_EVENT, 1);
            ring.set(RSP_EVENT, 1);
            Ok(ring)
        }

        fn get(&self, offset: usize) -> u32 {
            debug_assert!(offset + 4 <= RING_HEADER);
            // SAFETY: a header field inside the ring page (allocated for the kernel's lifetime,
            // identity mapped); the backend writes it concurrently, hence volatile.
            unsafe { read_volatile((self.base as usize + offset) as *const u32) }
        }

        fn set(&self, offset: usize, value: u32) {
            debug_assert!(offset + 4 <= RING_HEADER);
            // SAFETY: as for `get`.
            unsafe { write_volatile((self.base as usize + offset) as *mut u32, value) }
        }

        /// The address of field `offset` of the entry at free-running index `index`.
        fn field(&self, index: u32, offset: usize) -> usize {
            let slot = (index & (RING_ENTRIES - 1)) as usize;
            debug_assert!(offset < self.entry);
            // In the page: 64 + 255 * 12 + 11 < 4096.
            self.base as usize + RING_HEADER + slot * self.entry + offset
        }

        fn read16(&self, index: u32, offset: usize) -> u16 {
            // SAFETY: `field` stays inside the ring page; 2-byte aligned (entries are 4-byte
            // multiples, offsets even).
            unsafe { read_volatile(self.field(index, offset) as *const u16) }
        }

        fn write16(&self, index: u32, offset: usize, value: u16) {
            // SAFETY: as for `read16`.
            unsafe { write_volatile(self.field(index, offset) as *mut u16, value) }
        }

        fn write32(&self, index: u32, offset: usize, value: u32) {
            // SAFETY: as for `read16`, 4-byte aligned.
            unsafe { write_volatile(self.field(index, offset) as *mut u32, value) }
        }
    }

    /// A buffer page: with the driver, with the backend, or lent to the stack.
    enum Slot {
        Idle(&'static mut [u8]),
        Posted(&'static mut [u8]),
        Lent,
    }

    /// One ring's producer/consumer state on our side.
    struct Side {
        ring: SharedRing,
        /// Requests produced (published at `flush`).
        req_prod: u32,
        /// Responses consumed.
        rsp_cons: u32,
        slots: Vec<Slot>,
        grefs: Vec<GrantRef>,
    }

    impl Side {
        fn new(
            entry: usize,
            buffers: usize,
            backend: u16,
            readonly: bool,
        ) -> Result<Side, NetfrontError> {
            let ring = SharedRing::new(entry)?;
            let mut slots = Vec::with_capacity(buffers);
            let mut grefs = Vec::with_capacity(buffers);
            for _ in 0..buffers {
                let addr = crate::mem::alloc_frames(1).ok_or(NetfrontError::Resources("memory"))?;
                let gref = grant::grant_access(backend, addr, readonly)
                    .map_err(|_| NetfrontError::Resources("grant references"))?;
                // SAFETY: a fresh, zeroed, page-aligned page that is never freed, and this is
                // the only reference to it.
                let page = unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, PAGE) };
                slots.push(Slot::Idle(page));
                grefs.push(gref);
            }
            Ok(Side {
                ring,
                req_prod: 0,
                rsp_cons: 0,
                slots,
                grefs,
            })
        }

        /// Publishes new requests; whether the backend wants to be notified.
        fn push(&mut self) -> bool {
            let old = self.ring.get(REQ_PROD);
            if old == self.req_prod {
                return false;
            }
            fence(Ordering::Release);
            self.ring.set(REQ_PROD, self.req_prod);
            fence(Ordering::SeqCst);
            needs_notify(old, self.req_prod, self.ring.get(REQ_EVENT))
        }

        /// The response producer index if it is valid, `None` if there is nothing new after
        /// asking to be told, `Err` if the backend broke the ring.
        fn next_response(&mut self) -> Result<Option<u32>, (u32, u32, u32)> {
            let mut prod = self.ring.get(RSP_PROD);
            if prod == self.rsp_cons {
                self.ring.set(RSP_EVENT, self.rsp_cons.wrapping_add(1));
                fence(Ordering::SeqCst);
                prod = self.ring.get(RSP_PROD);
                if prod == self.rsp_cons {
                    return Ok(None);
                }
            }
            if !responses_valid(prod, self.rsp_cons, self.req_prod) {
                return Err((prod, self.rsp_cons, self.req_prod));
            }
            fence(Ordering::Acquire);
            Ok(Some(prod))
        }

        fn in_flight(&self, id: usize) -> bool {
            matches!(self.slots.get(id), Some(Slot::Posted(_)))
        }

        fn room(&self) -> bool {
            self.req_prod.wrapping_sub(self.rsp_cons) < RING_ENTRIES
        }
    }

    /// The Xen network card.
    pub struct Netfront {
        mac: [u8; 6],
        port: Port,
        link: Rc<Cell<Link>>,
        tx: Side,
        rx: Side,
        tx_free: Vec<u16>,
        /// Dropping the continuation of a fragmented packet (which we never asked for).
        rx_skipping: bool,
        counters: DeviceCounters,
        broken: bool,
    }

    fn read_blocking(path: &str, what: &'static str) -> Result<String, NetfrontError> {
        let body = payload(&[path], &[]).map_err(|_| NetfrontError::Xenstore(what))?;
        let answer = crate::platform::xen::platform()
            .with_xenstore(|xs| xs.request_blocking(kind::READ, 0, &body))
            .ok_or(NetfrontError::Xenstore(what))?
            .map_err(|_| NetfrontError::Xenstore(what))?;
        String::from_utf8(answer).map_err(|_| NetfrontError::BadValue(what))
    }

    impl Netfront {
        /// The first vif (`device/vif/0`), if the toolstack gave this domain one: rings and
        /// buffers are set up at once, the handshake with the backend runs in a task (frames
        /// flow once it is done).
        ///
        /// The xenstore reads here block (on the boot-time path of the xenstore ring): call
        /// this before other tasks use xenstore.
        pub fn find_first() -> Option<Result<Netfront, NetfrontError>> {
            let backend = read_blocking(&format!("{FRONT}/backend"), "backend").ok()?;
            Some(Netfront::new(backend))
        }

        fn new(backend: String) -> Result<Netfront, NetfrontError> {
            let backend = String::from(backend.trim_end_matches('\0'));
            let backend_id: u16 = read_blocking(&format!("{FRONT}/backend-id"), "backend-id")?
                .trim_end_matches('\0')
                .parse()
                .map_err(|_| NetfrontError::BadValue("backend-id"))?;
            let mac = parse_mac(&read_blocking(&format!("{FRONT}/mac"), "mac")?)
                .ok_or(NetfrontError::BadValue("mac"))?;
            let tx = Side::new(TX_ENTRY, TX_BUFFERS, backend_id, true)?;
            let mut rx = Side::new(RX_ENTRY, RX_BUFFERS, backend_id, false)?;
            let grant_ring = |ring: &SharedRing| {
                grant::grant_access(backend_id, ring.base, false)
                    .map_err(|_| NetfrontError::Resources("grant references"))
            };
            let tx_ref = grant_ring(&tx.ring)?;
            let rx_ref = grant_ring(&rx.ring)?;
            let port = evtchn::alloc_unbound(backend_id)
                .map_err(|_| NetfrontError::Resources("event channels"))?;
            // Post every receive buffer now; the backend sees them once it maps the ring.
            for id in 0..RX_BUFFERS {
                post_rx(&mut rx, id);
            }
            rx.push();
            let link = Rc::new(Cell::new(Link::Connecting));
            crate::spawn(connect(
                backend,
                backend_id,
                tx_ref,
                rx_ref,
                port,
                link.clone(),
            ));
            crate::info!(
                "netfront: vif 0, backend domain {backend_id}, mac {}, port {port}",
                crate::virtio::net::MacDisplay(mac)
            );
            Ok(Netfront {
                mac,
                port,
                link,
                tx,
                rx,
                tx_free: (0..TX_BUFFERS as u16).rev().collect(),
                rx_skipping: false,
                counters: DeviceCounters::default(),
                broken: false,
            })
        }

        fn usable(&self) -> bool {
            !self.broken && self.link.get() == Link::Up
        }

        fn error(&mut self, what: fmt::Arguments<'_>) {
            self.counters.device_errors += 1;
            if self.counters.device_errors <= LOGGED_ERRORS {
                crate::warn!("netfront: backend error: {what}");
            }
        }

        fn give_up(&mut self, ring: &str, (prod, cons, req): (u32, u32, u32)) {
            self.broken = true;
            self.counters.device_errors += 1;
            crate::error!(
                "netfront: the backend broke the {ring} ring (response producer {prod}, consumer \
                 {cons}, requests {req}): card disabled"
            );
        }

        /// Takes back transmit buffers the backend is done with.
        fn reclaim_tx(&mut self) {
            while self.usable() {
                let prod = match self.tx.next_response() {
                    Ok(Some(prod)) => prod,
                    Ok(None) => return,
                    Err(e) => return self.give_up("transmit", e),
                };
                while self.tx.rsp_cons != prod {
                    let i = self.tx.rsp_cons;
                    let id = self.tx.ring.read16(i, 0);
                    let status = self.tx.ring.read16(i, 2) as i16;
                    self.tx.rsp_cons = i.wrapping_add(1);
                    let idx = usize::from(id);
                    if !self.tx.in_flight(idx) {
                        self.error(format_args!(
                            "transmit response for buffer {id} not in flight"
                        ));
                        continue;
                    }
                    if let Slot::Posted(page) =
                        core::mem::replace(&mut self.tx.slots[idx], Slot::Lent)
                    {
                        self.tx.slots[idx] = Slot::Idle(page);
                    }
                    self.tx_free.push(id);
                    match status {
                        RSP_OKAY | RSP_DROPPED => {}
                        s if s < 0 => crate::debug!("netfront: transmit error {s}"),
                        s => self.error(format_args!("transmit status {s}")),
                    }
                }
            }
        }
    }

    /// Writes a receive request for buffer `id` (which must be idle).
    fn post_rx(rx: &mut Side, id: usize) {
        if !rx.room() {
            return;
        }
        let Slot::Idle(page) = core::mem::replace(&mut rx.slots[id], Slot::Lent) else {
            return;
        };
        rx.slots[id] = Slot::Posted(page);
        let i = rx.req_prod;
        rx.ring.write16(i, 0, id as u16);
        rx.ring.write16(i, 2, 0);
        rx.ring.write32(i, 4, rx.grefs[id]);
        rx.req_prod = i.wrapping_add(1);
    }

    /// The handshake with the backend (a task).
    async fn connect(
        backend: String,
        backend_id: u16,
        tx_ref: GrantRef,
        rx_ref: GrantRef,
        port: Port,
        link: Rc<Cell<Link>>,
    ) {
        match handshake(&backend, tx_ref, rx_ref, port).await {
            Ok(()) => {
                crate::info!("netfront: connected to backend domain {backend_id}");
                link.set(Link::Up);
                // Tell the stack through the port it waits on: it flushes what it queued.
                evtchn::raise(port);
            }
            Err(e) => {
                crate::error!("netfront: handshake with {backend} failed: {e}");
                link.set(Link::Failed);
            }
        }
    }

    async fn backend_state(
        watch: &store::Watch,
        path: &str,
        done: impl Fn(u32) -> bool,
    ) -> Result<(), NetfrontError> {
        loop {
            let state = store::read(path)
                .await
                .map_err(|_| NetfrontError::Xenstore("read the backend state"))?;
            let state = parse_state(&state).ok_or(NetfrontError::BadValue("backend state"))?;
            if done(state) {
                return Ok(());
            }
            if state >= STATE_CLOSING {
                return Err(NetfrontError::BadValue("backend state (closing)"));
            }
            crate::timeout(HANDSHAKE_STEP, watch.next())
                .await
                .map_err(|_| NetfrontError::Xenstore("wait for the backend (timed out)"))?
                .map_err(|_| NetfrontError::Xenstore("watch the backend state"))?;
        }
    }

    async fn handshake(
        backend: &str,
        tx_ref: GrantRef,
        rx_ref: GrantRef,
        port: Port,
    ) -> Result<(), NetfrontError> {
        let state_path = format!("{backend}/state");
        let watch = store::watch(&state_path, "lichen-netfront")
            .await
            .map_err(|_| NetfrontError::Xenstore("watch the backend state"))?;
        backend_state(&watch, &state_path, |s| s >= STATE_INIT_WAIT).await?;
        let keys = [
            ("tx-ring-ref", format!("{tx_ref}")),
            ("rx-ring-ref", format!("{rx_ref}")),
            ("event-channel", format!("{port}")),
            ("request-rx-copy", "1".into()),
            ("feature-rx-notify", "1".into()),
            ("feature-no-csum-offload", "1".into()),
            ("feature-sg", "0".into()),
            ("feature-gso-tcpv4", "0".into()),
            ("feature-gso-tcpv6", "0".into()),
            ("state", format!("{STATE_CONNECTED}")),
        ];
        store::transaction(|tx| {
            let keys = &keys;
            async move {
                for (key, value) in keys {
                    tx.write(&format!("{FRONT}/{key}"), value).await?;
                }
                Ok(())
            }
        })
        .await
        .map_err(|_| NetfrontError::Xenstore("write the frontend keys"))?;
        backend_state(&watch, &state_path, |s| s == STATE_CONNECTED).await?;
        let _ = watch.cancel().await;
        Ok(())
    }

    impl NetDevice for Netfront {
        fn mac_address(&self) -> [u8; 6] {
            self.mac
        }

        /// Unused: a netfront signals through its event channel ([`NetDevice::event_source`]).
        fn interrupt_vector(&self) -> u8 {
            0
        }

        fn event_source(&self) -> EventSource {
            EventSource::XenPort(self.port)
        }

        fn handle_interrupt(&mut self) {
            self.reclaim_tx();
        }

        fn receive(&mut self) -> Option<Frame> {
            while self.usable() {
                let prod = match self.rx.next_response() {
                    Ok(Some(prod)) => prod,
                    Ok(None) => return None,
                    Err(e) => {
                        self.give_up("receive", e);
                        return None;
                    }
                };
                while self.rx.rsp_cons != prod {
                    let i = self.rx.rsp_cons;
                    let r = RxResponse {
                        id: self.rx.ring.read16(i, 0),
                        offset: self.rx.ring.read16(i, 2),
                        flags: self.rx.ring.read16(i, 4),
                        status: self.rx.ring.read16(i, 6) as i16,
                    };
                    self.rx.rsp_cons = i.wrapping_add(1);
                    let skipping = self.rx_skipping;
                    self.rx_skipping = r.flags & NETRXF_MORE_DATA != 0;
                    let verdict = check_rx(r, |id| self.rx.in_flight(id));
                    let (id, frame) = match verdict {
                        RxVerdict::BadId => {
                            self.error(format_args!(
                                "receive response for buffer {} not in flight",
                                r.id
                            ));
                            continue;
                        }
                        RxVerdict::Drop { id, protocol } => {
                            if protocol {
                                self.counters.rx_malformed += 1;
                                self.error(format_args!("receive response {r:?}"));
                            }
                            (id, None)
                        }
                        RxVerdict::Frame { id, .. } if skipping => (id, None),
                        RxVerdict::Frame { id, offset, len } => (id, Some((offset, len))),
                    };
                    let Slot::Posted(page) = core::mem::replace(&mut self.rx.slots[id], Slot::Lent)
                    else {
                        continue;
                    };
                    match frame {
                        Some((offset, len)) => {
                            self.counters.rx_frames += 1;
                            self.counters.rx_bytes += len as u64;
                            return Some(Frame::new_static(page, id as u16, offset, len));
                        }
                        None => {
                            self.rx.slots[id] = Slot::Idle(page);
                            post_rx(&mut self.rx, id);
                        }
                    }
                }
            }
            None
        }

        fn recycle(&mut self, frame: Frame) {
            let id = usize::from(frame.id());
            if !matches!(self.rx.slots.get(id), Some(Slot::Lent)) {
                return;
            }
            if let Some(page) = frame.into_static() {
                self.rx.slots[id] = Slot::Idle(page);
                post_rx(&mut self.rx, id);
            }
        }

        fn transmit_buffer(&mut self) -> Option<Frame> {
            if !self.usable() {
                return None;
            }
            if self.tx_free.is_empty() {
                self.reclaim_tx();
            }
            let Some(id) = self.tx_free.pop() else {
                self.counters.tx_ring_full += 1;
                return None;
            };
            let idx = usize::from(id);
            match core::mem::replace(&mut self.tx.slots[idx], Slot::Lent) {
                Slot::Idle(page) => Some(Frame::new_static(page, id, 0, 0)),
                other => {
                    self.tx.slots[idx] = other;
                    None
                }
            }
        }

        fn can_transmit(&mut self) -> bool {
            if !self.usable() {
                return false;
            }
            if self.tx_free.is_empty() {
                self.reclaim_tx();
            }
            !self.tx_free.is_empty()
        }

        fn send(&mut self, frame: Frame) {
            let id = frame.id();
            let idx = usize::from(id);
            if !matches!(self.tx.slots.get(idx), Some(Slot::Lent)) {
                return;
            }
            let len = frame.len();
            let Some(page) = frame.into_static() else {
                return;
            };
            if !(MIN_FRAME..=MAX_FRAME).contains(&len) || !self.tx.room() || !self.usable() {
                self.tx.slots[idx] = Slot::Idle(page);
                self.tx_free.push(id);
                return;
            }
            self.tx.slots[idx] = Slot::Posted(page);
            let i = self.tx.req_prod;
            self.tx.ring.write32(i, 0, self.tx.grefs[idx]);
            self.tx.ring.write16(i, 4, 0);
            self.tx.ring.write16(i, 6, 0);
            self.tx.ring.write16(i, 8, id);
            self.tx.ring.write16(i, 10, len as u16);
            self.tx.req_prod = i.wrapping_add(1);
            self.counters.tx_frames += 1;
            self.counters.tx_bytes += len as u64;
        }

        fn discard_tx(&mut self, frame: Frame) {
            let id = frame.id();
            let idx = usize::from(id);
            if !matches!(self.tx.slots.get(idx), Some(Slot::Lent)) {
                return;
            }
            if let Some(page) = frame.into_static() {
                self.tx.slots[idx] = Slot::Idle(page);
                self.tx_free.push(id);
            }
        }

        fn flush(&mut self) {
            if self.broken || self.link.get() != Link::Up {
                return;
            }
            let tx = self.tx.push();
            let rx = self.rx.push();
            if tx || rx {
                evtchn::notify(self.port);
            }
        }

        fn max_frame_len(&self) -> usize {
            MAX_FRAME
        }

        fn counters(&self) -> DeviceCounters {
            self.counters
        }

        fn is_broken(&self) -> bool {
            self.broken || self.link.get() == Link::Failed
        }
    }
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
    fn notification_window() {
        assert!(needs_notify(0, 1, 1), "first request after event 1");
        assert!(!needs_notify(1, 2, 1), "event already passed");
        assert!(needs_notify(5, 9, 7));
        assert!(!needs_notify(5, 9, 10));
        assert!(needs_notify(u32::MAX - 1, 2, 0), "across wrap-around");
    }

    #[test]
    fn response_indices() {
        assert!(responses_valid(5, 3, 8));
        assert!(responses_valid(8, 3, 8));
        assert!(!responses_valid(9, 3, 8), "more responses than requests");
        assert!(!responses_valid(2, 3, 8), "producer behind consumer");
        assert!(responses_valid(1, u32::MAX, 3), "wrap-around");
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
}
