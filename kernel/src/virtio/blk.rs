//! virtio-blk (virtio 1.2, section 5.2): one request queue, read, write, flush, device id.
//!
//! Each request is a chain of three descriptors in a fixed group (slot `i` owns descriptors
//! `3i..3i + 3`): a 16-byte header the device reads, the data, and one status byte the device
//! writes. Data moves through the driver's own buffers (one per slot, [`CHUNK`] bytes), never
//! the caller's; the shared engine ([`crate::block::requests`]) splits transfers into requests
//! that are all in flight at once and copes with callers that drop a future half-way.
//!
//! **What the device may corrupt, and what happens**: used-ring entries are validated by
//! [`Virtqueue`]; an entry that names something other than a slot's head, or breaks the ring
//! rules, makes the driver give up on the device ([`Error::Broken`] from then on: a disk that
//! lies about completions cannot be trusted with data). A status other than OK fails the
//! request with [`Error::Device`]. The configuration space (capacity, block size) is believed,
//! but every transfer is checked against it, and a block size that is not a power of two from
//! 512 to 64 KiB is ignored (512 is used).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use super::mmio::{SetupError, Transport};
use super::queue::{Segment, Virtqueue};
use super::Found;
use crate::block::requests::{Data, Op, RequestQueue, Requests};
use crate::block::{BlockDevice, Error, Geometry};

/// The virtio device type of a block device.
pub const DEVICE_ID: u32 = 2;
/// Feature: the device is read-only.
const F_RO: u64 = 1 << 5;
/// Feature: the configuration space holds the logical block size.
const F_BLK_SIZE: u64 = 1 << 6;
/// Feature: the device has a write cache and accepts flushes.
const F_FLUSH: u64 = 1 << 9;
const REQUEST_QUEUE: u16 = 0;
/// Descriptors per request: header, data, status.
const CHAIN: u16 = 3;
/// Most requests in flight at once.
const MAX_SLOTS: usize = 8;
/// Bytes of data per request.
pub const CHUNK: usize = 64 * 1024;
/// Request types.
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
/// Bytes of the device id string (GET_ID).
const ID_BYTES: usize = 20;
/// Status: success.
const S_OK: u8 = 0;
/// A status byte no device writes: the request has not completed.
const S_PENDING: u8 = 0xff;
/// virtio-blk addresses in 512-byte units whatever the block size.
const VIRTIO_SECTOR: u32 = 512;

/// The header and status of one request, in memory the device reads and writes.
#[repr(C, align(32))]
struct Meta {
    /// type, reserved, sector: little-endian, as the device reads them.
    header: [u8; 16],
    status: u8,
}

/// One request slot's memory.
struct Slot {
    meta: Box<Meta>,
    data: Box<[u8]>,
}

impl Slot {
    /// The status byte, as the device last wrote it.
    fn status(&self) -> u8 {
        // SAFETY: a plain byte inside this slot's allocation; volatile because the device
        // writes it behind the compiler's back.
        unsafe { core::ptr::read_volatile(&self.meta.status) }
    }
}

/// The device and its queue: the driver side of the request engine.
struct Device {
    transport: Transport,
    queue: Virtqueue,
    vector: u8,
    slots: Vec<Slot>,
    /// The device's sector size over virtio's 512-byte unit.
    scale: u64,
    broken: bool,
}

/// A virtio-blk disk.
pub struct VirtioBlk {
    device: Device,
    engine: Requests,
    geometry: Geometry,
    /// Whether the device has a write cache to flush.
    flushes: bool,
    /// The device's id string (QEMU: `-drive ...,serial=NAME`), if it has one.
    name: String,
}

impl VirtioBlk {
    /// Brings up every block device on this machine; the ones that fail are logged and
    /// skipped.
    pub fn find_all() -> Vec<VirtioBlk> {
        super::discover()
            .into_iter()
            .filter(|f| f.transport.device_id() == DEVICE_ID)
            .filter_map(|found| {
                let slot = found.slot;
                VirtioBlk::new(found)
                    .map_err(|e| crate::warn!("virtio-blk: slot {slot}: {e}"))
                    .ok()
            })
            .collect()
    }

    /// Brings up the disk behind a discovered transport (its id string is read later, by
    /// [`read_name`](Self::read_name), since that needs the executor).
    pub fn new(found: Found) -> Result<VirtioBlk, SetupError> {
        let Found {
            slot,
            mut transport,
            gsis,
            vector,
        } = found;
        let features = transport.negotiate(F_RO | F_BLK_SIZE | F_FLUSH)?;
        let queue = transport.setup_queue(REQUEST_QUEUE, 64)?;
        let slots = (usize::from(queue.layout().size) / usize::from(CHAIN)).min(MAX_SLOTS);
        if slots == 0 {
            transport.fail();
            return Err(SetupError::QueueTooSmall);
        }
        let config_u64 = |offset: usize| {
            u64::from_le_bytes(core::array::from_fn(|i| transport.config_byte(offset + i)))
        };
        let capacity = config_u64(0);
        let block_size = if features & F_BLK_SIZE != 0 {
            let raw = u32::from_le_bytes(core::array::from_fn(|i| transport.config_byte(20 + i)));
            sane_block_size(raw)
        } else {
            VIRTIO_SECTOR
        };
        let scale = u64::from(block_size / VIRTIO_SECTOR);
        let geometry = Geometry {
            sector_size: block_size,
            sectors: capacity / scale,
            read_only: features & F_RO != 0,
        };
        let mut device = Device {
            transport,
            queue,
            vector,
            slots: (0..slots)
                .map(|_| Slot {
                    meta: Box::new(Meta {
                        header: [0; 16],
                        status: S_PENDING,
                    }),
                    data: vec![0u8; CHUNK].into_boxed_slice(),
                })
                .collect(),
            scale,
            broken: false,
        };
        device.queue.set_interrupts(true);
        device
            .transport
            .start(&gsis, vector)
            .map_err(SetupError::Interrupt)?;
        let flushes = features & F_FLUSH != 0;
        crate::info!(
            "virtio-blk: slot {slot} at {:#x}, {} sectors of {} bytes{}{}",
            device.transport.base(),
            geometry.sectors,
            geometry.sector_size,
            if geometry.read_only {
                ", read-only"
            } else {
                ""
            },
            if flushes { ", write cache" } else { "" },
        );
        Ok(VirtioBlk {
            device,
            engine: Requests::new(slots),
            geometry,
            flushes,
            name: String::new(),
        })
    }

    /// Asks the device for its id string and remembers it as the disk's name.
    pub async fn read_name(&mut self) -> Result<&str, Error> {
        let mut id = [0u8; ID_BYTES];
        self.engine
            .run(&mut self.device, Op::Identify, 1, 0, Data::Into(&mut id))
            .await?;
        let end = id.iter().position(|&b| b == 0).unwrap_or(ID_BYTES);
        self.name = String::from_utf8_lossy(&id[..end]).into_owned();
        Ok(&self.name)
    }

    /// The disk's name (its device id string; empty if the device has none or it was not read).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Device {
    fn give_up(&mut self, why: impl fmt::Display) -> Error {
        if !self.broken {
            self.broken = true;
            crate::error!("virtio-blk: {why}; the disk is disabled");
            self.transport.fail();
        }
        Error::Broken
    }
}

impl RequestQueue for Device {
    fn slots(&self) -> usize {
        self.slots.len()
    }

    fn chunk(&self) -> usize {
        CHUNK
    }

    fn buffer(&mut self, slot: usize) -> &mut [u8] {
        &mut self.slots[slot].data
    }

    fn post(&mut self, index: usize, op: Op, sector: u64, len: usize) -> Result<(), Error> {
        if self.broken {
            return Err(Error::Broken);
        }
        let (kind, sector, device_writes) = match op {
            Op::Read => (T_IN, sector * self.scale, true),
            Op::Write => (T_OUT, sector * self.scale, false),
            Op::Flush => (T_FLUSH, 0, false),
            Op::Identify => (T_GET_ID, 0, true),
        };
        let slot = &mut self.slots[index];
        slot.meta.header[0..4].copy_from_slice(&kind.to_le_bytes());
        slot.meta.header[4..8].fill(0);
        slot.meta.header[8..16].copy_from_slice(&sector.to_le_bytes());
        slot.meta.status = S_PENDING;
        let meta = &*slot.meta as *const Meta as u64;
        let header = Segment {
            addr: meta,
            len: 16,
            device_writes: false,
        };
        let status = Segment {
            addr: meta + 16,
            len: 1,
            device_writes: true,
        };
        let data = Segment {
            addr: slot.data.as_ptr() as u64,
            len: len as u32,
            device_writes,
        };
        let head = index as u16 * CHAIN;
        let posted = if len == 0 {
            self.queue.post_chain(head, &[header, status])
        } else {
            self.queue.post_chain(head, &[header, data, status])
        };
        // Only a driver bug gets an error here: the engine posts only free slots.
        posted.map_err(|e| self.give_up(e))
    }

    fn kick(&mut self) {
        self.queue.publish();
        if self.queue.device_wants_notification() {
            self.transport.notify(REQUEST_QUEUE);
        }
    }

    fn reap(&mut self, done: &mut dyn FnMut(usize, Result<(), Error>)) -> Result<(), Error> {
        if self.broken {
            return Err(Error::Broken);
        }
        while let Some(used) = self.queue.pop_used() {
            let used = match used {
                Ok(used) => used,
                Err(e) => return Err(self.give_up(e)),
            };
            let index = usize::from(used.id / CHAIN);
            if used.id % CHAIN != 0 || index >= self.slots.len() {
                return Err(self.give_up("a completion names no request"));
            }
            let result = match self.slots[index].status() {
                S_OK => Ok(()),
                S_PENDING => return Err(self.give_up("a request completed without a status")),
                status => Err(Error::Device(i32::from(status))),
            };
            done(index, result);
        }
        Ok(())
    }

    async fn wait(&mut self) {
        crate::irq::wait(self.vector).await;
        self.transport.acknowledge_interrupt();
    }

    fn broken(&self) -> bool {
        self.broken
    }
}

/// The block size the driver uses for a size the device reports.
fn sane_block_size(raw: u32) -> u32 {
    if raw.is_power_of_two() && (VIRTIO_SECTOR..=65536).contains(&raw) {
        raw
    } else {
        VIRTIO_SECTOR
    }
}

impl BlockDevice for VirtioBlk {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    async fn read(&mut self, sector: u64, buffer: &mut [u8]) -> Result<(), Error> {
        let geometry = self.geometry;
        self.engine
            .read(&mut self.device, &geometry, sector, buffer)
            .await
    }

    async fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), Error> {
        let geometry = self.geometry;
        self.engine
            .write(&mut self.device, &geometry, sector, data)
            .await
    }

    async fn flush(&mut self) -> Result<(), Error> {
        let geometry = self.geometry;
        let write_cache = self.flushes;
        self.engine
            .flush(&mut self.device, &geometry, write_cache)
            .await
    }
}
