//! A wake-up that any number of tasks can wait for, on a single-threaded executor.

use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::future::{poll_fn, Future};
use core::task::{Poll, Waker};

/// Counts notifications; a waiter waits for the count to move past the one it saw.
///
/// Taking the generation before looking at the shared state, then waiting for a change since
/// it, cannot miss a notification made in between.
#[derive(Debug, Default)]
pub(crate) struct Notify {
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Notify {
    /// The number of notifications so far.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// Wakes every waiter.
    pub(crate) fn notify(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        let waiters = core::mem::take(&mut *self.waiters.borrow_mut());
        waiters.into_iter().for_each(Waker::wake);
    }

    /// Completes once a notification happened after `generation` was read.
    pub(crate) fn changed_since(&self, generation: u64) -> impl Future<Output = ()> + '_ {
        poll_fn(move |cx| {
            if self.generation.get() != generation {
                return Poll::Ready(());
            }
            let mut waiters = self.waiters.borrow_mut();
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }

    /// Completes once `condition` holds, checking it again after every notification.
    pub(crate) async fn wait_until(&self, mut condition: impl FnMut() -> bool) {
        loop {
            let seen = self.generation();
            if condition() {
                return;
            }
            self.changed_since(seen).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{poll_once, CountingWaker};
    use core::pin::pin;

    #[test]
    fn a_waiter_wakes_on_the_next_notification_only() {
        let notify = Notify::default();
        let waker = CountingWaker::new();
        let seen = notify.generation();
        let mut wait = pin!(notify.changed_since(seen));
        assert!(poll_once(wait.as_mut(), &waker).is_pending());
        assert!(poll_once(wait.as_mut(), &waker).is_pending());
        assert_eq!(notify.waiters.borrow().len(), 1, "one waker per task");
        notify.notify();
        assert_eq!(waker.wakes(), 1);
        assert!(poll_once(wait.as_mut(), &waker).is_ready());
    }

    #[test]
    fn a_notification_before_the_wait_is_not_missed() {
        let notify = Notify::default();
        let seen = notify.generation();
        notify.notify();
        let waker = CountingWaker::new();
        assert!(poll_once(pin!(notify.changed_since(seen)), &waker).is_ready());
    }

    #[test]
    fn wait_until_rechecks_its_condition_after_each_notification() {
        let notify = Notify::default();
        let value = Cell::new(0);
        let waker = CountingWaker::new();
        let mut wait = pin!(notify.wait_until(|| value.get() >= 2));
        assert!(poll_once(wait.as_mut(), &waker).is_pending());
        value.set(1);
        notify.notify();
        assert!(poll_once(wait.as_mut(), &waker).is_pending());
        value.set(2);
        notify.notify();
        assert!(poll_once(wait.as_mut(), &waker).is_ready());
    }
}
