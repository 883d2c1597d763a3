//! The platform seam: what differs between running as a Xen PVH domU and running directly
//! under QEMU's microvm machine (KVM or TCG).
//!
//! The platform is detected once at boot from the CPUID hypervisor leaves and is reachable as
//! [`current`]. Services never see it: they use the console, clock and channel APIs, which
//! call into it.

use crate::time::{Instant, TscRate, TscScale, UnixTime};

pub mod qemu;
pub mod xen;

/// Which hypervisor is underneath, from the CPUID hypervisor leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hypervisor {
    /// Xen ("XenVMMXenVMM"); `base` is the first CPUID leaf of Xen's range.
    Xen {
        /// First leaf of Xen's CPUID range.
        base: u32,
    },
    /// KVM ("KVMKVMKVM"); `base` is the first CPUID leaf of KVM's range.
    Kvm {
        /// First leaf of KVM's CPUID range.
        base: u32,
    },
    /// QEMU's TCG emulator, another hypervisor, or none.
    Other,
}

/// A hypervisor signature as CPUID returns it in EBX, ECX, EDX.
pub fn signature_of(ebx: u32, ecx: u32, edx: u32) -> [u8; 12] {
    let mut s = [0u8; 12];
    s[..4].copy_from_slice(&ebx.to_le_bytes());
    s[4..8].copy_from_slice(&ecx.to_le_bytes());
    s[8..].copy_from_slice(&edx.to_le_bytes());
    s
}

/// Classifies a signature found at CPUID leaf `base` whose EAX (highest leaf) is `max_leaf`.
pub fn classify(signature: &[u8; 12], base: u32, max_leaf: u32) -> Option<Hypervisor> {
    match signature {
        b"XenVMMXenVMM" if max_leaf >= base + 2 => Some(Hypervisor::Xen { base }),
        b"KVMKVMKVM\0\0\0" => Some(Hypervisor::Kvm { base }),
        _ => None,
    }
}

/// Scans the hypervisor CPUID leaves (0x40000000 to 0x40010000, step 0x100).
///
/// The first leaf is read before the "hypervisor present" bit: that is where Xen and KVM
/// usually are, and under a hypervisor every CPUID is a VM exit (milliseconds each for Xen under
/// QEMU's TCG). Without a hypervisor that leaf holds no signature [`classify`] accepts.
#[cfg(target_os = "none")]
pub fn detect() -> Hypervisor {
    use crate::arch::cpu::cpuid;
    let probe = |base| {
        let r = cpuid(base);
        classify(&signature_of(r.ebx, r.ecx, r.edx), base, r.eax)
    };
    if let Some(found) = probe(0x4000_0000) {
        return found;
    }
    if cpuid(1).ecx & (1 << 31) == 0 {
        return Hypervisor::Other;
    }
    (0x4000_0100u32..0x4001_0000)
        .step_by(0x100)
        .find_map(probe)
        .unwrap_or(Hypervisor::Other)
}

/// Which kind of machine the kernel runs on, for code whose behaviour differs (which network
/// card to look for, how channels are made).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Not detected yet (only before boot detects the platform).
    Unset,
    /// QEMU's microvm machine, under KVM or TCG: virtio-mmio devices.
    Qemu,
    /// A Xen PVH domU: xenstore, event channels, grant tables, split drivers.
    Xen,
}

/// The kind of machine underneath (see [`Kind`]).
pub fn kind() -> Kind {
    current().kind()
}

/// How a platform signals console input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleInput {
    /// An event channel fires (Xen).
    XenPort(u32),
    /// No signal: poll.
    Poll,
}

/// What the kernel needs from the machine underneath.
pub trait Platform: Sync {
    /// Short name for logs: `qemu-kvm`, `qemu-tcg`, `xen`.
    fn name(&self) -> &'static str;
    /// The kind of machine, for code that must tell them apart.
    fn kind(&self) -> Kind;
    /// Writes bytes to the console, blocking until they are accepted.
    fn console_write(&self, bytes: &[u8]);
    /// The time of day, if the platform has a clock to read it from.
    fn read_wall_clock(&self) -> Option<UnixTime>;
    /// Finds (or starts measuring) how TSC ticks convert to nanoseconds and sets up the timer
    /// interrupt.
    fn start_clock(&self) -> TscRate;
    /// Arranges for the next [`Platform::idle`] to end by `deadline` (replacing any earlier
    /// arming); by default with the local APIC timer's interrupt.
    fn arm_timer(&self, deadline: Instant) {
        #[cfg(target_os = "none")]
        crate::arch::apic::arm(crate::time::tsc_of_instant(deadline));
        #[cfg(not(target_os = "none"))]
        let _ = deadline;
    }
    /// Sleeps until an interrupt, an event or the armed deadline. Called with interrupts
    /// disabled; returns with them enabled. By default `sti; hlt`: the STI shadow makes
    /// checking for work and sleeping atomic.
    fn idle(&self) {
        #[cfg(target_os = "none")]
        crate::arch::cpu::enable_interrupts_and_halt();
    }
    /// Sets up what needs the heap and the clock (event channels, grant tables, ...).
    fn late_init(&self) {}
    /// Wakes tasks waiting on platform events that came in; returns whether any task waits on
    /// a platform event at all (executor context).
    fn wake_events(&self) -> bool {
        false
    }
    /// Whether platform events came in that no task has consumed yet.
    fn events_pending(&self) -> bool {
        false
    }
    /// Reads console input into `buf` without waiting; returns the number of bytes.
    fn console_read(&self, _buf: &mut [u8]) -> usize {
        0
    }
    /// Waits until console input may have arrived (returns at once where the platform cannot
    /// signal input; callers then poll at a slow pace).
    fn console_input_event(&self) -> ConsoleInput {
        ConsoleInput::Poll
    }
    /// Stops the machine with an exit status (0 success).
    fn exit(&self, status: i32) -> !;
}

/// The no-op platform in place before detection: console output is dropped.
struct Unset;

impl Platform for Unset {
    fn name(&self) -> &'static str {
        "unset"
    }
    fn kind(&self) -> Kind {
        Kind::Unset
    }
    fn console_write(&self, _bytes: &[u8]) {}
    fn read_wall_clock(&self) -> Option<UnixTime> {
        None
    }
    fn start_clock(&self) -> TscRate {
        TscRate::Known(TscScale { mul: 0, shift: 0 })
    }
    fn arm_timer(&self, _deadline: Instant) {}
    fn idle(&self) {}
    fn exit(&self, _status: i32) -> ! {
        #[allow(clippy::empty_loop)]
        loop {}
    }
}

static mut CURRENT: &dyn Platform = &Unset;

/// The platform the kernel runs on.
pub fn current() -> &'static dyn Platform {
    // SAFETY: CURRENT is written once, by `set`, during single-threaded boot before interrupts
    // are enabled; afterwards it is only read.
    unsafe { *core::ptr::addr_of!(CURRENT) }
}

/// Installs the platform.
///
/// # Safety
/// Call once, during boot, before interrupts are enabled.
pub unsafe fn set(platform: &'static dyn Platform) {
    // SAFETY: see `current`.
    unsafe { *core::ptr::addr_of_mut!(CURRENT) = platform }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        // "XenV" "MMXe" "nVMM" as the registers hold them.
        let xen = signature_of(0x566e_6558, 0x6558_4d4d, 0x4d4d_566e);
        assert_eq!(&xen, b"XenVMMXenVMM");
        assert_eq!(
            classify(&xen, 0x4000_0100, 0x4000_0105),
            Some(Hypervisor::Xen { base: 0x4000_0100 })
        );
        assert_eq!(
            classify(&xen, 0x4000_0000, 0x4000_0001),
            None,
            "Xen needs leaves base..base+2"
        );
        assert_eq!(
            classify(b"KVMKVMKVM\0\0\0", 0x4000_0000, 0x4000_0001),
            Some(Hypervisor::Kvm { base: 0x4000_0000 })
        );
        assert_eq!(classify(b"TCGTCGTCGTCG", 0x4000_0000, 0x4000_0001), None);
    }
}
