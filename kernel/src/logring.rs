//! The log ring: every log line this service writes, kept in a fixed buffer until the logs
//! pillar has acknowledged it (docs/logs.md).
//!
//! [`crate::log::log`] pushes each line here as well as to the console. The log forwarder
//! (`log_forward`, when the launcher wired this service a `log` channel) sends the lines to the
//! logs pillar and acknowledges them here once the pillar has kept them; the logs pillar drains
//! its own ring the same way. Lines are numbered from 0 in each boot ([`Record::seq`]).
//!
//! The ring never blocks and never grows: when a line does not fit, the oldest lines go, acknowledged
//! or not, and [`dropped`] counts those that were not; the forwarder's peer sees them as a
//! gap in the numbers. With no logs pillar at all the ring simply keeps the latest lines.

use crate::sync::IrqMutex;

/// Bytes of the ring (about 300 lines of 100 bytes).
pub const CAPACITY: usize = 32 * 1024;

/// Bytes of a record's header in the ring: total length (u16), level (u8), time (u64).
const RECORD_HEADER: usize = 11;

/// One line read back from the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its number in this boot, from 0.
    pub seq: u64,
    /// Its level (1 error to 5 trace).
    pub level: u8,
    /// Nanoseconds since boot.
    pub at_ns: u64,
    /// Bytes of its text copied out (the message, without the console's prefix and newline).
    pub len: usize,
}

/// A fixed-size ring of log records.
pub struct Ring<const N: usize> {
    buf: [u8; N],
    /// Offset of the oldest record.
    tail: usize,
    /// Bytes in use.
    used: usize,
    /// Number of the oldest record.
    first_seq: u64,
    /// Records held.
    count: u64,
    /// Everything below this number was acknowledged.
    acked_next: u64,
    /// Records dropped before they were acknowledged.
    dropped: u64,
    /// Where the last read ended: (number, offset) of the next record, while it is held.
    cursor: (u64, usize),
}

impl<const N: usize> Ring<N> {
    /// An empty ring.
    pub const fn new() -> Self {
        Ring {
            buf: [0; N],
            tail: 0,
            used: 0,
            first_seq: 0,
            count: 0,
            acked_next: 0,
            dropped: 0,
            cursor: (0, 0),
        }
    }

    /// The number the next line will get.
    pub fn next_seq(&self) -> u64 {
        self.first_seq + self.count
    }

    /// Everything numbered below this was acknowledged.
    pub fn acked_next(&self) -> u64 {
        self.acked_next
    }

    /// Lines dropped before they were acknowledged.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn get(&self, at: usize) -> u8 {
        self.buf[at % N]
    }

    fn put(&mut self, at: usize, bytes: &[u8]) {
        for (i, b) in bytes.iter().enumerate() {
            self.buf[(at + i) % N] = *b;
        }
    }

    fn record_len(&self, at: usize) -> usize {
        usize::from(u16::from_le_bytes([self.get(at), self.get(at + 1)]))
    }

    fn pop_oldest(&mut self) {
        let len = self.record_len(self.tail);
        if self.first_seq >= self.acked_next {
            self.dropped += 1;
        }
        self.tail = (self.tail + len) % N;
        self.used -= len;
        self.first_seq += 1;
        self.count -= 1;
    }

    /// Appends a line (its text cut to what fits in a quarter of the ring); drops the oldest
    /// lines to make room.
    pub fn push(&mut self, level: u8, at_ns: u64, text: &[u8]) {
        let text = &text[..text.len().min(N / 4 - RECORD_HEADER)];
        let len = RECORD_HEADER + text.len();
        while N - self.used < len {
            self.pop_oldest();
        }
        let at = self.tail + self.used;
        let mut header = [0u8; RECORD_HEADER];
        header[..2].copy_from_slice(&(len as u16).to_le_bytes());
        header[2] = level;
        header[3..].copy_from_slice(&at_ns.to_le_bytes());
        self.put(at, &header);
        self.put(at + RECORD_HEADER, text);
        self.used += len;
        self.count += 1;
    }

    /// The first line numbered `seq` or later, its text copied into `text` (cut to its length).
    pub fn read(&mut self, seq: u64, text: &mut [u8]) -> Option<Record> {
        let seq = seq.max(self.first_seq);
        if seq >= self.next_seq() {
            return None;
        }
        let (mut at_seq, mut at) = if self.cursor.0 >= self.first_seq && self.cursor.0 <= seq {
            self.cursor
        } else {
            (self.first_seq, self.tail)
        };
        while at_seq < seq {
            at = (at + self.record_len(at)) % N;
            at_seq += 1;
        }
        let len = self.record_len(at);
        let mut time = [0u8; 8];
        for (i, b) in time.iter_mut().enumerate() {
            *b = self.get(at + 3 + i);
        }
        let text_len = (len - RECORD_HEADER).min(text.len());
        for (i, b) in text[..text_len].iter_mut().enumerate() {
            *b = self.get(at + RECORD_HEADER + i);
        }
        self.cursor = (seq + 1, (at + len) % N);
        Some(Record {
            seq,
            level: self.get(at + 2),
            at_ns: u64::from_le_bytes(time),
            len: text_len,
        })
    }

    /// Forgets every line up to `seq`: the logs pillar kept them.
    pub fn ack(&mut self, seq: u64) {
        let upto = seq.saturating_add(1).min(self.next_seq());
        self.acked_next = self.acked_next.max(upto);
        while self.count > 0 && self.first_seq < upto {
            self.pop_oldest();
        }
    }
}

impl<const N: usize> Default for Ring<N> {
    fn default() -> Self {
        Self::new()
    }
}

static RING: IrqMutex<Ring<CAPACITY>> = IrqMutex::new(Ring::new());

/// Records a line (called by [`crate::log::log`]).
pub fn push(level: u8, at_ns: u64, text: &[u8]) {
    RING.lock().push(level, at_ns, text);
}

/// The first line numbered `seq` or later, its text copied into `text`.
pub fn read(seq: u64, text: &mut [u8]) -> Option<Record> {
    RING.lock().read(seq, text)
}

/// Forgets every line up to `seq`: the logs pillar kept them.
pub fn ack(seq: u64) {
    RING.lock().ack(seq)
}

/// Everything numbered below this was acknowledged (or dropped).
pub fn acked_next() -> u64 {
    RING.lock().acked_next()
}

/// The number the next line will get.
pub fn next_seq() -> u64 {
    RING.lock().next_seq()
}

/// Lines dropped before the logs pillar acknowledged them (the ring was full).
pub fn dropped() -> u64 {
    RING.lock().dropped()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn texts<const N: usize>(ring: &mut Ring<N>, from: u64) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let mut seq = from;
        let mut text = [0u8; 600];
        while let Some(record) = ring.read(seq, &mut text) {
            out.push((record.seq, text[..record.len].to_vec()));
            seq = record.seq + 1;
        }
        out
    }

    #[test]
    fn lines_come_back_in_order_with_their_fields() {
        let mut ring = Ring::<256>::new();
        ring.push(3, 10, b"one");
        ring.push(1, 20, b"two");
        let mut text = [0u8; 16];
        let record = ring.read(1, &mut text).unwrap();
        assert_eq!(
            record,
            Record {
                seq: 1,
                level: 1,
                at_ns: 20,
                len: 3
            }
        );
        assert_eq!(&text[..3], b"two");
        assert_eq!(texts(&mut ring, 0).len(), 2);
        assert!(ring.read(2, &mut text).is_none());
    }

    #[test]
    fn a_full_ring_drops_the_oldest_and_counts_what_was_not_acknowledged() {
        let mut ring = Ring::<128>::new();
        for i in 0..20u8 {
            ring.push(3, u64::from(i), &[b'a' + i; 10]);
        }
        // 21 bytes a record: 6 fit in 128.
        let held = texts(&mut ring, 0);
        assert_eq!(held.len(), 6);
        assert_eq!(held[0].0, 14);
        assert_eq!(held[5], (19, [b'a' + 19; 10].to_vec()));
        assert_eq!(ring.dropped(), 14);
        // Acknowledged lines that go are not counted.
        ring.ack(17);
        assert_eq!(ring.acked_next(), 18);
        for i in 0..2u8 {
            ring.push(3, 0, &[i; 10]);
        }
        assert_eq!(ring.dropped(), 14);
        assert_eq!(texts(&mut ring, 0)[0].0, 18);
    }

    #[test]
    fn reads_wrap_around_and_resume_from_any_number() {
        let mut ring = Ring::<100>::new();
        for round in 0..50u64 {
            let text = [round as u8; 7];
            ring.push(2, round, &text);
            let all = texts(&mut ring, 0);
            assert_eq!(all.last().unwrap(), &(round, text.to_vec()));
            // Reading from a number already gone starts at the oldest held.
            assert_eq!(texts(&mut ring, 0)[0].0, all[0].0);
            assert_eq!(texts(&mut ring, round).len(), 1);
        }
    }

    #[test]
    fn acknowledging_beyond_the_end_is_harmless_and_long_texts_are_cut() {
        let mut ring = Ring::<64>::new();
        ring.push(3, 0, &[b'x'; 100]);
        let mut text = [0u8; 100];
        assert_eq!(ring.read(0, &mut text).unwrap().len, 64 / 4 - RECORD_HEADER);
        ring.ack(1000);
        assert_eq!(ring.acked_next(), 1);
        assert!(ring.read(0, &mut text).is_none());
        ring.push(3, 0, b"y");
        assert_eq!(ring.read(0, &mut text).unwrap().seq, 1);
    }
}
