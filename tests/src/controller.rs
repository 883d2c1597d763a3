//! The bundled controller for tests that boot zedagent (microvm: tests/tests/zedagent.rs;
//! Xen: tests/xen/tests/node.rs): `lichen-controller` on the host (the guest's 10.0.2.2), its
//! admin CLI, onboarding certificates from `lichen-devsim`, and config partitions from
//! `img/mkconfig`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// The directory of the controller's and devsim's binaries, built once per process.
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

/// A directory for one test, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory named after the process and `tag`.
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("lichen-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A lichen-controller process on 127.0.0.1 (the guest's 10.0.2.2), killed when dropped.
pub struct Controller {
    child: Child,
    /// Its state directory.
    pub state: PathBuf,
    /// The port it listens on.
    pub port: u16,
}

impl Controller {
    /// Starts one on a free port, its certificate naming `server_names`.
    pub fn start(state: &Path, server_names: &[&str]) -> Controller {
        Controller::start_on(state, server_names, 0)
    }

    /// Starts one on `port` (0: a free one), its certificate naming `server_names`; a
    /// controller started again on the same state directory and port is the same controller
    /// to its devices.
    pub fn start_on(state: &Path, server_names: &[&str], port: u16) -> Controller {
        let mut command = Command::new(binaries().join("lichen-controller"));
        command
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--state-dir",
            ])
            .arg(state)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for name in server_names {
            command.args(["--server-name", name]);
        }
        let mut child = command.spawn().expect("start lichen-controller");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let port = first
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("controller said {first:?}"));
        Controller {
            child,
            state: state.to_path_buf(),
            port,
        }
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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh onboarding certificate and key (`onboard.pem`, `onboard.key`) in `dir`.
pub fn onboarding_cert(dir: &Path) {
    let status = Command::new(binaries().join("lichen-devsim"))
        .args(["onboarding-cert", "--out"])
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Writes a config partition `dir/config.img` with img/mkconfig: `root_pem` as the root,
/// `dir/onboard.{pem,key}` as the onboarding certificate, `server` and `serial`, and a fresh
/// vault key when `vault_key` (a node with a vault).
pub fn config_partition(
    dir: &Path,
    root_pem: &Path,
    server: &str,
    serial: &str,
    vault_key: bool,
) -> PathBuf {
    let image = dir.join("config.img");
    let arg = |name: &str, file: &Path| format!("{name}={}", file.display());
    let mut command = Command::new("python3");
    command
        .arg(crate::root().join("img/mkconfig"))
        .arg(&image)
        .arg(arg("root-certificate.pem", root_pem))
        .arg(arg("onboard.cert.pem", &dir.join("onboard.pem")))
        .arg(arg("onboard.key.pem", &dir.join("onboard.key")))
        .args(["--server", server, "--serial", serial]);
    if vault_key {
        command.arg("--vault-key");
    }
    let status = command.stdout(Stdio::null()).status().unwrap();
    assert!(status.success(), "img/mkconfig failed");
    image
}
