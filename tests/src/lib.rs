//! The harness behind lichen's boot tests and benchmarks.
//!
//! It builds images with `scripts/build`, asks `scripts/run --print-command` for the exact QEMU
//! command a user would run, runs it with a timeout, and returns the serial console output and
//! the guest's exit status, with the time each console line arrived.

pub mod controller;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the root")
        .to_path_buf()
}

/// Builds every image once per process (later calls wait for the first).
pub fn build_images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(root().join("scripts/build"))
            .stdout(Stdio::null())
            .status()
            .expect("run scripts/build");
        assert!(status.success(), "scripts/build failed");
    });
}

/// Limits how many guests run at once to the number of CPUs: timing checks inside guests (timer
/// lateness) must not fail because the test harness started more guests than the machine runs.
struct BootSlot;

static RUNNING: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

impl BootSlot {
    fn take() -> BootSlot {
        let limit = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (count, freed) = &RUNNING;
        let mut running = count.lock().unwrap_or_else(|e| e.into_inner());
        while *running >= limit {
            running = freed.wait(running).unwrap_or_else(|e| e.into_inner());
        }
        *running += 1;
        BootSlot
    }
}

impl Drop for BootSlot {
    fn drop(&mut self) {
        let (count, freed) = &RUNNING;
        *count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        freed.notify_one();
    }
}

/// Which accelerator QEMU uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// KVM if /dev/kvm works, else TCG (what `scripts/run` picks).
    Auto,
    /// KVM.
    Kvm,
    /// TCG.
    Tcg,
}

/// Whether KVM is usable here.
pub fn kvm_available() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// One console line and when it arrived, counted from QEMU's start.
#[derive(Clone, Debug)]
pub struct Line {
    /// Arrival time since QEMU was started.
    pub at: Duration,
    /// The text, without the line end.
    pub text: String,
}

/// The outcome of one boot.
#[derive(Debug)]
pub struct Boot {
    /// The guest's exit status, `None` if it timed out or QEMU failed.
    pub status: Option<i32>,
    /// Console lines.
    pub lines: Vec<Line>,
    /// Whether the timeout ended the run.
    pub timed_out: bool,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

impl Boot {
    /// The whole console output.
    pub fn output(&self) -> String {
        self.lines.iter().map(|l| format!("{}\n", l.text)).collect()
    }

    /// The first line containing `needle`.
    pub fn line(&self, needle: &str) -> Option<&Line> {
        self.lines.iter().find(|l| l.text.contains(needle))
    }

    /// Panics with the output unless some line contains `needle`.
    pub fn expect(&self, needle: &str) -> &Line {
        self.line(needle)
            .unwrap_or_else(|| panic!("no line contains {needle:?}; output:\n{}", self.output()))
    }

    /// Panics with the output unless the exit status is `status`.
    pub fn expect_status(&self, status: i32) {
        assert_eq!(
            self.status,
            Some(status),
            "exit status; output:\n{}",
            self.output()
        );
    }
}

/// A boot to run: image, accelerator, command line, timeout.
#[derive(Clone, Debug)]
pub struct Run {
    image: String,
    accel: Accel,
    args: Vec<String>,
    timeout: Duration,
    mem_mib: u32,
    script_options: Vec<String>,
}

impl Run {
    /// Boots `image` with defaults: automatic accelerator, 64 MiB, 60 s timeout.
    pub fn new(image: &str) -> Run {
        Run {
            image: image.into(),
            accel: Accel::Auto,
            args: Vec::new(),
            timeout: Duration::from_secs(60),
            mem_mib: 64,
            script_options: Vec::new(),
        }
    }

    /// Chooses the accelerator.
    pub fn accel(mut self, accel: Accel) -> Run {
        self.accel = accel;
        self
    }

    /// Adds a kernel command-line word.
    pub fn arg(mut self, arg: &str) -> Run {
        self.args.push(arg.into());
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Run {
        self.timeout = timeout;
        self
    }

    /// Passes an option (with its value, if any) to `scripts/run`, e.g. `--hostfwd`.
    pub fn script_option(mut self, option: &str, value: Option<&str>) -> Run {
        self.script_options.push(option.into());
        self.script_options.extend(value.map(String::from));
        self
    }

    /// Sets the guest memory.
    pub fn mem_mib(mut self, mem_mib: u32) -> Run {
        self.mem_mib = mem_mib;
        self
    }

    /// The QEMU command `scripts/run` would run.
    pub fn command(&self) -> Vec<String> {
        let mut cmd = Command::new(root().join("scripts/run"));
        cmd.arg(&self.image)
            .arg("--print-command")
            .args(["--mem", &self.mem_mib.to_string()])
            .env("LICHEN_NO_BUILD", "1");
        match self.accel {
            Accel::Auto => {}
            Accel::Kvm => {
                cmd.arg("--kvm");
            }
            Accel::Tcg => {
                cmd.arg("--tcg");
            }
        }
        cmd.args(&self.script_options).arg("--").args(&self.args);
        let out = cmd.output().expect("run scripts/run --print-command");
        assert!(
            out.status.success(),
            "scripts/run --print-command: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .lines()
            .map(String::from)
            .collect()
    }

    /// Builds the images if needed, boots, and collects the console until QEMU exits or the
    /// timeout hits (then QEMU is killed).
    pub fn boot(&self) -> Boot {
        build_images();
        run_console(&self.command(), self.timeout, None)
    }
}

/// Runs a command (QEMU), collecting its stdout lines with arrival times until it exits, the
/// timeout hits, or a line contains `stop_at` (then it is killed).
pub fn run_console(argv: &[String], timeout: Duration, stop_at: Option<&str>) -> Boot {
    run_console_watching(argv, timeout, stop_at, |_| {})
}

/// [`run_console`], calling `watch` with each line as it arrives (a test that acts on what the
/// guest says, e.g. a host-side step once the guest reached some point).
pub fn run_console_watching(
    argv: &[String],
    timeout: Duration,
    stop_at: Option<&str>,
    mut watch: impl FnMut(&Line),
) -> Boot {
    let _slot = BootSlot::take();
    let start = Instant::now();
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start qemu");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for text in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx
                .send(Line {
                    at: start.elapsed(),
                    text,
                })
                .is_err()
            {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let mut timed_out = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(line) => {
                watch(&line);
                let stop = stop_at.is_some_and(|s| line.text.contains(s));
                lines.push(line);
                if stop {
                    let _ = child.kill();
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if start.elapsed() > timeout {
            timed_out = true;
            let _ = child.kill();
            break;
        }
    }
    let exit = child.wait().expect("wait for qemu");
    let _ = reader.join();
    lines.extend(rx.try_iter());
    let status = if timed_out {
        None
    } else {
        exit.code().filter(|c| c % 2 == 1).map(|c| (c - 1) / 2)
    };
    Boot {
        status,
        lines,
        timed_out,
        elapsed: start.elapsed(),
    }
}

/// Median and 90th percentile of `samples` (sorted in place).
pub fn median_p90(samples: &mut [f64]) -> (f64, f64) {
    assert!(!samples.is_empty(), "no samples");
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.9))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut s = [5.0, 1.0, 3.0, 2.0, 4.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(median_p90(&mut s), (6.0, 9.0));
        assert_eq!(median_p90(&mut [1.0]), (1.0, 1.0));
    }
}
