//! virtio-net (virtio 1.2, section 5.1): one receive and one transmit queue, no offloads.
//!
//! Each queue entry is one buffer holding the virtio-net header and a whole Ethernet frame
//! (the device gets no mergeable buffers, no checksum or segmentation offload, so frames are
//! at most 1514 bytes and the header is all zeros on transmit). Receive buffers are posted
//! once and reposted as the stack returns them; transmit buffers cycle through a free list and
//! the device is asked for transmit interrupts only while every buffer is busy. Notifications
//! are batched: one per queue per [`NetDevice::flush`].

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use super::mmio::{SetupError, Transport};
use super::queue::{UsedError, Virtqueue};
use super::Found;
use crate::net::device::{DeviceCounters, Frame, NetDevice};

/// The virtio device type of a network card.
pub const DEVICE_ID: u32 = 1;
/// Feature: the configuration space holds the MAC address.
const F_MAC: u64 = 1 << 5;
/// Feature (legacy): the header need not sit in a descriptor of its own.
const F_ANY_LAYOUT: u64 = 1 << 27;
const RX_QUEUE: u16 = 0;
const TX_QUEUE: u16 = 1;
/// Entries per queue (fewer if the device allows fewer).
const QUEUE_SIZE: u16 = 256;
/// Bytes per buffer: a header and a 1514-byte frame fit.
const BUFFER_SIZE: usize = 1536;
/// The longest Ethernet frame carried (no VLAN tag, no FCS).
const MAX_FRAME: usize = 1514;
/// Shortest frame worth handing over: an Ethernet header.
const MIN_FRAME: usize = 14;
/// Device errors logged one by one before the driver only counts them.
const LOGGED_ERRORS: u64 = 8;

/// A virtio-net card.
pub struct VirtioNet {
    transport: Transport,
    rx: Virtqueue,
    tx: Virtqueue,
    /// Receive buffers by descriptor id: `None` while lent to the stack.
    rx_buffers: Vec<Option<Box<[u8]>>>,
    /// Transmit buffers by descriptor id: `None` while lent to the stack.
    tx_buffers: Vec<Option<Box<[u8]>>>,
    /// Transmit descriptors neither in flight nor lent.
    tx_free: Vec<u16>,
    /// Bytes of virtio-net header before each frame.
    header_len: usize,
    mac: [u8; 6],
    vector: u8,
    rx_unnotified: bool,
    tx_unnotified: bool,
    /// Whether transmit interrupts are requested (only while every buffer is busy).
    tx_interrupts: bool,
    counters: DeviceCounters,
    broken: bool,
}

impl VirtioNet {
    /// Brings up the first network card found, if any.
    pub fn find_first() -> Option<Result<VirtioNet, SetupError>> {
        super::find(DEVICE_ID).map(VirtioNet::new)
    }

    /// Brings up the card behind a discovered transport.
    pub fn new(found: Found) -> Result<VirtioNet, SetupError> {
        let Found {
            slot,
            mut transport,
            gsis,
            vector,
        } = found;
        let legacy = transport.is_legacy();
        let wanted = F_MAC | if legacy { F_ANY_LAYOUT } else { 0 };
        let features = transport.negotiate(wanted)?;
        let rx = transport.setup_queue(RX_QUEUE, QUEUE_SIZE)?;
        let tx = transport.setup_queue(TX_QUEUE, QUEUE_SIZE)?;
        if rx.layout().size < 2 || tx.layout().size < 2 {
            transport.fail();
            return Err(SetupError::QueueTooSmall);
        }
        let mac = if features & F_MAC != 0 {
            core::array::from_fn(|i| transport.config_byte(i))
        } else {
            // A locally administered address derived from the slot.
            [0x02, 0x6c, 0x69, 0x63, 0x00, slot as u8]
        };
        // Modern devices always use the 12-byte header (with num_buffers); legacy ones without
        // mergeable buffers the 10-byte one.
        let header_len = if legacy { 10 } else { 12 };
        let rx_size = rx.layout().size;
        let tx_size = tx.layout().size;
        let mut card = VirtioNet {
            transport,
            rx,
            tx,
            rx_buffers: (0..rx_size)
                .map(|_| Some(vec![0u8; BUFFER_SIZE].into_boxed_slice()))
                .collect(),
            tx_buffers: (0..tx_size)
                .map(|_| Some(vec![0u8; BUFFER_SIZE].into_boxed_slice()))
                .collect(),
            tx_free: (0..tx_size).rev().collect(),
            header_len,
            mac,
            vector,
            rx_unnotified: false,
            tx_unnotified: false,
            tx_interrupts: false,
            counters: DeviceCounters::default(),
            broken: false,
        };
        for id in 0..rx_size {
            card.post_rx(id);
        }
        card.rx.publish();
        card.tx.set_interrupts(false);
        card.transport
            .start(&gsis, vector)
            .map_err(SetupError::Interrupt)?;
        card.transport.notify(RX_QUEUE);
        crate::info!(
            "virtio-net: slot {slot} at {:#x} ({}), mac {}, gsi {gsis:?} -> vector {vector:#x}, {rx_size}+{tx_size} buffers",
            card.transport.base(),
            if legacy { "legacy" } else { "modern" },
            MacDisplay(mac),
        );
        Ok(card)
    }

    /// Posts receive buffer `id` (which must be home) to the device.
    fn post_rx(&mut self, id: u16) {
        let Some(buffer) = self.rx_buffers[usize::from(id)].as_mut() else {
            return;
        };
        let (addr, len) = (buffer.as_mut_ptr() as u64, buffer.len() as u32);
        if let Err(e) = self.rx.post(id, addr, len, true) {
            // Only a driver bug gets here: the id bookkeeping is the driver's own.
            crate::error!("virtio-net: cannot repost receive buffer: {e}");
            return;
        }
        self.rx_unnotified = true;
    }

    fn device_error(&mut self, queue: &str, e: UsedError) {
        self.counters.device_errors += 1;
        if self.counters.device_errors <= LOGGED_ERRORS {
            crate::warn!("virtio-net: bad {queue} ring entry: {e}");
        }
        if self.rx.is_broken() || self.tx.is_broken() {
            self.give_up();
        }
    }

    fn set_tx_interrupts(&mut self, enabled: bool) {
        if self.tx_interrupts != enabled {
            self.tx_interrupts = enabled;
            self.tx.set_interrupts(enabled);
        }
    }

    fn give_up(&mut self) {
        if !self.broken {
            self.broken = true;
            crate::error!("virtio-net: the device broke its rings; the card is disabled");
            self.transport.fail();
        }
    }

    /// Takes back transmit buffers the device is done with.
    fn reclaim_tx(&mut self) {
        while let Some(used) = self.tx.pop_used() {
            match used {
                Ok(used) => self.tx_free.push(used.id),
                Err(e @ UsedError::LengthTooLong { id, .. }) => {
                    // The buffer is back; only the length (meaningless for transmit) was wrong.
                    self.tx_free.push(id);
                    self.device_error("transmit", e);
                }
                Err(e) => self.device_error("transmit", e),
            }
        }
    }
}

impl NetDevice for VirtioNet {
    fn mac_address(&self) -> [u8; 6] {
        self.mac
    }

    fn interrupt_vector(&self) -> u8 {
        self.vector
    }

    fn handle_interrupt(&mut self) {
        self.transport.acknowledge_interrupt();
        self.reclaim_tx();
    }

    fn receive(&mut self) -> Option<Frame> {
        if self.broken {
            return None;
        }
        loop {
            let used = match self.rx.pop_used()? {
                Ok(used) => used,
                Err(e @ UsedError::LengthTooLong { id, .. }) => {
                    // The buffer is back, its contents untrustworthy: drop them, repost it.
                    self.device_error("receive", e);
                    self.post_rx(id);
                    continue;
                }
                Err(e) => {
                    self.device_error("receive", e);
                    if self.broken {
                        return None;
                    }
                    continue;
                }
            };
            let frame_len = (used.len as usize).saturating_sub(self.header_len);
            if !(MIN_FRAME..=MAX_FRAME).contains(&frame_len) {
                self.counters.rx_malformed += 1;
                self.post_rx(used.id);
                continue;
            }
            let Some(buffer) = self.rx_buffers[usize::from(used.id)].take() else {
                // In flight per the queue yet lent out per the driver: impossible by
                // construction (the queue refuses ids it does not hold).
                self.device_error("receive", UsedError::NotInFlight { id: used.id });
                continue;
            };
            self.counters.rx_frames += 1;
            self.counters.rx_bytes += frame_len as u64;
            return Some(Frame::new(buffer, used.id, self.header_len, frame_len));
        }
    }

    fn recycle(&mut self, frame: Frame) {
        let id = frame.id();
        let slot = &mut self.rx_buffers[usize::from(id)];
        if slot.is_some() {
            crate::error!("virtio-net: receive buffer {id} recycled twice");
            return;
        }
        *slot = Some(frame.into_buffer());
        self.post_rx(id);
        self.rx.publish();
    }

    fn transmit_buffer(&mut self) -> Option<Frame> {
        if !self.can_transmit() {
            return None;
        }
        let id = self.tx_free.pop()?;
        let buffer = self.tx_buffers[usize::from(id)].take()?;
        Some(Frame::new(buffer, id, self.header_len, 0))
    }

    fn can_transmit(&mut self) -> bool {
        if self.broken {
            return false;
        }
        if self.tx_free.is_empty() {
            self.reclaim_tx();
        }
        if self.tx_free.is_empty() {
            self.counters.tx_ring_full += 1;
            // Ask to be interrupted when buffers free up, then look once more (the device
            // may have finished some before it saw the request).
            self.set_tx_interrupts(true);
            self.reclaim_tx();
        } else {
            self.set_tx_interrupts(false);
        }
        !self.tx_free.is_empty()
    }

    fn discard_tx(&mut self, frame: Frame) {
        let id = frame.id();
        let slot = &mut self.tx_buffers[usize::from(id)];
        if slot.is_none() {
            *slot = Some(frame.into_buffer());
            self.tx_free.push(id);
        }
    }

    fn send(&mut self, frame: Frame) {
        let id = frame.id();
        let len = frame.len();
        let total = self.header_len + len;
        let slot = &mut self.tx_buffers[usize::from(id)];
        if slot.is_some() {
            crate::error!("virtio-net: transmit buffer {id} sent twice");
            return;
        }
        let buffer = slot.insert(frame.into_buffer());
        let addr = buffer.as_ptr() as u64;
        if let Err(e) = self.tx.post(id, addr, total as u32, false) {
            crate::error!("virtio-net: cannot post transmit buffer: {e}");
            self.tx_free.push(id);
            return;
        }
        self.tx.publish();
        self.tx_unnotified = true;
        self.counters.tx_frames += 1;
        self.counters.tx_bytes += len as u64;
    }

    fn flush(&mut self) {
        if self.broken {
            return;
        }
        if self.rx_unnotified {
            self.rx_unnotified = false;
            self.rx.publish();
            if self.rx.device_wants_notification() {
                self.transport.notify(RX_QUEUE);
            }
        }
        if self.tx_unnotified {
            self.tx_unnotified = false;
            if self.tx.device_wants_notification() {
                self.transport.notify(TX_QUEUE);
            }
        }
    }

    fn max_frame_len(&self) -> usize {
        MAX_FRAME
    }

    fn counters(&self) -> DeviceCounters {
        self.counters
    }

    fn is_broken(&self) -> bool {
        self.broken
    }
}

pub use crate::net::device::MacDisplay;
