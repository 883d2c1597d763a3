//! The launcher's own PVH domain builder: what `xl create -p` does for a lichen service, done
//! with a few dozen hypercalls through privcmd instead of two processes and libxl.
//!
//! [`build`] creates the domain (HVM container with hardware-assisted paging, emulated local
//! APIC only: PVH) and its vCPUs (in that order: Xen 4.17 dereferences vCPU 0 when asked for
//! the HVM context of a domain without vCPUs, and dies), sets its memory limit, paging pool and TSC mode, populates its RAM (2 MiB
//! extents where it can) and two special pages, loads the ELF image and the boot information
//! ([`layout`]), allocates the console and xenstore event channels, sets the HVM parameters
//! that name them, seeds the grant entries xenconsoled and xenstored map the rings through, and
//! sets vCPU 0's registers for the PVH entry (32-bit flat protected mode, paging off, EBX the
//! start info) and its MTRRs (write-back: without them the guest's RAM is uncacheable). The
//! domain is left paused; [`entries`] lists what the toolstack then writes in xenstore for it to
//! look to Xen's tools like one `xl` made.
//!
//! What the guest image may corrupt: nothing here trusts it beyond [`elf`]'s checks, and a
//! segment outside the guest's RAM is refused ([`layout::plan`]); the image only ever lands in
//! the new domain's own memory.

pub mod crash;
pub mod elf;
pub mod entries;
pub mod layout;

use std::io;
use std::time::Instant;

use crate::privcmd::{Payload, Privcmd, HYPERVISOR_EVENT_CHANNEL_OP, HYPERVISOR_HVM_OP};
use crate::privcmd::{HYPERVISOR_MEMORY_OP, PAGE_SIZE};
use layout::{Layout, CONSOLE_PFN, PAGE, XENSTORE_PFN};

/// What to build.
pub struct Spec<'a> {
    /// The PVH ELF image.
    pub kernel: &'a [u8],
    /// An initial ramdisk, handed over as module 0.
    pub ramdisk: Option<&'a [u8]>,
    /// RAM in MiB.
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// The guest's command line.
    pub cmdline: &'a str,
    /// The domain's handle (the UUID `xl list -v` shows).
    pub uuid: [u8; 16],
}

/// A built, paused domain.
#[derive(Clone, Debug)]
pub struct Built {
    /// Its domain id.
    pub domid: u32,
    /// The xenstore ring's event channel (in the guest).
    pub store_port: u32,
    /// The console ring's event channel (in the guest).
    pub console_port: u32,
    /// The xenstore ring's guest frame.
    pub store_gfn: u64,
    /// The console ring's guest frame.
    pub console_gfn: u64,
    /// Milliseconds per step, for the log.
    pub steps: Vec<(&'static str, f64)>,
}

/// Domctl commands (xen/include/public/domctl.h, interface 0x15).
mod domctl {
    pub const MAX_MEM: u32 = 11;
    pub const MAX_VCPUS: u32 = 15;
    pub const GETHVMCONTEXT: u32 = 33;
    pub const SETHVMCONTEXT: u32 = 34;
    pub const SETTSCINFO: u32 = 60;
    pub const SET_PAGING_MEMPOOL_SIZE: u32 = 86;
}

/// `XEN_DOMCTL_CDF_hvm | XEN_DOMCTL_CDF_hap`.
const CDF_HVM_HAP: u32 = 0b11;
/// `XEN_X86_EMU_LAPIC`: a PVH domain emulates nothing else.
const EMU_LAPIC: u32 = 1;
/// `TSC_MODE_NEVER_EMULATE` (`tsc_mode = "native"`; toolstack.rs says why).
const TSC_MODE_NATIVE: u32 = 2;
/// `XENMEM_populate_physmap`.
const XENMEM_POPULATE_PHYSMAP: u64 = 6;
/// `EVTCHNOP_alloc_unbound`.
const EVTCHNOP_ALLOC_UNBOUND: u64 = 6;
/// `HVMOP_set_param` and the parameters.
const HVMOP_SET_PARAM: u64 = 0;
const HVM_PARAM_STORE_PFN: u32 = 1;
const HVM_PARAM_STORE_EVTCHN: u32 = 2;
const HVM_PARAM_CONSOLE_PFN: u32 = 17;
const HVM_PARAM_CONSOLE_EVTCHN: u32 = 18;
const HVM_PARAM_TIMER_MODE: u32 = 10;
/// `HVMPTM_no_delay_for_missed_ticks`: libxl's default timer mode.
const TIMER_NO_DELAY_FOR_MISSED_TICKS: u64 = 1;
/// `XENMEM_resource_grant_table`, id `XENMEM_resource_grant_table_id_shared`.
const RESOURCE_GRANT_TABLE: u32 = 1;
/// `GNTTAB_RESERVED_CONSOLE` and `GNTTAB_RESERVED_XENSTORE`.
const GRANT_CONSOLE: usize = 0;
const GRANT_XENSTORE: usize = 1;
/// `GTF_permit_access`.
const GTF_PERMIT_ACCESS: u16 = 1;
/// HVM save record type codes.
const HVM_SAVE_END: u16 = 0;
const HVM_SAVE_HEADER: u16 = 1;
const HVM_SAVE_CPU: u16 = 2;
const HVM_SAVE_MTRR: u16 = 14;

fn err(step: &str) -> impl Fn(io::Error) -> String + '_ {
    move |e| format!("{step}: {e}")
}

/// Builds a paused PVH domain from `spec`; on any failure the half-built domain is destroyed.
pub fn build(xc: &Privcmd, spec: &Spec) -> Result<Built, String> {
    let image = elf::parse(spec.kernel).map_err(|e| format!("kernel image: {e}"))?;
    let layout = layout::plan(
        spec.memory_mib,
        &image,
        spec.cmdline,
        spec.ramdisk.map(|r| r.len() as u64),
    )?;
    let started = Instant::now();
    let domid = create(xc, spec).map_err(err("XEN_DOMCTL_createdomain"))?;
    let mut steps = vec![("create", ms(started))];
    match construct(xc, domid, spec, &image, &layout, &mut steps) {
        Ok(mut built) => {
            built.steps = steps;
            Ok(built)
        }
        Err(e) => {
            let _ = xc.destroy(domid);
            Err(format!("building domain {domid}: {e}"))
        }
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn create(xc: &Privcmd, spec: &Spec) -> io::Result<u32> {
    let mut payload = Payload::default()
        .u32(20, CDF_HVM_HAP)
        .u32(28, spec.vcpus)
        .u32(32, 1023) // max_evtchn_port: libxl's default
        .u32(36, u32::MAX) // max_grant_frames: -1, Xen's default
        .u32(40, u32::MAX) // max_maptrack_frames: -1, Xen's default
        .u32(44, 1) // grant_opts: grant table version 1
        .u32(56, EMU_LAPIC);
    payload.0[4..20].copy_from_slice(&spec.uuid);
    xc.create_domain(payload)
}

fn construct(
    xc: &Privcmd,
    domid: u32,
    spec: &Spec,
    image: &elf::Image,
    layout: &Layout,
    steps: &mut Vec<(&'static str, f64)>,
) -> Result<Built, String> {
    let t = Instant::now();
    // Creates the vCPUs (createdomain only sizes their array); everything that touches vCPU
    // state (the HVM context below) needs them.
    xc.domctl(
        domctl::MAX_VCPUS,
        domid,
        Payload::default().u32(0, spec.vcpus),
    )
    .map_err(err("XEN_DOMCTL_max_vcpus"))?;
    let memory_kib = u64::from(spec.memory_mib) * 1024;
    // libxl's LIBXL_MAXMEM_CONSTANT: 1 MiB of slack over the RAM (the special pages).
    xc.domctl(
        domctl::MAX_MEM,
        domid,
        Payload::default().u64(0, memory_kib + 1024),
    )
    .map_err(err("XEN_DOMCTL_max_mem"))?;
    // libxl's shadow memory estimate: 4 KiB * (256 per vCPU + 2 per MiB of RAM).
    let pool = 4096 * (256 * u64::from(spec.vcpus) + 2 * u64::from(spec.memory_mib));
    xc.domctl(
        domctl::SET_PAGING_MEMPOOL_SIZE,
        domid,
        Payload::default().u64(0, pool),
    )
    .map_err(err("XEN_DOMCTL_set_paging_mempool_size"))?;
    xc.domctl(
        domctl::SETTSCINFO,
        domid,
        Payload::default().u32(0, TSC_MODE_NATIVE),
    )
    .map_err(err("XEN_DOMCTL_settscinfo"))?;
    steps.push(("limits", ms(t)));

    let t = Instant::now();
    populate_ram(xc, domid, layout.ram_pages)?;
    populate(xc, domid, &[XENSTORE_PFN, CONSOLE_PFN], 0)?;
    steps.push(("populate", ms(t)));

    let t = Instant::now();
    load(xc, domid, spec, image, layout)?;
    let mut special = xc
        .map_foreign(domid, &[XENSTORE_PFN, CONSOLE_PFN])
        .map_err(err("mapping the special pages"))?;
    special.bytes().fill(0);
    drop(special);
    steps.push(("load", ms(t)));

    let t = Instant::now();
    let store_port = alloc_unbound(xc, domid).map_err(err("xenstore event channel"))?;
    let console_port = alloc_unbound(xc, domid).map_err(err("console event channel"))?;
    for (index, value) in [
        (HVM_PARAM_STORE_PFN, XENSTORE_PFN),
        (HVM_PARAM_STORE_EVTCHN, u64::from(store_port)),
        (HVM_PARAM_CONSOLE_PFN, CONSOLE_PFN),
        (HVM_PARAM_CONSOLE_EVTCHN, u64::from(console_port)),
        (HVM_PARAM_TIMER_MODE, TIMER_NO_DELAY_FOR_MISSED_TICKS),
    ] {
        set_param(xc, domid, index, value).map_err(err("HVMOP_set_param"))?;
    }
    seed_grants(xc, domid).map_err(err("seeding the grant table"))?;
    steps.push(("rings", ms(t)));

    let t = Instant::now();
    set_boot_registers(xc, domid, image.entry, layout.start_info)?;
    steps.push(("vcpu", ms(t)));
    Ok(Built {
        domid,
        store_port,
        console_port,
        store_gfn: XENSTORE_PFN,
        console_gfn: CONSOLE_PFN,
        steps: Vec::new(),
    })
}

/// Populates `frames` (each the first of an extent of 2^`order` pages); returns how many
/// extents Xen gave.
fn populate(xc: &Privcmd, domid: u32, frames: &[u64], order: u32) -> Result<usize, String> {
    let list = frames.to_vec();
    let reservation = Payload::default()
        .u64(0, list.as_ptr() as u64)
        .u64(8, list.len() as u64)
        .u32(16, order)
        .u16(24, domid as u16);
    // SAFETY: `reservation` is a `struct xen_memory_reservation` whose extent list `list` is
    // alive, written (so present) and holds `nr_extents` frame numbers; Xen reads and writes
    // within it only.
    let done = unsafe {
        xc.hypercall(
            HYPERVISOR_MEMORY_OP,
            [
                XENMEM_POPULATE_PHYSMAP,
                &reservation as *const Payload as u64,
                0,
                0,
                0,
            ],
        )
    }
    .map_err(err("XENMEM_populate_physmap"))?;
    Ok(done as usize)
}

/// Populates frames 0..pages: 2 MiB extents for the whole 2 MiB blocks (fewer hypercall work
/// and superpage mappings for the guest), single pages for the rest and wherever Xen had no
/// 2 MiB block to give.
fn populate_ram(xc: &Privcmd, domid: u32, pages: u64) -> Result<(), String> {
    const SUPER: u64 = 512;
    let blocks: Vec<u64> = (0..pages / SUPER).map(|b| b * SUPER).collect();
    let given = if blocks.is_empty() {
        0
    } else {
        populate(xc, domid, &blocks, 9)?
    };
    let rest: Vec<u64> = (given as u64 * SUPER..pages).collect();
    for chunk in rest.chunks(4096) {
        let done = populate(xc, domid, chunk, 0)?;
        if done != chunk.len() {
            return Err(format!(
                "XENMEM_populate_physmap gave {done} of {} pages: out of memory?",
                chunk.len()
            ));
        }
    }
    Ok(())
}

/// Copies the image's segments, the boot information and the ramdisk into the guest.
fn load(
    xc: &Privcmd,
    domid: u32,
    spec: &Spec,
    image: &elf::Image,
    layout: &Layout,
) -> Result<(), String> {
    let first = image.segments.iter().map(|s| s.paddr).min().unwrap_or(0) / PAGE;
    let end = match (layout.ramdisk, spec.ramdisk) {
        (Some(at), Some(data)) => at + data.len() as u64,
        _ => layout.start_info + layout.boot_info.len() as u64,
    };
    let frames: Vec<u64> = (first..end.div_ceil(PAGE)).collect();
    let mut mapping = xc
        .map_foreign(domid, &frames)
        .map_err(err("mapping the guest's memory"))?;
    let memory = mapping.bytes();
    let base = first * PAGE;
    let at = |paddr: u64| (paddr - base) as usize;
    for s in &image.segments {
        let start = at(s.paddr);
        let file = &spec.kernel[s.file.clone()];
        memory[start..start + file.len()].copy_from_slice(file);
        // The rest of the segment (.bss) is zero: the ELF specification says so and the kernel
        // relies on it (kernel/src/arch/x86_64/boot.rs).
        memory[start + file.len()..start + s.memsz as usize].fill(0);
    }
    let info = at(layout.start_info);
    memory[info..info + layout.boot_info.len()].copy_from_slice(&layout.boot_info);
    if let (Some(paddr), Some(data)) = (layout.ramdisk, spec.ramdisk) {
        memory[at(paddr)..at(paddr) + data.len()].copy_from_slice(data);
    }
    debug_assert_eq!(memory.len() % PAGE_SIZE, 0);
    Ok(())
}

/// An event channel in `domid` that dom0 (xenconsoled, xenstored) binds to.
fn alloc_unbound(xc: &Privcmd, domid: u32) -> io::Result<u32> {
    let op = Payload::default().u16(0, domid as u16).u16(2, 0);
    // SAFETY: `op` is a `struct evtchn_alloc_unbound` (dom, remote_dom, port) Xen fills in.
    unsafe {
        xc.hypercall(
            HYPERVISOR_EVENT_CHANNEL_OP,
            [
                EVTCHNOP_ALLOC_UNBOUND,
                &op as *const Payload as u64,
                0,
                0,
                0,
            ],
        )?
    };
    Ok(op.get_u32(4))
}

fn set_param(xc: &Privcmd, domid: u32, index: u32, value: u64) -> io::Result<()> {
    let param = Payload::default()
        .u16(0, domid as u16)
        .u32(4, index)
        .u64(8, value);
    // SAFETY: `param` is a `struct xen_hvm_param` Xen only reads.
    unsafe {
        xc.hypercall(
            HYPERVISOR_HVM_OP,
            [HVMOP_SET_PARAM, &param as *const Payload as u64, 0, 0, 0],
        )?
    };
    Ok(())
}

/// Grants dom0 access to the console and xenstore rings through the reserved entries
/// (version 1 entries: flags, domid, frame), as libxenguest does.
fn seed_grants(xc: &Privcmd, domid: u32) -> io::Result<()> {
    let mut table = xc.map_resource(domid, RESOURCE_GRANT_TABLE, 0, 0, 1)?;
    let bytes = table.bytes();
    for (entry, frame) in [(GRANT_CONSOLE, CONSOLE_PFN), (GRANT_XENSTORE, XENSTORE_PFN)] {
        let e = &mut bytes[entry * 8..entry * 8 + 8];
        e[2..4].copy_from_slice(&0u16.to_le_bytes());
        e[4..8].copy_from_slice(&(frame as u32).to_le_bytes());
        e[0..2].copy_from_slice(&GTF_PERMIT_ACCESS.to_le_bytes());
    }
    Ok(())
}

/// Offsets in `struct hvm_hw_cpu` (xen/include/public/arch-x86/hvm/save.h), 1032 bytes.
mod cpu {
    pub const SIZE: usize = 1032;
    pub const RAX: usize = 512;
    pub const RBX: usize = 520;
    pub const RIP: usize = 640;
    pub const RFLAGS: usize = 648;
    pub const CR0: usize = 656;
    pub const CR2: usize = 664;
    pub const CR3: usize = 672;
    pub const CR4: usize = 680;
    pub const DR6: usize = 720;
    pub const DR7: usize = 728;
    pub const CS_LIMIT: usize = 768;
    pub const DS_LIMIT: usize = 772;
    pub const ES_LIMIT: usize = 776;
    pub const SS_LIMIT: usize = 788;
    pub const CS_ARBYTES: usize = 888;
    pub const DS_ARBYTES: usize = 892;
    pub const ES_ARBYTES: usize = 896;
    pub const SS_ARBYTES: usize = 908;
    pub const TR_ARBYTES: usize = 912;
}
/// Offset of `msr_mtrr_def_type` in `struct hvm_hw_mtrr`.
const MTRR_DEF_TYPE: usize = 232;
/// `MTRR_TYPE_WRBACK | MTRR_DEF_TYPE_ENABLE`.
const MTRR_WRITE_BACK: u64 = 6 | 1 << 11;

/// One record of an HVM context blob.
struct Record<'a> {
    kind: u16,
    instance: u16,
    data: &'a [u8],
}

/// Splits an HVM context blob into records (descriptor: type, instance, length).
fn records(blob: &[u8]) -> Result<Vec<Record<'_>>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= blob.len() {
        let kind = u16::from_le_bytes([blob[at], blob[at + 1]]);
        let instance = u16::from_le_bytes([blob[at + 2], blob[at + 3]]);
        let len = u32::from_le_bytes(blob[at + 4..at + 8].try_into().unwrap()) as usize;
        let data = blob
            .get(at + 8..at + 8 + len)
            .ok_or("HVM context record past the end")?;
        out.push(Record {
            kind,
            instance,
            data,
        });
        if kind == HVM_SAVE_END {
            break;
        }
        at += 8 + len;
    }
    Ok(out)
}

fn push_record(blob: &mut Vec<u8>, kind: u16, instance: u16, data: &[u8]) {
    blob.extend_from_slice(&kind.to_le_bytes());
    blob.extend_from_slice(&instance.to_le_bytes());
    blob.extend_from_slice(&(data.len() as u32).to_le_bytes());
    blob.extend_from_slice(data);
}

/// The registers of vCPU 0 at the PVH entry, as libxenguest sets them: flat 32-bit code and data
/// segments, CR0.PE|ET, EIP the entry, EBX the start info; write-back MTRRs on every vCPU.
pub fn boot_context(current: &[u8], entry: u32, start_info: u64) -> Result<Vec<u8>, String> {
    let records = records(current)?;
    let header = records
        .iter()
        .find(|r| r.kind == HVM_SAVE_HEADER)
        .ok_or("no header in the HVM context")?;
    // vCPU 0 has no record yet (Xen saves none for a vCPU that never ran): it is made from
    // scratch, as libxenguest does. Xen checks the record's length against its own
    // `struct hvm_hw_cpu` on load, so a layout from another version is refused, not misread.
    if let Some(cpu) = records.iter().find(|r| r.kind == HVM_SAVE_CPU) {
        if cpu.data.len() != cpu::SIZE {
            return Err(format!(
                "vCPU record of {} bytes, expected {}: another Xen version?",
                cpu.data.len(),
                cpu::SIZE
            ));
        }
    }
    let mut regs = vec![0u8; cpu::SIZE];
    let mut put = |offset: usize, value: &[u8]| {
        regs[offset..offset + value.len()].copy_from_slice(value);
    };
    put(cpu::RBX, &start_info.to_le_bytes());
    put(cpu::RIP, &u64::from(entry).to_le_bytes());
    put(cpu::RFLAGS, &2u64.to_le_bytes());
    put(cpu::CR0, &0x11u64.to_le_bytes()); // PE | ET
    put(cpu::DR6, &0xffff_0ff0u64.to_le_bytes());
    put(cpu::DR7, &0x400u64.to_le_bytes());
    for limit in [cpu::CS_LIMIT, cpu::DS_LIMIT, cpu::ES_LIMIT, cpu::SS_LIMIT] {
        put(limit, &u32::MAX.to_le_bytes());
    }
    put(cpu::CS_ARBYTES, &0xc9bu32.to_le_bytes());
    for data in [cpu::DS_ARBYTES, cpu::ES_ARBYTES, cpu::SS_ARBYTES] {
        put(data, &0xc93u32.to_le_bytes());
    }
    put(cpu::TR_ARBYTES, &0x8bu32.to_le_bytes());

    let mut blob = Vec::new();
    push_record(&mut blob, HVM_SAVE_HEADER, 0, header.data);
    push_record(&mut blob, HVM_SAVE_CPU, 0, &regs);
    for mtrr in records.iter().filter(|r| r.kind == HVM_SAVE_MTRR) {
        let mut data = mtrr.data.to_vec();
        let slot = data
            .get_mut(MTRR_DEF_TYPE..MTRR_DEF_TYPE + 8)
            .ok_or("MTRR record too short")?;
        slot.copy_from_slice(&MTRR_WRITE_BACK.to_le_bytes());
        push_record(&mut blob, HVM_SAVE_MTRR, mtrr.instance, &data);
    }
    push_record(&mut blob, HVM_SAVE_END, 0, &[]);
    Ok(blob)
}

/// The domain's HVM context (every record Xen saves for it).
fn hvm_context(xc: &Privcmd, domid: u32) -> Result<Vec<u8>, String> {
    let size = xc
        .domctl(domctl::GETHVMCONTEXT, domid, Payload::default())
        .map_err(err("XEN_DOMCTL_gethvmcontext (size)"))?
        .get_u32(0) as usize;
    // Written (not just allocated) so that its pages are present for Xen to copy into.
    let mut current = vec![0xa5u8; size];
    let got = xc
        .domctl(
            domctl::GETHVMCONTEXT,
            domid,
            Payload::default()
                .u32(0, size as u32)
                .u64(8, current.as_mut_ptr() as u64),
        )
        .map_err(err("XEN_DOMCTL_gethvmcontext"))?
        .get_u32(0) as usize;
    current.truncate(got);
    Ok(current)
}

fn set_boot_registers(xc: &Privcmd, domid: u32, entry: u32, start_info: u64) -> Result<(), String> {
    let current = hvm_context(xc, domid)?;
    let blob = boot_context(&current, entry, start_info)?;
    xc.domctl(
        domctl::SETHVMCONTEXT,
        domid,
        Payload::default()
            .u32(0, blob.len() as u32)
            .u64(8, blob.as_ptr() as u64),
    )
    .map_err(err("XEN_DOMCTL_sethvmcontext"))?;
    Ok(())
}

/// A unique handle for a new domain, laid out as a version-4 UUID: the time, the process id
/// and a counter, mixed. Not read from /dev/urandom: on Linux 6.1 a read before the kernel's
/// random generator is seeded runs its jitter-entropy loop first, which took 1.5 s in a dom0
/// under TCG. A handle needs to be unique, not secret.
pub fn new_uuid() -> [u8; 16] {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // splitmix64's finaliser: every input bit affects every output bit.
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let high = mix(nanos ^ u64::from(std::process::id()) << 40);
    let low = mix(high ^ count.wrapping_add(0x9e37_79b9_7f4a_7c15));
    let mut uuid = [0u8; 16];
    uuid[..8].copy_from_slice(&high.to_le_bytes());
    uuid[8..].copy_from_slice(&low.to_le_bytes());
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    uuid
}

/// A UUID in its usual text form.
pub fn uuid_text(uuid: &[u8; 16]) -> String {
    let hex: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(cpu_len: usize) -> Vec<u8> {
        let mut blob = Vec::new();
        push_record(&mut blob, HVM_SAVE_HEADER, 0, &[1; 24]);
        push_record(&mut blob, HVM_SAVE_CPU, 0, &vec![0xee; cpu_len]);
        push_record(&mut blob, 3, 0, &[7; 16]);
        push_record(&mut blob, HVM_SAVE_MTRR, 0, &[0; 240]);
        push_record(&mut blob, HVM_SAVE_END, 0, &[]);
        blob
    }

    #[test]
    fn the_boot_context_sets_the_pvh_entry_state_and_write_back_mtrrs() {
        let blob = boot_context(&context(cpu::SIZE), 0x100040, 0x102000).unwrap();
        let recs = records(&blob).unwrap();
        let kinds: Vec<u16> = recs.iter().map(|r| r.kind).collect();
        assert_eq!(
            kinds,
            [HVM_SAVE_HEADER, HVM_SAVE_CPU, HVM_SAVE_MTRR, HVM_SAVE_END]
        );
        assert_eq!(recs[0].data, &[1; 24]);
        let regs = recs[1].data;
        let u64_at = |d: &[u8], o: usize| u64::from_le_bytes(d[o..o + 8].try_into().unwrap());
        assert_eq!(u64_at(regs, cpu::RIP), 0x100040);
        assert_eq!(u64_at(regs, cpu::RBX), 0x102000);
        assert_eq!(u64_at(regs, cpu::CR0), 0x11);
        assert_eq!(regs[0], 0, "everything else starts at zero");
        assert_eq!(u64_at(recs[2].data, MTRR_DEF_TYPE), 0x806);
    }

    #[test]
    fn refuses_contexts_it_does_not_understand() {
        assert!(boot_context(&context(1000), 0, 0)
            .unwrap_err()
            .contains("another Xen version"));
        let mut truncated = context(cpu::SIZE);
        truncated.truncate(100);
        assert!(boot_context(&truncated, 0, 0).is_err());
        assert!(boot_context(&[], 0, 0).unwrap_err().contains("no header"));
        let mut no_cpu = Vec::new();
        push_record(&mut no_cpu, HVM_SAVE_HEADER, 0, &[1; 24]);
        push_record(&mut no_cpu, HVM_SAVE_END, 0, &[]);
        let blob = boot_context(&no_cpu, 0x100000, 0).unwrap();
        assert_eq!(records(&blob).unwrap()[1].data.len(), cpu::SIZE);
    }

    #[test]
    fn uuids_are_version_4() {
        let uuid = new_uuid();
        let text = uuid_text(&uuid);
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "4");
        assert_ne!(new_uuid(), new_uuid(), "unique within a process");
    }
}
