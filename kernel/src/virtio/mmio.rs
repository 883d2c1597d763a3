//! The virtio-mmio transport (virtio 1.2, section 4.2), modern (version 2) and legacy (version 1).
//!
//! QEMU 7.2's microvm machine creates its transports in legacy mode unless told
//! `-global virtio-mmio.force-legacy=false`; Firecracker and newer QEMUs use modern mode. Both
//! share the register block except for queue placement and feature negotiation, which this
//! module hides behind [`Transport::setup_queue`] and [`Transport::negotiate`].

use core::fmt;
use core::ptr::{read_volatile, write_volatile};

use super::queue::{Layout, Virtqueue, USED_ALIGN};
use crate::mem::PAGE_SIZE;

/// "virt", little-endian.
pub const MAGIC: u32 = 0x7472_6976;

const REG_MAGIC: usize = 0x000;
const REG_VERSION: usize = 0x004;
const REG_DEVICE_ID: usize = 0x008;
const REG_DEVICE_FEATURES: usize = 0x010;
const REG_DEVICE_FEATURES_SEL: usize = 0x014;
const REG_DRIVER_FEATURES: usize = 0x020;
const REG_DRIVER_FEATURES_SEL: usize = 0x024;
const REG_LEGACY_GUEST_PAGE_SIZE: usize = 0x028;
const REG_QUEUE_SEL: usize = 0x030;
const REG_QUEUE_NUM_MAX: usize = 0x034;
const REG_QUEUE_NUM: usize = 0x038;
const REG_LEGACY_QUEUE_ALIGN: usize = 0x03c;
const REG_LEGACY_QUEUE_PFN: usize = 0x040;
const REG_QUEUE_READY: usize = 0x044;
const REG_QUEUE_NOTIFY: usize = 0x050;
const REG_INTERRUPT_STATUS: usize = 0x060;
const REG_INTERRUPT_ACK: usize = 0x064;
const REG_STATUS: usize = 0x070;
const REG_QUEUE_DESC: usize = 0x080;
const REG_QUEUE_DRIVER: usize = 0x090;
const REG_QUEUE_DEVICE: usize = 0x0a0;
const REG_CONFIG: usize = 0x100;

const STATUS_ACKNOWLEDGE: u32 = 1;
const STATUS_DRIVER: u32 = 2;
const STATUS_DRIVER_OK: u32 = 4;
const STATUS_FEATURES_OK: u32 = 8;
const STATUS_FAILED: u32 = 128;

/// Feature bit: the device follows virtio 1.0+ (required of modern transports).
pub const F_VERSION_1: u64 = 1 << 32;

/// Size of one transport's register window.
pub const WINDOW_SIZE: usize = 0x200;

/// Why a virtio device (block, network) could not be brought up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupError {
    /// The transport failed.
    Transport(TransportError),
    /// The interrupt line could not be routed.
    Interrupt(crate::arch::ioapic::RouteError),
    /// A queue is too small for the driver (one request, or two buffers).
    QueueTooSmall,
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Transport(e) => write!(f, "virtio transport: {e}"),
            SetupError::Interrupt(e) => write!(f, "interrupt routing: {e}"),
            SetupError::QueueTooSmall => f.write_str("virtqueue too small"),
        }
    }
}

impl From<TransportError> for SetupError {
    fn from(e: TransportError) -> Self {
        SetupError::Transport(e)
    }
}

/// Why a device could not be brought up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportError {
    /// The version register holds something other than 1 or 2.
    UnknownVersion(u32),
    /// The device refused the feature set (FEATURES_OK did not stick).
    FeaturesRefused,
    /// A modern device lacks VIRTIO_F_VERSION_1.
    NotVersion1,
    /// The queue does not exist (its maximum size is 0) or is already live.
    QueueUnavailable(u16),
    /// No memory for the queue.
    OutOfMemory,
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::UnknownVersion(v) => write!(f, "unknown virtio-mmio version {v}"),
            TransportError::FeaturesRefused => f.write_str("the device refused the features"),
            TransportError::NotVersion1 => {
                f.write_str("modern transport without VIRTIO_F_VERSION_1")
            }
            TransportError::QueueUnavailable(q) => write!(f, "queue {q} is unavailable"),
            TransportError::OutOfMemory => f.write_str("out of memory for a virtqueue"),
        }
    }
}

/// One virtio-mmio register window with a device behind it.
pub struct Transport {
    base: usize,
    legacy: bool,
    device_id: u32,
}

impl Transport {
    /// The transport at `base`: `Ok(None)` when the window holds no transport or no device.
    ///
    /// # Safety
    /// `base` must be the identity-mapped address of a virtio-mmio window (or of unclaimed
    /// MMIO space, which reads as zeros), owned by the caller from now on.
    pub unsafe fn probe(base: usize) -> Result<Option<Transport>, TransportError> {
        let probe = Transport {
            base,
            legacy: false,
            device_id: 0,
        };
        if probe.read(REG_MAGIC) != MAGIC {
            return Ok(None);
        }
        let legacy = match probe.read(REG_VERSION) {
            1 => true,
            2 => false,
            other => return Err(TransportError::UnknownVersion(other)),
        };
        let device_id = probe.read(REG_DEVICE_ID);
        if device_id == 0 {
            return Ok(None);
        }
        Ok(Some(Transport {
            base,
            legacy,
            device_id,
        }))
    }

    fn read(&self, register: usize) -> u32 {
        // SAFETY: `base` is a transport window owned by this transport (see `probe`), and
        // `register` an offset inside it.
        unsafe { read_volatile((self.base + register) as *const u32) }
    }

    fn write(&self, register: usize, value: u32) {
        // SAFETY: as for `read`.
        unsafe { write_volatile((self.base + register) as *mut u32, value) }
    }

    /// The virtio device type (1 = network).
    pub fn device_id(&self) -> u32 {
        self.device_id
    }

    /// Whether this is a legacy (version 1) transport.
    pub fn is_legacy(&self) -> bool {
        self.legacy
    }

    /// The window's address.
    pub fn base(&self) -> usize {
        self.base
    }

    /// Resets the device and negotiates features: the device's offer masked by `wanted`
    /// (plus VERSION_1 on a modern transport). Returns the accepted features.
    pub fn negotiate(&mut self, wanted: u64) -> Result<u64, TransportError> {
        self.write(REG_STATUS, 0);
        self.write(REG_STATUS, STATUS_ACKNOWLEDGE);
        self.write(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        let mut offered = 0u64;
        let words = if self.legacy { 1 } else { 2 };
        for word in 0..words {
            self.write(REG_DEVICE_FEATURES_SEL, word);
            offered |= u64::from(self.read(REG_DEVICE_FEATURES)) << (32 * word);
        }
        let wanted = if self.legacy {
            wanted & 0xffff_ffff
        } else {
            wanted | F_VERSION_1
        };
        if !self.legacy && offered & F_VERSION_1 == 0 {
            self.fail();
            return Err(TransportError::NotVersion1);
        }
        let accepted = offered & wanted;
        for word in 0..words {
            self.write(REG_DRIVER_FEATURES_SEL, word);
            self.write(REG_DRIVER_FEATURES, (accepted >> (32 * word)) as u32);
        }
        if self.legacy {
            self.write(REG_LEGACY_GUEST_PAGE_SIZE, PAGE_SIZE as u32);
        } else {
            let status = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK;
            self.write(REG_STATUS, status);
            if self.read(REG_STATUS) & STATUS_FEATURES_OK == 0 {
                self.fail();
                return Err(TransportError::FeaturesRefused);
            }
        }
        Ok(accepted)
    }

    /// Allocates and registers queue `index` with up to `max_size` entries.
    pub fn setup_queue(&mut self, index: u16, max_size: u16) -> Result<Virtqueue, TransportError> {
        self.write(REG_QUEUE_SEL, u32::from(index));
        let device_max = self.read(REG_QUEUE_NUM_MAX);
        let busy = if self.legacy {
            self.read(REG_LEGACY_QUEUE_PFN) != 0
        } else {
            self.read(REG_QUEUE_READY) != 0
        };
        if device_max == 0 || busy {
            return Err(TransportError::QueueUnavailable(index));
        }
        // The largest power of two within both limits.
        let limit = device_max.min(u32::from(max_size)).max(1);
        let size = 1u16 << (31 - limit.leading_zeros());
        let layout = Layout::new(size).ok_or(TransportError::QueueUnavailable(index))?;
        let pages = layout.total.div_ceil(PAGE_SIZE as usize);
        let memory = crate::mem::alloc_frames(pages).ok_or(TransportError::OutOfMemory)?;
        // SAFETY: fresh zeroed page-aligned frames of `pages * PAGE_SIZE >= layout.total`
        // bytes, identity mapped; they belong to this queue and its device from now on (the
        // queue is never torn down, so the frames are never freed).
        let queue = unsafe { Virtqueue::new(memory as *mut u8, layout) };
        self.write(REG_QUEUE_NUM, u32::from(size));
        if self.legacy {
            self.write(REG_LEGACY_QUEUE_ALIGN, USED_ALIGN as u32);
            self.write(REG_LEGACY_QUEUE_PFN, (memory / PAGE_SIZE) as u32);
        } else {
            self.write_address(REG_QUEUE_DESC, queue.descriptor_table());
            self.write_address(REG_QUEUE_DRIVER, queue.avail_ring());
            self.write_address(REG_QUEUE_DEVICE, queue.used_ring());
            self.write(REG_QUEUE_READY, 1);
        }
        Ok(queue)
    }

    fn write_address(&self, register: usize, address: u64) {
        self.write(register, address as u32);
        self.write(register + 4, (address >> 32) as u32);
    }

    /// Routes the device's interrupt line (each of `gsis` it may be wired to) to `vector`, then
    /// tells the device the driver is ready. If a line cannot be routed the device is marked
    /// failed.
    pub fn start(
        &mut self,
        gsis: &[u32],
        vector: u8,
    ) -> Result<(), crate::arch::ioapic::RouteError> {
        for &gsi in gsis {
            if let Err(e) = crate::arch::ioapic::route(gsi, vector) {
                self.fail();
                return Err(e);
            }
        }
        self.driver_ok();
        Ok(())
    }

    /// Tells the device the driver is ready.
    fn driver_ok(&mut self) {
        let mut status = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_DRIVER_OK;
        if !self.legacy {
            status |= STATUS_FEATURES_OK;
        }
        self.write(REG_STATUS, status);
    }

    /// Marks the device failed (the driver gave up on it).
    pub fn fail(&mut self) {
        let status = self.read(REG_STATUS);
        self.write(REG_STATUS, status | STATUS_FAILED);
    }

    /// Notifies the device that queue `index` has new buffers.
    pub fn notify(&self, index: u16) {
        self.write(REG_QUEUE_NOTIFY, u32::from(index));
    }

    /// Reads and acknowledges the interrupt status (bit 0: used buffers, bit 1: config change).
    pub fn acknowledge_interrupt(&self) -> u32 {
        let status = self.read(REG_INTERRUPT_STATUS);
        if status != 0 {
            self.write(REG_INTERRUPT_ACK, status);
        }
        status
    }

    /// Reads byte `offset` of the device-specific configuration space.
    pub fn config_byte(&self, offset: usize) -> u8 {
        // SAFETY: the configuration space follows the registers inside the window; byte
        // accesses are allowed there (virtio 1.2, 4.2.2.2).
        unsafe { read_volatile((self.base + REG_CONFIG + offset) as *const u8) }
    }
}
