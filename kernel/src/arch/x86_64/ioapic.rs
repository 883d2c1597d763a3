//! The I/O APICs: routing a device's interrupt line (a GSI) to a local APIC vector.
//!
//! QEMU's microvm machine has one I/O APIC at 0xfec00000 serving GSIs 0..23 and, when ACPI is
//! on (the default), a second one at 0xfec10000 serving GSIs 24..47, where the virtio-mmio
//! transports are wired. There are no ACPI tables to read under PVH, so the kernel knows these
//! two addresses and checks that a chip answers at each before using it. Lines are routed
//! edge-triggered, active high, to this CPU: an edge interrupt fires once per rising edge, so a
//! level-holding device cannot storm the CPU before its driver task runs (the trap dispatcher
//! acknowledges at the local APIC immediately).

use core::fmt;
use core::ptr::{read_volatile, write_volatile};

use crate::sync::IrqMutex;

/// Where I/O APICs may sit, with the first GSI each one serves (QEMU microvm's layout).
const KNOWN_IOAPICS: [(usize, u32); 2] = [(0xfec0_0000, 0), (0xfec1_0000, 24)];
/// Register-select window (offset from the chip's base).
const IOREGSEL: usize = 0x00;
/// Data window.
const IOWIN: usize = 0x10;
/// Version register: bits 0..8 version, bits 16..24 the highest redirection entry.
const REG_VERSION: u32 = 0x01;
/// First redirection-table register (two 32-bit halves per pin).
const REG_REDIRECTION_BASE: u32 = 0x10;
/// Redirection entry: the pin is masked.
const ENTRY_MASKED: u32 = 1 << 16;
/// Local APIC ID register (xAPIC MMIO), whose bits 24..32 name this CPU.
const LOCAL_APIC_ID: usize = 0xfee0_0020;
/// Lowest vector a device may use (below are exceptions and reserved vectors).
pub const FIRST_DEVICE_VECTOR: u8 = 0x20;
/// Highest vector a device may use (0xf0 and up belong to the local APIC).
pub const LAST_DEVICE_VECTOR: u8 = 0xef;

/// Register accesses go through a select/data pair: one at a time.
static LOCK: IrqMutex<()> = IrqMutex::new(());

/// Why a line could not be routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// No I/O APIC serves this GSI.
    NoIoApic {
        /// The line asked for.
        gsi: u32,
    },
    /// The vector is not one devices may use.
    BadVector(u8),
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::NoIoApic { gsi } => write!(f, "no I/O APIC serves GSI {gsi}"),
            RouteError::BadVector(v) => write!(
                f,
                "vector {v:#x} is outside the device range {FIRST_DEVICE_VECTOR:#x}..={LAST_DEVICE_VECTOR:#x}"
            ),
        }
    }
}

/// One I/O APIC chip.
#[derive(Clone, Copy)]
struct IoApic {
    base: usize,
    first_gsi: u32,
    pins: u32,
}

impl IoApic {
    fn read(self, register: u32) -> u32 {
        // SAFETY: `base` is one of the known I/O APIC windows, identity mapped (below 4 GiB);
        // the select/data pair is used under LOCK by every caller.
        unsafe {
            write_volatile((self.base + IOREGSEL) as *mut u32, register);
            read_volatile((self.base + IOWIN) as *const u32)
        }
    }

    fn write(self, register: u32, value: u32) {
        // SAFETY: as for `read`.
        unsafe {
            write_volatile((self.base + IOREGSEL) as *mut u32, register);
            write_volatile((self.base + IOWIN) as *mut u32, value);
        }
    }

    /// The chip at `base`, if one answers: unclaimed MMIO reads as all zeros or all ones,
    /// which no I/O APIC version register holds.
    fn probe(base: usize, first_gsi: u32) -> Option<IoApic> {
        let chip = IoApic {
            base,
            first_gsi,
            pins: 0,
        };
        let version = chip.read(REG_VERSION);
        let kind = version & 0xff;
        if version == 0 || version == u32::MAX || !(0x10..=0x2f).contains(&kind) {
            return None;
        }
        Some(IoApic {
            pins: ((version >> 16) & 0xff) + 1,
            ..chip
        })
    }

    fn serves(self, gsi: u32) -> bool {
        (self.first_gsi..self.first_gsi + self.pins).contains(&gsi)
    }

    fn set_entry(self, gsi: u32, low: u32, destination: u8) {
        let register = REG_REDIRECTION_BASE + 2 * (gsi - self.first_gsi);
        // Mask first, then set the destination, then the vector and mode (unmasking last).
        self.write(register, ENTRY_MASKED);
        self.write(register + 1, u32::from(destination) << 24);
        self.write(register, low);
    }
}

fn chip_for(gsi: u32) -> Result<IoApic, RouteError> {
    KNOWN_IOAPICS
        .iter()
        .filter_map(|&(base, first)| IoApic::probe(base, first))
        .find(|chip| chip.serves(gsi))
        .ok_or(RouteError::NoIoApic { gsi })
}

/// This CPU's local APIC ID.
fn local_apic_id() -> u8 {
    // SAFETY: the local APIC's ID register, identity mapped; reading it has no side effects.
    (unsafe { read_volatile(LOCAL_APIC_ID as *const u32) } >> 24) as u8
}

/// Routes `gsi` to `vector` on this CPU (edge-triggered, active high) and unmasks it.
pub fn route(gsi: u32, vector: u8) -> Result<(), RouteError> {
    if !(FIRST_DEVICE_VECTOR..=LAST_DEVICE_VECTOR).contains(&vector) {
        return Err(RouteError::BadVector(vector));
    }
    let _guard = LOCK.lock();
    let chip = chip_for(gsi)?;
    // Fixed delivery (0), physical destination (bit 11 clear), active high (bit 13 clear),
    // edge-triggered (bit 15 clear), unmasked (bit 16 clear): only the vector is set.
    chip.set_entry(gsi, u32::from(vector), local_apic_id());
    Ok(())
}

/// Masks `gsi`.
pub fn mask(gsi: u32) -> Result<(), RouteError> {
    let _guard = LOCK.lock();
    let chip = chip_for(gsi)?;
    chip.set_entry(gsi, ENTRY_MASKED, local_apic_id());
    Ok(())
}
