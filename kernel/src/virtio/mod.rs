//! Virtio devices over the MMIO transport: how QEMU's microvm machine (and Firecracker) attach
//! devices to a guest without PCI.
//!
//! - [`queue`]: split virtqueues with every device-written entry validated (pure logic, unit
//!   tested on the host against a lying fake device);
//! - [`mmio`]: the register window, modern and legacy, and feature negotiation;
//! - [`blk`]: the block device, as a [`crate::block::BlockDevice`];
//! - [`net`]: the network device, as a [`crate::net::NetDevice`] for the stack;
//! - [`console`]: the console device with named ports, the channels of microvm;
//! - [`discover`]: finding transports on microvm and routing their interrupt lines.

pub mod console;
pub mod queue;

#[cfg(target_os = "none")]
pub mod blk;
#[cfg(target_os = "none")]
pub mod mmio;
#[cfg(target_os = "none")]
pub mod net;

#[cfg(target_os = "none")]
pub use discovery::*;

#[cfg(target_os = "none")]
mod discovery {
    use super::mmio::{Transport, WINDOW_SIZE};
    use alloc::vec::Vec;

    /// Address of microvm's first virtio-mmio window; the others follow every
    /// [`WINDOW_SIZE`] bytes.
    pub const MICROVM_MMIO_BASE: usize = 0xfeb0_0000;
    /// Most transports microvm creates (24 with its second I/O APIC, 8 without).
    pub const MICROVM_MAX_TRANSPORTS: usize = 24;
    /// Interrupt vector of transport slot 0; slot `i` uses `DEVICE_VECTOR_BASE + i`.
    pub const DEVICE_VECTOR_BASE: u8 = 0x40;

    /// A transport with a device behind it, and where its interrupt line is wired.
    pub struct Found {
        /// Slot index (window number).
        pub slot: usize,
        /// The transport.
        pub transport: Transport,
        /// The GSIs the slot's line may be wired to (see [`candidate_gsis`]).
        pub gsis: Vec<u32>,
        /// The vector the driver should route those GSIs to.
        pub vector: u8,
    }

    /// The GSIs transport `slot` may raise, given how many transports the machine has.
    ///
    /// microvm wires slot `i` to GSI `24 + i` when it has its second I/O APIC (24 transports),
    /// else to `16 + i` with ACPI or `5 + i` without (8 transports). Nothing in memory says
    /// whether ACPI is on, so with 8 transports both lines are routed: the unused one is idle.
    pub fn candidate_gsis(slot: usize, transports: usize) -> Vec<u32> {
        let slot = slot as u32;
        if transports > 8 {
            alloc::vec![24 + slot]
        } else {
            alloc::vec![16 + slot, 5 + slot]
        }
    }

    /// Every virtio-mmio device on this machine (none under Xen, which has no such windows).
    pub fn discover() -> Vec<Found> {
        if matches!(
            crate::platform::detect(),
            crate::platform::Hypervisor::Xen { .. }
        ) {
            return Vec::new();
        }
        let mut windows = 0;
        let mut found = Vec::new();
        for slot in 0..MICROVM_MAX_TRANSPORTS {
            let base = MICROVM_MMIO_BASE + slot * WINDOW_SIZE;
            // SAFETY: microvm's virtio-mmio windows (or unclaimed MMIO that reads as zeros),
            // identity mapped; nothing else in the kernel touches them.
            let magic = unsafe { core::ptr::read_volatile(base as *const u32) };
            if magic != super::mmio::MAGIC {
                continue;
            }
            windows += 1;
            // SAFETY: as above; each window is probed once and owned by what it returns.
            match unsafe { Transport::probe(base) } {
                Ok(Some(transport)) => found.push((slot, transport)),
                Ok(None) => {}
                Err(e) => crate::warn!("virtio-mmio slot {slot} at {base:#x}: {e}"),
            }
        }
        found
            .into_iter()
            .map(|(slot, transport)| Found {
                slot,
                transport,
                gsis: candidate_gsis(slot, windows),
                vector: DEVICE_VECTOR_BASE + slot as u8,
            })
            .collect()
    }

    /// The first device of virtio type `device_id` on this machine, if any.
    pub fn find(device_id: u32) -> Option<Found> {
        discover()
            .into_iter()
            .find(|f| f.transport.device_id() == device_id)
    }
}
