//! The Xen side of vchan: grants, mappings, event channels and xenstore around [`wire`].

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::wire::{
    self, check_orders, parse_decimal, ring_pages, Channel, Control, Error, RingMem, PAGE,
};
use crate::channel::Transferred;
use crate::platform::xen::evtchn::{self, Port};
use crate::platform::xen::grant::{self, ForeignPage, GrantRef};
use crate::platform::xen::{hypercall, store};
use crate::Duration;

/// How often a side that waits checks that its peer still exists.
const LIVENESS_PERIOD: Duration = Duration::from_millis(500);

/// How long a reader or writer watches the ring before it asks for an event and sleeps. The
/// peer usually runs on another CPU and moves the indices within microseconds, while waking a
/// sleeping vCPU costs a notification, a hypercall and a reschedule on each side (hundreds of
/// microseconds under Xen in QEMU TCG: docs/BENCHMARKS.md).
const SPIN: Duration = Duration::from_micros(50);

/// Spins for up to [`SPIN`] until `ready` holds; whether it did.
fn spin_until(mut ready: impl FnMut() -> bool) -> bool {
    let deadline = crate::now().saturating_add(SPIN);
    loop {
        if ready() {
            return true;
        }
        if crate::now() >= deadline {
            return false;
        }
        core::hint::spin_loop();
    }
}

/// `EVTCHNOP_status`.
const EVTCHNOP_STATUS: u64 = 5;
/// `EVTCHNSTAT_interdomain`.
const EVTCHNSTAT_INTERDOMAIN: u32 = 2;

#[repr(C)]
struct EvtchnStatus {
    dom: u16,
    port: u32,
    status: u32,
    vcpu: u32,
    u: [u32; 2],
}

/// Whether `port` is still bound to another domain: when the peer's domain dies, Xen closes its
/// end and ours turns unbound.
fn still_bound(port: Port) -> bool {
    let mut op = EvtchnStatus {
        dom: hypercall::DOMID_SELF,
        port,
        status: 0,
        vcpu: 0,
        u: [0; 2],
    };
    // SAFETY: a live evtchn_status for one of our ports, laid out as in event_channel.h.
    let rc = unsafe { hypercall::call_with(hypercall::EVENT_CHANNEL_OP, EVTCHNOP_STATUS, &mut op) };
    rc.is_ok() && op.status == EVTCHNSTAT_INTERDOMAIN
}

fn setup(what: &str, e: impl core::fmt::Display) -> Error {
    Error::Setup(format!("{what}: {e}"))
}

/// What a side must give back when it closes.
enum Resources {
    Server {
        frames: u64,
        count: usize,
        grants: Vec<GrantRef>,
        path: String,
    },
    Client {
        pages: Vec<ForeignPage>,
    },
}

/// Which side of a channel this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Publishes the rings; reads the left ring, writes the right one.
    Server,
    /// Maps the server's rings; writes the left ring, reads the right one.
    Client,
}

/// One end of a vchan.
pub struct Vchan {
    chan: Channel,
    port: Port,
    peer: u16,
    resources: Option<Resources>,
    eof: bool,
}

impl Vchan {
    /// Server: publishes a channel for domain `peer` at xenstore `path` (absolute, or relative
    /// to this domain's home) with a left (client -> server) ring of `2^left_order` bytes and a
    /// right ring of `2^right_order` bytes, then waits for the client to connect.
    pub async fn server(
        peer: u16,
        path: &str,
        left_order: u8,
        right_order: u8,
    ) -> Result<Vchan, Error> {
        let mut ch = Self::listen(peer, path, left_order, right_order).await?;
        ch.accept().await?;
        Ok(ch)
    }

    /// Server, first half: publishes the channel without waiting for the client
    /// (see [`Vchan::accept`]).
    pub async fn listen(
        peer: u16,
        path: &str,
        left_order: u8,
        right_order: u8,
    ) -> Result<Vchan, Error> {
        check_orders(left_order.into(), right_order.into())?;
        let (lp, rp) = (ring_pages(left_order), ring_pages(right_order));
        let count = 1 + lp + rp;
        let frames = crate::mem::alloc_frames(count).ok_or(Error::Setup("out of memory".into()))?;
        let page = |i: usize| frames + (i * PAGE) as u64;
        let mut grants = Vec::with_capacity(count);
        for i in 0..count {
            match grant::grant_access(peer, page(i), false) {
                Ok(g) => grants.push(g),
                Err(e) => {
                    for g in grants {
                        let _ = grant::end_access(g);
                    }
                    // SAFETY: nobody maps the frames: their grants are ended (or never made).
                    unsafe { crate::mem::free_frames(frames, count) };
                    return Err(setup("grant", e));
                }
            }
        }
        let p0 = page(0) as *mut u8;
        // SAFETY: page 0 is ours (alloc_frames), identity-mapped, kept until close.
        let ctrl = unsafe { Control::new(p0) };
        ctrl.init_server(left_order, right_order, &grants[1..]);
        let pages = |from: usize, n: usize| (from..from + n).map(|i| page(i) as *mut u8).collect();
        // SAFETY: the ring frames are ours and kept until close.
        let (read, write) = unsafe {
            (
                RingMem::new(left_order, p0, pages(1, lp)),
                RingMem::new(right_order, p0, pages(1 + lp, rp)),
            )
        };
        let chan = Channel::new(ctrl, true, read, write);
        let mut ch = Vchan {
            chan,
            port: 0,
            peer,
            resources: Some(Resources::Server {
                frames,
                count,
                grants: grants.clone(),
                path: path.to_string(),
            }),
            eof: false,
        };
        ch.port = match evtchn::alloc_unbound(peer) {
            Ok(p) => p,
            Err(e) => {
                ch.release();
                return Err(setup("alloc_unbound", e));
            }
        };
        let (ring_ref, port) = (grants[0].to_string(), ch.port.to_string());
        let published = async {
            let me = own_domid().await?;
            // The port first: a client reads `ring-ref` and then `event-channel`, so once it
            // finds the first it finds the second (what a transaction would give, for two
            // round trips fewer: each is a few milliseconds of dom0 under load, on the way
            // of every restart). The previous publication's were removed before this one.
            store::write(&format!("{path}/event-channel"), &port).await?;
            store::write(&format!("{path}/ring-ref"), &ring_ref).await?;
            let perms = [format!("n{me}"), format!("r{peer}")];
            let perms = [perms[0].as_str(), perms[1].as_str()];
            store::set_perms(&format!("{path}/ring-ref"), &perms).await?;
            store::set_perms(&format!("{path}/event-channel"), &perms).await
        }
        .await;
        if let Err(e) = published {
            ch.release();
            return Err(setup("xenstore", e));
        }
        Ok(ch)
    }

    /// Server, second half: waits until the client connected (or gave up).
    pub async fn accept(&mut self) -> Result<(), Error> {
        loop {
            match self.chan.peer_live() {
                wire::LIVE_WAITING => {}
                wire::LIVE_CONNECTED => return Ok(()),
                _ => return Err(Error::Closed),
            }
            let _ = crate::timeout(LIVENESS_PERIOD, evtchn::wait(self.port)).await;
        }
    }

    /// Client: connects to the channel domain `peer` published at xenstore `path`, waiting up
    /// to `wait` for it to appear.
    pub async fn client(peer: u16, path: &str, wait: Duration) -> Result<Vchan, Error> {
        let deadline = crate::now().saturating_add(wait);
        let (gref, remote_port) = loop {
            if let Some(published) = published(path).await? {
                break published;
            }
            if crate::now() >= deadline {
                return Err(nothing_published(path));
            }
            crate::sleep(PUBLISH_POLL).await;
        };
        Self::client_to(peer, gref, remote_port)
    }

    /// Client: connects to the rings domain `peer` published as grant `gref` and port
    /// `remote_port`.
    fn client_to(peer: u16, gref: GrantRef, remote_port: Port) -> Result<Vchan, Error> {
        let page0 = grant::map_foreign(peer, gref, false).map_err(|e| setup("map page 0", e))?;
        let p0 = page0.addr as *mut u8;
        let mut pages = alloc::vec![page0];
        let result = Self::connect(peer, p0, remote_port, &mut pages);
        match result {
            Ok((chan, port)) => Ok(Vchan {
                chan,
                port,
                peer,
                resources: Some(Resources::Client { pages }),
                eof: false,
            }),
            Err(e) => {
                for p in pages {
                    let _ = grant::unmap_foreign(p);
                }
                Err(e)
            }
        }
    }

    fn connect(
        peer: u16,
        p0: *mut u8,
        remote_port: Port,
        pages: &mut Vec<ForeignPage>,
    ) -> Result<(Channel, Port), Error> {
        // SAFETY: page 0 is mapped until `pages` is unmapped, which outlives the channel.
        let ctrl = unsafe { Control::new(p0) };
        if ctrl.srv_live() != wire::LIVE_CONNECTED || ctrl.cli_live() != wire::LIVE_WAITING {
            return Err(Error::Protocol("the server is not waiting for a client"));
        }
        let (left, right, grants) = ctrl.read_layout()?;
        let mut addrs = Vec::with_capacity(grants.len());
        for g in &grants {
            let p = grant::map_foreign(peer, *g, false).map_err(|e| setup("map ring", e))?;
            addrs.push(p.addr as *mut u8);
            pages.push(p);
        }
        let right_pages = addrs.split_off(ring_pages(left));
        // SAFETY: the ring pages stay mapped as long as `pages`.
        let (write, read) = unsafe {
            (
                RingMem::new(left, p0, addrs),
                RingMem::new(right, p0, right_pages),
            )
        };
        let chan = Channel::new(ctrl, false, read, write);
        let port = evtchn::bind_interdomain(peer, remote_port).map_err(|e| setup("bind", e))?;
        chan.set_live(wire::LIVE_CONNECTED);
        evtchn::notify(port);
        Ok((chan, port))
    }

    /// This side's role.
    pub fn role(&self) -> Role {
        if self.chan.is_server() {
            Role::Server
        } else {
            Role::Client
        }
    }

    /// The peer's domid.
    pub fn peer(&self) -> u16 {
        self.peer
    }

    /// Bytes of the ring this side writes.
    pub fn write_ring_size(&self) -> u32 {
        self.chan.write_size()
    }

    /// Bytes of the ring this side reads.
    pub fn read_ring_size(&self) -> u32 {
        self.chan.read_size()
    }

    /// Whether the peer is still there: its live byte says connected and its end of the event
    /// channel is still bound (a dead domain's is not).
    pub fn peer_alive(&self) -> bool {
        self.resources.is_some()
            && self.chan.peer_live() == wire::LIVE_CONNECTED
            && still_bound(self.port)
    }

    /// Waits for an event, checking the peer's liveness every [`LIVENESS_PERIOD`].
    async fn wait_event(&mut self) -> Result<(), Error> {
        if crate::timeout(LIVENESS_PERIOD, evtchn::wait(self.port))
            .await
            .is_err()
            && !self.peer_alive()
        {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Reads at least one byte (up to `buf.len()`), waiting for them; `Ok(0)` once the peer
    /// closed and everything it wrote was read.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if buf.is_empty() || self.eof {
            return Ok(0);
        }
        loop {
            if self.resources.is_none() {
                return Err(Error::Closed);
            }
            let n = self.chan.read(buf)?;
            if n > 0 {
                if self.chan.take_notify(wire::NOTIFY_READ) {
                    evtchn::notify(self.port);
                }
                return Ok(n);
            }
            // An error reads as ready: the next `chan.read` reports it.
            if spin_until(|| self.chan.readable().map_or(true, |n| n > 0)) {
                continue;
            }
            self.chan.request_notify(wire::NOTIFY_WRITE);
            if self.chan.readable()? > 0 {
                continue;
            }
            if self.chan.peer_live() != wire::LIVE_CONNECTED {
                // Closed: what it wrote before closing was read above.
                if self.chan.readable()? == 0 {
                    self.eof = true;
                    return Ok(0);
                }
                continue;
            }
            if self.wait_event().await.is_err() {
                if self.chan.readable()? > 0 {
                    continue;
                }
                self.eof = true;
                return Ok(0);
            }
        }
    }

    /// Writes some of `buf` (at least one byte), waiting for room; an error once the peer is
    /// gone.
    pub async fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.resources.is_none() || self.chan.peer_live() != wire::LIVE_CONNECTED {
                return Err(Error::Closed);
            }
            let n = self.chan.write(buf)?;
            if n > 0 {
                if self.chan.take_notify(wire::NOTIFY_WRITE) {
                    evtchn::notify(self.port);
                }
                return Ok(n);
            }
            if spin_until(|| self.chan.writable().map_or(true, |n| n > 0)) {
                continue;
            }
            self.chan.request_notify(wire::NOTIFY_READ);
            if self.chan.writable()? > 0 {
                continue;
            }
            self.wait_event().await?;
        }
    }

    /// Reads some bytes into `inp` or writes some of `out`, whichever the rings allow first,
    /// waiting for either (both directions signal the one event channel). With `out` empty it
    /// only reads. `Read(0)` once the peer closed and everything it wrote was read.
    /// Cancel-safe: bytes move only in the poll that returns them.
    ///
    /// Like `read` and `write` it watches the rings for a while before asking for an event, but
    /// it yields to the executor between looks rather than spinning inside one poll: the
    /// caller (a channel shared by many conversations) is woken often by the tasks that
    /// produce what it writes, and they must run meanwhile.
    pub async fn transfer(&mut self, out: &[u8], inp: &mut [u8]) -> Result<Transferred, Error> {
        if inp.is_empty() || self.eof {
            return Ok(Transferred::Read(0));
        }
        let watch_until = crate::now().saturating_add(SPIN);
        loop {
            if self.resources.is_none() {
                return Err(Error::Closed);
            }
            let n = self.chan.read(inp)?;
            if n > 0 {
                if self.chan.take_notify(wire::NOTIFY_READ) {
                    evtchn::notify(self.port);
                }
                return Ok(Transferred::Read(n));
            }
            let live = self.chan.peer_live() == wire::LIVE_CONNECTED;
            if !out.is_empty() && live {
                let n = self.chan.write(out)?;
                if n > 0 {
                    if self.chan.take_notify(wire::NOTIFY_WRITE) {
                        evtchn::notify(self.port);
                    }
                    return Ok(Transferred::Wrote(n));
                }
            }
            let ready = |chan: &mut Channel| {
                chan.readable().map_or(true, |n| n > 0)
                    || (!out.is_empty() && chan.writable().map_or(true, |n| n > 0))
            };
            if live && crate::now() < watch_until {
                crate::executor::yield_now().await;
                continue;
            }
            self.chan.request_notify(wire::NOTIFY_WRITE);
            if !out.is_empty() {
                self.chan.request_notify(wire::NOTIFY_READ);
            }
            if ready(&mut self.chan) && live {
                continue;
            }
            if !live || self.chan.peer_live() != wire::LIVE_CONNECTED {
                // Closed: what it wrote before closing was read above.
                if self.chan.readable()? == 0 {
                    self.eof = true;
                    return Ok(Transferred::Read(0));
                }
                continue;
            }
            if self.wait_event().await.is_err() {
                if self.chan.readable()? > 0 {
                    continue;
                }
                self.eof = true;
                return Ok(Transferred::Read(0));
            }
        }
    }

    /// Writes all of `buf`.
    pub async fn write_all(&mut self, mut buf: &[u8]) -> Result<(), Error> {
        while !buf.is_empty() {
            let n = self.write(buf).await?;
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Reads exactly `buf.len()` bytes; [`Error::Closed`] if the peer closes first.
    pub async fn read_exact(&mut self, mut buf: &mut [u8]) -> Result<(), Error> {
        while !buf.is_empty() {
            let n = self.read(buf).await?;
            if n == 0 {
                return Err(Error::Closed);
            }
            buf = &mut buf[n..];
        }
        Ok(())
    }

    /// Waits until the peer read everything written so far (or left).
    pub async fn flush(&mut self) -> Result<(), Error> {
        loop {
            if self.chan.writable()? == self.chan.write_size() {
                return Ok(());
            }
            if self.chan.peer_live() != wire::LIVE_CONNECTED {
                return Err(Error::Closed);
            }
            self.chan.request_notify(wire::NOTIFY_READ);
            if self.chan.writable()? == self.chan.write_size() {
                return Ok(());
            }
            self.wait_event().await?;
        }
    }

    /// Closes the channel in order: marks this side closed, tells the peer, and gives back the
    /// pages, grants, port and xenstore entries.
    pub fn close(mut self) {
        self.release();
    }

    fn release(&mut self) {
        if let Some(path) = self.release_resources() {
            crate::spawn(unpublish(path));
        }
    }

    /// Gives back what [`Vchan::release`] does, but leaves the server's xenstore entries to the
    /// caller: returns the directory they are in.
    fn release_resources(&mut self) -> Option<String> {
        let resources = self.resources.take()?;
        self.chan.set_live(wire::LIVE_CLOSED);
        if self.port != 0 {
            evtchn::notify(self.port);
            let _ = evtchn::close(self.port);
        }
        match resources {
            Resources::Server {
                frames,
                count,
                grants,
                path,
            } => {
                let all_ended = grants
                    .into_iter()
                    .map(grant::end_access)
                    .filter(Result::is_err)
                    .count()
                    == 0;
                if all_ended {
                    // SAFETY: every grant is ended, so the peer can no longer map the frames.
                    unsafe { crate::mem::free_frames(frames, count) };
                } else {
                    // The peer still maps some page: leave the frames to it (leaked).
                    crate::warn!("vchan: the peer still maps the rings; keeping their pages");
                }
                Some(path)
            }
            Resources::Client { pages } => {
                for p in pages {
                    let _ = grant::unmap_foreign(p);
                }
                None
            }
        }
    }
}

/// This domain's id, as xenstore says (read once, then remembered).
async fn own_domid() -> Result<String, crate::platform::xen::xenstore::Error> {
    use core::sync::atomic::{AtomicU32, Ordering};
    static DOMID: AtomicU32 = AtomicU32::new(u32::MAX);
    match DOMID.load(Ordering::Relaxed) {
        u32::MAX => {
            let domid = store::read("domid").await?;
            if let Ok(d) = domid.trim_end_matches('\0').parse::<u32>() {
                DOMID.store(d, Ordering::Relaxed);
            }
            Ok(domid)
        }
        d => Ok(d.to_string()),
    }
}

/// Removes the rings a server published at `path`.
async fn unpublish(path: String) {
    let _ = store::rm(&format!("{path}/ring-ref")).await;
    let _ = store::rm(&format!("{path}/event-channel")).await;
}

/// How often a client looks for the server's rings while it waits for them.
const PUBLISH_POLL: Duration = Duration::from_millis(20);

/// How often a side waiting for its peer checks that the launcher still names that peer
/// (`peer-domid`): when the peer's domain is replaced, the wait moves to the new one at once
/// instead of waiting out its deadline on the old one.
const PEER_RECHECK: Duration = Duration::from_millis(100);

/// The grant and port a server published at `path`, if it did.
async fn published(path: &str) -> Result<Option<(GrantRef, Port)>, Error> {
    let r = store::read(&format!("{path}/ring-ref")).await;
    let p = store::read(&format!("{path}/event-channel")).await;
    Ok(match (r, p) {
        (Ok(r), Ok(p)) => Some((
            parse_decimal(&r, "ring-ref")?,
            parse_decimal(&p, "event-channel")?,
        )),
        _ => None,
    })
}

fn nothing_published(path: &str) -> Error {
    Error::Setup(format!("nothing published at {path}"))
}

impl Drop for Vchan {
    fn drop(&mut self) {
        self.release();
    }
}

/// Opens channel `name` as the launcher wired it from the manifest (see xen/README.md): reads
/// `data/lichen/channels/<name>/{role,peer-domid,ring-order,server-path}`, then serves or
/// connects, waiting up to `wait` for the peer. While it waits it follows `peer-domid`: when the
/// launcher replaces the peer's domain (a restart, a standby taking over) the wait moves to the
/// new domain within [`PEER_RECHECK`].
pub async fn open_wired(name: &str, wait: Duration) -> Result<Vchan, Error> {
    let dir = format!("data/lichen/channels/{name}");
    let role = read_entry(&dir, "role").await?;
    let order = parse_decimal(&read_entry(&dir, "ring-order").await?, "ring-order")?;
    let order = u8::try_from(order).map_err(|_| Error::BadValue("ring-order"))?;
    let deadline = crate::now().saturating_add(wait);
    'peer: loop {
        let peer = loop {
            if let Some(p) = peer_domid(&dir).await? {
                break p;
            }
            if crate::now() >= deadline {
                return Err(Error::NoPeer(name.into()));
            }
            crate::sleep(Duration::from_millis(50)).await;
        };
        let mut recheck = crate::now().saturating_add(PEER_RECHECK);
        match role.as_str() {
            "server" => {
                // The same order both ways; libxenvchan forbids two in-page rings of one size.
                let (left, right) = if order == 10 || order == 11 {
                    (10, 11)
                } else {
                    (order, order)
                };
                let mut ch = Vchan::listen(peer, &dir, left, right).await?;
                loop {
                    let step = recheck.saturating_duration_since(crate::now());
                    if let Ok(accepted) = crate::timeout(step, ch.accept()).await {
                        return accepted.map(|()| ch);
                    }
                    if crate::now() >= deadline {
                        return Err(Error::NoPeer(name.into()));
                    }
                    recheck = crate::now().saturating_add(PEER_RECHECK);
                    if peer_domid(&dir).await? != Some(peer) {
                        // Unpublished before the next listen publishes again.
                        if let Some(path) = ch.release_resources() {
                            unpublish(path).await;
                        }
                        continue 'peer;
                    }
                }
            }
            "client" => {
                let server_path = read_entry(&dir, "server-path").await?;
                loop {
                    if let Some((gref, port)) = published(&server_path).await? {
                        return Vchan::client_to(peer, gref, port);
                    }
                    if crate::now() >= deadline {
                        return Err(nothing_published(&server_path));
                    }
                    crate::sleep(PUBLISH_POLL).await;
                    if crate::now() >= recheck {
                        recheck = crate::now().saturating_add(PEER_RECHECK);
                        if peer_domid(&dir).await? != Some(peer) {
                            continue 'peer;
                        }
                    }
                }
            }
            _ => return Err(Error::BadValue("role")),
        }
    }
}

/// Entry `key` of the channel directory `dir`.
async fn read_entry(dir: &str, key: &str) -> Result<String, Error> {
    let path = format!("{dir}/{key}");
    store::read(&path)
        .await
        .map_err(|e| setup(&format!("xenstore {path}"), e))
}

/// The peer's domid in the channel directory `dir`; `None` while the launcher names none.
async fn peer_domid(dir: &str) -> Result<Option<u16>, Error> {
    let Ok(p) = store::read(&format!("{dir}/peer-domid")).await else {
        return Ok(None);
    };
    let p = parse_decimal(&p, "peer-domid")?;
    u16::try_from(p)
        .map(Some)
        .map_err(|_| Error::BadValue("peer-domid"))
}
