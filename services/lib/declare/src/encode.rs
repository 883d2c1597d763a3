//! The declaration as an ELF note, built at compile time (every function here is `const`).
//!
//! ```ignore
//! const DECL: Declaration = ...;
//! #[unsafe(link_section = ".note.lichen")]
//! #[used]
//! static NOTE: Note<{ note_len(&DECL) }> = Note(note(&DECL));
//! ```
//!
//! A declaration that could not be parsed back (a bad topic name, a topic declared twice) fails
//! the build, with the reason in the compiler's error.

use crate::{check_topic_name, Declaration, TopicDecl, HEADER, NOTE_NAME, NOTE_TYPE};

/// The size in bytes of the ELF note holding `decl`: the 12-byte header, the name padded to 4,
/// the text padded to 4.
pub const fn note_len(decl: &Declaration) -> usize {
    let mut counter = Writer::<0>::new();
    write_text(decl, &mut counter);
    12 + padded(NOTE_NAME.len() + 1) + padded(counter.len)
}

/// The ELF note holding `decl`; `N` must be [`note_len`]`(decl)`.
pub const fn note<const N: usize>(decl: &Declaration) -> [u8; N] {
    let mut text = Writer::<0>::new();
    write_text(decl, &mut text);
    let mut out = Writer::<N>::new();
    out.u32_le((NOTE_NAME.len() + 1) as u32);
    out.u32_le(text.len as u32);
    out.u32_le(NOTE_TYPE);
    out.str(NOTE_NAME);
    out.byte(0);
    out.pad4();
    write_text(decl, &mut out);
    out.pad4();
    assert!(out.len == N, "note length mismatch: use note_len(&DECL)");
    out.buf
}

const fn padded(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Writes the declaration's text (see the crate's documentation).
const fn write_text<const N: usize>(decl: &Declaration, w: &mut Writer<N>) {
    w.str(HEADER);
    w.byte(b'\n');
    w.str("memory-floor-mib ");
    w.decimal(decl.memory_floor_mib);
    w.byte(b'\n');
    if decl.needs.uplink || decl.needs.disk || decl.needs.modules {
        w.str("needs");
        let mut i = 0;
        while i < crate::Needs::WORDS.len() {
            if decl.needs.get(i) {
                w.byte(b' ');
                w.str(crate::Needs::WORDS[i]);
            }
            i += 1;
        }
        w.byte(b'\n');
    }
    write_topics(decl.publishes, "publishes ", true, w);
    write_topics(decl.subscribes, "subscribes ", false, w);
    write_topics(decl.watches, "watches ", false, w);
}

const fn write_topics<const N: usize>(
    topics: &[TopicDecl],
    verb: &str,
    with_persistence: bool,
    w: &mut Writer<N>,
) {
    let mut i = 0;
    while i < topics.len() {
        let topic = &topics[i];
        if let Err(reason) = check_topic_name(topic.name) {
            panic!("{}", reason);
        }
        let mut j = 0;
        while j < i {
            if str_eq(topics[j].name, topic.name) {
                panic!("a topic is declared twice");
            }
            j += 1;
        }
        w.str(verb);
        w.str(topic.name);
        w.byte(b' ');
        w.decimal(topic.schema);
        if with_persistence {
            w.byte(b' ');
            w.str(topic.persistence.word());
        }
        w.byte(b'\n');
        i += 1;
    }
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Appends to a fixed buffer, counting every byte even past its end (`Writer<0>` only counts).
struct Writer<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Writer<N> {
    const fn new() -> Self {
        Writer {
            buf: [0; N],
            len: 0,
        }
    }

    const fn byte(&mut self, b: u8) {
        if self.len < N {
            self.buf[self.len] = b;
        }
        self.len += 1;
    }

    const fn str(&mut self, s: &str) {
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            self.byte(bytes[i]);
            i += 1;
        }
    }

    const fn u32_le(&mut self, v: u32) {
        let bytes = v.to_le_bytes();
        let mut i = 0;
        while i < 4 {
            self.byte(bytes[i]);
            i += 1;
        }
    }

    const fn decimal(&mut self, mut v: u32) {
        let mut digits = [0u8; 10];
        let mut n = 0;
        loop {
            digits[n] = b'0' + (v % 10) as u8;
            n += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        while n > 0 {
            n -= 1;
            self.byte(digits[n]);
        }
    }

    const fn pad4(&mut self) {
        while !self.len.is_multiple_of(4) {
            self.byte(0);
        }
    }
}

/// An ELF note's bytes, aligned as notes must be (4 bytes).
#[repr(C, align(4))]
pub struct Note<const N: usize>(pub [u8; N]);
