//! Event channels: allocation, binding, notification, and per-port wake-ups for tasks.
//!
//! No interrupts: Xen is never asked to inject an upcall (HVM_PARAM_CALLBACK_IRQ stays 0).
//! The executor, between rounds, moves each pending, unmasked port from shared info's bitmap
//! into [`FIRED`] ([`collect`]) and wakes the tasks waiting on those ports ([`wake_fired`]);
//! [`wait`] consumes the bit. When nothing is ready the vCPU sleeps in `SCHEDOP_poll` on the
//! ports tasks wait on ([`waited_ports`]), with the next timer deadline as its timeout. Ports
//! are bound unmasked and stay unmasked.
//!
//! Why not the upcall vector: under Xen in QEMU TCG, guests triple-faulted intermittently
//! while Xen injected upcalls (docs/vchan.md has the record). Polling needs no interrupt
//! delivery at all, costs no more hypercalls than `hlt` costs exits, and a sleeping vCPU
//! wakes only for the ports someone waits on.

use alloc::vec::Vec;
use core::future::poll_fn;
use core::sync::atomic::{AtomicU64, Ordering};
use core::task::{Context, Poll, Waker};

use super::{hypercall, shared_info};
use crate::sync::IrqMutex;

/// An event-channel port of this domain.
pub type Port = u32;

/// `EVTCHNOP_bind_interdomain`.
const BIND_INTERDOMAIN: u64 = 0;
/// `EVTCHNOP_close`.
const CLOSE: u64 = 3;
/// `EVTCHNOP_alloc_unbound`.
const ALLOC_UNBOUND: u64 = 6;
/// `EVTCHNOP_unmask`.
const UNMASK: u64 = 9;
/// Ports the 2-level ABI can name (64 words of 64 bits).
pub const MAX_PORTS: u32 = 4096;

/// Ports that fired and were not yet consumed by [`wait`].
static FIRED: [AtomicU64; shared_info::EVENT_WORDS] =
    [const { AtomicU64::new(0) }; shared_info::EVENT_WORDS];
/// Tasks waiting per port.
static WAITERS: IrqMutex<Vec<(Port, Waker)>> = IrqMutex::new(Vec::new());

/// An event-channel operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventError {
    /// The operation.
    pub op: &'static str,
    /// Xen's (negative) errno.
    pub errno: i64,
}

impl core::fmt::Display for EventError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "event channel {} failed: errno {}", self.op, -self.errno)
    }
}

fn check(op: &'static str, rc: Result<i64, i64>) -> Result<(), EventError> {
    rc.map(drop).map_err(|errno| EventError { op, errno })
}

fn valid(port: u32, op: &'static str) -> Result<Port, EventError> {
    if port == 0 || port >= MAX_PORTS {
        return Err(EventError { op, errno: -22 });
    }
    Ok(port)
}

/// Makes sure Xen injects no upcalls (shared info must be mapped): events are collected by
/// the executor instead (see the module docs).
pub fn init() -> Result<(), EventError> {
    check(
        "clear callback",
        hypercall::set_hvm_param(hypercall::PARAM_CALLBACK_IRQ, 0).map(|()| 0),
    )
}

/// Moves pending, unmasked ports from shared info to [`FIRED`]. Only atomics: safe anywhere.
pub fn collect() {
    while shared_info::upcall_pending().swap(0, Ordering::AcqRel) != 0 {
        let mut selector = shared_info::pending_selector().swap(0, Ordering::AcqRel);
        while selector != 0 {
            let i = selector.trailing_zeros() as usize;
            selector &= selector - 1;
            let ready = shared_info::pending(i).load(Ordering::Acquire)
                & !shared_info::mask(i).load(Ordering::Acquire);
            if ready != 0 {
                shared_info::pending(i).fetch_and(!ready, Ordering::AcqRel);
                FIRED[i].fetch_or(ready, Ordering::Release);
            }
        }
    }
}

fn take_fired(port: Port) -> bool {
    let (i, bit) = ((port / 64) as usize, 1u64 << (port % 64));
    FIRED[i].fetch_and(!bit, Ordering::AcqRel) & bit != 0
}

fn has_fired(port: Port) -> bool {
    FIRED[(port / 64) as usize].load(Ordering::Acquire) & (1 << (port % 64)) != 0
}

/// Consumes `port`'s fired bit, or registers the task to be woken when it fires.
pub fn poll_fired(port: Port, cx: &mut Context<'_>) -> Poll<()> {
    if take_fired(port) {
        return Poll::Ready(());
    }
    {
        let mut waiters = WAITERS.lock();
        if !waiters
            .iter()
            .any(|(p, w)| *p == port && w.will_wake(cx.waker()))
        {
            waiters.push((port, cx.waker().clone()));
        }
    }
    // The event may have come in meanwhile: check again now that the waker is in place.
    if take_fired(port) {
        return Poll::Ready(());
    }
    Poll::Pending
}

/// Waits until `port` fires (at once if it fired since the last wait).
pub async fn wait(port: Port) {
    poll_fn(|cx| poll_fired(port, cx)).await
}

/// Collects fired ports and wakes the tasks waiting on them (executor context). Returns
/// whether any task waits on a port.
pub fn wake_fired() -> bool {
    collect();
    let ready: Vec<Waker> = {
        let mut waiters = WAITERS.lock();
        let mut ready = Vec::new();
        waiters.retain(|(port, waker)| {
            if has_fired(*port) {
                ready.push(waker.clone());
                false
            } else {
                true
            }
        });
        ready
    };
    let any_waiting = !ready.is_empty() || !WAITERS.lock().is_empty();
    ready.into_iter().for_each(Waker::wake);
    any_waiting
}

/// Collects fired ports; whether a task waits on one that fired (so it must not sleep).
pub fn waited_port_fired() -> bool {
    collect();
    WAITERS.lock().iter().any(|(port, _)| has_fired(*port))
}

/// Writes the distinct ports tasks wait on into `ports`; returns how many, or `None` if
/// they do not all fit.
pub fn waited_ports(ports: &mut [Port]) -> Option<usize> {
    let waiters = WAITERS.lock();
    let mut n = 0;
    for (port, _) in waiters.iter() {
        if ports[..n].contains(port) {
            continue;
        }
        *ports.get_mut(n)? = *port;
        n += 1;
    }
    Some(n)
}

#[repr(C)]
struct AllocUnbound {
    dom: u16,
    remote_dom: u16,
    port: u32,
}

/// Allocates a port that domain `remote` may bind to.
pub fn alloc_unbound(remote: u16) -> Result<Port, EventError> {
    let mut op = AllocUnbound {
        dom: hypercall::DOMID_SELF,
        remote_dom: remote,
        port: 0,
    };
    // SAFETY: a live evtchn_alloc_unbound.
    check("alloc_unbound", unsafe {
        hypercall::call_with(hypercall::EVENT_CHANNEL_OP, ALLOC_UNBOUND, &mut op)
    })?;
    let port = valid(op.port, "alloc_unbound")?;
    unmask(port)?;
    Ok(port)
}

#[repr(C)]
struct BindInterdomain {
    remote_dom: u16,
    remote_port: u32,
    local_port: u32,
}

/// Binds a local port to `remote_port` of domain `remote`.
pub fn bind_interdomain(remote: u16, remote_port: Port) -> Result<Port, EventError> {
    let mut op = BindInterdomain {
        remote_dom: remote,
        remote_port,
        local_port: 0,
    };
    // SAFETY: a live evtchn_bind_interdomain.
    check("bind_interdomain", unsafe {
        hypercall::call_with(hypercall::EVENT_CHANNEL_OP, BIND_INTERDOMAIN, &mut op)
    })?;
    let port = valid(op.local_port, "bind_interdomain")?;
    unmask(port)?;
    Ok(port)
}

/// Unmasks a port.
pub fn unmask(port: Port) -> Result<(), EventError> {
    let mut p = port;
    // SAFETY: a live evtchn_unmask (one u32 port).
    check("unmask", unsafe {
        hypercall::call_with(hypercall::EVENT_CHANNEL_OP, UNMASK, &mut p)
    })
}

/// Closes a port; a pending event on it is dropped. Tasks still registered on it are woken
/// and forgotten: a closed port must never be named to SCHEDOP_poll again (Xen refuses the
/// whole poll with EINVAL), and a waiter whose future was dropped leaves its entry behind.
pub fn close(port: Port) -> Result<(), EventError> {
    let mut p = port;
    // SAFETY: a live evtchn_close (one u32 port).
    let result = check("close", unsafe {
        hypercall::call_with(hypercall::EVENT_CHANNEL_OP, CLOSE, &mut p)
    });
    take_fired(port);
    let stale: Vec<Waker> = {
        let mut waiters = WAITERS.lock();
        let mut stale = Vec::new();
        waiters.retain(|(p, waker)| {
            if *p == port {
                stale.push(waker.clone());
                false
            } else {
                true
            }
        });
        stale
    };
    stale.into_iter().for_each(Waker::wake);
    result
}

/// Signals the other end of `port`.
pub fn notify(port: Port) {
    hypercall::notify(port);
}

/// Fires `port` locally, as if its other end had signalled it: the task waiting on it wakes.
/// A driver uses this to report a change of its own (a link coming up) through the port its
/// users already wait on.
pub fn raise(port: Port) {
    if let Ok(port) = valid(port, "raise") {
        FIRED[(port / 64) as usize].fetch_or(1 << (port % 64), Ordering::AcqRel);
    }
}
