//! Xen PVH domU: the console ring, xenstore, event channels, grant tables, shared info (wall
//! clock), TSC rate from Xen's CPUID time leaf, and shutdown through SCHEDOP_shutdown. Each Xen protocol lives in its own file.

#[cfg(target_os = "none")]
pub mod console;
#[cfg(target_os = "none")]
pub mod evtchn;
#[cfg(target_os = "none")]
pub mod grant;
#[cfg(target_os = "none")]
pub mod hypercall;
pub mod physmap;
pub mod ring;
#[cfg(target_os = "none")]
pub mod shared_info;
pub mod shared_ring;
#[cfg(target_os = "none")]
pub mod store;
pub mod xenstore;
#[cfg(target_os = "none")]
pub use machine::*;

#[cfg(target_os = "none")]
mod machine {
    use super::console::Console;
    use super::xenstore::XenStore;
    use super::{evtchn, hypercall, shared_info};
    use crate::arch::cpu;
    use crate::platform::ConsoleInput;
    use crate::platform::Platform;
    use crate::sync::IrqMutex;
    use crate::time::{Instant, TscRate, TscScale, UnixTime};
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// The Xen platform.
    pub struct Xen {
        base: u32,
        console: Option<Console>,
        xenstore: IrqMutex<Option<SingleCpu<XenStore>>>,
        events_ready: AtomicBool,
        shared_info_mapped: AtomicBool,
    }

    /// Lets the xenstore client (which holds a pointer to its shared page) live in a static.
    struct SingleCpu<T>(T);
    // SAFETY: one CPU; the client is only used under the IrqMutex above.
    unsafe impl<T> Send for SingleCpu<T> {}

    static mut XEN: Xen = Xen {
        base: 0,
        console: None,
        xenstore: IrqMutex::new(None),
        events_ready: AtomicBool::new(false),
        shared_info_mapped: AtomicBool::new(false),
    };
    static EXITING: AtomicBool = AtomicBool::new(false);
    /// The executor's next timer deadline in ns since boot (`u64::MAX`: none), for `idle`.
    static DEADLINE_NS: AtomicU64 = AtomicU64::new(u64::MAX);

    /// The Xen platform (meaningful once `init` ran).
    pub fn platform() -> &'static Xen {
        // SAFETY: XEN is written only by `init`, at boot, before anything reads it.
        unsafe { &*core::ptr::addr_of!(XEN) }
    }

    /// Sets up hypercalls and the console; returns the platform.
    ///
    /// # Safety
    /// Call once at boot on Xen (`base` is Xen's CPUID leaf base), interrupts disabled.
    pub unsafe fn init(base: u32) -> &'static Xen {
        // SAFETY: once, at boot, on Xen; XEN is not shared yet.
        unsafe {
            hypercall::init(base);
            let xen = &mut *core::ptr::addr_of_mut!(XEN);
            xen.base = base;
            xen.console = Console::from_hvm_params();
            xen
        }
    }

    impl Xen {
        /// Runs `f` with the xenstore connection (made on first use); `None` if this domain
        /// has no xenstore or the heap is not up yet.
        pub fn with_xenstore<R>(&self, f: impl FnOnce(&mut XenStore) -> R) -> Option<R> {
            if crate::mem::heap_size() == 0 {
                return None;
            }
            let mut guard = self.xenstore.lock();
            if guard.is_none() {
                *guard = XenStore::from_hvm_params().map(SingleCpu);
            }
            guard.as_mut().map(|xs| f(&mut xs.0))
        }

        /// The console, if this domain has one.
        pub fn console(&self) -> Option<&Console> {
            self.console.as_ref()
        }
    }

    /// Formats a status as decimal into `buf`.
    fn decimal(status: i32, buf: &mut [u8; 12]) -> &str {
        let mut n = i64::from(status).unsigned_abs();
        let mut i = buf.len();
        loop {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        if status < 0 {
            i -= 1;
            buf[i] = b'-';
        }
        core::str::from_utf8(&buf[i..]).unwrap_or("1")
    }

    /// How long an idle vCPU watches shared info for a waited-on event before it sleeps:
    /// under load the next event often follows within microseconds, and a sleeping vCPU costs
    /// a hypercall, a reschedule and a VM entry to wake (KVM's halt polling, for the same
    /// reason, waits up to 200 µs).
    const IDLE_SPIN_NS: u64 = 50_000;

    /// Sleeps in SCHEDOP_poll on the ports tasks wait on until one is pending or the armed
    /// deadline passes, after watching for [`IDLE_SPIN_NS`]. An event that lands after the
    /// executor's last look leaves its port pending in shared info, and Xen then returns at
    /// once: no wake-up is lost.
    fn poll_events() {
        let deadline = DEADLINE_NS.swap(u64::MAX, Ordering::Relaxed);
        let spin_until = crate::now()
            .as_nanos()
            .saturating_add(IDLE_SPIN_NS)
            .min(deadline);
        while crate::now().as_nanos() < spin_until {
            if evtchn::waited_port_fired() {
                return;
            }
            core::hint::spin_loop();
        }
        let mut ports = [0; hypercall::POLL_MAX_PORTS];
        let (n, all) = match evtchn::waited_ports(&mut ports) {
            Some(n) => (n, true),
            None => (ports.len(), false),
        };
        let mut timeout_ns = deadline.saturating_sub(crate::now().as_nanos());
        if !all {
            // More ports than one poll can name: look again every millisecond.
            timeout_ns = timeout_ns.min(1_000_000);
        }
        if timeout_ns == 0 {
            return;
        }
        let until = match timeout_ns {
            u64::MAX => 0,
            ns => shared_info::system_time_ns().saturating_add(ns).max(1),
        };
        if let Err(e) = hypercall::poll(&ports[..n], until) {
            crate::warn!("SCHEDOP_poll failed: errno {}", -e);
            hypercall::yield_cpu();
        }
    }

    impl Platform for Xen {
        fn name(&self) -> &'static str {
            "xen"
        }

        fn kind(&self) -> crate::platform::Kind {
            crate::platform::Kind::Xen
        }

        fn console_write(&self, bytes: &[u8]) {
            if let Some(console) = &self.console {
                console.write(bytes);
            }
        }

        fn read_wall_clock(&self) -> Option<UnixTime> {
            if !self.events_ready.load(Ordering::Acquire) {
                return None;
            }
            let now = shared_info::wall_clock_base_ns()
                .saturating_add(shared_info::system_time_ns() as i64);
            Some(UnixTime(now))
        }

        // The grant table's frames are mapped on the first grant (`grant::grant_access`), not
        // here: every hypercall before `main` is a VM exit on the boot path (docs/BENCHMARKS.md,
        // boot), and many images (hello) never grant a page.
        fn late_init(&self) {
            if !self.shared_info_mapped.load(Ordering::Acquire) {
                crate::warn!("no shared info: no event channels");
            } else {
                match evtchn::init() {
                    Ok(()) => {
                        self.events_ready.store(true, Ordering::Release);
                        return;
                    }
                    Err(e) => crate::warn!("no event channels: {e}"),
                }
            }
            // No event channels: the executor sleeps in `sti; hlt` with the local APIC's timer.
            // SAFETY: the boot calls `late_init` once, with interrupts still off; `start_clock`
            // left the APIC alone.
            unsafe { crate::arch::init_timer() };
        }

        fn wake_events(&self) -> bool {
            self.events_ready.load(Ordering::Acquire) && evtchn::wake_fired()
        }

        fn events_pending(&self) -> bool {
            self.events_ready.load(Ordering::Acquire) && evtchn::waited_port_fired()
        }

        fn console_read(&self, buf: &mut [u8]) -> usize {
            self.console.as_ref().map_or(0, |c| c.read(buf))
        }

        fn console_input_event(&self) -> ConsoleInput {
            match &self.console {
                Some(c) if self.events_ready.load(Ordering::Acquire) => {
                    ConsoleInput::XenPort(c.port())
                }
                _ => ConsoleInput::Poll,
            }
        }

        fn start_clock(&self) -> TscRate {
            // The pvclock scale in shared info; failing that, Xen's time leaf (base + 3,
            // sub-leaf 0: ECX is the guest TSC rate in kHz).
            let from_shared_info = match shared_info::map() {
                Ok(()) => Some(shared_info::tsc_scale()).filter(|s| s.mul != 0),
                Err(e) => {
                    crate::warn!("cannot map shared info: error {e}");
                    None
                }
            };
            self.shared_info_mapped
                .store(from_shared_info.is_some(), Ordering::Release);
            // The time leaf only when needed: each CPUID is a VM exit. The local APIC timer is
            // set up by `late_init`, only if there are no event channels.
            let scale = from_shared_info
                .or_else(|| TscScale::from_hz(u64::from(cpu::cpuid(self.base + 3).ecx) * 1000))
                .unwrap_or_else(|| {
                    crate::warn!("Xen states no TSC rate: assuming 1 GHz");
                    TscScale::from_hz(1_000_000_000).expect("non-zero rate")
                });
            TscRate::Known(scale)
        }

        // Once event channels are up there is no LAPIC timer and no upcall vector on Xen: the
        // executor's deadline becomes the timeout of the SCHEDOP_poll in `idle` (evtchn's
        // module docs say why). Before that, the defaults: the LAPIC timer and `sti; hlt`.
        fn arm_timer(&self, deadline: Instant) {
            if self.events_ready.load(Ordering::Acquire) {
                DEADLINE_NS.store(deadline.as_nanos(), Ordering::Relaxed);
            } else {
                crate::arch::apic::arm(crate::time::tsc_of_instant(deadline));
            }
        }

        fn idle(&self) {
            if self.events_ready.load(Ordering::Acquire) {
                poll_events();
                cpu::enable_interrupts();
            } else {
                cpu::enable_interrupts_and_halt();
            }
        }

        fn exit(&self, status: i32) -> ! {
            // A failure while exiting (say, xenstore misbehaving) must not loop back here.
            if !EXITING.swap(true, Ordering::SeqCst) {
                let mut buf = [0u8; 12];
                let value = decimal(status, &mut buf);
                let _ = self.with_xenstore(|xs| xs.write("data/exit-status", value));
            }
            if let Some(console) = &self.console {
                console.flush();
            }
            let reason = if status == 0 {
                hypercall::SHUTDOWN_POWEROFF
            } else {
                hypercall::SHUTDOWN_CRASH
            };
            hypercall::shutdown(reason);
            cpu::halt_forever()
        }
    }
}
