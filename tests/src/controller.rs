//! The lichen-controller on the host for guests under QEMU microvm (the guest's 10.0.2.2 is the
//! host's 127.0.0.1): its binaries built once, a server process that a test can stop and start
//! again on the same port, the admin CLI, onboarding certificates and config partitions.
//!
//! (tests/tests/zedagent.rs has its own copy of the first of these, written before this module;
//! it can move here.)

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// The directory of the controller's and devsim's binaries, built once.
pub fn binaries() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = crate::root();
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "lichen-controller", "--bins"])
            .current_dir(&root)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cannot build lichen-controller");
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"))
            .join("debug")
    })
}

/// A lichen-controller process on 127.0.0.1, killed when dropped.
pub struct Controller {
    child: Option<Child>,
    /// Its state directory (`ca.pem`, the store).
    pub state: PathBuf,
    /// The port it listens on.
    pub port: u16,
    server_names: Vec<String>,
}

impl Controller {
    /// Starts a controller with state in `state`, its TLS certificate naming `server_names`,
    /// on a free port.
    pub fn start(state: &Path, server_names: &[&str]) -> Controller {
        let mut controller = Controller {
            child: None,
            state: state.to_path_buf(),
            port: 0,
            server_names: server_names.iter().map(|s| s.to_string()).collect(),
        };
        controller.resume();
        controller
    }

    /// Stops the process (the state stays): the controller is unreachable until
    /// [`resume`](Controller::resume).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again, on the same port once it has one.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "the controller runs already");
        let mut command = Command::new(binaries().join("lichen-controller"));
        command
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--state-dir")
            .arg(&self.state)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for name in &self.server_names {
            command.args(["--server-name", name]);
        }
        let mut child = command.spawn().expect("start lichen-controller");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        self.port = first
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("controller said {first:?}"));
        self.child = Some(child);
    }

    /// Runs `lichen-controller admin ARGS` and returns its output.
    pub fn admin(&self, args: &[&str]) -> String {
        let output = Command::new(binaries().join("lichen-controller"))
            .arg("admin")
            .args(["--url", &format!("https://127.0.0.1:{}", self.port)])
            .arg("--state-dir")
            .arg(&self.state)
            .args(args)
            .output()
            .expect("run lichen-controller admin");
        assert!(
            output.status.success(),
            "admin {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `lichen-devsim ARGS`, which must succeed.
pub fn devsim(args: &[&str]) {
    let status = Command::new(binaries().join("lichen-devsim"))
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("run lichen-devsim");
    assert!(status.success(), "lichen-devsim {args:?} failed");
}

/// Writes the config partition `image` with img/mkconfig: `files` as `NAME=FILE`, and the
/// controller's address.
pub fn config_partition(image: &Path, files: &[(&str, &Path)], server: &str) {
    let mut command = Command::new("python3");
    command.arg(crate::root().join("img/mkconfig")).arg(image);
    for (name, file) in files {
        command.arg(format!("{name}={}", file.display()));
    }
    let status = command
        .args(["--server", server])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "img/mkconfig failed");
}
