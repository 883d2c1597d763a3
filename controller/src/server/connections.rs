//! The open connections: what each is doing and since when (so that a watchdog can close it when
//! it takes too long), and how many there are in total and per client address (so that a new
//! one is refused, or makes room by evicting one that waits for nothing).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::limits::Limits;

/// What a connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Phase {
    /// Accepted; the TLS handshake is under way.
    Handshake = 0,
    /// Waiting for a request.
    Idle = 1,
    /// A request's first bytes arrived; its headers have not all arrived.
    Headers = 2,
    /// A request is being handled and its body is arriving.
    Body = 3,
    /// A request is being handled and its body has arrived.
    Handling = 4,
}

impl Phase {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Handshake,
            1 => Self::Idle,
            2 => Self::Headers,
            3 => Self::Body,
            _ => Self::Handling,
        }
    }

    /// Whether a connection in this phase may be closed to make room: nothing is in flight.
    fn evictable(self) -> bool {
        matches!(self, Self::Handshake | Self::Idle | Self::Headers)
    }
}

/// One connection's progress, shared by its task, its I/O and its requests.
pub(super) struct Conn {
    epoch: Instant,
    phase: AtomicU8,
    /// Milliseconds after `epoch` when the phase began.
    since_ms: AtomicU64,
    /// Bytes of the current request body received so far.
    body_bytes: AtomicU64,
    /// Whether a request was answered on it.
    served: AtomicBool,
    evicted: AtomicBool,
    /// Wakes the watchdog: the phase changed or the connection was evicted.
    pub wake: Notify,
}

impl Conn {
    fn new(epoch: Instant) -> Self {
        let conn = Self {
            epoch,
            phase: AtomicU8::new(Phase::Handshake as u8),
            since_ms: AtomicU64::new(0),
            body_bytes: AtomicU64::new(0),
            served: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            wake: Notify::new(),
        };
        conn.since_ms.store(conn.now_ms(), Ordering::Relaxed);
        conn
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    /// Enters `phase` now.
    pub fn enter(&self, phase: Phase) {
        self.since_ms.store(self.now_ms(), Ordering::Relaxed);
        self.phase.store(phase as u8, Ordering::Release);
        if phase != Phase::Handling {
            self.wake.notify_one();
        }
    }

    /// Bytes arrived: the first of a request moves an idle connection to [`Phase::Headers`].
    pub fn on_read(&self) {
        if self.phase() == Phase::Idle {
            self.enter(Phase::Headers);
        }
    }

    /// A request's headers were read; `has_body` says whether a body follows.
    pub fn begin_request(&self, has_body: bool) {
        self.body_bytes.store(0, Ordering::Relaxed);
        self.enter(if has_body {
            Phase::Body
        } else {
            Phase::Handling
        });
    }

    /// `bytes` of the request body arrived.
    pub fn on_body(&self, bytes: usize) {
        self.body_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The request body ended (or failed).
    pub fn body_done(&self) {
        if self.phase() == Phase::Body {
            self.enter(Phase::Handling);
        }
    }

    /// The response was produced.
    pub fn end_request(&self) {
        self.served.store(true, Ordering::Relaxed);
        self.enter(Phase::Idle);
    }

    /// Whether the connection was chosen to make room for another.
    pub fn evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// When the current phase's time runs out, if it can (a request being handled has no limit
    /// here: the handler's own work is bounded by the store).
    pub fn deadline(&self, limits: &Limits) -> Option<Instant> {
        let since = Duration::from_millis(self.since_ms.load(Ordering::Relaxed));
        let allowed = match self.phase() {
            Phase::Handshake => limits.tls_handshake,
            Phase::Idle => limits.idle,
            Phase::Headers => limits.header,
            Phase::Body => {
                let bytes = self.body_bytes.load(Ordering::Relaxed);
                let earned_ms = bytes.saturating_mul(1000) / limits.min_body_rate.max(1);
                limits.body_grace + Duration::from_millis(earned_ms)
            }
            Phase::Handling => return None,
        };
        Some(self.epoch + since + allowed)
    }
}

/// Every open connection, for the caps and for eviction.
pub(super) struct Registry {
    epoch: Instant,
    max_total: usize,
    max_per_address: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    open: HashMap<u64, (IpAddr, Arc<Conn>)>,
    per_address: HashMap<IpAddr, usize>,
    /// Connections in `open` evicted but not yet closed.
    evicted: usize,
}

/// A connection counted by the [`Registry`]; dropping it uncounts it.
pub(super) struct Admission {
    registry: Arc<Registry>,
    id: u64,
    address: IpAddr,
    /// The connection's progress.
    pub conn: Arc<Conn>,
}

impl Registry {
    /// A registry enforcing `limits`.
    pub fn new(limits: &Limits) -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            max_total: limits.effective_max_connections(),
            max_per_address: limits.max_connections_per_address.max(1),
            inner: Mutex::default(),
        })
    }

    /// Counts a new connection from `address`, or refuses it (`None`) when that address has too
    /// many. When the total is at its cap, the connection that has waited longest with nothing
    /// in flight (preferring ones never served) is evicted to make room; if none can be, the new
    /// one is refused.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Option<Admission> {
        let mut inner = self.inner.lock().expect("connection registry lock");
        if inner.per_address.get(&address).copied().unwrap_or(0) >= self.max_per_address {
            return None;
        }
        let live = inner.open.len() - inner.evicted;
        if live >= self.max_total && !Self::evict_locked(&mut inner) {
            return None;
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let conn = Arc::new(Conn::new(self.epoch));
        inner.open.insert(id, (address, Arc::clone(&conn)));
        *inner.per_address.entry(address).or_default() += 1;
        Some(Admission {
            registry: Arc::clone(self),
            id,
            address,
            conn,
        })
    }

    /// Evicts one connection with nothing in flight, if there is one (used when the process
    /// runs out of file descriptors).
    pub fn evict_one(&self) -> bool {
        Self::evict_locked(&mut self.inner.lock().expect("connection registry lock"))
    }

    fn evict_locked(inner: &mut Inner) -> bool {
        let victim = inner
            .open
            .values()
            .map(|(_, conn)| conn)
            .filter(|conn| !conn.evicted() && conn.phase().evictable())
            .min_by_key(|conn| {
                (
                    conn.served.load(Ordering::Relaxed),
                    conn.since_ms.load(Ordering::Relaxed),
                )
            });
        let Some(victim) = victim else {
            return false;
        };
        victim.evict();
        inner.evicted += 1;
        true
    }

    /// Connections open now (including evicted ones not yet closed).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner
            .lock()
            .expect("connection registry lock")
            .open
            .len()
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut inner = self
            .registry
            .inner
            .lock()
            .expect("connection registry lock");
        inner.open.remove(&self.id);
        if self.conn.evicted() {
            inner.evicted -= 1;
        }
        if let Some(count) = inner.per_address.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                inner.per_address.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_address: usize) -> Limits {
        Limits {
            max_connections: total,
            max_connections_per_address: per_address,
            ..Limits::default()
        }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn an_address_over_its_cap_is_refused_and_dropping_frees_its_place() {
        let registry = Registry::new(&limits(100, 2));
        let first = registry.admit(A).unwrap();
        let _second = registry.admit(A).unwrap();
        assert!(registry.admit(A).is_none());
        assert!(registry.admit(B).is_some());
        drop(first);
        assert!(registry.admit(A).is_some());
    }

    #[test]
    fn at_the_total_cap_the_oldest_unserved_idle_connection_makes_room() {
        let registry = Registry::new(&limits(3, 10));
        let served = registry.admit(A).unwrap();
        served.conn.enter(Phase::Idle);
        served.conn.end_request();
        let busy = registry.admit(A).unwrap();
        busy.conn.begin_request(false);
        let waiting = registry.admit(B).unwrap();
        let newcomer = registry.admit(B).unwrap();
        assert!(waiting.conn.evicted(), "never served: evicted first");
        assert!(!served.conn.evicted() && !busy.conn.evicted());
        assert_eq!(registry.len(), 4, "the evicted one counts until it closes");

        drop(waiting);
        // Now the served idle one is the only candidate besides the newcomer (younger).
        std::thread::sleep(Duration::from_millis(5));
        newcomer.conn.end_request();
        let _another = registry.admit(B).unwrap();
        assert!(served.conn.evicted());
        assert!(!busy.conn.evicted(), "a request in flight is never evicted");
    }

    #[test]
    fn with_every_connection_busy_a_new_one_is_refused() {
        let registry = Registry::new(&limits(1, 10));
        let busy = registry.admit(A).unwrap();
        busy.conn.begin_request(true);
        assert!(registry.admit(B).is_none());
        assert!(!registry.evict_one());
    }

    #[test]
    fn deadlines_follow_the_phase_and_the_body_rate() {
        let limits = Limits {
            tls_handshake: Duration::from_secs(1),
            header: Duration::from_secs(2),
            idle: Duration::from_secs(3),
            body_grace: Duration::from_secs(4),
            min_body_rate: 100,
            ..Limits::default()
        };
        let conn = Conn::new(Instant::now());
        let after = |conn: &Conn| {
            conn.deadline(&limits)
                .map(|at| at.duration_since(conn.epoch).as_secs_f64().round() as u64)
        };
        assert_eq!(after(&conn), Some(1));
        conn.enter(Phase::Idle);
        assert_eq!(after(&conn), Some(3));
        conn.on_read();
        assert_eq!(conn.phase(), Phase::Headers);
        assert_eq!(after(&conn), Some(2));
        conn.begin_request(true);
        conn.on_body(500);
        assert_eq!(after(&conn), Some(9), "grace 4 s + 500 bytes at 100 B/s");
        conn.body_done();
        assert_eq!(after(&conn), None);
        conn.end_request();
        assert_eq!(conn.phase(), Phase::Idle);
    }
}
