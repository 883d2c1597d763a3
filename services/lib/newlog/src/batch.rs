//! Log lines as EVE's newlogs: one JSON object per line, in the proto3 JSON form of EVE's
//! `LogEntry` (`severity`, `source`, `content`, `msgid`, `timestamp` as `{seconds, nanos}`),
//! batched up to a size and gzipped, with the device's metadata in the gzip header's comment.
//!
//! A batch is at most [`Builder::max_raw`] bytes before compression (32 KiB by default), so that
//! its gzip fits in one bus object (64 KiB) and the vault keeps it as one.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use topics::logs::Batch;

/// The default largest batch before compression.
pub const DEFAULT_MAX_RAW: usize = 32 * 1024;

/// One line to batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The service it came from (EVE's `source`: the agent).
    pub source: &'a str,
    /// 1 error to 5 trace.
    pub level: u8,
    /// Unix time in milliseconds; 0 when the service's clock was not set (the controller then
    /// uses the arrival time).
    pub wall_ms: u64,
    /// The message.
    pub text: &'a str,
    /// A number unique in this pillar's life (EVE's `msgid`).
    pub msgid: u64,
}

/// EVE's severity name (logrus levels) of a log-wire level.
pub fn severity(level: u8) -> &'static str {
    match level {
        1 => "error",
        2 => "warning",
        3 => "info",
        4 => "debug",
        _ => "trace",
    }
}

/// Appends `text` as a JSON string.
fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `entry` as one JSON line (with its newline).
pub fn json_line(entry: &Entry<'_>) -> String {
    let mut out = String::with_capacity(entry.text.len() + 96);
    out.push_str("{\"severity\":\"");
    out.push_str(severity(entry.level));
    out.push_str("\",\"source\":");
    json_string(&mut out, entry.source);
    out.push_str(",\"content\":");
    json_string(&mut out, entry.text);
    let _ = write!(out, ",\"msgid\":{}", entry.msgid);
    if entry.wall_ms != 0 {
        let _ = write!(
            out,
            ",\"timestamp\":{{\"seconds\":{},\"nanos\":{}}}",
            entry.wall_ms / 1000,
            (entry.wall_ms % 1000) * 1_000_000
        );
    }
    out.push_str("}\n");
    out
}

/// The device's metadata for the gzip header, as EVE's newlogd writes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    /// The device UUID, if known when the batch is sealed.
    pub dev_id: String,
    /// The software version.
    pub eve_version: String,
}

impl Metadata {
    fn comment(&self) -> String {
        let mut out = String::from("{\"devID\":");
        json_string(&mut out, &self.dev_id);
        out.push_str(",\"image\":\"lichen\",\"eveVersion\":");
        json_string(&mut out, &self.eve_version);
        out.push('}');
        out
    }
}

/// The batch being filled.
#[derive(Debug)]
pub struct Builder {
    raw: Vec<u8>,
    lines: u32,
    max_raw: usize,
}

impl Builder {
    /// An empty batch of at most `max_raw` bytes before compression (at least 1 KiB).
    pub fn new(max_raw: usize) -> Self {
        Builder {
            raw: Vec::new(),
            lines: 0,
            max_raw: max_raw.max(1024),
        }
    }

    /// The largest batch before compression.
    pub fn max_raw(&self) -> usize {
        self.max_raw
    }

    /// Whether no line was added.
    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// Lines in the batch.
    pub fn lines(&self) -> u32 {
        self.lines
    }

    /// Whether `entry` fits; if it does not, seal first (a line longer than a whole batch is
    /// cut to fit an empty one).
    pub fn fits(&self, entry: &Entry<'_>) -> bool {
        self.raw.len() + json_line(entry).len() <= self.max_raw
    }

    /// Adds `entry`; returns false (adding nothing) when it does not fit and the batch is not
    /// empty.
    pub fn push(&mut self, entry: &Entry<'_>) -> bool {
        let mut line = json_line(entry);
        if self.raw.len() + line.len() > self.max_raw {
            if !self.is_empty() {
                return false;
            }
            // Longer than a batch alone: cut the text (log lines are at most 512 bytes, so
            // only a tiny max_raw gets here).
            let keep = self.max_raw.saturating_sub(160).min(entry.text.len());
            let mut end = keep;
            while !entry.text.is_char_boundary(end) {
                end -= 1;
            }
            line = json_line(&Entry {
                text: &format!("{}...", &entry.text[..end]),
                ..entry.clone()
            });
        }
        self.raw.extend_from_slice(line.as_bytes());
        self.lines += 1;
        true
    }

    /// The batch, gzipped, and an empty builder in its place.
    pub fn seal(&mut self, metadata: &Metadata) -> Batch {
        let raw = core::mem::take(&mut self.raw);
        let lines = core::mem::take(&mut self.lines);
        Batch {
            gzip: crate::gzip::compress(&raw, &metadata.comment()),
            lines,
            raw_bytes: raw.len() as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    fn entry(text: &str, msgid: u64) -> Entry<'_> {
        Entry {
            source: "zedagent",
            level: 3,
            wall_ms: 1_796_000_000_123,
            text,
            msgid,
        }
    }

    #[test]
    fn lines_are_eve_log_entries_in_json() {
        assert_eq!(
            json_line(&entry("config \"v2\"\tin force\n\u{1}", 9)),
            "{\"severity\":\"info\",\"source\":\"zedagent\",\"content\":\"config \\\"v2\\\"\\tin force\\n\\u0001\",\"msgid\":9,\"timestamp\":{\"seconds\":1796000000,\"nanos\":123000000}}\n"
        );
        let no_clock = Entry {
            wall_ms: 0,
            level: 1,
            ..entry("x", 1)
        };
        assert_eq!(
            json_line(&no_clock),
            "{\"severity\":\"error\",\"source\":\"zedagent\",\"content\":\"x\",\"msgid\":1}\n"
        );
    }

    #[test]
    fn a_batch_holds_what_fits_and_seals_to_gzip_of_its_lines() {
        let mut builder = Builder::new(1024);
        let mut expected = String::new();
        let mut n = 0;
        loop {
            let text = "line number ".to_string() + &n.to_string();
            let e = entry(&text, n);
            if !builder.fits(&e) {
                assert!(!builder.push(&e));
                break;
            }
            assert!(builder.push(&e));
            expected += &json_line(&e);
            n += 1;
        }
        assert!(expected.len() <= 1024 && expected.len() > 900);
        let batch = builder.seal(&Metadata {
            dev_id: "d".into(),
            eve_version: "0.1.0".into(),
        });
        assert!(builder.is_empty());
        assert_eq!(batch.lines, n as u32);
        assert_eq!(batch.raw_bytes as usize, expected.len());
        let comment = "{\"devID\":\"d\",\"image\":\"lichen\",\"eveVersion\":\"0.1.0\"}";
        assert_eq!(batch.gzip[3], 0x10);
        assert_eq!(&batch.gzip[10..10 + comment.len()], comment.as_bytes());
        let body = &batch.gzip[10 + comment.len() + 1..batch.gzip.len() - 8];
        let raw = miniz_oxide::inflate::decompress_to_vec(body).unwrap();
        assert_eq!(std::str::from_utf8(&raw).unwrap(), expected);
    }

    #[test]
    fn a_line_longer_than_a_batch_is_cut_into_an_empty_one() {
        let mut builder = Builder::new(1024);
        let long = "é".repeat(1000);
        assert!(builder.push(&entry(&long, 1)));
        assert_eq!(builder.lines(), 1);
        assert!(!builder.push(&entry("next", 2)));
        let batch = builder.seal(&Metadata::default());
        assert!(batch.raw_bytes as usize <= 1024, "{}", batch.raw_bytes);
    }
}
