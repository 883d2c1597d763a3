//! Hypercalls: the page Xen fills with call stubs, and typed wrappers for the few operations
//! lichen uses. Numbers are from Xen's public headers (xen.h, sched.h, event_channel.h,
//! hvm/hvm_op.h, hvm/params.h).

use core::arch::asm;
use core::ptr::addr_of;

use crate::arch::cpu;

/// `__HYPERVISOR_memory_op`.
pub const MEMORY_OP: usize = 12;
/// `__HYPERVISOR_grant_table_op`.
pub const GRANT_TABLE_OP: usize = 20;
/// `__HYPERVISOR_sched_op`.
pub const SCHED_OP: usize = 29;
/// `__HYPERVISOR_event_channel_op`.
pub const EVENT_CHANNEL_OP: usize = 32;
/// `__HYPERVISOR_hvm_op`.
pub const HVM_OP: usize = 34;

/// `SCHEDOP_yield`.
pub const SCHEDOP_YIELD: u64 = 0;
/// `SCHEDOP_shutdown`.
pub const SCHEDOP_SHUTDOWN: u64 = 2;
/// `SCHEDOP_poll`: sleep until one of a list of ports is pending, or a timeout.
pub const SCHEDOP_POLL: u64 = 3;
/// The most ports one `SCHEDOP_poll` may name (Xen refuses more).
pub const POLL_MAX_PORTS: usize = 128;
/// `SHUTDOWN_poweroff`.
pub const SHUTDOWN_POWEROFF: u32 = 0;
/// `SHUTDOWN_crash`.
pub const SHUTDOWN_CRASH: u32 = 3;
/// `EVTCHNOP_send`.
pub const EVTCHNOP_SEND: u64 = 4;
/// `HVMOP_set_param`.
pub const HVMOP_SET_PARAM: u64 = 0;
/// `HVMOP_get_param`.
pub const HVMOP_GET_PARAM: u64 = 1;
/// `DOMID_SELF`.
pub const DOMID_SELF: u16 = 0x7ff0;

/// `HVM_PARAM_CALLBACK_IRQ`.
pub const PARAM_CALLBACK_IRQ: u32 = 0;
/// `HVM_PARAM_STORE_PFN`.
pub const PARAM_STORE_PFN: u32 = 1;
/// `HVM_PARAM_STORE_EVTCHN`.
pub const PARAM_STORE_EVTCHN: u32 = 2;
/// `HVM_PARAM_CONSOLE_PFN`.
pub const PARAM_CONSOLE_PFN: u32 = 17;
/// `HVM_PARAM_CONSOLE_EVTCHN`.
pub const PARAM_CONSOLE_EVTCHN: u32 = 18;

/// Size of one stub in the hypercall page.
const STUB_SIZE: usize = 32;

#[repr(C, align(4096))]
struct HypercallPage([u8; 4096]);

/// Filled by Xen with one stub per hypercall when its address is written to Xen's MSR.
static mut HYPERCALL_PAGE: HypercallPage = HypercallPage([0; 4096]);

/// Asks Xen to fill the hypercall page: CPUID leaf `base + 2` names the MSR.
///
/// # Safety
/// Call once at boot, on Xen.
pub unsafe fn init(base: u32) {
    let msr = cpu::cpuid(base + 2).ebx;
    // SAFETY: the MSR is the one Xen advertises; the page is ours and identity mapped, and
    // executable (lichen maps all memory executable).
    unsafe { cpu::wrmsr(msr, addr_of!(HYPERCALL_PAGE) as u64) }
}

/// Makes hypercall `op` with up to three arguments and returns Xen's result (negative errno
/// on failure).
///
/// # Safety
/// Arguments must be valid for the operation: pointers must point at live, correctly laid out
/// structures that Xen may read and write.
pub unsafe fn call(op: usize, a1: u64, a2: u64, a3: u64) -> i64 {
    let stub = addr_of!(HYPERCALL_PAGE) as usize + op * STUB_SIZE;
    let result: i64;
    // SAFETY: the stub was written by Xen (see `init`); the caller vouches for the arguments.
    // Xen may clobber the argument registers, so they are all declared clobbered.
    unsafe {
        asm!(
            "call {stub}",
            stub = in(reg) stub,
            inlateout("rax") 0i64 => result,
            inlateout("rdi") a1 => _,
            inlateout("rsi") a2 => _,
            inlateout("rdx") a3 => _,
            out("r10") _,
            out("r8") _,
            out("rcx") _,
            out("r11") _,
        );
    }
    result
}

#[repr(C)]
struct HvmParam {
    domid: u16,
    pad: u16,
    index: u32,
    value: u64,
}

/// Sets an HVM parameter of this domain.
pub fn set_hvm_param(index: u32, value: u64) -> Result<(), i64> {
    let mut param = HvmParam {
        domid: DOMID_SELF,
        pad: 0,
        index,
        value,
    };
    // SAFETY: `param` is a live xen_hvm_param for HVMOP_set_param.
    unsafe { call_with(HVM_OP, HVMOP_SET_PARAM, &mut param) }.map(drop)
}

/// Makes hypercall `op` with sub-command `cmd` and a pointer to `arg`; Xen's errors (negative
/// errno values) become `Err`.
///
/// # Safety
/// `T` must be the structure Xen expects for this operation, laid out as in the public headers.
pub unsafe fn call_with<T>(op: usize, cmd: u64, arg: &mut T) -> Result<i64, i64> {
    // SAFETY: forwarded to the caller.
    let rc = unsafe { call(op, cmd, arg as *mut T as u64, 0) };
    if rc < 0 {
        Err(rc)
    } else {
        Ok(rc)
    }
}

/// `struct sched_poll` (64-bit layout: the handle, the count, 4 bytes of padding, the timeout).
#[repr(C)]
struct SchedPoll {
    ports: u64,
    nr_ports: u32,
    timeout: u64,
}

/// Sleeps until one of `ports` is pending in shared info (returning at once if one already
/// is), or until Xen system time `timeout_ns` (0: no timeout). Masked ports count too.
pub fn poll(ports: &[u32], timeout_ns: u64) -> Result<(), i64> {
    if ports.len() > POLL_MAX_PORTS {
        return Err(-22);
    }
    let mut op = SchedPoll {
        ports: ports.as_ptr() as u64,
        nr_ports: ports.len() as u32,
        timeout: timeout_ns,
    };
    // SAFETY: `op` is a live sched_poll whose handle points at `ports.len()` live u32 ports.
    unsafe { call_with(SCHED_OP, SCHEDOP_POLL, &mut op) }.map(drop)
}

/// Reads an HVM parameter of this domain.
pub fn hvm_param(index: u32) -> Result<u64, i64> {
    let mut param = HvmParam {
        domid: DOMID_SELF,
        pad: 0,
        index,
        value: 0,
    };
    // SAFETY: `param` is a live xen_hvm_param for HVMOP_get_param.
    let rc = unsafe {
        call(
            HVM_OP,
            HVMOP_GET_PARAM,
            &mut param as *mut HvmParam as u64,
            0,
        )
    };
    if rc < 0 {
        Err(rc)
    } else {
        Ok(param.value)
    }
}

/// Notifies the other end of event channel `port`.
pub fn notify(port: u32) {
    let mut send = port;
    // SAFETY: `send` is a live evtchn_send (one u32 port).
    unsafe {
        call(
            EVENT_CHANNEL_OP,
            EVTCHNOP_SEND,
            &mut send as *mut u32 as u64,
            0,
        )
    };
}

/// Gives up the CPU to other domains for a moment.
pub fn yield_cpu() {
    // SAFETY: SCHEDOP_yield takes no argument.
    unsafe { call(SCHED_OP, SCHEDOP_YIELD, 0, 0) };
}

/// Stops this domain with a shutdown reason; returns only if Xen refused.
pub fn shutdown(reason: u32) {
    let mut r = reason;
    // SAFETY: `r` is a live sched_shutdown (one u32 reason).
    unsafe { call(SCHED_OP, SCHEDOP_SHUTDOWN, &mut r as *mut u32 as u64, 0) };
}
