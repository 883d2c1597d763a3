//! Reading a declaration back: from an image file ([`find_note`]) and from the note's text
//! ([`parse`]).
//!
//! Both read bytes from an image file the launcher did not build: a truncated or hostile file
//! may hold any bytes there. Every offset and size is checked against the file before use; the
//! text grammar is exact, and every error names the line (or the ELF structure) at fault.

use alloc::{
    format,
    string::{String, ToString},
    vec::Vec,
};
use core::fmt;

use crate::{check_topic_name, Needs, Persistence, HEADER, MAX_TEXT, NOTE_NAME, NOTE_TYPE};

/// A topic read from a declaration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedTopic {
    /// Its name.
    pub name: String,
    /// Its schema version.
    pub schema: u32,
    /// Its persistence (always [`Persistence::Volatile`] for a subscription, which does not say).
    pub persistence: Persistence,
}

/// A declaration read from an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The least memory, in MiB, the image runs in.
    pub memory_floor_mib: u32,
    /// The devices and inputs it needs.
    pub needs: Needs,
    /// The topics it publishes, in declaration order.
    pub publishes: Vec<ParsedTopic>,
    /// The topics it subscribes to, in declaration order.
    pub subscribes: Vec<ParsedTopic>,
    /// The topics it watches (optional subscriptions), in declaration order.
    pub watches: Vec<ParsedTopic>,
}

/// Why a declaration could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeclError {
    /// The file is not an ELF file at all (a Linux bzImage, for instance).
    NotElf,
    /// The file is not a 64-bit little-endian ELF file, or one of its structures lies outside it.
    Elf(&'static str),
    /// The image has no lichen declaration note (it was not built with `kernel::service!`).
    NoNote,
    /// The image has more than one declaration note.
    TwoNotes,
    /// The text is longer than [`MAX_TEXT`].
    TooLong(usize),
    /// The text is not UTF-8.
    NotText,
    /// Line `line` (from 1) is wrong.
    Line {
        /// The line's number, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A required line is missing.
    Missing(&'static str),
}

impl fmt::Display for DeclError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeclError::NotElf => f.write_str("not an ELF image"),
            DeclError::Elf(what) => write!(f, "not a usable ELF image: {what}"),
            DeclError::NoNote => f.write_str(
                "the image declares nothing (no `lichen` ELF note: is it built with kernel::service!?)",
            ),
            DeclError::TwoNotes => f.write_str("the image has two `lichen` declaration notes"),
            DeclError::TooLong(n) => write!(f, "the declaration is {n} bytes (at most {MAX_TEXT})"),
            DeclError::NotText => f.write_str("the declaration is not UTF-8 text"),
            DeclError::Line { line, reason } => write!(f, "declaration line {line}: {reason}"),
            DeclError::Missing(what) => write!(f, "the declaration has no `{what}` line"),
        }
    }
}

/// Finds the declaration note in an ELF image and returns its descriptor (the text, with its
/// zero padding).
pub fn find_note(elf: &[u8]) -> Result<&[u8], DeclError> {
    if !elf.starts_with(b"\x7fELF") {
        return Err(DeclError::NotElf);
    }
    let header = elf
        .get(..64)
        .ok_or(DeclError::Elf("shorter than an ELF header"))?;
    if header[4] != 2 || header[5] != 1 {
        return Err(DeclError::Elf("not 64-bit little-endian"));
    }
    let phoff = u64_at(header, 32) as usize;
    let phentsize = u16_at(header, 54) as usize;
    let phnum = u16_at(header, 56) as usize;
    if phnum > 0 && phentsize < 56 {
        return Err(DeclError::Elf("program headers smaller than 56 bytes"));
    }
    let mut found = None;
    for i in 0..phnum {
        let start = i
            .checked_mul(phentsize)
            .and_then(|o| o.checked_add(phoff))
            .ok_or(DeclError::Elf("program header offset overflows"))?;
        let ph = slice(elf, start, 56).ok_or(DeclError::Elf("program header outside the file"))?;
        const PT_NOTE: u32 = 4;
        if u32_at(ph, 0) != PT_NOTE {
            continue;
        }
        let (offset, size) = (u64_at(ph, 8), u64_at(ph, 32));
        let notes = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(size).ok())
            .and_then(|(o, s)| slice(elf, o, s))
            .ok_or(DeclError::Elf("note segment outside the file"))?;
        for desc in lichen_notes(notes)? {
            if found.replace(desc).is_some() {
                return Err(DeclError::TwoNotes);
            }
        }
    }
    found.ok_or(DeclError::NoNote)
}

/// The descriptors of the lichen declaration notes in one note segment.
fn lichen_notes(mut notes: &[u8]) -> Result<Vec<&[u8]>, DeclError> {
    let mut found = Vec::new();
    while notes.len() >= 12 {
        let namesz = u32_at(notes, 0) as usize;
        let descsz = u32_at(notes, 4) as usize;
        let kind = u32_at(notes, 8);
        let name_end = 12usize.checked_add(namesz.next_multiple_of(4));
        let desc_end = name_end.and_then(|n| n.checked_add(descsz.next_multiple_of(4)));
        let (Some(name_end), Some(desc_end)) = (name_end, desc_end) else {
            return Err(DeclError::Elf("note size overflows"));
        };
        if desc_end > notes.len() {
            return Err(DeclError::Elf("note runs past its segment"));
        }
        let name = &notes[12..12 + namesz];
        if name.strip_suffix(b"\0") == Some(NOTE_NAME.as_bytes()) && kind == NOTE_TYPE {
            found.push(&notes[name_end..name_end + descsz]);
        }
        notes = &notes[desc_end..];
    }
    Ok(found)
}

fn slice(bytes: &[u8], start: usize, len: usize) -> Option<&[u8]> {
    bytes.get(start..start.checked_add(len)?)
}
fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or([0; 4]))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]))
}

/// Reads a declaration's text (a note descriptor; trailing zero padding is ignored).
pub fn parse(text: &[u8]) -> Result<Parsed, DeclError> {
    if text.len() > MAX_TEXT {
        return Err(DeclError::TooLong(text.len()));
    }
    let end = text.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let text = core::str::from_utf8(&text[..end]).map_err(|_| DeclError::NotText)?;
    if text.is_empty() {
        return Err(DeclError::Missing(HEADER));
    }
    let mut lines = text.split('\n').enumerate().map(|(i, l)| (i + 1, l));
    match lines.next() {
        Some((_, HEADER)) => {}
        Some((line, other)) => {
            return Err(DeclError::Line {
                line,
                reason: format!("expected {HEADER:?}, found {other:?}"),
            })
        }
        None => unreachable!("split yields at least one line"),
    }
    let mut memory = None;
    let mut needs = None;
    let (mut publishes, mut subscribes, mut watches) = (Vec::new(), Vec::new(), Vec::new());
    for (line, content) in lines {
        let bad = |reason: String| DeclError::Line { line, reason };
        if content.is_empty() {
            continue;
        }
        let words: Vec<&str> = content.split(' ').collect();
        match words[0] {
            "memory-floor-mib" => {
                if memory.is_some() {
                    return Err(bad("a second memory-floor-mib".into()));
                }
                let [_, value] = words[..] else {
                    return Err(bad("expected `memory-floor-mib <MiB>`".into()));
                };
                memory = Some(number(value).map_err(bad)?);
            }
            "needs" => {
                if needs.is_some() {
                    return Err(bad("a second needs line".into()));
                }
                let mut parsed = Needs::NONE;
                for word in &words[1..] {
                    let flag = match *word {
                        "uplink" => &mut parsed.uplink,
                        "disk" => &mut parsed.disk,
                        "modules" => &mut parsed.modules,
                        other => return Err(bad(format!("unknown need {other:?}"))),
                    };
                    if core::mem::replace(flag, true) {
                        return Err(bad(format!("{word} is named twice")));
                    }
                }
                needs = Some(parsed);
            }
            verb @ ("publishes" | "subscribes" | "watches") => {
                let publishing = verb == "publishes";
                let topic = match (publishing, &words[1..]) {
                    (true, [name, schema, persistence]) => ParsedTopic {
                        name: topic_name(name).map_err(bad)?,
                        schema: number(schema).map_err(bad)?,
                        persistence: match *persistence {
                            "volatile" => Persistence::Volatile,
                            "persistent" => Persistence::Persistent,
                            other => return Err(bad(format!("unknown persistence {other:?}"))),
                        },
                    },
                    (false, [name, schema]) => ParsedTopic {
                        name: topic_name(name).map_err(bad)?,
                        schema: number(schema).map_err(bad)?,
                        persistence: Persistence::Volatile,
                    },
                    (true, _) => {
                        return Err(bad(
                            "expected `publishes <topic> <schema> <persistence>`".into()
                        ))
                    }
                    (false, _) => return Err(bad(format!("expected `{verb} <topic> <schema>`"))),
                };
                let list: &mut Vec<ParsedTopic> = match verb {
                    "publishes" => &mut publishes,
                    "subscribes" => &mut subscribes,
                    _ => &mut watches,
                };
                if list.iter().any(|t| t.name == topic.name) {
                    return Err(bad(format!("{} {} twice", verb, topic.name)));
                }
                list.push(topic);
            }
            other => return Err(bad(format!("unknown item {other:?}"))),
        }
    }
    Ok(Parsed {
        memory_floor_mib: memory.ok_or(DeclError::Missing("memory-floor-mib"))?,
        needs: needs.unwrap_or(Needs::NONE),
        publishes,
        subscribes,
        watches,
    })
}

fn number(word: &str) -> Result<u32, String> {
    let digits_only = !word.is_empty() && word.bytes().all(|b| b.is_ascii_digit());
    match word.parse::<u32>() {
        Ok(n) if digits_only && (word == "0" || !word.starts_with('0')) => Ok(n),
        _ => Err(format!("{word:?} is not a decimal number below 2^32")),
    }
}

fn topic_name(word: &str) -> Result<String, String> {
    check_topic_name(word)
        .map(|()| word.to_string())
        .map_err(|reason| format!("topic {word:?}: {reason}"))
}
