//! The launcher's log: every line starts with the seconds since the launcher started, so that a
//! reader (scripts/bench.d/xen-boot) can time what happened from the log alone.
//!
//! Lines are stamped when they are made and written to stdout by a thread of their own: in dom0
//! stdout is Xen's console, which under QEMU TCG can take a second to take a burst of guest
//! lines, and the supervision loop (restarts, the console reads that time first lines) must
//! not wait for it. [`flush`] before exiting.

use std::io::Write;
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

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

/// What the writer thread is asked to do.
enum Message {
    Line(String),
    Flush(mpsc::SyncSender<()>),
}

static WRITER: OnceLock<mpsc::Sender<Message>> = OnceLock::new();

/// Writes `text` and a line end to stdout, soon (on the writer thread; in unit tests at once,
/// where the test harness captures it).
pub fn line(text: String) {
    if cfg!(test) {
        println!("{text}");
        return;
    }
    let writer = WRITER.get_or_init(|| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || write_lines(rx));
        tx
    });
    if let Err(mpsc::SendError(Message::Line(text))) = writer.send(Message::Line(text)) {
        println!("{text}");
    }
}

/// The writer thread: writes what arrives, flushing stdout whenever nothing more is queued.
fn write_lines(rx: mpsc::Receiver<Message>) {
    let stdout = std::io::stdout();
    while let Ok(first) = rx.recv() {
        let mut out = std::io::BufWriter::new(stdout.lock());
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Line(text) => {
                    let _ = writeln!(out, "{text}");
                }
                Message::Flush(done) => {
                    let _ = out.flush();
                    let _ = done.send(());
                }
            }
            next = rx.try_recv().ok();
        }
        let _ = out.flush();
    }
}

/// Waits (up to 10 s) until every line made so far is written.
pub fn flush() {
    let Some(writer) = WRITER.get() else {
        return;
    };
    let (done, written) = mpsc::sync_channel(1);
    if writer.send(Message::Flush(done)).is_ok() {
        let _ = written.recv_timeout(Duration::from_secs(10));
    }
}

/// Prints a launcher message: `[  12.345] launcher: <message>` (see [`line`]).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::log::line(format!("{} launcher: {}", $crate::log::stamp(), format_args!($($arg)*)))
    };
}
