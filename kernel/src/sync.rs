//! Locks for a single-CPU kernel whose interrupt handlers may run at any instruction.
//!
//! [`IrqMutex`] disables interrupts while it is held, so that a handler can never find the lock
//! taken by the code it interrupted. There is one CPU, so holding the lock is exclusive; taking
//! it twice from the same context is a bug and panics instead of deadlocking.

use core::sync::atomic::{AtomicBool, Ordering};

/// The raw lock behind [`IrqMutex`].
pub struct RawIrqMutex {
    locked: AtomicBool,
    /// Whether interrupts were enabled when the lock was taken (restored on unlock).
    interrupts_were_enabled: AtomicBool,
}

// SAFETY: `lock` only returns once this context owns `locked`; interrupts are off meanwhile, so
// nothing else on this single CPU can run, and `unlock` releases it.
unsafe impl lock_api::RawMutex for RawIrqMutex {
    const INIT: RawIrqMutex = RawIrqMutex {
        locked: AtomicBool::new(false),
        interrupts_were_enabled: AtomicBool::new(false),
    };
    type GuardMarker = lock_api::GuardNoSend;

    fn lock(&self) {
        assert!(
            self.try_lock(),
            "IrqMutex locked twice from the same context"
        );
    }

    fn try_lock(&self) -> bool {
        let enabled = interrupts::save_and_disable();
        if self.locked.swap(true, Ordering::Acquire) {
            interrupts::restore(enabled);
            return false;
        }
        self.interrupts_were_enabled
            .store(enabled, Ordering::Relaxed);
        true
    }

    unsafe fn unlock(&self) {
        let enabled = self.interrupts_were_enabled.load(Ordering::Relaxed);
        self.locked.store(false, Ordering::Release);
        interrupts::restore(enabled);
    }
}

/// A mutex that masks interrupts while held.
pub type IrqMutex<T> = lock_api::Mutex<RawIrqMutex, T>;
/// The guard of an [`IrqMutex`].
pub type IrqMutexGuard<'a, T> = lock_api::MutexGuard<'a, RawIrqMutex, T>;

#[cfg(target_os = "none")]
mod interrupts {
    use crate::arch::cpu;

    pub fn save_and_disable() -> bool {
        let enabled = cpu::interrupts_enabled();
        cpu::disable_interrupts();
        enabled
    }

    pub fn restore(enabled: bool) {
        if enabled {
            cpu::enable_interrupts();
        }
    }
}

/// Host builds (unit tests) have no interrupts to mask.
#[cfg(not(target_os = "none"))]
mod interrupts {
    pub fn save_and_disable() -> bool {
        false
    }

    pub fn restore(_enabled: bool) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_and_relock() {
        let m = IrqMutex::new(5);
        *m.lock() += 1;
        assert_eq!(*m.lock(), 6);
        let guard = m.lock();
        assert!(m.try_lock().is_none());
        drop(guard);
        assert!(m.try_lock().is_some());
    }
}
