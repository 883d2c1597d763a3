//! The interrupt descriptor table, its 256 entry stubs and the trap frame they build.
//!
//! Every vector has a stub: exceptions (0..32) go to the fault reporter, which prints what
//! happened and stops the image with a failure status; the spurious vector is ignored; every
//! other vector is an interrupt, recorded for the executor (see [`crate::irq`]) and
//! acknowledged at the local APIC. Handlers never allocate and never take a lock that task
//! code could hold.

use core::arch::global_asm;
use core::mem::size_of;
use core::ptr::addr_of;

use super::{apic, gdt};

/// Vector of the local APIC timer.
pub const TIMER_VECTOR: u8 = 0xf0;
/// Vector of the local APIC spurious interrupt (must end in 0xf on old CPUs).
pub const SPURIOUS_VECTOR: u8 = 0xff;
/// Number of CPU exception vectors.
pub const EXCEPTION_VECTORS: u64 = 32;
/// Double-fault vector.
pub const DOUBLE_FAULT: u64 = 8;

/// Registers saved by the entry stubs, in memory order (lowest address first).
#[repr(C)]
#[derive(Debug)]
#[allow(missing_docs)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Vector number pushed by the stub.
    pub vector: u64,
    /// Error code pushed by the CPU, or 0 for vectors without one.
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// One 16-byte IDT gate.
#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    attributes: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

impl Gate {
    const MISSING: Gate = Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        attributes: 0,
        offset_mid: 0,
        offset_high: 0,
        reserved: 0,
    };

    /// A present, ring-0, 64-bit interrupt gate (interrupts stay disabled in the handler).
    fn interrupt(handler: u64, ist: u8) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector: gdt::KERNEL_CODE,
            ist,
            attributes: 0x8e,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static mut IDT: Idt = Idt([Gate::MISSING; 256]);

/// Size of each entry stub: stubs are 16-byte aligned, one per vector, in vector order.
const STUB_SIZE: u64 = 16;

unsafe extern "C" {
    static lichen_trap_stubs: u8;
}

// Entry stubs. Vectors 8, 10-14, 17, 21, 29 and 30 get an error code from the CPU; the others
// push a zero so that every frame has the same shape. The common path saves the general
// registers, calls `trap_dispatch` with a pointer to the frame, restores and returns.
// Stack: 5 words pushed by the CPU (RSP 16-byte aligned first) + 2 + 15 = 22 words, so RSP is
// 16-byte aligned at the call.
global_asm!(
    r#"
    .pushsection .text
    .p2align 4
    .global lichen_trap_stubs
lichen_trap_stubs:
    .set lichen_vector, 0
    .rept 256
    .p2align 4
    .if (lichen_vector == 8) || ((lichen_vector >= 10) && (lichen_vector <= 14)) || (lichen_vector == 17) || (lichen_vector == 21) || (lichen_vector == 29) || (lichen_vector == 30)
    .else
    pushq $0
    .endif
    pushq $lichen_vector
    jmp lichen_trap_common
    .set lichen_vector, lichen_vector + 1
    .endr

lichen_trap_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    cld
    movq %rsp, %rdi
    call {dispatch}
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp
    iretq
    .popsection
"#,
    dispatch = sym trap_dispatch,
    options(att_syntax)
);

/// Fills and loads the IDT.
///
/// # Safety
/// Call once at boot, after [`gdt::init`], with interrupts disabled.
pub unsafe fn init() {
    let stubs = addr_of!(lichen_trap_stubs) as u64;
    // SAFETY: single-threaded early boot; nothing reads the IDT until LIDT below.
    unsafe {
        for (vector, gate) in (*addr_of_mut_idt()).0.iter_mut().enumerate() {
            let ist = if vector as u64 == DOUBLE_FAULT {
                gdt::DOUBLE_FAULT_IST
            } else {
                0
            };
            *gate = Gate::interrupt(stubs + vector as u64 * STUB_SIZE, ist);
        }
        #[repr(C, packed)]
        struct Pointer {
            limit: u16,
            base: u64,
        }
        let pointer = Pointer {
            limit: (size_of::<Idt>() - 1) as u16,
            base: addr_of!(IDT) as u64,
        };
        core::arch::asm!("lidt [{}]", in(reg) &pointer, options(nostack));
    }
}

fn addr_of_mut_idt() -> *mut Idt {
    core::ptr::addr_of_mut!(IDT)
}

/// Called by the common stub with interrupts disabled.
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    if frame.vector < EXCEPTION_VECTORS {
        crate::fault::fatal_exception(frame);
    }
    let vector = frame.vector as u8;
    if vector == SPURIOUS_VECTOR {
        return;
    }
    crate::irq::raise(vector);
    apic::end_of_interrupt();
}
