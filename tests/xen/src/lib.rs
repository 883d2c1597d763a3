//! The harness of the Xen boot tests (`tests/`): boots a manifest with `scripts/run-xen` and
//! returns what the launcher printed.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

/// Only one Xen boot at a time: the machine has two cores.
pub static ONE_BOOT_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What a run of scripts/run-xen left.
pub struct Run {
    /// Its exit status (the node's, or 2, 124, 125...).
    pub status: Option<i32>,
    /// Standard output and error, together.
    pub log: String,
}

impl Run {
    /// Whether the log holds `text`.
    pub fn has(&self, text: &str) -> bool {
        self.log.contains(text)
    }

    /// How often the log holds `text`.
    pub fn count(&self, text: &str) -> usize {
        self.log.matches(text).count()
    }

    /// Panics (with the log) unless it holds `text`.
    pub fn assert_has(&self, text: &str) {
        assert!(
            self.has(text),
            "no `{text}` in the run's log:\n{}",
            self.log
        );
    }
}

/// What Xen prints when a guest triple-faults.
const TRIPLE_FAULT: &str = "Triple fault - invoking HVM shutdown action";

/// What the launcher prints when a node ran to its end with no service failed.
const NODE_OK: &str = "finished: no service failed";

/// Writes `manifest` as `<name>.toml` and boots it (with the probe fixture's images when
/// `probe_images`), with a timeout of `timeout_s`.
///
/// A boot in which Xen reports a triple fault is made once more, with a note: under Xen in
/// QEMU TCG a lichen guest very rarely takes a page fault on a page that is mapped (its
/// page-table walk through nested paging reads a not-present entry right after a VM exit), and
/// can then deliver no exception at all (docs/vchan.md has the evidence). A guest bug that
/// faults this way every time still fails. A node that finished with no service failed
/// anyway (the launcher restarted the guest) is not booted again: its disks have moved on, and
/// a second boot would see the first one's writes.
pub fn boot(name: &str, manifest: &str, probe_images: bool, timeout_s: u32) -> Run {
    let first = boot_once(name, manifest, probe_images, timeout_s);
    if !first.has(TRIPLE_FAULT) || first.has(NODE_OK) {
        return first;
    }
    eprintln!(
        "NOTE: {name}: Xen reported a guest triple fault (the known nested-paging fault under \
         QEMU TCG, docs/vchan.md): booting once more"
    );
    boot_once(name, manifest, probe_images, timeout_s)
}

fn boot_once(name: &str, manifest: &str, probe_images: bool, timeout_s: u32) -> Run {
    let _guard = ONE_BOOT_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = repo().join("target/xen/test-manifests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, manifest).unwrap();

    let mut command = Command::new(repo().join("scripts/run-xen"));
    command
        .arg(&path)
        .args(["--timeout", &timeout_s.to_string()]);
    if probe_images {
        let built = Command::new(repo().join("xen/fixtures/build"))
            .output()
            .unwrap();
        assert!(
            built.status.success(),
            "xen/fixtures/build failed: {}",
            String::from_utf8_lossy(&built.stderr)
        );
        command
            .arg("--images")
            .arg(String::from_utf8_lossy(&built.stdout).trim());
    }
    let output = command.output().expect("cannot run scripts/run-xen");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{log}");
    Run {
        status: output.status.code(),
        log,
    }
}

/// Boots `manifest` (written as `<name>.toml`) with scripts/run-xen and `args`, calling
/// `watch` with each line of the launcher's log as it arrives: a test that acts on the host
/// while the node runs (a controller stopped and started again, say). The node is stopped
/// (QEMU and all run-xen started, as one process group) once `watch` returns `true`, or after
/// `timeout`. The run's status is `None` when it was stopped so.
pub fn boot_watching(
    name: &str,
    manifest: &str,
    args: &[&str],
    timeout: Duration,
    mut watch: impl FnMut(&str) -> bool,
) -> Run {
    let _guard = ONE_BOOT_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = repo().join("target/xen/test-manifests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, manifest).unwrap();
    let mut child = Command::new(repo().join("scripts/run-xen"))
        .arg(&path)
        .args(["--timeout", &(timeout.as_secs() + 60).to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("cannot run scripts/run-xen");
    let (tx, rx) = mpsc::channel();
    let readers: Vec<_> = [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ]
    .into_iter()
    .map(|out| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        })
    })
    .collect();
    drop(tx);
    let start = Instant::now();
    let mut log = String::new();
    let mut stopped = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                println!("{line}");
                log.push_str(&line);
                log.push('\n');
                if watch(&line) {
                    stopped = true;
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if start.elapsed() > timeout {
            log.push_str(&format!(
                "boot_watching: stopped after {} s\n",
                timeout.as_secs()
            ));
            stopped = true;
            break;
        }
    }
    if stopped {
        // The whole group: run-xen, QEMU, its watchdog and the console tail.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", child.id())])
            .status();
    }
    let status = child.wait().expect("wait for scripts/run-xen");
    for reader in readers {
        let _ = reader.join();
    }
    for line in rx.try_iter() {
        log.push_str(&line);
        log.push('\n');
    }
    Run {
        status: if stopped { None } else { status.code() },
        log,
    }
}

/// The value after `key ` in the first line of `log` holding `marker`.
pub fn field<'a>(log: &'a str, marker: &str, key: &str) -> Option<&'a str> {
    let line = log.lines().find(|l| l.contains(marker))?;
    let mut words = line.split_whitespace();
    words.find(|w| *w == key)?;
    words.next()
}
