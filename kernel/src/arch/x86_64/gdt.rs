//! The long-mode GDT and the TSS that gives the double-fault handler its own stack.
//!
//! Segments barely matter in 64-bit mode; the GDT exists to hold the code/data descriptors
//! and the TSS, whose interrupt stack table (IST) entry 1 is a separate stack for the double
//! fault: a stack overflow faults on the guard page, and the CPU can only report that on a
//! stack that is still good.

use core::arch::asm;
use core::mem::size_of;
use core::ptr::addr_of;

/// Kernel code selector (GDT entry 1).
pub const KERNEL_CODE: u16 = 0x08;
/// Kernel data selector (GDT entry 2).
pub const KERNEL_DATA: u16 = 0x10;
/// TSS selector (GDT entries 3 and 4).
const TSS_SELECTOR: u16 = 0x18;

/// IST slot (1-based, as the IDT encodes it) of the double-fault stack.
pub const DOUBLE_FAULT_IST: u8 = 1;

/// Size of the double-fault stack.
const FAULT_STACK_SIZE: usize = 16 * 1024;

/// The 64-bit task-state segment (Intel SDM vol. 3, "64-bit TSS").
#[repr(C, packed(4))]
struct TaskStateSegment {
    reserved0: u32,
    privilege_stacks: [u64; 3],
    reserved1: u64,
    interrupt_stacks: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    io_map_base: u16,
}

#[repr(C, align(16))]
struct FaultStack([u8; FAULT_STACK_SIZE]);

#[unsafe(link_section = ".stacks")]
static mut FAULT_STACK: FaultStack = FaultStack([0; FAULT_STACK_SIZE]);

static mut TSS: TaskStateSegment = TaskStateSegment {
    reserved0: 0,
    privilege_stacks: [0; 3],
    reserved1: 0,
    interrupt_stacks: [0; 7],
    reserved2: 0,
    reserved3: 0,
    io_map_base: size_of::<TaskStateSegment>() as u16,
};

static mut GDT: [u64; 5] = [
    0,
    0x00af_9a00_0000_ffff, // 64-bit code, present, ring 0
    0x00cf_9200_0000_ffff, // data, present, writable
    0,                     // TSS descriptor, low half (filled in by `init`)
    0,                     // TSS descriptor, high half
];

#[repr(C, packed)]
struct DescriptorPointer {
    limit: u16,
    base: u64,
}

/// Bounds of the double-fault stack, for stack walking in fault reports.
pub fn fault_stack_bounds() -> (u64, u64) {
    let base = addr_of!(FAULT_STACK) as u64;
    (base, base + FAULT_STACK_SIZE as u64)
}

/// Loads the GDT, reloads the segment registers and loads the TSS.
///
/// # Safety
/// Call once, early at boot, with interrupts disabled.
pub unsafe fn init() {
    let (_, fault_stack_top) = fault_stack_bounds();
    // SAFETY: single-threaded early boot: nothing else touches TSS or GDT yet.
    unsafe {
        TSS.interrupt_stacks[usize::from(DOUBLE_FAULT_IST - 1)] = fault_stack_top;
        let tss = addr_of!(TSS) as u64;
        let limit = (size_of::<TaskStateSegment>() - 1) as u64;
        // Available 64-bit TSS (type 9), present.
        GDT[3] = (limit & 0xffff)
            | ((tss & 0x00ff_ffff) << 16)
            | (0x89 << 40)
            | (((limit >> 16) & 0xf) << 48)
            | (((tss >> 24) & 0xff) << 56);
        GDT[4] = tss >> 32;
        let pointer = DescriptorPointer {
            limit: (size_of::<[u64; 5]>() - 1) as u16,
            base: addr_of!(GDT) as u64,
        };
        asm!(
            "lgdt [{ptr}]",
            "push {code}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {data:x}",
            "mov es, {data:x}",
            "mov ss, {data:x}",
            "ltr {tss:x}",
            ptr = in(reg) &pointer,
            code = in(reg) u64::from(KERNEL_CODE),
            data = in(reg) u64::from(KERNEL_DATA),
            tss = in(reg) u64::from(TSS_SELECTOR),
            tmp = out(reg) _,
        );
    }
}
