//! Split virtqueues (virtio 1.2, section 2.7) with chains of consecutive descriptors.
//!
//! The driver owns the descriptor table and the available ring; the device owns the used ring.
//! Everything read back from the used ring is validated before it is believed: the index may
//! advance by at most the queue size, each entry must name a descriptor the driver actually
//! handed over as the head of a chain (and not yet got back), and the length written must fit
//! the chain's device-writable buffers. A device that
//! breaks a rule gets a [`UsedError`], never a wild memory access.
//!
//! Layout in one zeroed allocation (the legacy MMIO layout, which modern devices accept too):
//! the descriptor table at 0, the available ring right after it, the used ring at the next
//! page boundary.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{fence, Ordering};

/// Alignment of the used ring (the legacy transport's `QueueAlign`).
pub const USED_ALIGN: usize = 4096;
/// Descriptor flag: the chain continues in the descriptor named by `next`.
const DESC_F_NEXT: u16 = 1;
/// Descriptor flag: the device writes into this buffer.
const DESC_F_WRITE: u16 = 2;
/// Available-ring flag: the driver does not want interrupts for this queue.
const AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Used-ring flag: the device does not want notifications for this queue.
const USED_F_NO_NOTIFY: u16 = 1;
const DESCRIPTOR_SIZE: usize = 16;

/// Where a queue's three parts sit, relative to its base, for `size` entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Number of entries (a power of two).
    pub size: u16,
    /// Offset of the available ring.
    pub avail: usize,
    /// Offset of the used ring.
    pub used: usize,
    /// Bytes the whole queue needs.
    pub total: usize,
}

impl Layout {
    /// The layout of a queue of `size` entries; `None` unless `size` is a power of two.
    pub fn new(size: u16) -> Option<Layout> {
        if !size.is_power_of_two() {
            return None;
        }
        let n = usize::from(size);
        let avail = n * DESCRIPTOR_SIZE;
        // flags, idx, ring[n], used_event
        let avail_end = avail + 4 + 2 * n + 2;
        let used = avail_end.div_ceil(USED_ALIGN) * USED_ALIGN;
        // flags, idx, ring[n] of (id: u32, len: u32), avail_event
        let total = used + 4 + 8 * n + 2;
        Some(Layout {
            size,
            avail,
            used,
            total,
        })
    }
}

/// A buffer the device has finished with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Used {
    /// The descriptor (and buffer) id.
    pub id: u16,
    /// Bytes the device wrote into it (0 for buffers it only read).
    pub len: u32,
}

/// A used-ring entry or index that breaks the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsedError {
    /// The used index moved further than there are descriptors in flight.
    IndexRunaway {
        /// Entries the index claims are new.
        claimed: u16,
        /// Descriptors actually in flight.
        in_flight: u16,
    },
    /// The entry names a descriptor outside the table.
    IdOutOfRange {
        /// The id found.
        id: u32,
    },
    /// The entry names a descriptor the device does not own.
    NotInFlight {
        /// The id found.
        id: u16,
    },
    /// The written length exceeds the buffer.
    LengthTooLong {
        /// The id found.
        id: u16,
        /// The length claimed.
        len: u32,
        /// The buffer's size.
        capacity: u32,
    },
}

impl fmt::Display for UsedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            UsedError::IndexRunaway { claimed, in_flight } => write!(
                f,
                "used index advanced by {claimed} with only {in_flight} buffers in flight"
            ),
            UsedError::IdOutOfRange { id } => write!(f, "used entry names descriptor {id}, outside the table"),
            UsedError::NotInFlight { id } => write!(f, "used entry names descriptor {id}, which the device does not own"),
            UsedError::LengthTooLong { id, len, capacity } => write!(
                f,
                "used entry for descriptor {id} claims {len} bytes written into a {capacity}-byte buffer"
            ),
        }
    }
}

/// Why a buffer could not be handed to the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostError {
    /// The id is outside the descriptor table.
    IdOutOfRange(u16),
    /// The descriptor is already with the device.
    AlreadyInFlight(u16),
    /// A chain without buffers.
    EmptyChain,
}

impl fmt::Display for PostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PostError::IdOutOfRange(id) => write!(f, "descriptor {id} is outside the table"),
            PostError::AlreadyInFlight(id) => write!(f, "descriptor {id} is already in flight"),
            PostError::EmptyChain => f.write_str("a chain needs at least one buffer"),
        }
    }
}

/// One buffer of a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Guest-physical address.
    pub addr: u64,
    /// Bytes.
    pub len: u32,
    /// Whether the device writes into it (else it only reads it).
    pub device_writes: bool,
}

/// One split virtqueue whose chains are runs of consecutive descriptors, named by their first
/// (the head) and chosen by the driver.
pub struct Virtqueue {
    base: *mut u8,
    layout: Layout,
    /// For the head of each chain in flight: the capacity the device may write (at least 1);
    /// 0 for a free descriptor or one inside a chain.
    in_flight: Vec<u32>,
    /// For the head of each chain in flight: its descriptors; 0 for a free descriptor; for a
    /// descriptor inside a chain, `u16::MAX` (busy, but not a head).
    chain_len: Vec<u16>,
    /// Chains in flight.
    in_flight_count: u16,
    /// Next available-ring index to publish (the driver's copy of `avail.idx`).
    avail_idx: u16,
    /// Next used-ring index to read.
    last_used: u16,
    /// Set once the device broke the used-ring index rules: the queue is then dead.
    broken: bool,
}

impl Virtqueue {
    /// Takes over the zeroed queue memory at `base` (see [`Layout`]).
    ///
    /// # Safety
    /// `base` must point to `layout.total` bytes of zeroed memory, aligned to a page, that
    /// nothing but this queue and its device touches for as long as the queue lives.
    pub unsafe fn new(base: *mut u8, layout: Layout) -> Virtqueue {
        Virtqueue {
            base,
            layout,
            in_flight: vec![0; usize::from(layout.size)],
            chain_len: vec![0; usize::from(layout.size)],
            in_flight_count: 0,
            avail_idx: 0,
            last_used: 0,
            broken: false,
        }
    }

    /// The queue's layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Address of the descriptor table (also the queue's base).
    pub fn descriptor_table(&self) -> u64 {
        self.base as u64
    }

    /// Address of the available ring.
    pub fn avail_ring(&self) -> u64 {
        self.base as u64 + self.layout.avail as u64
    }

    /// Address of the used ring.
    pub fn used_ring(&self) -> u64 {
        self.base as u64 + self.layout.used as u64
    }

    /// Chains (buffers, for single-buffer chains) currently owned by the device.
    pub fn in_flight(&self) -> u16 {
        self.in_flight_count
    }

    /// Whether the device broke the used-index rules (the queue is then unusable).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    fn write_u16(&mut self, offset: usize, value: u16) {
        debug_assert!(offset + 2 <= self.layout.total);
        // SAFETY: `offset` lies inside the queue memory that `new`'s caller handed over.
        unsafe { write_volatile(self.base.add(offset).cast::<u16>(), value) }
    }

    fn read_u16(&self, offset: usize) -> u16 {
        debug_assert!(offset + 2 <= self.layout.total);
        // SAFETY: as for `write_u16`.
        unsafe { read_volatile(self.base.add(offset).cast::<u16>()) }
    }

    fn read_u32(&self, offset: usize) -> u32 {
        debug_assert!(offset + 4 <= self.layout.total);
        // SAFETY: as for `write_u16`.
        unsafe { read_volatile(self.base.add(offset).cast::<u32>()) }
    }

    /// Hands the buffer `addr..addr + len` to the device as descriptor `id`; the device may
    /// write into it when `device_writes`. The device sees it at the next [`publish`](Self::publish).
    pub fn post(
        &mut self,
        id: u16,
        addr: u64,
        len: u32,
        device_writes: bool,
    ) -> Result<(), PostError> {
        self.post_chain(
            id,
            &[Segment {
                addr,
                len,
                device_writes,
            }],
        )
    }

    /// Hands `segments` to the device as one chain in descriptors `head`, `head + 1`, ...
    /// (all of them must be free). The used entry names `head`.
    pub fn post_chain(&mut self, head: u16, segments: &[Segment]) -> Result<(), PostError> {
        let count = u16::try_from(segments.len()).map_err(|_| PostError::IdOutOfRange(head))?;
        if count == 0 {
            return Err(PostError::EmptyChain);
        }
        for i in 0..count {
            let id = head.checked_add(i).ok_or(PostError::IdOutOfRange(head))?;
            match self.chain_len.get(usize::from(id)) {
                None => return Err(PostError::IdOutOfRange(id)),
                Some(&0) => {}
                Some(_) => return Err(PostError::AlreadyInFlight(id)),
            }
        }
        let mut writable = 0u32;
        for (i, segment) in segments.iter().enumerate() {
            let id = usize::from(head) + i;
            let last = i + 1 == segments.len();
            let mut flags = if segment.device_writes {
                DESC_F_WRITE
            } else {
                0
            };
            if !last {
                flags |= DESC_F_NEXT;
            }
            if segment.device_writes {
                writable = writable.saturating_add(segment.len);
            }
            // SAFETY: descriptor `id` lies inside the table (checked above), in the queue memory.
            unsafe {
                let d = self.base.add(id * DESCRIPTOR_SIZE);
                write_volatile(d.cast::<u64>(), segment.addr);
                write_volatile(d.add(8).cast::<u32>(), segment.len);
                write_volatile(d.add(12).cast::<u16>(), flags);
                write_volatile(
                    d.add(14).cast::<u16>(),
                    if last { 0 } else { id as u16 + 1 },
                );
            }
            self.chain_len[id] = u16::MAX;
        }
        let ring_slot = usize::from(self.avail_idx & (self.layout.size - 1));
        self.write_u16(self.layout.avail + 4 + 2 * ring_slot, head);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.in_flight[usize::from(head)] = writable.max(1);
        self.chain_len[usize::from(head)] = count;
        self.in_flight_count += 1;
        Ok(())
    }

    /// Makes every posted buffer visible to the device.
    pub fn publish(&mut self) {
        // The descriptors and ring entries must be visible before the index that covers them.
        fence(Ordering::Release);
        self.write_u16(self.layout.avail + 2, self.avail_idx);
        // The index must be visible before the device is notified (or reads its flags).
        fence(Ordering::SeqCst);
    }

    /// Whether the device wants to be notified of new buffers.
    pub fn device_wants_notification(&self) -> bool {
        self.read_u16(self.layout.used) & USED_F_NO_NOTIFY == 0
    }

    /// Asks the device for (or spares it) interrupts when it uses buffers; a hint it may ignore.
    pub fn set_interrupts(&mut self, enabled: bool) {
        let flags = if enabled { 0 } else { AVAIL_F_NO_INTERRUPT };
        self.write_u16(self.layout.avail, flags);
    }

    /// Whether the device has used buffers not yet taken.
    pub fn has_used(&self) -> bool {
        !self.broken && self.read_u16(self.layout.used + 2) != self.last_used
    }

    /// Takes the next used buffer, validated; `None` when there is none. After an
    /// [`UsedError::IndexRunaway`] the queue is broken and yields nothing more.
    pub fn pop_used(&mut self) -> Option<Result<Used, UsedError>> {
        if self.broken {
            return None;
        }
        let used_idx = self.read_u16(self.layout.used + 2);
        let claimed = used_idx.wrapping_sub(self.last_used);
        if claimed == 0 {
            return None;
        }
        if claimed > self.in_flight_count {
            self.broken = true;
            return Some(Err(UsedError::IndexRunaway {
                claimed,
                in_flight: self.in_flight_count,
            }));
        }
        // Read the entry only after the index that covers it.
        fence(Ordering::Acquire);
        let ring_slot = usize::from(self.last_used & (self.layout.size - 1));
        let entry = self.layout.used + 4 + 8 * ring_slot;
        let raw_id = self.read_u32(entry);
        let len = self.read_u32(entry + 4);
        self.last_used = self.last_used.wrapping_add(1);
        let id = match u16::try_from(raw_id) {
            Ok(id) if id < self.layout.size => id,
            _ => return Some(Err(UsedError::IdOutOfRange { id: raw_id })),
        };
        let capacity = self.in_flight[usize::from(id)];
        if capacity == 0 {
            return Some(Err(UsedError::NotInFlight { id }));
        }
        let head = usize::from(id);
        let count = usize::from(self.chain_len[head]);
        self.in_flight[head] = 0;
        self.chain_len[head..head + count].fill(0);
        self.in_flight_count -= 1;
        if len > capacity {
            return Some(Err(UsedError::LengthTooLong { id, len, capacity }));
        }
        Some(Ok(Used { id, len }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{alloc_zeroed, dealloc, Layout as AllocLayout};

    /// Queue memory on the host, plus the device's side of the rings.
    struct FakeDevice {
        memory: *mut u8,
        alloc: AllocLayout,
        layout: Layout,
        used_idx: u16,
        next_avail: u16,
    }

    impl FakeDevice {
        fn new(size: u16) -> (FakeDevice, Virtqueue) {
            let layout = Layout::new(size).unwrap();
            let alloc = AllocLayout::from_size_align(layout.total, 4096).unwrap();
            // SAFETY: non-zero size.
            let memory = unsafe { alloc_zeroed(alloc) };
            assert!(!memory.is_null());
            // SAFETY: fresh zeroed page-aligned memory, freed only after the queue is dropped
            // (the test keeps both alive together).
            let queue = unsafe { Virtqueue::new(memory, layout) };
            (
                FakeDevice {
                    memory,
                    alloc,
                    layout,
                    used_idx: 0,
                    next_avail: 0,
                },
                queue,
            )
        }

        fn u16_at(&self, offset: usize) -> u16 {
            // SAFETY: inside the allocation.
            unsafe { read_volatile(self.memory.add(offset).cast::<u16>()) }
        }

        /// The next buffer the driver made available: (id, addr, len, writable).
        fn take_avail(&mut self) -> Option<(u16, u64, u32, bool)> {
            if self.u16_at(self.layout.avail + 2) == self.next_avail {
                return None;
            }
            let slot = usize::from(self.next_avail % self.layout.size);
            let id = self.u16_at(self.layout.avail + 4 + 2 * slot);
            self.next_avail = self.next_avail.wrapping_add(1);
            let d = usize::from(id) * DESCRIPTOR_SIZE;
            // SAFETY: inside the allocation.
            let (addr, len) = unsafe {
                (
                    read_volatile(self.memory.add(d).cast::<u64>()),
                    read_volatile(self.memory.add(d + 8).cast::<u32>()),
                )
            };
            let flags = self.u16_at(d + 12);
            Some((id, addr, len, flags & DESC_F_WRITE != 0))
        }

        /// Writes a used entry (any values: this device may lie) and advances the index.
        fn push_used(&mut self, id: u32, len: u32) {
            let slot = usize::from(self.used_idx % self.layout.size);
            let entry = self.layout.used + 4 + 8 * slot;
            self.used_idx = self.used_idx.wrapping_add(1);
            // SAFETY: inside the allocation.
            unsafe {
                write_volatile(self.memory.add(entry).cast::<u32>(), id);
                write_volatile(self.memory.add(entry + 4).cast::<u32>(), len);
                write_volatile(
                    self.memory.add(self.layout.used + 2).cast::<u16>(),
                    self.used_idx,
                );
            }
        }

        fn set_used_idx(&mut self, idx: u16) {
            self.used_idx = idx;
            // SAFETY: inside the allocation.
            unsafe { write_volatile(self.memory.add(self.layout.used + 2).cast::<u16>(), idx) }
        }
    }

    impl Drop for FakeDevice {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with this layout.
            unsafe { dealloc(self.memory, self.alloc) }
        }
    }

    #[test]
    fn layout_matches_the_legacy_formula() {
        let l = Layout::new(256).unwrap();
        assert_eq!((l.avail, l.used), (4096, 8192));
        assert_eq!(l.total, 8192 + 4 + 8 * 256 + 2);
        assert_eq!(Layout::new(8).unwrap().used, 4096);
        assert!(Layout::new(0).is_none() && Layout::new(100).is_none());
    }

    #[test]
    fn round_trip_in_order_and_out_of_order() {
        let (mut dev, mut q) = FakeDevice::new(8);
        for id in 0..4 {
            q.post(id, 0x1000 * u64::from(id), 2048, true).unwrap();
        }
        assert_eq!(dev.take_avail(), None, "nothing visible before publish");
        q.publish();
        let seen: Vec<_> = std::iter::from_fn(|| dev.take_avail()).collect();
        assert_eq!(seen.len(), 4);
        assert_eq!(seen[2], (2, 0x2000, 2048, true));
        dev.push_used(3, 60);
        dev.push_used(0, 1514);
        assert!(q.has_used());
        assert_eq!(q.pop_used(), Some(Ok(Used { id: 3, len: 60 })));
        assert_eq!(q.pop_used(), Some(Ok(Used { id: 0, len: 1514 })));
        assert_eq!(q.pop_used(), None);
        assert_eq!(q.in_flight(), 2);
        // Reposting a returned id is fine; reposting one in flight is refused.
        q.post(3, 0x3000, 2048, true).unwrap();
        assert_eq!(q.post(1, 0, 1, true), Err(PostError::AlreadyInFlight(1)));
        assert_eq!(q.post(8, 0, 1, true), Err(PostError::IdOutOfRange(8)));
    }

    #[test]
    fn ring_indices_wrap() {
        let (mut dev, mut q) = FakeDevice::new(4);
        for round in 0..70_000u32 {
            let id = (round % 4) as u16;
            q.post(id, 0, 64, false).unwrap();
            q.publish();
            let (got, ..) = dev.take_avail().unwrap();
            assert_eq!(got, id);
            dev.push_used(u32::from(got), 0);
            assert_eq!(q.pop_used(), Some(Ok(Used { id, len: 0 })));
        }
    }

    #[test]
    fn hostile_entries_are_errors_not_crashes() {
        let (mut dev, mut q) = FakeDevice::new(8);
        q.post(1, 0, 100, true).unwrap();
        q.post(2, 0, 100, true).unwrap();
        q.post(4, 0, 100, true).unwrap();
        q.publish();
        dev.push_used(9999, 10);
        assert_eq!(
            q.pop_used(),
            Some(Err(UsedError::IdOutOfRange { id: 9999 }))
        );
        dev.push_used(5, 10);
        assert_eq!(q.pop_used(), Some(Err(UsedError::NotInFlight { id: 5 })));
        dev.push_used(1, 101);
        assert_eq!(
            q.pop_used(),
            Some(Err(UsedError::LengthTooLong {
                id: 1,
                len: 101,
                capacity: 100
            }))
        );
        assert_eq!(
            q.in_flight(),
            2,
            "a too-long entry still returns the buffer"
        );
        dev.push_used(2, 100);
        dev.push_used(2, 100);
        assert_eq!(q.pop_used(), Some(Ok(Used { id: 2, len: 100 })));
        assert_eq!(
            q.pop_used(),
            Some(Err(UsedError::NotInFlight { id: 2 })),
            "the same buffer returned twice"
        );
        assert!(!q.is_broken());
    }

    #[test]
    fn runaway_index_breaks_the_queue() {
        let (mut dev, mut q) = FakeDevice::new(8);
        q.post(0, 0, 100, true).unwrap();
        q.publish();
        dev.set_used_idx(5);
        assert_eq!(
            q.pop_used(),
            Some(Err(UsedError::IndexRunaway {
                claimed: 5,
                in_flight: 1
            }))
        );
        assert!(q.is_broken());
        assert_eq!(q.pop_used(), None);
        assert!(!q.has_used());
    }

    #[test]
    fn chains_are_linked_and_returned_whole() {
        let (mut dev, mut q) = FakeDevice::new(8);
        let seg = |addr, len, device_writes| Segment {
            addr,
            len,
            device_writes,
        };
        q.post_chain(
            2,
            &[
                seg(0x100, 16, false),
                seg(0x1000, 512, true),
                seg(0x200, 1, true),
            ],
        )
        .unwrap();
        assert_eq!(q.post(3, 0, 1, true), Err(PostError::AlreadyInFlight(3)));
        assert_eq!(
            q.post_chain(6, &[seg(0, 1, false); 3]),
            Err(PostError::IdOutOfRange(8))
        );
        assert_eq!(q.post_chain(0, &[]), Err(PostError::EmptyChain));
        q.publish();
        let (head, addr, len, writes) = dev.take_avail().unwrap();
        assert_eq!((head, addr, len, writes), (2, 0x100, 16, false));
        assert_eq!(dev.u16_at(2 * DESCRIPTOR_SIZE + 12), DESC_F_NEXT);
        assert_eq!(dev.u16_at(2 * DESCRIPTOR_SIZE + 14), 3);
        assert_eq!(
            dev.u16_at(3 * DESCRIPTOR_SIZE + 12),
            DESC_F_NEXT | DESC_F_WRITE
        );
        assert_eq!(dev.u16_at(4 * DESCRIPTOR_SIZE + 12), DESC_F_WRITE);
        // A used entry naming a descriptor inside the chain is refused; the head is accepted
        // with up to the writable capacity (512 + 1).
        dev.push_used(3, 1);
        assert_eq!(q.pop_used(), Some(Err(UsedError::NotInFlight { id: 3 })));
        dev.push_used(2, 514);
        assert_eq!(
            q.pop_used(),
            Some(Err(UsedError::LengthTooLong {
                id: 2,
                len: 514,
                capacity: 513
            }))
        );
        // The whole chain is free again.
        assert_eq!(q.in_flight(), 0);
        q.post_chain(2, &[seg(0, 1, false); 3]).unwrap();
        q.publish();
        dev.take_avail().unwrap();
        dev.push_used(2, 0);
        assert_eq!(q.pop_used(), Some(Ok(Used { id: 2, len: 0 })));
    }

    #[test]
    fn flags_reach_the_device() {
        let (dev, mut q) = FakeDevice::new(8);
        q.set_interrupts(false);
        assert_eq!(dev.u16_at(dev.layout.avail), AVAIL_F_NO_INTERRUPT);
        q.set_interrupts(true);
        assert_eq!(dev.u16_at(dev.layout.avail), 0);
        assert!(q.device_wants_notification());
    }
}
