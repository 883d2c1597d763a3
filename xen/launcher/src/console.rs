//! Following a service's console log (written by xenconsoled) line by line.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

/// Follows a growing log file, returning each complete line once.
#[derive(Debug)]
pub struct ConsoleTail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl ConsoleTail {
    /// Follows `path` from its start (the file need not exist yet).
    pub fn new(path: PathBuf) -> ConsoleTail {
        ConsoleTail {
            path,
            offset: 0,
            partial: Vec::new(),
        }
    }

    /// The complete lines appended since the last call, without line ends or carriage returns.
    pub fn read_lines(&mut self) -> Vec<String> {
        let Ok(mut file) = File::open(&self.path) else {
            return Vec::new();
        };
        let Ok(len) = file.metadata().map(|m| m.len()) else {
            return Vec::new();
        };
        if len < self.offset {
            // Truncated or replaced: start again.
            self.offset = 0;
            self.partial.clear();
        }
        if len == self.offset || file.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut fresh = Vec::new();
        if file
            .take(len - self.offset)
            .read_to_end(&mut fresh)
            .is_err()
        {
            return Vec::new();
        }
        self.offset += fresh.len() as u64;
        self.partial.extend_from_slice(&fresh);
        let mut lines = Vec::new();
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..end]);
            lines.push(text.replace('\r', ""));
        }
        lines
    }

    /// Whatever is left after the last line end (a line without its end yet), taken out.
    pub fn take_partial(&mut self) -> Option<String> {
        if self.partial.is_empty() {
            return None;
        }
        let text = String::from_utf8_lossy(&self.partial).replace('\r', "");
        self.partial.clear();
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn returns_each_complete_line_once() {
        let path = std::env::temp_dir().join(format!("lichen-console-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut tail = ConsoleTail::new(path.clone());
        assert!(tail.read_lines().is_empty(), "a missing file has no lines");

        let mut file = File::create(&path).unwrap();
        file.write_all(b"first\r\nsec").unwrap();
        assert_eq!(tail.read_lines(), ["first"]);
        assert!(tail.read_lines().is_empty());
        file.write_all(b"ond\nthird\nfou").unwrap();
        assert_eq!(tail.read_lines(), ["second", "third"]);
        assert_eq!(tail.take_partial().as_deref(), Some("fou"));
        assert_eq!(tail.take_partial(), None);

        drop(file);
        std::fs::write(&path, b"new\n").unwrap();
        assert_eq!(
            tail.read_lines(),
            ["new"],
            "a truncated file is read again from its start"
        );
        std::fs::remove_file(&path).unwrap();
    }
}
