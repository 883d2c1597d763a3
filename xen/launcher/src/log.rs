//! The launcher's log: every line starts with the seconds since the launcher started, so that a
//! reader (scripts/bench.d/xen-boot) can time what happened from the log alone.

use std::sync::OnceLock;
use std::time::Instant;

static START: OnceLock<Instant> = OnceLock::new();

/// Starts the log's clock (the first call wins; logging also starts it).
pub fn start_clock() {
    START.get_or_init(Instant::now);
}

/// Seconds since the clock started.
pub fn elapsed() -> f64 {
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// The prefix of a log line: `[  12.345]`.
pub fn stamp() -> String {
    format!("[{:8.3}]", elapsed())
}

/// Prints a launcher message: `[  12.345] launcher: <message>`.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        println!("{} launcher: {}", $crate::log::stamp(), format_args!($($arg)*))
    };
}
