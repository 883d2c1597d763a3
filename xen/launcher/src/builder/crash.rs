//! Where a domain's vCPU 0 stood when it stopped: its registers and the top of its stack, for
//! the log when a service's domain reboots or crashes. Xen turns a PVH guest's triple fault
//! into a reboot and, in a release build, prints only its own frame: without this report the
//! faulting instruction is lost.
//!
//! What the guest may corrupt: its registers and its stack are its own. [`registers`] reads
//! only the HVM context Xen saved (record lengths checked, as [`super::records`] does), and the
//! stack words are printed, never followed. The stack is read at RSP as a guest-physical
//! address, which holds for lichen's identity-mapped kernels; for any other guest the words are
//! simply some page of its memory, or none (an address outside its RAM cannot be mapped).

use std::fmt;

use super::{cpu, hvm_context, records, HVM_SAVE_CPU};
use crate::privcmd::{Privcmd, PAGE_SIZE};

/// The general-purpose registers in `struct hvm_hw_cpu`'s order (8 bytes each from RAX).
const GPR_NAMES: [&str; 16] = [
    "rax", "rbx", "rcx", "rdx", "rbp", "rsi", "rdi", "rsp", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];

/// Most stack words in a report.
pub const STACK_WORDS: usize = 24;

/// vCPU 0's registers as Xen saved them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registers {
    /// RAX..R15 in [`GPR_NAMES`]' order.
    pub gprs: [u64; 16],
    /// The instruction pointer.
    pub rip: u64,
    /// The flags.
    pub rflags: u64,
    /// Control registers 0, 2 (the last page-fault address), 3 and 4.
    pub cr: [u64; 4],
}

impl Registers {
    /// The stack pointer.
    pub fn rsp(&self) -> u64 {
        self.gprs[7]
    }
}

impl fmt::Display for Registers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [cr0, cr2, cr3, cr4] = self.cr;
        write!(
            f,
            "rip {:#x} rflags {:#x} cr0 {cr0:#x} cr2 {cr2:#x} cr3 {cr3:#x} cr4 {cr4:#x}",
            self.rip, self.rflags
        )?;
        for (name, value) in GPR_NAMES.iter().zip(self.gprs) {
            write!(f, " {name} {value:#x}")?;
        }
        Ok(())
    }
}

/// vCPU 0's registers from an HVM context blob.
pub fn registers(context: &[u8]) -> Result<Registers, String> {
    let records = records(context)?;
    let cpu = records
        .iter()
        .find(|r| r.kind == HVM_SAVE_CPU && r.instance == 0)
        .ok_or("no record of vCPU 0 in the HVM context")?;
    if cpu.data.len() != cpu::SIZE {
        return Err(format!(
            "vCPU record of {} bytes, expected {}: another Xen version?",
            cpu.data.len(),
            cpu::SIZE
        ));
    }
    let at = |offset: usize| u64::from_le_bytes(cpu.data[offset..offset + 8].try_into().unwrap());
    Ok(Registers {
        gprs: core::array::from_fn(|i| at(cpu::RAX + 8 * i)),
        rip: at(cpu::RIP),
        rflags: at(cpu::RFLAGS),
        cr: [at(cpu::CR0), at(cpu::CR2), at(cpu::CR3), at(cpu::CR4)],
    })
}

/// The 8-byte words from `rsp` to the end of its page (at most [`STACK_WORDS`]), given that
/// page's bytes.
pub fn stack_words(page: &[u8], rsp: u64) -> Vec<u64> {
    let start = (rsp % PAGE_SIZE as u64) as usize & !7;
    page.get(start..)
        .unwrap_or_default()
        .chunks_exact(8)
        .take(STACK_WORDS)
        .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
        .collect()
}

/// A one-line report of `domid`'s vCPU 0: its registers, then the words on its stack.
pub fn report(xc: &Privcmd, domid: u32) -> Result<String, String> {
    let regs = registers(&hvm_context(xc, domid)?)?;
    let mut text = regs.to_string();
    let rsp = regs.rsp();
    if let Ok(mut page) = xc.map_foreign(domid, &[rsp / PAGE_SIZE as u64]) {
        let words: Vec<String> = stack_words(page.bytes(), rsp)
            .iter()
            .map(|w| format!("{w:#x}"))
            .collect();
        text.push_str(&format!("; stack at rsp: {}", words.join(" ")));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::super::{push_record, HVM_SAVE_END, HVM_SAVE_HEADER};
    use super::*;

    #[test]
    fn reads_vcpu_0s_registers_from_the_context() {
        let mut regs = vec![0u8; cpu::SIZE];
        for i in 0..16 {
            let at = cpu::RAX + 8 * i;
            regs[at..at + 8].copy_from_slice(&(0x100 + i as u64).to_le_bytes());
        }
        regs[cpu::RIP..cpu::RIP + 8].copy_from_slice(&0x125190u64.to_le_bytes());
        regs[cpu::CR2..cpu::CR2 + 8].copy_from_slice(&0xdead000u64.to_le_bytes());
        let mut blob = Vec::new();
        push_record(&mut blob, HVM_SAVE_HEADER, 0, &[1; 24]);
        push_record(&mut blob, HVM_SAVE_CPU, 1, &[0; 16]);
        push_record(&mut blob, HVM_SAVE_CPU, 0, &regs);
        push_record(&mut blob, HVM_SAVE_END, 0, &[]);
        let r = registers(&blob).unwrap();
        assert_eq!(r.rip, 0x125190);
        assert_eq!(r.rsp(), 0x107);
        assert_eq!(r.cr[1], 0xdead000);
        let text = r.to_string();
        assert!(text.starts_with("rip 0x125190 "), "{text}");
        assert!(text.contains(" cr2 0xdead000 "), "{text}");
        assert!(text.ends_with(" r15 0x10f"), "{text}");
    }

    #[test]
    fn refuses_a_context_without_a_usable_vcpu_0() {
        let mut blob = Vec::new();
        push_record(&mut blob, HVM_SAVE_HEADER, 0, &[1; 24]);
        push_record(&mut blob, HVM_SAVE_CPU, 0, &[0; 100]);
        push_record(&mut blob, HVM_SAVE_END, 0, &[]);
        assert!(registers(&blob)
            .unwrap_err()
            .contains("another Xen version"));
        assert!(registers(&[]).unwrap_err().contains("no record"));
        let mut cut = blob.clone();
        cut.truncate(40);
        assert!(registers(&cut).is_err());
    }

    #[test]
    fn stack_words_run_from_rsp_to_the_end_of_its_page() {
        let page: Vec<u8> = (0..PAGE_SIZE / 8)
            .flat_map(|i| (i as u64).to_le_bytes())
            .collect();
        assert_eq!(stack_words(&page, 0x120ff0), [510, 511]);
        let words = stack_words(&page, 0x120000);
        assert_eq!(words.len(), STACK_WORDS);
        assert_eq!(words[..3], [0, 1, 2]);
        assert_eq!(stack_words(&page, 0x120ff3), [510, 511], "aligned down");
        assert!(stack_words(&page[..8], 0x120ff0).is_empty(), "short page");
    }
}
