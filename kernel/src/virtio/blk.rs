//! virtio-blk (virtio 1.2, section 5.2): one request queue, read, write, flush, device id.
//!
//! Each request is a chain of three descriptors in a fixed group (slot `i` owns descriptors
//! `3i..3i + 3`): a 16-byte header the device reads, the data, and one status byte the device
//! writes. Data moves through the driver's own buffers (one per slot, [`CHUNK`] bytes), never
//! the caller's: a caller may drop a request's future at any time, and the device must never
//! write into memory that went back to the heap. Large transfers are split into chunks that
//! are all in flight at once.
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

use super::mmio::{Transport, TransportError};
use super::queue::{Segment, Virtqueue};
use super::Found;
use crate::block::{self, BlockDevice, Error, Geometry};

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
/// A slot's operation number once its request completed, until [`VirtioBlk::collect`].
const DONE: u64 = u64::MAX;
/// virtio-blk addresses in 512-byte units whatever the block size.
const VIRTIO_SECTOR: u32 = 512;

/// Why a virtio-blk device could not be brought up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlkError {
    /// The transport failed.
    Transport(TransportError),
    /// The interrupt line could not be routed.
    Interrupt(crate::arch::ioapic::RouteError),
    /// The queue is too small for one request.
    QueueTooSmall,
}

impl fmt::Display for BlkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlkError::Transport(e) => write!(f, "virtio transport: {e}"),
            BlkError::Interrupt(e) => write!(f, "interrupt routing: {e}"),
            BlkError::QueueTooSmall => f.write_str("virtqueue too small"),
        }
    }
}

impl From<TransportError> for BlkError {
    fn from(e: TransportError) -> Self {
        BlkError::Transport(e)
    }
}

/// The header and status of one request, in memory the device reads and writes.
#[repr(C, align(32))]
struct Meta {
    /// type, reserved, sector: little-endian, as the device reads them.
    header: [u8; 16],
    status: u8,
}

/// One request's resources and what it is doing.
struct Slot {
    meta: Box<Meta>,
    data: Box<[u8]>,
    /// The operation this slot serves (0: free). Completions of an operation whose future was
    /// dropped are recognised by this number and discarded.
    operation: u64,
    /// For reads: where the chunk goes in the caller's buffer.
    target: core::ops::Range<usize>,
}

impl Slot {
    /// The status byte, as the device last wrote it.
    fn status(&self) -> u8 {
        // SAFETY: a plain byte inside this slot's allocation; volatile because the device
        // writes it behind the compiler's back.
        unsafe { core::ptr::read_volatile(&self.meta.status) }
    }
}

/// A virtio-blk disk.
pub struct VirtioBlk {
    transport: Transport,
    queue: Virtqueue,
    vector: u8,
    geometry: Geometry,
    /// Whether the device has a write cache to flush.
    flushes: bool,
    slots: Vec<Slot>,
    /// Number of the current operation; slots name it while they work for it.
    operation: u64,
    broken: bool,
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
    pub fn new(found: Found) -> Result<VirtioBlk, BlkError> {
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
            return Err(BlkError::QueueTooSmall);
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
        let geometry = Geometry {
            sector_size: block_size,
            sectors: capacity / u64::from(block_size / VIRTIO_SECTOR),
            read_only: features & F_RO != 0,
        };
        let mut disk = VirtioBlk {
            transport,
            queue,
            vector,
            geometry,
            flushes: features & F_FLUSH != 0,
            slots: (0..slots)
                .map(|_| Slot {
                    meta: Box::new(Meta {
                        header: [0; 16],
                        status: S_PENDING,
                    }),
                    data: vec![0u8; CHUNK].into_boxed_slice(),
                    operation: 0,
                    target: 0..0,
                })
                .collect(),
            operation: 0,
            broken: false,
            name: String::new(),
        };
        disk.queue.set_interrupts(true);
        disk.transport
            .start(&gsis, vector)
            .map_err(BlkError::Interrupt)?;
        crate::info!(
            "virtio-blk: slot {slot} at {:#x}, {} sectors of {} bytes{}{}",
            disk.transport.base(),
            geometry.sectors,
            geometry.sector_size,
            if geometry.read_only {
                ", read-only"
            } else {
                ""
            },
            if disk.flushes { ", write cache" } else { "" },
        );
        Ok(disk)
    }

    /// Asks the device for its id string and remembers it as the disk's name.
    pub async fn read_name(&mut self) -> Result<&str, Error> {
        let operation = self.begin()?;
        let index = self.idle_slot().await?;
        self.slots[index].target = 0..0;
        self.post(index, operation, T_GET_ID, 0, ID_BYTES, true)?;
        self.kick();
        self.collect(&mut [], true).await?;
        let id = &self.slots[index].data[..ID_BYTES];
        let end = id.iter().position(|&b| b == 0).unwrap_or(ID_BYTES);
        self.name = String::from_utf8_lossy(&id[..end]).into_owned();
        Ok(&self.name)
    }

    /// The disk's name (its device id string; empty if the device has none or it was not read).
    pub fn name(&self) -> &str {
        &self.name
    }

    fn free_slot(&self) -> Option<usize> {
        self.slots.iter().position(|s| s.operation == 0)
    }

    /// A free slot, once requests of earlier (dropped) operations have made room.
    async fn idle_slot(&mut self) -> Result<usize, Error> {
        loop {
            if let Some(index) = self.free_slot() {
                return Ok(index);
            }
            crate::irq::wait(self.vector).await;
            self.transport.acknowledge_interrupt();
            self.reap()?;
        }
    }

    /// Posts slot `index`'s request: `kind` at virtio sector `sector`, `len` data bytes
    /// (already in the slot's buffer for writes).
    fn post(
        &mut self,
        index: usize,
        operation: u64,
        kind: u32,
        sector: u64,
        len: usize,
        device_writes: bool,
    ) -> Result<(), Error> {
        let slot = &mut self.slots[index];
        slot.meta.header[0..4].copy_from_slice(&kind.to_le_bytes());
        slot.meta.header[4..8].fill(0);
        slot.meta.header[8..16].copy_from_slice(&sector.to_le_bytes());
        slot.meta.status = S_PENDING;
        slot.operation = operation;
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
        posted.map_err(|e| {
            // Only a driver bug gets here: the slot was free by the driver's own books.
            crate::error!("virtio-blk: cannot post request: {e}");
            Error::Broken
        })
    }

    fn kick(&mut self) {
        self.queue.publish();
        if self.queue.device_wants_notification() {
            self.transport.notify(REQUEST_QUEUE);
        }
    }

    fn give_up(&mut self, why: impl fmt::Display) -> Error {
        if !self.broken {
            self.broken = true;
            crate::error!("virtio-blk {}: {why}; the disk is disabled", self.name);
            self.transport.fail();
        }
        Error::Broken
    }

    /// Takes every completed request off the used ring. Completions of older operations are
    /// discarded (the slot is free again); those of the current one become [`DONE`].
    fn reap(&mut self) -> Result<(), Error> {
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
            let slot = &mut self.slots[index];
            if slot.operation != self.operation {
                slot.operation = 0;
            } else if slot.status() == S_PENDING {
                return Err(self.give_up("a request completed without a status"));
            } else {
                // Done: `collect` copies its data and frees the slot.
                slot.operation = DONE;
            }
        }
        Ok(())
    }

    /// Starts a new operation: forgets completions nobody collected (their future was
    /// dropped) and takes finished requests off the ring. Returns the operation's number.
    fn begin(&mut self) -> Result<u64, Error> {
        self.operation += 1;
        for slot in self.slots.iter_mut().filter(|s| s.operation == DONE) {
            slot.operation = 0;
        }
        self.reap()?;
        Ok(self.operation)
    }

    /// Collects the current operation's completed requests, copying read data into `buffer`,
    /// until all of them completed (`all`) or at least one slot is free; the first failing
    /// status wins.
    async fn collect(&mut self, buffer: &mut [u8], all: bool) -> Result<(), Error> {
        let mut result = Ok(());
        loop {
            self.reap()?;
            for slot in self.slots.iter_mut().filter(|s| s.operation == DONE) {
                slot.operation = 0;
                let status = slot.status();
                if status != S_OK {
                    result = result.and(Err(Error::Device(i32::from(status))));
                } else if let Some(out) = buffer.get_mut(slot.target.clone()) {
                    out.copy_from_slice(&slot.data[..slot.target.len()]);
                }
            }
            let finished = if all {
                !self.slots.iter().any(|s| s.operation == self.operation)
            } else {
                self.free_slot().is_some()
            };
            if finished {
                return result;
            }
            crate::irq::wait(self.vector).await;
            self.transport.acknowledge_interrupt();
        }
    }

    /// Moves `len` bytes at `sector`: into `read` if given, else out of `write`.
    async fn transfer(
        &mut self,
        sector: u64,
        mut read: Option<&mut [u8]>,
        write: Option<&[u8]>,
    ) -> Result<(), Error> {
        let len = read.as_ref().map_or(0, |b| b.len()) + write.map_or(0, |b| b.len());
        self.geometry.check(sector, len)?;
        if write.is_some() && self.geometry.read_only {
            return Err(Error::ReadOnly);
        }
        let operation = self.begin()?;
        let scale = u64::from(self.geometry.sector_size / VIRTIO_SECTOR);
        let mut pieces = block::chunks(self.geometry.sector_size, sector, len, CHUNK).peekable();
        let mut result = Ok(());
        while pieces.peek().is_some() {
            while let Some(index) = self.free_slot() {
                let Some((at, range)) = pieces.next() else {
                    break;
                };
                let slot = &mut self.slots[index];
                if let Some(data) = write {
                    slot.data[..range.len()].copy_from_slice(&data[range.clone()]);
                }
                let chunk = range.len();
                slot.target = if read.is_some() { range } else { 0..0 };
                let kind = if read.is_some() { T_IN } else { T_OUT };
                self.post(index, operation, kind, at * scale, chunk, read.is_some())?;
            }
            self.kick();
            if pieces.peek().is_some() {
                // Every slot is busy: let some finish before posting the rest.
                let buffer = read.as_deref_mut().unwrap_or(&mut []);
                result = result.and(self.collect(buffer, false).await);
            }
        }
        let last = self.collect(read.unwrap_or(&mut []), true).await;
        result.and(last)
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
        self.transfer(sector, Some(buffer), None).await
    }

    async fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), Error> {
        self.transfer(sector, None, Some(data)).await
    }

    async fn flush(&mut self) -> Result<(), Error> {
        if !self.flushes {
            // No write cache: the specification has such a device write through.
            return if self.broken {
                Err(Error::Broken)
            } else {
                Ok(())
            };
        }
        let operation = self.begin()?;
        let index = self.idle_slot().await?;
        self.slots[index].target = 0..0;
        self.post(index, operation, T_FLUSH, 0, 0, false)?;
        self.kick();
        self.collect(&mut [], true).await
    }
}
