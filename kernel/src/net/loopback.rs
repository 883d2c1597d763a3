//! A loopback card: every frame sent comes back as received, in order. It lets one stack
//! talk to itself (a server and its clients in one image), and is what the host's unit tests
//! of the TCP, UDP and DNS layer run on.
//!
//! Like a real card it raises its interrupt vector when frames are waiting after a flush, so
//! the stack task is woken the usual way.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec;

use super::device::{DeviceCounters, Frame, NetDevice};

/// Longest frame carried (Ethernet, no FCS).
const MAX_FRAME: usize = 1514;

/// The loopback card.
pub struct Loopback {
    mac: [u8; 6],
    vector: u8,
    /// Frames sent and not yet received, at most `capacity`.
    queue: VecDeque<Frame>,
    capacity: usize,
    counters: DeviceCounters,
}

impl Loopback {
    /// A card with address `mac` that raises `vector` when frames wait, holding up to
    /// `capacity` frames in flight (beyond that, the stack finds no transmit buffer).
    pub fn new(mac: [u8; 6], vector: u8, capacity: usize) -> Loopback {
        Loopback {
            mac,
            vector,
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            counters: DeviceCounters::default(),
        }
    }
}

impl NetDevice for Loopback {
    fn mac_address(&self) -> [u8; 6] {
        self.mac
    }

    fn interrupt_vector(&self) -> u8 {
        self.vector
    }

    fn handle_interrupt(&mut self) {}

    fn receive(&mut self) -> Option<Frame> {
        let frame = self.queue.pop_front()?;
        self.counters.rx_frames += 1;
        self.counters.rx_bytes += frame.len() as u64;
        Some(frame)
    }

    fn recycle(&mut self, _frame: Frame) {}

    fn transmit_buffer(&mut self) -> Option<Frame> {
        if !self.can_transmit() {
            self.counters.tx_ring_full += 1;
            return None;
        }
        Some(Frame::new(vec![0; MAX_FRAME].into_boxed_slice(), 0, 0, 0))
    }

    fn can_transmit(&mut self) -> bool {
        self.queue.len() < self.capacity
    }

    fn send(&mut self, frame: Frame) {
        self.counters.tx_frames += 1;
        self.counters.tx_bytes += frame.len() as u64;
        let len = frame.len();
        let buffer: Box<[u8]> = frame.into_buffer();
        self.queue.push_back(Frame::new(buffer, 0, 0, len));
    }

    fn discard_tx(&mut self, _frame: Frame) {}

    fn flush(&mut self) {
        if !self.queue.is_empty() {
            crate::irq::raise(self.vector);
        }
    }

    fn max_frame_len(&self) -> usize {
        MAX_FRAME
    }

    fn counters(&self) -> DeviceCounters {
        self.counters
    }

    fn is_broken(&self) -> bool {
        false
    }
}
