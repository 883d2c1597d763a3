//! The downloader under QEMU microvm (TCG) against real peers on the host: the controller's
//! datastore (hyper; HTTPS under the controller's CA, and plain HTTP, both with byte ranges)
//! and Python's `http.server` (HTTP/1.0, no ranges). The guest reaches the host as 10.0.2.2.
//!
//! Cases: a download over HTTPS verified byte-exact; the downloader itself killed mid-way and
//! restarted (it resumes from what it committed); the datastore killed mid-download and
//! started again (the download retries, resumes with a range, and ends with the right
//! sha256); Python's server (no ranges) with a 404 first; a wrong sha256 (ERROR with both
//! hashes, nothing verified); a server that stalls (the read times out), then cuts a body
//! short, then serves it whole.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use lichen_tests::{run_console, run_console_watching, Accel, Boot, Run};
use sha2::{Digest, Sha256};

/// The controller's binaries, built once.
fn binaries() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = lichen_tests::root();
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

/// Builds the downloader image once.
fn build_downloader() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(lichen_tests::root().join("scripts/build"))
            .arg("downloader")
            .stdout(Stdio::null())
            .status()
            .expect("run scripts/build");
        assert!(status.success(), "scripts/build downloader failed");
    });
}

/// A directory for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("lichen-download-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free TCP port on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something listens on `port`.
fn wait_listening(port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("nothing listens on {port}");
}

/// A lichen-controller on 127.0.0.1:`port` (the guest's 10.0.2.2), its datastore also in plain
/// HTTP on `http_port`.
fn controller(state: &Path, port: u16, http_port: u16) -> Process {
    let mut child = Command::new(binaries().join("lichen-controller"))
        .args(["serve", "--server-name", "10.0.2.2", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--datastore-http")
        .arg(format!("127.0.0.1:{http_port}"))
        .arg("--state-dir")
        .arg(state)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start lichen-controller");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("listening on"), "{first:?}");
    wait_listening(http_port);
    Process(child)
}

/// Uploads `file` to the controller's datastore with curl; the datastore's password.
fn upload(state: &Path, port: u16, file: &Path) -> String {
    let token = std::fs::read_to_string(state.join("admin.token")).unwrap();
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "--cacert"])
        .arg(state.join("ca.pem"))
        .args(["-H", &format!("Authorization: Bearer {}", token.trim())])
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(format!("https://127.0.0.1:{port}/api/admin/v1/datastore"))
        .output()
        .expect("run curl");
    assert!(output.status.success(), "{output:?}");
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    answer["location"]["password"].as_str().unwrap().to_owned()
}

/// Python's http.server serving `dir` on `port`.
fn python_server(dir: &Path, port: u16) -> Process {
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .arg("--directory")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start python3 -m http.server");
    wait_listening(port);
    Process(child)
}

/// A config partition holding `ca` as the pinned root.
fn config_partition(dir: &TempDir, ca: &Path) -> PathBuf {
    let image = dir.join("config.img");
    let status = Command::new("python3")
        .arg(lichen_tests::root().join("img/mkconfig"))
        .arg(&image)
        .arg(format!("root-certificate.pem={}", ca.display()))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "img/mkconfig failed");
    image
}

/// A blank volume of `mib` MiB.
fn volume(dir: &TempDir, mib: u64) -> PathBuf {
    let path = dir.join("volume.img");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(mib << 20).unwrap();
    path
}

/// A file of `len` bytes that compresses badly, and its sha256.
fn content(len: usize, seed: u64) -> (Vec<u8>, String) {
    let mut x = seed | 1;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let sha = hex(&Sha256::digest(&bytes));
    (bytes, sha)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The downloader's QEMU command.
fn downloader(volume: &Path, config: Option<&Path>, args: &[&str]) -> Vec<String> {
    build_downloader();
    let mut run = Run::new("downloader")
        .accel(Accel::Tcg)
        .timeout(Duration::from_secs(240))
        .script_option("--hostfwd", Some("none"))
        .script_option("--disk", Some(&format!("{},name=volume", volume.display())));
    if let Some(config) = config {
        run = run.script_option(
            "--disk",
            Some(&format!("{},ro,name=config", config.display())),
        );
    }
    for arg in args {
        run = run.arg(arg);
    }
    run.command()
}

/// The first `len` bytes of the volume.
fn volume_bytes(volume: &Path, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    std::fs::File::open(volume)
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    bytes
}

/// The bytes a progress line (`... Downloading N/M bytes ...`) reports.
fn progress(text: &str) -> Option<u64> {
    let rest = text.split(" Downloading ").nth(1)?;
    rest.split('/').next()?.parse().ok()
}

fn expect_verified(boot: &Boot, sha: &str) {
    boot.expect(&format!("verified sha256 {sha}"));
    boot.expect_status(0);
}

#[test]
fn downloads_from_the_controllers_datastore_and_resumes_after_a_restart() {
    let dir = TempDir::new("controller");
    let (port, http_port) = (free_port(), free_port());
    let state = dir.join("state");
    let _controller = controller(&state, port, http_port);
    let (bytes, sha) = content(6 << 20, 7);
    let file = dir.join("app.img");
    std::fs::write(&file, &bytes).unwrap();
    let password = upload(&state, port, &file);
    let config = config_partition(&dir, &state.join("ca.pem"));
    let vol = volume(&dir, 8);
    let fqdn = format!("fqdn=https://10.0.2.2:{port}");
    let url = format!("url={sha}");
    let sha_arg = format!("sha256={sha}");
    let password_arg = format!("password={password}");
    let args = [
        fqdn.as_str(),
        "dpath=datastore",
        &url,
        &sha_arg,
        "api_key=lichen",
        &password_arg,
        "name=app",
    ];
    // The downloader is stopped (QEMU killed) once 2 MiB are committed ...
    let argv = downloader(&vol, Some(&config), &args);
    let first = run_console(
        &argv,
        Duration::from_secs(240),
        Some("Downloading 2097152/"),
    );
    first.expect("Downloading 2097152/6291456 bytes on volume");
    // ... and started again: it resumes from its record, not from 0.
    let second = run_console(&argv, Duration::from_secs(240), None);
    let resumed = second
        .lines
        .iter()
        .find_map(|l| progress(&l.text))
        .unwrap_or_else(|| panic!("no progress line:\n{}", second.output()));
    assert!(
        resumed >= 2 << 20,
        "resumed from {resumed}:\n{}",
        second.output()
    );
    expect_verified(&second, &sha);
    assert!(
        volume_bytes(&vol, bytes.len()) == bytes,
        "the volume holds the file"
    );

    // Started once more: the record says verified; the volume is hashed again, nothing is
    // downloaded.
    let third = run_console(&argv, Duration::from_secs(240), None);
    expect_verified(&third, &sha);
    assert!(third.line(" Downloading ").is_none(), "{}", third.output());
}

#[test]
fn a_datastore_killed_mid_download_is_retried_and_resumed() {
    let dir = TempDir::new("killed");
    let (port, http_port) = (free_port(), free_port());
    let state = dir.join("state");
    let mut controller_process = Some(controller(&state, port, http_port));
    let (bytes, sha) = content(12 << 20, 11);
    let file = dir.join("app.img");
    std::fs::write(&file, &bytes).unwrap();
    let password = upload(&state, port, &file);
    let vol = volume(&dir, 16);
    let fqdn = format!("fqdn=http://10.0.2.2:{http_port}");
    let url = format!("url={sha}");
    let sha_arg = format!("sha256={sha}");
    let password_arg = format!("password={password}");
    let argv = downloader(
        &vol,
        None,
        &[
            &fqdn,
            "dpath=datastore",
            &url,
            &sha_arg,
            "api_key=lichen",
            &password_arg,
            "backoff_ms=300",
            "timeout_s=10",
        ],
    );
    let mut restart: Option<std::thread::JoinHandle<Process>> = None;
    let boot = run_console_watching(&argv, Duration::from_secs(300), None, |line| {
        // Kill the datastore once 2 MiB are committed; start it again 3 s later.
        if progress(&line.text).is_some_and(|b| b >= 2 << 20) && controller_process.is_some() {
            drop(controller_process.take());
            let state = state.clone();
            restart = Some(std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(3));
                controller(&state, port, http_port)
            }));
        }
    });
    let _restarted = restart.map(|r| r.join().unwrap());
    expect_verified(&boot, &sha);
    assert!(volume_bytes(&vol, bytes.len()) == bytes);
    // It failed at least once, was retried, and resumed from a commit rather than from 0.
    let retried = boot.expect(" retries: ");
    assert!(retried.text.contains("Pending"), "{}", retried.text);
    let after = boot
        .lines
        .iter()
        .skip_while(|l| !l.text.contains(" retries"))
        .find_map(|l| progress(&l.text))
        .unwrap();
    assert!(after >= 2 << 20, "resumed from {after}:\n{}", boot.output());
}

#[test]
fn pythons_http_server_without_ranges_404_and_a_wrong_sha256() {
    let dir = TempDir::new("python");
    let served = dir.join("served");
    std::fs::create_dir_all(&served).unwrap();
    let (bytes, sha) = content(3 << 20, 13);
    let port = free_port();
    let _server = python_server(&served, port);
    let vol = volume(&dir, 4);
    let fqdn = format!("fqdn=http://10.0.2.2:{port}");
    let sha_arg = format!("sha256={sha}");

    // The file is not there yet (404, retried); it appears while the downloader retries.
    let argv = downloader(
        &vol,
        None,
        &[
            &fqdn,
            "dpath=images",
            "url=app.img",
            &sha_arg,
            "backoff_ms=500",
        ],
    );
    let file = served.join("images/app.img");
    let mut placed = false;
    let boot = run_console_watching(&argv, Duration::from_secs(240), None, |line| {
        if !placed && line.text.contains("(404)") {
            placed = true;
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, &bytes).unwrap();
        }
    });
    boot.expect("/images/app.img not found in the datastore (404)");
    expect_verified(&boot, &sha);
    assert!(volume_bytes(&vol, bytes.len()) == bytes);

    // Another file's sha256: ERROR with both hashes, never verified, not retried.
    let wrong = "0".repeat(64);
    let argv = downloader(
        &volume(&dir, 4),
        None,
        &[
            &fqdn,
            "dpath=images",
            "url=app.img",
            &format!("sha256={wrong}"),
        ],
    );
    let boot = run_console(&argv, Duration::from_secs(240), None);
    let error = boot.expect("sha256 mismatch");
    assert!(
        error.text.contains(&wrong) && error.text.contains(&sha),
        "{}",
        error.text
    );
    assert!(boot.line("Verified").is_none(), "{}", boot.output());
    boot.expect_status(3);
}

/// A server (Python's http.server classes) that stalls its first answer (accepts, reads the
/// request, says nothing for 30 s), cuts its second short (the headers promise the whole file,
/// the connection ends halfway), and answers whole after that.
const STALLING_CUTTING_SERVER: &str = r#"
import http.server, socketserver, sys, time
data = open(sys.argv[2], "rb").read()
answers = 0
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global answers
        answers += 1
        if answers == 1:
            time.sleep(30)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2] if answers == 2 else data)
    def log_message(self, *args):
        pass
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"#;

#[test]
fn a_stalled_then_truncated_answer_is_retried() {
    let dir = TempDir::new("truncated");
    let (bytes, sha) = content(3 << 20, 17);
    let file = dir.join("app.img");
    std::fs::write(&file, &bytes).unwrap();
    let port = free_port();
    let _server = Process(
        Command::new("python3")
            .args(["-c", STALLING_CUTTING_SERVER, &port.to_string()])
            .arg(&file)
            .spawn()
            .unwrap(),
    );
    wait_listening(port);
    let vol = volume(&dir, 4);
    let argv = downloader(
        &vol,
        None,
        &[
            &format!("fqdn=http://10.0.2.2:{port}"),
            "url=app.img",
            &format!("sha256={sha}"),
            "backoff_ms=300",
            "timeout_s=3",
        ],
    );
    let boot = run_console(&argv, Duration::from_secs(240), None);
    let stalled = boot.expect("retries: reading the response");
    assert!(stalled.text.contains("1 retries"), "{}", stalled.text);
    let cut = boot.expect("(truncated)");
    assert!(cut.text.contains("2 retries"), "{}", cut.text);
    expect_verified(&boot, &sha);
    assert!(volume_bytes(&vol, bytes.len()) == bytes);
}
