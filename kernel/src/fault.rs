//! What happens when things go wrong: CPU exceptions and panics are reported on the console
//! with enough to find the cause (vector, error code, RIP, CR2, registers, return addresses),
//! and the image stops with a failure status.

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch::trap::{TrapFrame, DOUBLE_FAULT};
use crate::arch::{cpu, gdt, paging};
use crate::console::EmergencyWriter;
use crate::exit::{exit, Status};

/// Most return addresses printed in a report.
const MAX_FRAMES: usize = 16;

static FAILING: AtomicBool = AtomicBool::new(false);

/// Names of the CPU exception vectors.
pub fn exception_name(vector: u64) -> &'static str {
    match vector {
        0 => "divide error",
        1 => "debug",
        2 => "non-maskable interrupt",
        3 => "breakpoint",
        4 => "overflow",
        5 => "bound range exceeded",
        6 => "invalid opcode",
        7 => "device not available",
        8 => "double fault",
        10 => "invalid TSS",
        11 => "segment not present",
        12 => "stack-segment fault",
        13 => "general protection fault",
        14 => "page fault",
        16 => "x87 floating-point error",
        17 => "alignment check",
        18 => "machine check",
        19 => "SIMD floating-point exception",
        20 => "virtualization exception",
        21 => "control protection exception",
        _ => "reserved exception",
    }
}

/// Stops a second failure while reporting the first from looping: it exits at once.
fn enter_failure() {
    if FAILING.swap(true, Ordering::SeqCst) {
        crate::console::write_unlocked(b"\nFATAL: failed again while reporting a failure\n");
        exit(Status::Fault);
    }
}

/// Reports a CPU exception and stops the image (called by the trap dispatcher).
pub fn fatal_exception(frame: &TrapFrame) -> ! {
    enter_failure();
    let mut w = EmergencyWriter;
    let _ = writeln!(
        w,
        "\nFATAL: CPU exception: {} (vector {}), error code {:#x}, rip {:#x}, cr2 {:#x}, rsp {:#x}, image {}",
        exception_name(frame.vector),
        frame.vector,
        frame.error_code,
        frame.rip,
        cpu::cr2(),
        frame.rsp,
        crate::service().name,
    );
    let _ = writeln!(
        w,
        "  rax {:#x} rbx {:#x} rcx {:#x} rdx {:#x} rsi {:#x} rdi {:#x} rbp {:#x}\n  r8 {:#x} r9 {:#x} r10 {:#x} r11 {:#x} r12 {:#x} r13 {:#x} r14 {:#x} r15 {:#x} rflags {:#x}",
        frame.rax, frame.rbx, frame.rcx, frame.rdx, frame.rsi, frame.rdi, frame.rbp,
        frame.r8, frame.r9, frame.r10, frame.r11, frame.r12, frame.r13, frame.r14, frame.r15, frame.rflags,
    );
    let (stack_base, _) = paging::stack_bounds();
    let guard = stack_base - 4096..stack_base;
    let hit_guard = match frame.vector {
        14 => guard.contains(&cpu::cr2()),
        DOUBLE_FAULT => guard.contains(&frame.rsp),
        _ => false,
    };
    if hit_guard {
        let _ = writeln!(
            w,
            "  the kernel stack ran into its guard page: stack overflow"
        );
    }
    write_backtrace(&mut w, frame.rip, frame.rbp);
    exit(Status::Fault)
}

/// Prints the return addresses found by following saved frame pointers (images are built with
/// frame pointers). Only frames inside a known stack are followed, so a corrupt chain ends the
/// walk instead of faulting.
fn write_backtrace(w: &mut impl Write, rip: u64, mut rbp: u64) {
    let stacks = [paging::stack_bounds(), gdt::fault_stack_bounds()];
    let in_stack = |addr: u64| stacks.iter().any(|&(lo, hi)| addr >= lo && addr + 16 <= hi);
    let _ = write!(w, "  backtrace: {rip:#x}");
    for _ in 0..MAX_FRAMES {
        if !rbp.is_multiple_of(8) || !in_stack(rbp) {
            break;
        }
        // SAFETY: rbp is aligned and lies within a mapped kernel stack (checked above).
        let (next, ret) = unsafe { (*(rbp as *const u64), *((rbp + 8) as *const u64)) };
        if ret == 0 {
            break;
        }
        let _ = write!(w, " {ret:#x}");
        if next <= rbp {
            break;
        }
        rbp = next;
    }
    let _ = writeln!(w);
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    enter_failure();
    let mut w = EmergencyWriter;
    let _ = write!(
        w,
        "\nPANIC in {}: {}",
        crate::service().name,
        info.message()
    );
    if let Some(location) = info.location() {
        let _ = write!(
            w,
            " at {}:{}:{}",
            location.file(),
            location.line(),
            location.column()
        );
    }
    let _ = writeln!(w);
    write_backtrace(&mut w, 0, cpu::frame_pointer());
    exit(Status::Panic)
}
