//! The request engine both disk drivers share: transfers split into requests that are all in
//! flight at once, each request in a slot with the driver's own data buffer.
//!
//! A driver ([`RequestQueue`]) knows its device: how to post a request from a slot, take
//! completions off its ring (validated), and wait for the device. [`Requests`] knows the rest:
//! which slot serves which operation, copying data between the caller's buffer and the slots'
//! buffers, and what happens when a caller drops an operation's future half-way: its requests
//! stay in flight in their slots, their completions are discarded when they come, and the
//! slots serve later operations only after that (the device never writes into a buffer that
//! is in use for something else).

use core::ops::Range;

use super::{chunks, Error, Geometry};

/// What a request asks of the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Read into the slot's buffer.
    Read,
    /// Write the slot's buffer.
    Write,
    /// Flush the write cache (no data).
    Flush,
    /// Read the device's id string into the slot's buffer (virtio-blk only).
    Identify,
}

/// The caller's side of an operation's data.
pub enum Data<'a> {
    /// No data (a flush).
    None,
    /// Read into this buffer.
    Into(&'a mut [u8]),
    /// Write from this buffer.
    From(&'a [u8]),
}

/// A disk driver's side of the engine.
#[allow(async_fn_in_trait)]
pub trait RequestQueue {
    /// Number of slots (requests in flight at once).
    fn slots(&self) -> usize;
    /// Bytes of each slot's data buffer: the largest request.
    fn chunk(&self) -> usize;
    /// Slot `slot`'s data buffer.
    fn buffer(&mut self, slot: usize) -> &mut [u8];
    /// Posts a request from free slot `slot`: `op` of `len` bytes at `sector` (in the
    /// device's sector size). `Err` only for a driver bug or a dead device.
    fn post(&mut self, slot: usize, op: Op, sector: u64, len: usize) -> Result<(), Error>;
    /// Tells the device about the requests posted.
    fn kick(&mut self);
    /// Takes every completed request off the device's ring, calling `done(slot, result)` for
    /// each. `Err` if the device broke its protocol (the driver then gives up on it).
    fn reap(&mut self, done: &mut dyn FnMut(usize, Result<(), Error>)) -> Result<(), Error>;
    /// Waits until the device may have completed something.
    async fn wait(&mut self);
    /// Whether the driver gave up on the device (it broke its protocol).
    fn broken(&self) -> bool;
}

/// A slot's request: none, or working for an operation, or done and not yet collected.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Free,
    /// In flight for operation `.0`; read data goes to `.1` of the caller's buffer.
    Busy(u64, Range<usize>),
    /// Completed for the current operation.
    Done(Result<(), Error>, Range<usize>),
}

/// The engine: slot states and operation numbers.
pub struct Requests {
    slots: alloc::vec::Vec<State>,
    /// The current operation's number.
    operation: u64,
}

impl Requests {
    /// An engine for `slots` slots, all free.
    pub fn new(slots: usize) -> Requests {
        Requests {
            slots: alloc::vec![State::Free; slots],
            operation: 0,
        }
    }

    fn free_slot(&self) -> Option<usize> {
        self.slots.iter().position(|s| *s == State::Free)
    }

    /// Takes completions off the device: those of the current operation become `Done`,
    /// those of dropped operations free their slot.
    fn reap(&mut self, queue: &mut impl RequestQueue) -> Result<(), Error> {
        let current = self.operation;
        let slots = &mut self.slots;
        let mut lie = false;
        queue.reap(&mut |slot, result| match slots.get_mut(slot) {
            Some(state @ State::Busy(..)) => {
                let State::Busy(operation, target) = core::mem::replace(state, State::Free) else {
                    return;
                };
                if operation == current {
                    *state = State::Done(result, target);
                }
            }
            _ => lie = true,
        })?;
        if lie {
            // The driver checks what its device answers; reaching here is a driver bug.
            return Err(Error::Broken);
        }
        Ok(())
    }

    /// Reads whole sectors from `sector` into `buffer`, checked against `geometry`: a
    /// disk's [`BlockDevice::read`](super::BlockDevice::read).
    pub async fn read(
        &mut self,
        queue: &mut impl RequestQueue,
        geometry: &Geometry,
        sector: u64,
        buffer: &mut [u8],
    ) -> Result<(), Error> {
        geometry.check(sector, buffer.len())?;
        let unit = geometry.sector_size;
        self.run(queue, Op::Read, unit, sector, Data::Into(buffer))
            .await
    }

    /// Writes whole sectors from `data` at `sector`, checked against `geometry` (a read-only
    /// disk refuses): a disk's [`BlockDevice::write`](super::BlockDevice::write).
    pub async fn write(
        &mut self,
        queue: &mut impl RequestQueue,
        geometry: &Geometry,
        sector: u64,
        data: &[u8],
    ) -> Result<(), Error> {
        geometry.check(sector, data.len())?;
        if geometry.read_only {
            return Err(Error::ReadOnly);
        }
        let unit = geometry.sector_size;
        self.run(queue, Op::Write, unit, sector, Data::From(data))
            .await
    }

    /// Flushes the device's write cache: a disk's
    /// [`BlockDevice::flush`](super::BlockDevice::flush). A device without one
    /// (`write_cache` false) writes through, so there is nothing to do unless it is broken.
    pub async fn flush(
        &mut self,
        queue: &mut impl RequestQueue,
        geometry: &Geometry,
        write_cache: bool,
    ) -> Result<(), Error> {
        if !write_cache {
            return if queue.broken() {
                Err(Error::Broken)
            } else {
                Ok(())
            };
        }
        self.run(queue, Op::Flush, geometry.sector_size, 0, Data::None)
            .await
    }

    /// Runs one operation: `op` over `data` at `sector` (`unit`-byte sectors), split into
    /// requests of at most the queue's chunk. The first failing request's error wins, after
    /// every request finished.
    pub async fn run(
        &mut self,
        queue: &mut impl RequestQueue,
        op: Op,
        unit: u32,
        sector: u64,
        data: Data<'_>,
    ) -> Result<(), Error> {
        let (mut read, write) = match data {
            Data::None => (None, None),
            Data::Into(buffer) => (Some(buffer), None),
            Data::From(buffer) => (None, Some(buffer)),
        };
        let len = read.as_ref().map_or(0, |b| b.len()) + write.map_or(0, |b| b.len());
        self.operation += 1;
        let operation = self.operation;
        for state in self.slots.iter_mut() {
            if matches!(state, State::Done(..)) {
                // Collected by nobody: its operation's future was dropped.
                *state = State::Free;
            }
        }
        self.reap(queue)?;
        let mut pieces: alloc::vec::Vec<(u64, Range<usize>)> = if len == 0 {
            alloc::vec![(sector, 0..0)]
        } else {
            chunks(unit, sector, len, queue.chunk()).collect()
        };
        pieces.reverse();
        let mut result = Ok(());
        while !pieces.is_empty() {
            let mut posted = false;
            while let Some(slot) = self.free_slot() {
                let Some((at, range)) = pieces.pop() else {
                    break;
                };
                if let Some(data) = write {
                    queue.buffer(slot)[..range.len()].copy_from_slice(&data[range.clone()]);
                }
                queue.post(slot, op, at, range.len())?;
                self.slots[slot] = State::Busy(operation, range);
                posted = true;
            }
            if posted {
                queue.kick();
            }
            if !pieces.is_empty() {
                // Every slot is busy: let some finish before posting the rest.
                result = result.and(self.collect(queue, read.as_deref_mut(), false).await);
            }
        }
        let last = self.collect(queue, read, true).await;
        result.and(last)
    }

    /// Collects the current operation's completed requests, copying read data out, until all
    /// of them are done (`all`) or at least one slot is free.
    async fn collect(
        &mut self,
        queue: &mut impl RequestQueue,
        mut read: Option<&mut [u8]>,
        all: bool,
    ) -> Result<(), Error> {
        let mut result = Ok(());
        loop {
            self.reap(queue)?;
            for slot in 0..self.slots.len() {
                if !matches!(self.slots[slot], State::Done(..)) {
                    continue;
                }
                let State::Done(outcome, target) =
                    core::mem::replace(&mut self.slots[slot], State::Free)
                else {
                    continue;
                };
                match outcome {
                    Err(e) => result = result.and(Err(e)),
                    Ok(()) => {
                        if let Some(out) =
                            read.as_deref_mut().and_then(|b| b.get_mut(target.clone()))
                        {
                            out.copy_from_slice(&queue.buffer(slot)[..target.len()]);
                        }
                    }
                }
            }
            let operation = self.operation;
            let finished = if all {
                !self
                    .slots
                    .iter()
                    .any(|s| matches!(s, State::Busy(o, _) if *o == operation))
            } else {
                self.free_slot().is_some()
            };
            if finished {
                return result;
            }
            queue.wait().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use core::future::Future;
    use core::pin::pin;
    use core::task::{Context, Poll, Waker};

    /// A device in memory that completes requests only when the test says so.
    struct FakeQueue {
        disk: Vec<u8>,
        buffers: Vec<Vec<u8>>,
        /// Posted requests: (slot, op, sector, len).
        in_flight: Vec<(usize, Op, u64, usize)>,
        /// Completions ready to be reaped.
        completed: Vec<(usize, Result<(), Error>)>,
        /// Fail requests at this sector.
        bad_sector: Option<u64>,
        /// The next wait returns pending once without progress.
        stall: bool,
        kicks: usize,
    }

    impl FakeQueue {
        fn new(slots: usize) -> FakeQueue {
            FakeQueue {
                disk: vec![0; 64 * 512],
                buffers: vec![vec![0; 1024]; slots],
                in_flight: Vec::new(),
                completed: Vec::new(),
                bad_sector: None,
                stall: false,
                kicks: 0,
            }
        }

        /// The device does the oldest request in flight.
        fn complete_one(&mut self) -> bool {
            if self.in_flight.is_empty() {
                return false;
            }
            let (slot, op, sector, len) = self.in_flight.remove(0);
            let at = sector as usize * 512;
            let result = if Some(sector) == self.bad_sector {
                Err(Error::Device(1))
            } else {
                match op {
                    Op::Read => self.buffers[slot][..len].copy_from_slice(&self.disk[at..at + len]),
                    Op::Write => {
                        self.disk[at..at + len].copy_from_slice(&self.buffers[slot][..len])
                    }
                    Op::Flush | Op::Identify => {}
                }
                Ok(())
            };
            self.completed.push((slot, result));
            true
        }
    }

    impl RequestQueue for FakeQueue {
        fn slots(&self) -> usize {
            self.buffers.len()
        }
        fn chunk(&self) -> usize {
            1024
        }
        fn buffer(&mut self, slot: usize) -> &mut [u8] {
            &mut self.buffers[slot]
        }
        fn post(&mut self, slot: usize, op: Op, sector: u64, len: usize) -> Result<(), Error> {
            assert!(
                self.in_flight.iter().all(|r| r.0 != slot),
                "slot {slot} posted while in flight"
            );
            self.in_flight.push((slot, op, sector, len));
            Ok(())
        }
        fn kick(&mut self) {
            self.kicks += 1;
        }
        fn reap(&mut self, done: &mut dyn FnMut(usize, Result<(), Error>)) -> Result<(), Error> {
            for (slot, result) in self.completed.drain(..) {
                done(slot, result);
            }
            Ok(())
        }
        async fn wait(&mut self) {
            if core::mem::take(&mut self.stall) {
                let mut yielded = false;
                core::future::poll_fn(|_| {
                    if core::mem::replace(&mut yielded, true) {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                })
                .await;
            }
            // The device makes progress whenever the driver waits.
            self.complete_one();
        }
        fn broken(&self) -> bool {
            false
        }
    }

    fn ready<T>(f: impl Future<Output = T>) -> T {
        let mut cx = Context::from_waker(Waker::noop());
        match pin!(f).poll(&mut cx) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("the fake queue never leaves a future pending"),
        }
    }

    #[test]
    fn a_transfer_larger_than_all_slots_goes_through_in_order() {
        let mut q = FakeQueue::new(2);
        let mut engine = Requests::new(2);
        let data: Vec<u8> = (0..5 * 1024 + 512).map(|i| (i % 251) as u8).collect();
        let write = Data::From(&data[..]);
        ready(engine.run(&mut q, Op::Write, 512, 3, write)).unwrap();
        assert_eq!(&q.disk[3 * 512..3 * 512 + data.len()], &data[..]);
        let mut back = vec![0u8; data.len()];
        let read = Data::Into(&mut back[..]);
        ready(engine.run(&mut q, Op::Read, 512, 3, read)).unwrap();
        assert_eq!(back, data);
        assert!(q.in_flight.is_empty());
    }

    #[test]
    fn the_first_failure_is_reported_after_every_request_finished() {
        let mut q = FakeQueue::new(4);
        q.bad_sector = Some(4);
        let mut engine = Requests::new(4);
        let data = vec![9u8; 4096];
        let r = ready(engine.run(&mut q, Op::Write, 512, 0, Data::From(&data)));
        assert_eq!(r, Err(Error::Device(1)));
        assert!(q.in_flight.is_empty(), "nothing left behind");
        assert_eq!(
            &q.disk[..2048],
            &data[..2048],
            "the other requests were done"
        );
        q.bad_sector = None;
        ready(engine.run(&mut q, Op::Flush, 512, 0, Data::None)).unwrap();
    }

    #[test]
    fn a_dropped_operation_never_shares_a_slot_with_a_later_one() {
        let mut q = FakeQueue::new(2);
        let mut engine = Requests::new(2);
        q.disk[..2048].fill(0xaa);
        q.disk[2048..3072].fill(0x55);
        q.stall = true;
        {
            // Both requests are posted, then the device stalls and the caller gives up.
            let mut back = vec![0u8; 2048];
            let mut fut = pin!(engine.run(&mut q, Op::Read, 512, 0, Data::Into(&mut back[..])));
            let mut cx = Context::from_waker(Waker::noop());
            assert!(fut.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(
            q.in_flight.len(),
            2,
            "the dropped operation's requests are still in flight"
        );
        // A new read waits for a slot whose old request completed, and gets only its own data.
        let mut back = vec![0u8; 1024];
        ready(engine.run(&mut q, Op::Read, 512, 4, Data::Into(&mut back[..]))).unwrap();
        assert!(back.iter().all(|&b| b == 0x55));
        assert!(q.in_flight.is_empty() && q.completed.is_empty());
        assert!(engine.slots.iter().all(|s| *s == State::Free));
    }
}
