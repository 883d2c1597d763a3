//! From the first Rust instruction to the service's `main`.

use core::fmt::Write;
use core::ptr::addr_of;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::{self, boot, cpu};
use crate::cmdline::Args;
use crate::console::EmergencyWriter;
use crate::exit::{exit, Status};
use crate::mem::{self, heapless_ranges::Ranges};
use crate::platform::{self, Hypervisor};
use crate::pvh::{BootInfo, MemoryMapEntry};
use crate::time::{self, Duration};

/// Memory above this is not identity mapped and is not used.
const IDENTITY_MAPPED: u64 = 4 << 30;

static MAIN_TSC: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// TSC readings taken during boot.
#[derive(Clone, Copy, Debug)]
pub struct BootTimings {
    /// At the PVH entry (first instruction).
    pub entry_tsc: u64,
    /// Just before the service's `main` was first polled.
    pub main_tsc: u64,
}

impl BootTimings {
    /// Time from the PVH entry to `main`.
    pub fn entry_to_main(&self) -> Duration {
        time::instant_of_tsc(self.main_tsc).since_boot()
    }
}

/// The boot timings.
pub fn boot_timings() -> BootTimings {
    BootTimings {
        entry_tsc: time::boot_tsc(),
        main_tsc: MAIN_TSC.load(Ordering::Relaxed),
    }
}

/// Stops the boot with a message: nothing can run without what was missing.
fn boot_failure(args: core::fmt::Arguments) -> ! {
    let _ = writeln!(EmergencyWriter, "FATAL: boot failed: {args}");
    exit(Status::BootFailure)
}

/// The Rust entry point, called by the PVH stub on the boot stack in long mode.
#[unsafe(no_mangle)]
pub extern "C" fn kernel_entry() -> ! {
    // CPUID only: the stub's mapping of the image (code, data, stack) is all it needs.
    let hypervisor = platform::detect();
    // 1 GiB pages where the CPU has them, except under Xen: asking costs a VM exit there, and
    // under Xen's nested paging filling the page directories costs plain stores. Under a
    // nested KVM each page of tables touched costs about a millisecond.
    let gib_pages = !matches!(hypervisor, Hypervisor::Xen { .. }) && cpu::has_gib_pages();
    // SAFETY: the first Rust code but CPUID: one CPU, interrupts off, nothing initialised.
    unsafe { arch::init(gib_pages) };
    // SAFETY: once, at boot, interrupts off.
    unsafe {
        match hypervisor {
            Hypervisor::Xen { base } => platform::set(platform::xen::init(base)),
            Hypervisor::Kvm { .. } | Hypervisor::Other => {
                platform::set(platform::qemu::init(hypervisor))
            }
        }
    }
    // SAFETY: START_INFO_PADDR was written by the entry stub from EBX, as the loader passed it.
    let info = match unsafe { BootInfo::read(u64::from(*addr_of!(boot::START_INFO_PADDR))) } {
        Ok(info) => info,
        Err(e) => boot_failure(format_args!("unusable PVH start info: {e:?}")),
    };
    init_heap(&info);
    let rate = platform::current().start_clock();
    // SAFETY: BOOT_TSC was written by the entry stub and is never written again.
    time::init_clock(unsafe { *addr_of!(boot::BOOT_TSC) }, rate);

    platform::current().late_init();
    time::set_wall_clock_source(|| platform::current().read_wall_clock());
    let args = match Args::parse(info.cmdline) {
        Ok(args) => args,
        Err(e) => boot_failure(format_args!("bad command line `{}`: {e}", info.cmdline)),
    };
    if let Some(name) = args.get("log") {
        match crate::log::Level::from_name(name) {
            Some(level) => crate::log::set_max_level(level),
            None => crate::warn!("unknown log level `{name}`: keeping info"),
        }
    }
    crate::debug!(
        "platform {}, tsc {} Hz, heap {} KiB, command line `{}`",
        platform::current().name(),
        // Only if known: asking for the scale would finish a pending calibration here.
        time::known_scale().map_or(0, |s| s.hz()),
        mem::heap_size() / 1024,
        info.cmdline
    );
    cpu::enable_interrupts();
    MAIN_TSC.store(cpu::rdtsc(), Ordering::Relaxed);
    // The log forwarder runs beside main (docs/logs.md), in images that have it; it ends at
    // once where there is no logs pillar to forward to.
    let forwarder = crate::service().log_forwarder;
    if let Some(forward) = forwarder {
        crate::executor::spawn(forward(args.clone()));
    }
    let main = (crate::service().main)(args);
    let status = crate::executor::run(async move {
        let status = main.await;
        if forwarder.is_some() {
            // The last lines to the logs pillar, if it is connected (at most half a second).
            crate::log_forward::flush(core::time::Duration::from_millis(500)).await;
        }
        status
    });
    exit(status)
}

/// Hands every usable RAM range to the heap.
fn init_heap(info: &BootInfo) {
    let mut reserved = Ranges::<64>::default();
    // Linker-script symbols: only their addresses are taken.
    let image = addr_of!(__image_start) as u64..addr_of!(__image_end) as u64;
    let mut complete = reserved.push(image);
    info.reserved_ranges(|range| complete &= reserved.push(range));
    if !complete {
        boot_failure(format_args!("too many modules and reserved ranges"));
    }
    let map = info
        .memory_map
        .iter()
        .map(|e| (e.range(), e.kind == MemoryMapEntry::RAM));
    // SAFETY: usable ranges are RAM that nothing else owns: the image and everything the
    // loader handed over were subtracted.
    mem::usable_ranges(map, &mut reserved, IDENTITY_MAPPED, |range| unsafe {
        mem::add_to_heap(range)
    });
    if mem::heap_size() == 0 {
        boot_failure(format_args!("no usable memory in the memory map"));
    }
}
