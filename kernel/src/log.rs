//! Leveled logging to the console: `[   0.001234] INFO  hello: message`.
//!
//! Each line carries the monotonic time since boot, the level and the image name. A line is
//! formatted into a fixed buffer (long lines are cut and marked) and written to the console
//! in one piece, so lines from different tasks never interleave. Each line also goes to the
//! log ring ([`crate::logring`]), from which the logs pillar collects it.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU8, Ordering};

/// Severity of a log line; lower is more severe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// Something failed.
    Error = 1,
    /// Something is wrong but work goes on.
    Warn = 2,
    /// Normal operation, worth seeing.
    Info = 3,
    /// Detail for developers.
    Debug = 4,
    /// Even more detail.
    Trace = 5,
}

impl Level {
    /// The level named `name` (`error`, `warn`, `info`, `debug`, `trace`).
    pub fn from_name(name: &str) -> Option<Level> {
        Some(match name {
            "error" => Level::Error,
            "warn" => Level::Warn,
            "info" => Level::Info,
            "debug" => Level::Debug,
            "trace" => Level::Trace,
            _ => return None,
        })
    }

    fn label(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        }
    }
}

static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Shows lines up to `level`.
pub fn set_max_level(level: Level) {
    MAX_LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether lines at `level` are shown.
pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// Longest log line, in bytes; longer lines end in `...`.
pub const MAX_LINE: usize = 512;

/// A fixed-size line buffer that cuts what does not fit.
pub struct LineBuffer {
    bytes: [u8; MAX_LINE],
    len: usize,
    truncated: bool,
}

impl Default for LineBuffer {
    fn default() -> Self {
        LineBuffer {
            bytes: [0; MAX_LINE],
            len: 0,
            truncated: false,
        }
    }
}

impl LineBuffer {
    /// The line so far, with `...\n` in place of its end if it was cut, else with `\n`.
    pub fn finish(&mut self) -> &[u8] {
        const MARK: &[u8] = b"...\n";
        if self.truncated {
            self.len = MAX_LINE - MARK.len();
            self.bytes[self.len..].copy_from_slice(MARK);
            self.len = MAX_LINE;
        } else if self.len == MAX_LINE {
            self.bytes[MAX_LINE - 1] = b'\n';
        } else {
            self.bytes[self.len] = b'\n';
            self.len += 1;
        }
        &self.bytes[..self.len]
    }
}

impl Write for LineBuffer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = MAX_LINE - 1 - self.len;
        let take = s.len().min(room);
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        if take < s.len() {
            self.truncated = true;
        }
        Ok(())
    }
}

/// Formats one log line into `buffer`; returns where the message starts (after the prefix).
pub fn format_line(
    buffer: &mut LineBuffer,
    at: crate::time::Instant,
    level: Level,
    image: &str,
    args: fmt::Arguments,
) -> usize {
    let _ = write!(buffer, "[{at}] {} {image}: ", level.label());
    let start = buffer.len;
    let _ = buffer.write_fmt(args);
    start
}

/// Writes a log line (use the macros: [`error!`](crate::error), [`warn!`](crate::warn),
/// [`info!`](crate::info), [`debug!`](crate::debug), [`trace!`](crate::trace)).
#[cfg(target_os = "none")]
pub fn log(level: Level, args: fmt::Arguments) {
    if !enabled(level) {
        return;
    }
    let mut line = LineBuffer::default();
    let at = crate::time::now();
    let start = format_line(&mut line, at, level, crate::service().name, args);
    let bytes = line.finish();
    crate::console::write(bytes);
    // The message alone (no prefix, no newline) for the logs pillar (docs/logs.md).
    let text = &bytes[start.min(bytes.len() - 1)..bytes.len() - 1];
    crate::logring::push(level as u8, at.as_nanos(), text);
}

/// Writes a log line to the test's output (host unit tests).
#[cfg(all(test, not(target_os = "none")))]
pub fn log(level: Level, args: fmt::Arguments) {
    if enabled(level) {
        let mut line = LineBuffer::default();
        format_line(&mut line, crate::time::now(), level, "test", args);
        std::eprint!("{}", core::str::from_utf8(line.finish()).unwrap_or("?\n"));
    }
}

/// Logs at error level.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Error, format_args!($($arg)*)) };
}

/// Logs at warning level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Warn, format_args!($($arg)*)) };
}

/// Logs at info level.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Info, format_args!($($arg)*)) };
}

/// Logs at debug level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Debug, format_args!($($arg)*)) };
}

/// Logs at trace level.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Trace, format_args!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Instant;

    #[test]
    fn line_format() {
        let mut b = LineBuffer::default();
        format_line(
            &mut b,
            Instant::from_nanos(1_500_000),
            Level::Warn,
            "hello",
            format_args!("x={}", 5),
        );
        assert_eq!(b.finish(), b"[    0.001500] WARN  hello: x=5\n");
    }

    #[test]
    fn long_lines_are_cut_and_marked() {
        let mut b = LineBuffer::default();
        let long = "y".repeat(2 * MAX_LINE);
        format_line(
            &mut b,
            Instant::BOOT,
            Level::Info,
            "img",
            format_args!("{long}"),
        );
        let line = b.finish();
        assert_eq!(line.len(), MAX_LINE);
        assert!(line.ends_with(b"yyy...\n"));
    }

    #[test]
    fn levels() {
        assert_eq!(Level::from_name("debug"), Some(Level::Debug));
        assert_eq!(Level::from_name("loud"), None);
        assert!(Level::Error < Level::Info);
    }
}
