//! KVM's paravirtual clock: read once at boot for the TSC rate, no calibration needed.
//!
//! The guest writes the physical address of a pvclock record (with bit 0 set) to
//! MSR_KVM_SYSTEM_TIME_NEW; KVM fills in `tsc_to_system_mul` and `tsc_shift`, the same
//! conversion Xen publishes in its shared info.

use crate::arch::cpu;
use crate::time::TscScale;

const MSR_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;
/// CPUID(base + 1).EAX bit: the MSR above exists.
const FEATURE_CLOCKSOURCE2: u32 = 1 << 3;

/// The pvclock record (`pvclock_vcpu_time_info`), 32 bytes.
#[repr(C, align(64))]
struct TimeInfo {
    version: u32,
    pad0: u32,
    tsc_timestamp: u64,
    system_time: u64,
    tsc_to_system_mul: u32,
    tsc_shift: i8,
    flags: u8,
    pad: [u8; 2],
}

static mut TIME_INFO: TimeInfo = TimeInfo {
    version: 0,
    pad0: 0,
    tsc_timestamp: 0,
    system_time: 0,
    tsc_to_system_mul: 0,
    tsc_shift: 0,
    flags: 0,
    pad: [0; 2],
};

/// The TSC scale from kvmclock, if KVM offers it.
pub fn tsc_scale(kvm_base: u32) -> Option<TscScale> {
    if cpu::cpuid(kvm_base + 1).eax & FEATURE_CLOCKSOURCE2 == 0 {
        return None;
    }
    let record = core::ptr::addr_of_mut!(TIME_INFO);
    // SAFETY: CPUID says the MSR exists; the record is a static the kernel owns, identity mapped.
    // KVM writes it synchronously on the MSR write; the version loop below guards against a
    // concurrent update; the MSR is cleared again so KVM stops writing.
    unsafe {
        cpu::wrmsr(MSR_SYSTEM_TIME_NEW, record as u64 | 1);
        let scale = loop {
            let version = core::ptr::read_volatile(&(*record).version);
            let mul = core::ptr::read_volatile(&(*record).tsc_to_system_mul);
            let shift = core::ptr::read_volatile(&(*record).tsc_shift);
            if version & 1 == 0 && version == core::ptr::read_volatile(&(*record).version) {
                break TscScale { mul, shift };
            }
        };
        cpu::wrmsr(MSR_SYSTEM_TIME_NEW, 0);
        (scale.mul != 0).then_some(scale)
    }
}
