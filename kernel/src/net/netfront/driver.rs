//! The netfront driver: rings, buffers and the handshake with the backend (see the module
//! docs of [`super`]); what the backend writes is checked by the pure functions there and by
//! [`FrontRing`].

use super::*;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::Cell;

use crate::net::device::{DeviceCounters, EventSource, Frame, NetDevice};
use crate::platform::xen::evtchn::{self, Port};
use crate::platform::xen::grant::{self, GrantRef};
use crate::platform::xen::shared_ring::{Corrupt, FrontRing};
use crate::platform::xen::store;
use crate::platform::xen::xenstore::{kind, payload};
use crate::time::Duration;

/// `XenbusStateInitWait`.
const STATE_INIT_WAIT: u32 = 2;
/// `XenbusStateConnected`.
const STATE_CONNECTED: u32 = 4;
/// `XenbusStateClosing`.
const STATE_CLOSING: u32 = 5;

/// The directory of frontend `devid` (relative to this domain's xenstore home).
fn front_dir(devid: u32) -> String {
    format!("device/vif/{devid}")
}
/// How long the backend may take for each step of the handshake: as generous as blkfront's
/// (a node starting many domains at once keeps dom0's xenstore busy for tens of seconds under
/// TCG); a card that never connects is reported broken (`is_broken`).
const HANDSHAKE_STEP: Duration = Duration::from_secs(120);
/// Protocol errors logged in full; later ones are only counted.
const LOGGED_ERRORS: u64 = 8;

/// Where the handshake is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Link {
    Connecting,
    Up,
    Failed,
}

/// A buffer page: with the driver, with the backend, or lent to the stack.
enum Buffer {
    Idle(&'static mut [u8]),
    Posted(&'static mut [u8]),
    Lent,
}

/// One ring and its buffers.
struct Side {
    ring: FrontRing,
    /// The ring's page (granted to the backend).
    page: u64,
    buffers: Vec<Buffer>,
    grefs: Vec<GrantRef>,
}

impl Side {
    fn new(
        slot: usize,
        buffers: usize,
        backend: u16,
        readonly: bool,
    ) -> Result<Side, NetfrontError> {
        let page = crate::mem::alloc_frames(1).ok_or(NetfrontError::Resources("memory"))?;
        // SAFETY: a fresh, page-aligned page that is never freed; only the backend (once
        // granted) writes it besides the ring.
        let ring = unsafe { FrontRing::init(page as *mut u8, PAGE, slot) };
        let mut pages = Vec::with_capacity(buffers);
        let mut grefs = Vec::with_capacity(buffers);
        for _ in 0..buffers {
            let addr = crate::mem::alloc_frames(1).ok_or(NetfrontError::Resources("memory"))?;
            let gref = grant::grant_access(backend, addr, readonly)
                .map_err(|_| NetfrontError::Resources("grant references"))?;
            // SAFETY: a fresh, zeroed, page-aligned page that is never freed, and this is
            // the only reference to it.
            let page = unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, PAGE) };
            pages.push(Buffer::Idle(page));
            grefs.push(gref);
        }
        Ok(Side {
            ring,
            page,
            buffers: pages,
            grefs,
        })
    }

    fn in_flight(&self, id: usize) -> bool {
        matches!(self.buffers.get(id), Some(Buffer::Posted(_)))
    }
}

/// The Xen network card.
pub struct Netfront {
    devid: u32,
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
    let answer = crate::platform::xen::store::request_blocking(kind::READ, 0, &body)
        .map_err(|_| NetfrontError::Xenstore(what))?;
    String::from_utf8(answer).map_err(|_| NetfrontError::BadValue(what))
}

impl Netfront {
    /// The first vif (`device/vif/0`), if the toolstack gave this domain one: rings and
    /// buffers are set up at once, the handshake with the backend runs in a task (frames
    /// flow once it is done).
    ///
    /// The xenstore reads here block (`store::request_blocking`), beside other tasks'
    /// requests in flight, which keep their answers.
    pub fn find_first() -> Option<Result<Netfront, NetfrontError>> {
        Netfront::find(0)
    }

    /// Vif `devid` (`device/vif/<devid>`), if the toolstack gave this domain one; as
    /// [`Netfront::find_first`]. A domain with several vifs (zedrouter: an uplink and one per
    /// network instance) takes each by its number.
    pub fn find(devid: u32) -> Option<Result<Netfront, NetfrontError>> {
        let backend = read_blocking(&format!("{}/backend", front_dir(devid)), "backend").ok()?;
        Some(Netfront::new(devid, backend))
    }

    /// This card's vif number.
    pub fn devid(&self) -> u32 {
        self.devid
    }

    fn new(devid: u32, backend: String) -> Result<Netfront, NetfrontError> {
        let front = front_dir(devid);
        let backend = String::from(backend.trim_end_matches('\0'));
        let backend_id: u16 = read_blocking(&format!("{front}/backend-id"), "backend-id")?
            .trim_end_matches('\0')
            .parse()
            .map_err(|_| NetfrontError::BadValue("backend-id"))?;
        let mac = parse_mac(&read_blocking(&format!("{front}/mac"), "mac")?)
            .ok_or(NetfrontError::BadValue("mac"))?;
        let tx = Side::new(TX_SLOT, TX_BUFFERS, backend_id, true)?;
        let mut rx = Side::new(RX_SLOT, RX_BUFFERS, backend_id, false)?;
        let grant_ring = |side: &Side| {
            grant::grant_access(backend_id, side.page, false)
                .map_err(|_| NetfrontError::Resources("grant references"))
        };
        let tx_ref = grant_ring(&tx)?;
        let rx_ref = grant_ring(&rx)?;
        let port = evtchn::alloc_unbound(backend_id)
            .map_err(|_| NetfrontError::Resources("event channels"))?;
        // Post every receive buffer now; the backend sees them once it maps the ring.
        for id in 0..RX_BUFFERS {
            post_rx(&mut rx, id);
        }
        rx.ring.push_requests();
        let link = Rc::new(Cell::new(Link::Connecting));
        crate::spawn(connect(
            front,
            backend,
            backend_id,
            tx_ref,
            rx_ref,
            port,
            link.clone(),
        ));
        crate::info!(
            "netfront: vif {devid}, backend domain {backend_id}, mac {}, port {port}",
            crate::net::device::MacDisplay(mac)
        );
        Ok(Netfront {
            devid,
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

    fn give_up(&mut self, ring: &str, corrupt: Corrupt) {
        self.broken = true;
        self.counters.device_errors += 1;
        crate::error!("netfront: the backend broke the {ring} ring ({corrupt}): card disabled");
    }

    /// Takes back transmit buffers the backend is done with.
    fn reclaim_tx(&mut self) {
        while self.usable() {
            let response = match self.tx.ring.next_response() {
                Ok(Some(slot)) => TxResponse::read(&slot),
                Ok(None) => return,
                Err(e) => return self.give_up("transmit", e),
            };
            let (id, valid_status) = match check_tx(response, |id| self.tx.in_flight(id)) {
                TxVerdict::BadId => {
                    self.error(format_args!(
                        "transmit response for buffer {} not in flight",
                        response.id
                    ));
                    continue;
                }
                TxVerdict::Done { id, valid_status } => (id, valid_status),
            };
            if let Buffer::Posted(page) = core::mem::replace(&mut self.tx.buffers[id], Buffer::Lent)
            {
                self.tx.buffers[id] = Buffer::Idle(page);
            }
            self.tx_free.push(id as u16);
            match response.status {
                _ if !valid_status => {
                    self.error(format_args!("transmit status {}", response.status))
                }
                RSP_OKAY | RSP_DROPPED => {}
                s => crate::debug!("netfront: transmit error {s}"),
            }
        }
    }
}

/// Writes a receive request for buffer `id` (which must be idle).
fn post_rx(rx: &mut Side, id: usize) {
    if rx.ring.is_full() {
        return;
    }
    let Buffer::Idle(page) = core::mem::replace(&mut rx.buffers[id], Buffer::Lent) else {
        return;
    };
    rx.buffers[id] = Buffer::Posted(page);
    let gref = rx.grefs[id];
    if let Some(slot) = rx.ring.next_request() {
        write_rx_request(&slot, id as u16, gref);
    }
}

/// The handshake with the backend (a task).
async fn connect(
    front: String,
    backend: String,
    backend_id: u16,
    tx_ref: GrantRef,
    rx_ref: GrantRef,
    port: Port,
    link: Rc<Cell<Link>>,
) {
    match handshake(&front, &backend, tx_ref, rx_ref, port).await {
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
    front: &str,
    backend: &str,
    tx_ref: GrantRef,
    rx_ref: GrantRef,
    port: Port,
) -> Result<(), NetfrontError> {
    let state_path = format!("{backend}/state");
    // One token per vif: watch events are matched by token.
    let token = format!(
        "lichen-netfront-{}",
        front.rsplit('/').next().unwrap_or("0")
    );
    let watch = store::watch(&state_path, &token)
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
                tx.write(&format!("{front}/{key}"), value).await?;
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
            let r = match self.rx.ring.next_response() {
                Ok(Some(slot)) => RxResponse::read(&slot),
                Ok(None) => return None,
                Err(e) => {
                    self.give_up("receive", e);
                    return None;
                }
            };
            let skipping = self.rx_skipping;
            self.rx_skipping = r.flags & NETRXF_MORE_DATA != 0;
            let (id, frame) = match check_rx(r, |id| self.rx.in_flight(id)) {
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
            let Buffer::Posted(page) = core::mem::replace(&mut self.rx.buffers[id], Buffer::Lent)
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
                    self.rx.buffers[id] = Buffer::Idle(page);
                    post_rx(&mut self.rx, id);
                }
            }
        }
        None
    }

    fn recycle(&mut self, frame: Frame) {
        let id = usize::from(frame.id());
        if !matches!(self.rx.buffers.get(id), Some(Buffer::Lent)) {
            return;
        }
        if let Some(page) = frame.into_static() {
            self.rx.buffers[id] = Buffer::Idle(page);
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
        match core::mem::replace(&mut self.tx.buffers[idx], Buffer::Lent) {
            Buffer::Idle(page) => Some(Frame::new_static(page, id, 0, 0)),
            other => {
                self.tx.buffers[idx] = other;
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
        if !matches!(self.tx.buffers.get(idx), Some(Buffer::Lent)) {
            return;
        }
        let len = frame.len();
        let Some(page) = frame.into_static() else {
            return;
        };
        if !(MIN_FRAME..=MAX_FRAME).contains(&len) || self.tx.ring.is_full() || !self.usable() {
            self.tx.buffers[idx] = Buffer::Idle(page);
            self.tx_free.push(id);
            return;
        }
        self.tx.buffers[idx] = Buffer::Posted(page);
        let gref = self.tx.grefs[idx];
        if let Some(slot) = self.tx.ring.next_request() {
            write_tx_request(&slot, id, gref, len as u16);
        }
        self.counters.tx_frames += 1;
        self.counters.tx_bytes += len as u64;
    }

    fn discard_tx(&mut self, frame: Frame) {
        let id = frame.id();
        let idx = usize::from(id);
        if !matches!(self.tx.buffers.get(idx), Some(Buffer::Lent)) {
            return;
        }
        if let Some(page) = frame.into_static() {
            self.tx.buffers[idx] = Buffer::Idle(page);
            self.tx_free.push(id);
        }
    }

    fn flush(&mut self) {
        if self.broken || self.link.get() != Link::Up {
            return;
        }
        let tx = self.tx.ring.push_requests();
        let rx = self.rx.ring.push_requests();
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
