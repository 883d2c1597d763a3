//! Interrupts as events for tasks.
//!
//! A handler only sets the vector's pending bit ([`raise`]). The executor, between polls,
//! wakes the task waiting on each pending vector, and [`wait`] consumes the bit. Nothing runs
//! in interrupt context but a bit set, so handlers never race with task code.

use core::future::poll_fn;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use core::task::{Poll, Waker};

use crate::sync::IrqMutex;

static PENDING: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
/// Per-vector functions run in interrupt context before the vector is marked pending (stored
/// as addresses; 0 for none).
static HANDLERS: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];

/// Runs `handler` in interrupt context whenever `vector` fires, instead of marking the vector
/// pending. The handler must not allocate, take locks task code may hold, or block.
pub fn set_handler(vector: u8, handler: fn()) {
    HANDLERS[usize::from(vector)].store(handler as usize, Ordering::Release);
}
static WAITERS: IrqMutex<[Option<Waker>; 256]> = IrqMutex::new([const { None }; 256]);

fn bit(vector: u8) -> (&'static AtomicU64, u64) {
    (&PENDING[usize::from(vector / 64)], 1 << (vector % 64))
}

/// Interrupt context: runs `vector`'s handler if it has one (the handler records what tasks
/// need), else marks the vector pending for [`wait`].
pub fn raise(vector: u8) {
    let handler = HANDLERS[usize::from(vector)].load(Ordering::Acquire);
    if handler != 0 {
        // SAFETY: only `set_handler` stores non-zero values, and they are `fn()` addresses.
        let handler: fn() = unsafe { core::mem::transmute::<usize, fn()>(handler) };
        handler();
        return;
    }
    let (word, mask) = bit(vector);
    word.fetch_or(mask, Ordering::Release);
}

/// Consumes `vector`'s pending bit; true if it was set.
pub fn take(vector: u8) -> bool {
    let (word, mask) = bit(vector);
    word.fetch_and(!mask, Ordering::Acquire) & mask != 0
}

/// Whether any vector is pending.
pub fn any_pending() -> bool {
    PENDING.iter().any(|w| w.load(Ordering::Relaxed) != 0)
}

/// Waits until `vector` fires (returns at once if it fired since the last wait).
pub async fn wait(vector: u8) {
    poll_fn(|cx| {
        if take(vector) {
            return Poll::Ready(());
        }
        WAITERS.lock()[usize::from(vector)] = Some(cx.waker().clone());
        // The interrupt may have come in between: check again now that the waker is in place.
        if take(vector) {
            WAITERS.lock()[usize::from(vector)] = None;
            return Poll::Ready(());
        }
        Poll::Pending
    })
    .await
}

/// Wakes the waiter of every pending vector (the pending bits stay set for [`wait`]).
/// Returns whether any waiter is registered at all.
pub(crate) fn wake_pending() -> bool {
    let mut to_wake: [Option<Waker>; 8] = [const { None }; 8];
    let mut any_waiter = false;
    let mut n = 0;
    {
        let mut waiters = WAITERS.lock();
        for (vector, slot) in waiters.iter_mut().enumerate() {
            if slot.is_none() {
                continue;
            }
            any_waiter = true;
            let (word, mask) = bit(vector as u8);
            if word.load(Ordering::Acquire) & mask != 0 && n < to_wake.len() {
                to_wake[n] = slot.take();
                n += 1;
            }
        }
    }
    to_wake.into_iter().flatten().for_each(Waker::wake);
    any_waiter
}

/// Clears every pending vector and waiter (host unit tests: each test starts afresh).
#[cfg(all(test, not(target_os = "none")))]
pub(crate) fn reset() {
    PENDING.iter().for_each(|w| w.store(0, Ordering::Relaxed));
    *WAITERS.lock() = [const { None }; 256];
}
