//! QEMU's microvm machine, under KVM or TCG: COM1 console, CMOS clock, isa-debug-exit.

#[cfg(target_os = "none")]
mod debug_exit;
#[cfg(target_os = "none")]
pub mod kvmclock;
pub mod rtc;
#[cfg(target_os = "none")]
pub mod uart;
#[cfg(target_os = "none")]
pub use machine::*;

#[cfg(target_os = "none")]
mod machine {
    use super::{debug_exit, kvmclock, rtc, uart};
    use crate::arch::{cpu, pit};
    use crate::platform::{Hypervisor, Platform};
    use crate::time::{TscRate, TscScale, UnixTime};

    /// The microvm platform.
    pub struct Qemu {
        kvm_base: Option<u32>,
    }

    static mut QEMU: Qemu = Qemu { kvm_base: None };

    /// Sets up the console and returns the platform.
    ///
    /// # Safety
    /// Call once at boot, before interrupts are enabled.
    pub unsafe fn init(hypervisor: Hypervisor) -> &'static Qemu {
        uart::init();
        // SAFETY: single-threaded boot; QEMU is not read before this returns.
        unsafe {
            let qemu = &mut *core::ptr::addr_of_mut!(QEMU);
            qemu.kvm_base = match hypervisor {
                Hypervisor::Kvm { base } => Some(base),
                _ => None,
            };
            qemu
        }
    }

    impl Qemu {
        /// The TSC rate: from kvmclock, else from the hypervisor's timing leaf, else measured
        /// against the PIT (finished on first use).
        fn measure_tsc(&self) -> TscRate {
            if let Some(scale) = self.kvm_base.and_then(kvmclock::tsc_scale) {
                return TscRate::Known(scale);
            }
            // KVM may state the TSC rate in leaf base+0x10 (kHz in EAX).
            if let Some(base) = self
                .kvm_base
                .filter(|&base| cpu::cpuid(base).eax >= base + 0x10)
            {
                if let Some(scale) =
                    TscScale::from_hz(u64::from(cpu::cpuid(base + 0x10).eax) * 1000)
                {
                    return TscRate::Known(scale);
                }
            }
            pit::start_calibration();
            TscRate::Measuring(pit::finish_calibration)
        }
    }

    impl Platform for Qemu {
        fn name(&self) -> &'static str {
            if self.kvm_base.is_some() {
                "qemu-kvm"
            } else {
                "qemu-tcg"
            }
        }

        fn kind(&self) -> crate::platform::Kind {
            crate::platform::Kind::Qemu
        }

        fn console_write(&self, bytes: &[u8]) {
            uart::write(bytes);
        }

        fn read_wall_clock(&self) -> Option<UnixTime> {
            rtc::read()
        }

        fn start_clock(&self) -> TscRate {
            let rate = self.measure_tsc();
            // SAFETY: the boot calls `start_clock` once, with interrupts still off.
            unsafe { crate::arch::init_timer() };
            rate
        }

        fn exit(&self, status: i32) -> ! {
            debug_exit::exit(status);
            crate::console::write_unlocked(b"isa-debug-exit is missing: halting\n");
            cpu::halt_forever()
        }
    }
}
