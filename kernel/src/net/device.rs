//! What the stack needs from a network driver: frames in owned buffers, no copies.
//!
//! A driver lends the stack a received frame as a [`Frame`] (the buffer leaves the device's
//! ring) and gets it back with [`NetDevice::recycle`]; for sending it lends an empty [`Frame`]
//! and takes it back, filled, with [`NetDevice::send`]. Buffers are moved, never shared, so the
//! stack and the driver never alias memory the device may write.

use alloc::boxed::Box;
use core::fmt;
use core::ops::{Deref, DerefMut};

/// Where a frame's bytes live: a heap buffer, or memory the driver set aside for the kernel's
/// lifetime (a page shared with another domain, say, which must be page aligned and must never
/// be freed while that domain may still write it).
enum Storage {
    Heap(Box<[u8]>),
    Static(&'static mut [u8]),
}

impl Deref for Storage {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Storage::Heap(b) => b,
            Storage::Static(s) => s,
        }
    }
}

impl DerefMut for Storage {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            Storage::Heap(b) => b,
            Storage::Static(s) => s,
        }
    }
}

/// One frame buffer: `capacity` bytes of which `offset..offset + len` hold the frame (the bytes
/// before `offset` are the driver's, e.g. a virtio-net header).
pub struct Frame {
    buffer: Storage,
    id: u16,
    offset: usize,
    len: usize,
}

impl Frame {
    /// A frame over `buffer`, known to its driver as `id`, holding `len` bytes at `offset`
    /// (clamped to the buffer).
    pub fn new(buffer: Box<[u8]>, id: u16, offset: usize, len: usize) -> Frame {
        Frame::over(Storage::Heap(buffer), id, offset, len)
    }

    /// A frame over driver memory that lives as long as the kernel (see [`Frame::new`]).
    pub fn new_static(buffer: &'static mut [u8], id: u16, offset: usize, len: usize) -> Frame {
        Frame::over(Storage::Static(buffer), id, offset, len)
    }

    fn over(buffer: Storage, id: u16, offset: usize, len: usize) -> Frame {
        let offset = offset.min(buffer.len());
        let len = len.min(buffer.len() - offset);
        Frame {
            buffer,
            id,
            offset,
            len,
        }
    }

    /// The driver's name for this buffer.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The frame's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buffer[self.offset..self.offset + self.len]
    }

    /// Room for a frame of `len` bytes (clamped to the buffer), to be filled before sending.
    pub fn bytes_mut(&mut self, len: usize) -> &mut [u8] {
        self.len = len.min(self.max_len());
        &mut self.buffer[self.offset..self.offset + self.len]
    }

    /// The longest frame this buffer holds.
    pub fn max_len(&self) -> usize {
        self.buffer.len() - self.offset
    }

    /// Bytes of frame.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the frame is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Takes the buffer back (for the driver). A frame made by [`Frame::new_static`] gives a
    /// heap copy: its driver takes it back with [`Frame::into_static`] instead.
    pub fn into_buffer(self) -> Box<[u8]> {
        match self.buffer {
            Storage::Heap(b) => b,
            Storage::Static(s) => Box::from(&s[..]),
        }
    }

    /// Takes back the memory of a frame made by [`Frame::new_static`] (`None` for a heap
    /// frame).
    pub fn into_static(self) -> Option<&'static mut [u8]> {
        match self.buffer {
            Storage::Heap(_) => None,
            Storage::Static(s) => Some(s),
        }
    }
}

/// Shows a MAC address as `52:54:00:12:34:56`.
pub struct MacDisplay(pub [u8; 6]);

impl fmt::Display for MacDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// How a card tells the stack that something happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventSource {
    /// An interrupt vector (`kernel::irq`).
    Vector(u8),
    /// A Xen event-channel port.
    XenPort(u32),
}

/// Counters a driver keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceCounters {
    /// Frames received and handed to the stack.
    pub rx_frames: u64,
    /// Bytes in those frames.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_frames: u64,
    /// Bytes in those frames.
    pub tx_bytes: u64,
    /// Received frames dropped as malformed (too short, too long).
    pub rx_malformed: u64,
    /// Times the stack wanted to send and every transmit buffer was busy.
    pub tx_ring_full: u64,
    /// Ring entries from the device that broke the rules (ids, lengths, indices).
    pub device_errors: u64,
}

/// A network interface card as the stack sees it.
pub trait NetDevice {
    /// The card's MAC address.
    fn mac_address(&self) -> [u8; 6];
    /// The interrupt vector the card raises when frames arrive (or buffers free up).
    fn interrupt_vector(&self) -> u8;
    /// What the stack waits on for the card: its interrupt vector unless the card says
    /// otherwise.
    fn event_source(&self) -> EventSource {
        EventSource::Vector(self.interrupt_vector())
    }
    /// Acknowledges the card's interrupt; call after the vector fired.
    fn handle_interrupt(&mut self);
    /// The next received frame, if any.
    fn receive(&mut self) -> Option<Frame>;
    /// Gives a received frame's buffer back for reuse.
    fn recycle(&mut self, frame: Frame);
    /// An empty transmit buffer, if one is free.
    fn transmit_buffer(&mut self) -> Option<Frame>;
    /// Whether [`transmit_buffer`](Self::transmit_buffer) would give a buffer now.
    fn can_transmit(&mut self) -> bool;
    /// Sends the frame in a buffer from [`transmit_buffer`](Self::transmit_buffer).
    fn send(&mut self, frame: Frame);
    /// Returns a buffer from [`transmit_buffer`](Self::transmit_buffer) unsent.
    fn discard_tx(&mut self, frame: Frame);
    /// Tells the card about everything posted since the last flush.
    fn flush(&mut self);
    /// The longest frame (Ethernet header included, no FCS) the card carries.
    fn max_frame_len(&self) -> usize;
    /// The driver's counters.
    fn counters(&self) -> DeviceCounters;
    /// Whether the device broke its rings and was given up on.
    fn is_broken(&self) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn frame_windows_are_clamped() {
        let mut f = Frame::new(vec![0u8; 100].into_boxed_slice(), 3, 12, 500);
        assert_eq!((f.id(), f.len(), f.max_len()), (3, 88, 88));
        assert_eq!(f.bytes_mut(1000).len(), 88);
        assert_eq!(f.bytes_mut(10).len(), 10);
        assert_eq!(f.bytes().len(), 10);
        let g = Frame::new(vec![0u8; 4].into_boxed_slice(), 0, 9, 9);
        assert!(g.is_empty());
        assert_eq!(g.into_buffer().len(), 4);
        let page: &'static mut [u8] = alloc::vec![7u8; 64].leak();
        let mut s = Frame::new_static(page, 1, 4, 10);
        assert_eq!((s.len(), s.max_len()), (10, 60));
        s.bytes_mut(2).copy_from_slice(b"ok");
        assert_eq!(s.bytes(), b"ok");
        assert_eq!(s.into_static().map(|p| p.len()), Some(64));
        assert!(Frame::new(vec![0u8; 4].into_boxed_slice(), 0, 0, 0)
            .into_static()
            .is_none());
    }
}
