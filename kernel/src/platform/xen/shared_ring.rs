//! The front end of Xen's classic shared request/response ring (xen/include/public/io/ring.h),
//! which split drivers (netfront, blkfront, ...) share with their backend: one page, a 64-byte
//! header then a power-of-two array of slots, each holding a request (written by the front
//! end) or, once the backend answered it, the response.
//!
//! | offset | field       | written by | meaning                                              |
//! |--------|-------------|------------|------------------------------------------------------|
//! | 0      | `req_prod`  | front      | requests produced (free-running)                     |
//! | 4      | `req_event` | back       | notify the backend when `req_prod` passes this       |
//! | 8      | `rsp_prod`  | back       | responses produced                                   |
//! | 12     | `rsp_event` | front      | the backend notifies us when `rsp_prod` passes this  |
//! | 64     | slots       | both       | `size` slots of `max(request, response)` bytes       |
//!
//! **What the backend may corrupt, and what happens**: it can write anything anywhere in the
//! page at any time. The front end never reads back an index it owns (`req_prod`,
//! `rsp_event`): it keeps its own copies. `req_event` only decides whether to send a
//! notification, so any value is harmless. `rsp_prod` is checked on every read: it may run
//! ahead of the consumer by at most the requests outstanding, or the ring is declared
//! [`Corrupt`] for good (the driver then gives up on the device). Slot contents are the
//! driver's to validate (ids, lengths, statuses): this module only guarantees that every slot
//! access stays inside the page.

use core::fmt;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{fence, Ordering};

/// Bytes of the shared header before the first slot.
pub const HEADER: usize = 64;
const REQ_PROD: usize = 0;
const REQ_EVENT: usize = 4;
const RSP_PROD: usize = 8;
const RSP_EVENT: usize = 12;

/// Slots of a ring of `bytes` bytes whose slots are `slot` bytes: the largest power of two
/// that fits after the header (ring.h's `__RING_SIZE`); 0 if not even one fits.
pub fn ring_size(bytes: usize, slot: usize) -> u32 {
    if slot == 0 || bytes < HEADER + slot {
        return 0;
    }
    let fit = (bytes - HEADER) / slot;
    let pow = 1usize << (usize::BITS - 1 - fit.leading_zeros());
    u32::try_from(pow).unwrap_or(1 << 31)
}

/// Whether the other end asked to be notified of entries `old..new` (its event index `event`
/// lies in that window; free-running indices: ring.h's `RING_PUSH_..._AND_CHECK_NOTIFY`).
pub fn needs_notify(old: u32, new: u32, event: u32) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

/// Whether a response producer index `rsp_prod` is possible: no further ahead of the consumer
/// `rsp_cons` than the requests produced (`req_prod`).
pub fn responses_valid(rsp_prod: u32, rsp_cons: u32, req_prod: u32) -> bool {
    rsp_prod.wrapping_sub(rsp_cons) <= req_prod.wrapping_sub(rsp_cons)
}

/// The backend left an impossible response producer index: the ring is unusable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corrupt {
    /// The response producer index found.
    pub rsp_prod: u32,
    /// Our consumer index.
    pub rsp_cons: u32,
    /// Requests we produced.
    pub req_prod: u32,
}

impl fmt::Display for Corrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "response producer {}, consumer {}, requests {}",
            self.rsp_prod, self.rsp_cons, self.req_prod
        )
    }
}

/// One slot of the ring: a request to fill in or a response to read. Fields are read and
/// written at byte offsets of the slot, little-endian (x86).
pub struct Slot<'a> {
    addr: *mut u8,
    len: usize,
    _ring: core::marker::PhantomData<&'a FrontRing>,
}

impl Slot<'_> {
    fn at(&self, offset: usize, width: usize) -> *mut u8 {
        assert!(
            offset + width <= self.len,
            "field {offset}+{width} outside a {}-byte slot",
            self.len
        );
        // SAFETY: inside the slot (checked above), which lies inside the ring's page.
        let field = unsafe { self.addr.add(offset) };
        assert!(
            (field as usize).is_multiple_of(width),
            "field {offset}+{width} misaligned"
        );
        field
    }

    /// Reads the byte at `offset`.
    pub fn u8(&self, offset: usize) -> u8 {
        // SAFETY: a field inside the slot (see `at`); the backend may write it concurrently,
        // hence volatile.
        unsafe { read_volatile(self.at(offset, 1)) }
    }

    /// Reads the u16 at `offset`.
    pub fn u16(&self, offset: usize) -> u16 {
        // SAFETY: an aligned field inside the slot (see `at`); the backend may write it
        // concurrently, hence volatile.
        unsafe { read_volatile(self.at(offset, 2).cast::<u16>()) }
    }

    /// Reads the u32 at `offset`.
    pub fn u32(&self, offset: usize) -> u32 {
        // SAFETY: as for `u16`.
        unsafe { read_volatile(self.at(offset, 4).cast::<u32>()) }
    }

    /// Reads the u64 at `offset` (8-byte aligned in the slot, as blkif's ids and sectors are).
    pub fn u64(&self, offset: usize) -> u64 {
        // SAFETY: as for `u16`.
        unsafe { read_volatile(self.at(offset, 8).cast::<u64>()) }
    }

    /// Writes the byte at `offset`.
    pub fn set_u8(&self, offset: usize, value: u8) {
        // SAFETY: as for `u8`.
        unsafe { write_volatile(self.at(offset, 1), value) }
    }

    /// Writes the u16 at `offset`.
    pub fn set_u16(&self, offset: usize, value: u16) {
        // SAFETY: as for `u16`.
        unsafe { write_volatile(self.at(offset, 2).cast::<u16>(), value) }
    }

    /// Writes the u32 at `offset`.
    pub fn set_u32(&self, offset: usize, value: u32) {
        // SAFETY: as for `u16`.
        unsafe { write_volatile(self.at(offset, 4).cast::<u32>(), value) }
    }

    /// Writes the u64 at `offset` (8-byte aligned in the slot).
    pub fn set_u64(&self, offset: usize, value: u64) {
        // SAFETY: as for `u16`.
        unsafe { write_volatile(self.at(offset, 8).cast::<u64>(), value) }
    }
}

/// The front end's side of a shared ring.
pub struct FrontRing {
    base: *mut u8,
    slot: usize,
    size: u32,
    /// Requests written (published by [`FrontRing::push_requests`]).
    req_prod_pvt: u32,
    /// Requests the backend has been shown.
    req_prod_published: u32,
    /// Responses consumed.
    rsp_cons: u32,
    /// The last response producer index read and found valid.
    rsp_prod_seen: u32,
    broken: Option<Corrupt>,
}

impl FrontRing {
    /// Initialises the shared page at `base` (`bytes` long) for slots of `slot` bytes, like
    /// ring.h's `SHARED_RING_INIT` then `FRONT_RING_INIT`: indices zero, and both event
    /// indices 1 (each side wants to hear of the first entry).
    ///
    /// # Safety
    /// `base` must be a 4-byte aligned, writable mapping of `bytes` bytes that outlives the
    /// ring and that nothing but the backend writes meanwhile.
    pub unsafe fn init(base: *mut u8, bytes: usize, slot: usize) -> FrontRing {
        assert!(slot.is_multiple_of(4), "slots hold 4-byte fields");
        let ring = FrontRing {
            base,
            slot,
            size: ring_size(bytes, slot),
            req_prod_pvt: 0,
            req_prod_published: 0,
            rsp_cons: 0,
            rsp_prod_seen: 0,
            broken: None,
        };
        assert!(
            ring.size > 0,
            "a {bytes}-byte ring holds no {slot}-byte slot"
        );
        for field in [REQ_PROD, RSP_PROD] {
            ring.set(field, 0);
        }
        ring.set(REQ_EVENT, 1);
        ring.set(RSP_EVENT, 1);
        ring
    }

    fn get(&self, field: usize) -> u32 {
        // SAFETY: a header field inside the page (`init`'s contract), aligned; the backend
        // writes it concurrently, hence volatile.
        unsafe { read_volatile(self.base.add(field).cast::<u32>()) }
    }

    fn set(&self, field: usize, value: u32) {
        // SAFETY: as for `get`.
        unsafe { write_volatile(self.base.add(field).cast::<u32>(), value) }
    }

    fn slot_at(&self, index: u32) -> Slot<'_> {
        let i = (index & (self.size - 1)) as usize;
        Slot {
            // SAFETY: `i < size` and `HEADER + size * slot <= bytes` (`ring_size`): inside
            // the page.
            addr: unsafe { self.base.add(HEADER + i * self.slot) },
            len: self.slot,
            _ring: core::marker::PhantomData,
        }
    }

    /// Number of slots.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Requests not yet answered (including those not yet pushed).
    pub fn outstanding(&self) -> u32 {
        self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Whether every slot holds a request not yet answered (or an unconsumed response).
    pub fn is_full(&self) -> bool {
        self.outstanding() >= self.size
    }

    /// Requests written, pushed or not (free-running).
    pub fn requests_produced(&self) -> u32 {
        self.req_prod_pvt
    }

    /// Responses consumed (free-running).
    pub fn responses_consumed(&self) -> u32 {
        self.rsp_cons
    }

    /// Whether the backend broke the ring (see [`FrontRing::next_response`]).
    pub fn broken(&self) -> Option<Corrupt> {
        self.broken
    }

    /// The slot for the next request, `None` if the ring is full. The request is shown to the
    /// backend at the next [`FrontRing::push_requests`].
    pub fn next_request(&mut self) -> Option<Slot<'_>> {
        if self.is_full() {
            return None;
        }
        let index = self.req_prod_pvt;
        self.req_prod_pvt = index.wrapping_add(1);
        Some(self.slot_at(index))
    }

    /// Publishes the requests written since the last push; whether the backend asked to be
    /// notified of them (then send it an event).
    pub fn push_requests(&mut self) -> bool {
        let old = self.req_prod_published;
        let new = self.req_prod_pvt;
        if old == new {
            return false;
        }
        // The requests must be visible before the index that covers them.
        fence(Ordering::Release);
        self.set(REQ_PROD, new);
        self.req_prod_published = new;
        // The index must be visible before we read the backend's event index.
        fence(Ordering::SeqCst);
        needs_notify(old, new, self.get(REQ_EVENT))
    }

    /// The next response, if the backend produced one; `Err` (for good) once the backend left
    /// an impossible response producer index. When none is waiting, asks the backend to notify
    /// us of the next one and looks again (ring.h's `RING_FINAL_CHECK_FOR_RESPONSES`), so a
    /// response that lands meanwhile is never missed.
    pub fn next_response(&mut self) -> Result<Option<Slot<'_>>, Corrupt> {
        if let Some(c) = self.broken {
            return Err(c);
        }
        if self.rsp_cons == self.rsp_prod_seen {
            let mut prod = self.get(RSP_PROD);
            if prod == self.rsp_cons {
                self.set(RSP_EVENT, self.rsp_cons.wrapping_add(1));
                fence(Ordering::SeqCst);
                prod = self.get(RSP_PROD);
                if prod == self.rsp_cons {
                    return Ok(None);
                }
            }
            if !responses_valid(prod, self.rsp_cons, self.req_prod_pvt) {
                let c = Corrupt {
                    rsp_prod: prod,
                    rsp_cons: self.rsp_cons,
                    req_prod: self.req_prod_pvt,
                };
                self.broken = Some(c);
                return Err(c);
            }
            // Read the responses only after the index that covers them.
            fence(Ordering::Acquire);
            self.rsp_prod_seen = prod;
        }
        let index = self.rsp_cons;
        self.rsp_cons = index.wrapping_add(1);
        Ok(Some(self.slot_at(index)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::boxed::Box;
    use alloc::vec::Vec;

    #[repr(C, align(4096))]
    struct Page([u8; 4096]);

    /// A shared page, with a backend that writes into it whatever it likes.
    struct Backend {
        page: *mut Page,
        slot: usize,
        size: u32,
        req_cons: u32,
        rsp_prod: u32,
    }

    impl Backend {
        fn new(slot: usize) -> (Backend, FrontRing) {
            let page = Box::into_raw(Box::new(Page([0xa5; 4096])));
            // SAFETY: a fresh page, freed on drop after the ring (tests keep both together).
            let ring = unsafe { FrontRing::init(page.cast(), 4096, slot) };
            let size = ring.size();
            let backend = Backend {
                page,
                slot,
                size,
                req_cons: 0,
                rsp_prod: 0,
            };
            (backend, ring)
        }

        fn base(&self) -> *mut u8 {
            self.page.cast()
        }

        fn header(&self, field: usize) -> u32 {
            // SAFETY: inside the page.
            unsafe { read_volatile(self.base().add(field).cast::<u32>()) }
        }

        fn set_header(&self, field: usize, value: u32) {
            // SAFETY: inside the page.
            unsafe { write_volatile(self.base().add(field).cast::<u32>(), value) }
        }

        fn slot(&self, index: u32) -> *mut u8 {
            let i = (index % self.size) as usize;
            // SAFETY: inside the page.
            unsafe { self.base().add(HEADER + i * self.slot) }
        }

        /// The requests published and not yet taken (their first u32).
        fn take_requests(&mut self) -> Vec<u32> {
            let prod = self.header(REQ_PROD);
            let mut out = Vec::new();
            while self.req_cons != prod {
                // SAFETY: inside the page.
                out.push(unsafe { read_volatile(self.slot(self.req_cons).cast::<u32>()) });
                self.req_cons = self.req_cons.wrapping_add(1);
            }
            out
        }

        /// Writes a response (any value) and publishes it.
        fn respond(&mut self, value: u32) {
            // SAFETY: inside the page.
            unsafe { write_volatile(self.slot(self.rsp_prod).cast::<u32>(), value) };
            self.rsp_prod = self.rsp_prod.wrapping_add(1);
            self.set_header(RSP_PROD, self.rsp_prod);
        }
    }

    impl Drop for Backend {
        fn drop(&mut self) {
            // SAFETY: from Box::into_raw in `new`.
            drop(unsafe { Box::from_raw(self.page) });
        }
    }

    #[test]
    fn sizes_round_down_to_a_power_of_two() {
        // netif: 12-byte tx and 8-byte rx slots in a page both give 256 (ring.h's figures).
        assert_eq!(ring_size(4096, 12), 256);
        assert_eq!(ring_size(4096, 8), 256);
        // blkif: 112-byte slots give 32.
        assert_eq!(ring_size(4096, 112), 32);
        assert_eq!(ring_size(4096, 4032), 1);
        assert_eq!(ring_size(4096, 4033), 0);
        assert_eq!(ring_size(4096, 0), 0);
        assert_eq!(ring_size(10, 4), 0);
    }

    #[test]
    fn notification_window() {
        assert!(needs_notify(0, 1, 1), "first request after event 1");
        assert!(!needs_notify(1, 2, 1), "event already passed");
        assert!(needs_notify(5, 9, 7));
        assert!(!needs_notify(5, 9, 10));
        assert!(needs_notify(u32::MAX - 1, 2, 0), "across wrap-around");
    }

    #[test]
    fn response_indices() {
        assert!(responses_valid(5, 3, 8));
        assert!(responses_valid(8, 3, 8));
        assert!(!responses_valid(9, 3, 8), "more responses than requests");
        assert!(!responses_valid(2, 3, 8), "producer behind consumer");
        assert!(responses_valid(1, u32::MAX, 3), "wrap-around");
    }

    #[test]
    fn requests_and_responses_round_trip_across_wrap_around() {
        let (mut back, mut ring) = Backend::new(8);
        assert_eq!(ring.size(), 256);
        assert_eq!((back.header(REQ_EVENT), back.header(RSP_EVENT)), (1, 1));
        let mut next = 0u32;
        for round in 0..40 {
            for _ in 0..100 {
                ring.next_request().unwrap().set_u32(0, next);
                next += 1;
            }
            let notify = ring.push_requests();
            assert_eq!(
                notify,
                round == 0,
                "only the first push crosses req_event 1"
            );
            let requests = back.take_requests();
            assert_eq!(requests.len(), 100);
            for r in requests {
                back.respond(r + 1_000_000);
            }
            for i in 0..100 {
                let slot = ring.next_response().unwrap().expect("a response");
                assert_eq!(slot.u32(0), next - 100 + i + 1_000_000);
            }
            assert!(ring.next_response().unwrap().is_none());
            // The final check asked for the next response.
            assert_eq!(
                back.header(RSP_EVENT),
                ring.responses_consumed().wrapping_add(1)
            );
        }
        assert_eq!(ring.outstanding(), 0);
    }

    #[test]
    fn a_full_ring_takes_no_more_requests() {
        let (_back, mut ring) = Backend::new(2048);
        assert_eq!(ring.size(), 1);
        assert!(ring.next_request().is_some());
        assert!(ring.is_full() && ring.next_request().is_none());
    }

    #[test]
    fn notification_follows_the_backends_event_index() {
        let (back, mut ring) = Backend::new(8);
        ring.next_request().unwrap();
        assert!(ring.push_requests());
        assert!(!ring.push_requests(), "nothing new: no notification");
        back.set_header(REQ_EVENT, 5);
        for _ in 0..3 {
            ring.next_request().unwrap();
        }
        assert!(!ring.push_requests(), "1..4 does not reach event 5");
        ring.next_request().unwrap();
        assert!(ring.push_requests(), "4..5 does");
    }

    #[test]
    fn a_hostile_backend_cannot_move_our_indices() {
        let (back, mut ring) = Backend::new(12);
        ring.next_request().unwrap();
        ring.push_requests();
        // The backend overwrites the indices we own: we keep our copies.
        back.set_header(REQ_PROD, 200);
        back.set_header(RSP_EVENT, 77);
        back.set_header(REQ_EVENT, 2);
        ring.next_request().unwrap();
        assert!(ring.push_requests(), "old is our 1, not its 200");
        assert_eq!(back.header(REQ_PROD), 2);
        assert!(ring.next_response().unwrap().is_none());
    }

    #[test]
    fn a_runaway_response_index_breaks_the_ring_for_good() {
        let (mut back, mut ring) = Backend::new(8);
        for _ in 0..3 {
            ring.next_request().unwrap();
        }
        ring.push_requests();
        back.respond(1);
        assert!(ring.next_response().unwrap().is_some());
        // Four responses to three requests.
        back.set_header(RSP_PROD, 4);
        let c = ring.next_response().err().expect("refused");
        assert_eq!((c.rsp_prod, c.rsp_cons, c.req_prod), (4, 1, 3));
        back.set_header(RSP_PROD, 2);
        assert_eq!(ring.next_response().err(), Some(c), "stays broken");
        assert_eq!(ring.broken(), Some(c));
    }

    #[test]
    fn a_backward_response_index_is_refused() {
        let (mut back, mut ring) = Backend::new(8);
        for _ in 0..2 {
            ring.next_request().unwrap();
        }
        ring.push_requests();
        back.respond(1);
        back.respond(2);
        assert!(ring.next_response().unwrap().is_some());
        assert!(ring.next_response().unwrap().is_some());
        back.set_header(RSP_PROD, 0);
        assert!(ring.next_response().is_err());
    }

    #[test]
    fn responses_already_validated_are_not_reread() {
        let (mut back, mut ring) = Backend::new(8);
        for _ in 0..2 {
            ring.next_request().unwrap();
        }
        ring.push_requests();
        back.respond(10);
        back.respond(11);
        assert_eq!(ring.next_response().unwrap().unwrap().u32(0), 10);
        // Moving the index after we validated it changes nothing until we look again.
        back.set_header(RSP_PROD, 9);
        assert_eq!(ring.next_response().unwrap().unwrap().u32(0), 11);
        assert!(ring.next_response().is_err());
    }

    #[test]
    fn blkif_sized_slots_carry_every_field_width() {
        // blkif: 112-byte slots, a u8 operation, a u64 id at 8 and sector at 16.
        let (back, mut ring) = Backend::new(112);
        assert_eq!(ring.size(), 32);
        let slot = ring.next_request().unwrap();
        slot.set_u8(0, 1);
        slot.set_u8(1, 11);
        slot.set_u16(2, 0x5151);
        slot.set_u64(8, 0x0102_0304_0506_0708);
        slot.set_u64(16, u64::MAX - 1);
        assert_eq!((slot.u8(0), slot.u8(1), slot.u16(2)), (1, 11, 0x5151));
        assert_eq!(
            (slot.u64(8), slot.u64(16)),
            (0x0102_0304_0506_0708, u64::MAX - 1)
        );
        // SAFETY: inside the page.
        let raw = unsafe { core::slice::from_raw_parts(back.slot(0), 24) };
        assert_eq!(raw[..4], [1, 11, 0x51, 0x51]);
        assert_eq!(raw[8..16], 0x0102_0304_0506_0708u64.to_le_bytes());
    }

    #[test]
    #[should_panic(expected = "misaligned")]
    fn misaligned_fields_are_refused() {
        let (_back, mut ring) = Backend::new(12);
        ring.next_request().unwrap();
        // Slot 1 starts at 64 + 12: its u64 at 0 is 4-byte aligned only.
        ring.next_request().unwrap().set_u64(0, 1);
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn slot_fields_stay_inside_the_slot() {
        let (_back, mut ring) = Backend::new(8);
        ring.next_request().unwrap().set_u32(8, 1);
    }
}
