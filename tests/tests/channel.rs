//! Channel tests: `channel-echo` under QEMU microvm, its channel `echo` a virtio-console port
//! that `scripts/run --channel echo=PATH` backs with a unix socket this test listens on (QEMU
//! connects to it as a client when it starts).
//!
//! The guests run under TCG, like the network tests: on the development machine KVM is nested
//! and every first touch of a guest page costs milliseconds.

use lichen_tests::{build_images, run_console, Accel, Boot, Run};
use sha2::{Digest, Sha256};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::Command;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long a whole guest run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long QEMU may take to start and connect to the socket.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Socket timeouts on the host side.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A unix socket path for this test, removed when dropped.
struct SocketPath(PathBuf);

impl SocketPath {
    fn new(tag: &str) -> SocketPath {
        let path =
            std::env::temp_dir().join(format!("lichen-channel-{}-{tag}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        SocketPath(path)
    }

    fn listen(&self) -> UnixListener {
        UnixListener::bind(&self.0).expect("listen on the channel socket")
    }

    fn channel_option(&self, name: &str) -> String {
        format!("{name}={}", self.0.display())
    }
}

impl Drop for SocketPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A `channel-echo` guest running in a thread; its console and status come from [`Guest::end`].
struct Guest(JoinHandle<Boot>);

impl Guest {
    /// Boots `channel-echo` with the given `scripts/run` channel options and guest arguments.
    fn start(channels: &[String], args: &[&str]) -> Guest {
        build_images();
        let mut run = Run::new("channel-echo")
            .accel(Accel::Tcg)
            .timeout(RUN_TIMEOUT);
        for channel in channels {
            run = run.script_option("--channel", Some(channel));
        }
        for arg in args {
            run = run.arg(arg);
        }
        let argv = run.command();
        Guest(thread::spawn(move || run_console(&argv, RUN_TIMEOUT, None)))
    }

    /// Waits for QEMU to connect to `listener`; fails with the console if the guest ends first.
    fn accept(self, listener: &UnixListener) -> (Guest, UnixStream) {
        listener.set_nonblocking(true).unwrap();
        let start = Instant::now();
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                    return (self, stream);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("accept: {e}"),
            }
            if self.0.is_finished() || start.elapsed() > CONNECT_TIMEOUT {
                let boot = self.end();
                panic!("QEMU never connected; output:\n{}", boot.output());
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the guest to stop.
    fn end(self) -> Boot {
        self.0.join().expect("the guest thread")
    }
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The guest's report: bytes received and their sha256.
fn report(boot: &Boot) -> (usize, String) {
    let line = &boot.expect("received ").text;
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == "received")
        .expect("the report");
    assert_eq!(
        words.get(at + 2..at + 4),
        Some(&["bytes", "sha256"][..]),
        "{line}"
    );
    let count = words[at + 1].parse().expect("a byte count");
    (count, words[at + 4].to_string())
}

#[test]
fn sixteen_mib_echoed_with_matching_sha256() {
    const SIZE: usize = 16 << 20;
    let socket = SocketPath::new("echo");
    let listener = socket.listen();
    let guest = Guest::start(&[socket.channel_option("echo")], &[]);
    let (guest, stream) = guest.accept(&listener);
    let data = random_bytes(SIZE, 0x1234_5678_9abc_def1);
    let sent_hash = sha256_hex(&data);
    let start = Instant::now();
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || writer.write_all(&data).map(|()| data));
    let mut echoed = vec![0u8; SIZE];
    (&stream).read_exact(&mut echoed).expect("read the echo");
    let elapsed = start.elapsed();
    let data = sender.join().unwrap().expect("send");
    assert!(echoed == data, "the echo differs from what was sent");
    drop(stream);
    let boot = guest.end();
    boot.expect_status(0);
    assert_eq!(report(&boot), (SIZE, sent_hash), "{}", boot.output());
    eprintln!(
        "16 MiB each way in {:.2} s ({:.1} MB/s each way)",
        elapsed.as_secs_f64(),
        SIZE as f64 / 1e6 / elapsed.as_secs_f64()
    );
}

#[test]
fn host_closing_early_is_end_of_stream() {
    const SENT: usize = 64 << 10;
    const READ_BACK: usize = 1 << 10;
    let socket = SocketPath::new("early");
    let listener = socket.listen();
    let guest = Guest::start(&[socket.channel_option("echo")], &[]);
    let (guest, mut stream) = guest.accept(&listener);
    let data = random_bytes(SENT, 42);
    stream.write_all(&data).expect("send");
    let mut back = [0u8; READ_BACK];
    stream.read_exact(&mut back).expect("read some of the echo");
    assert_eq!(back[..], data[..READ_BACK]);
    // Close with the rest of the echo unread: QEMU drops what it had not delivered yet.
    drop(stream);
    let boot = guest.end();
    boot.expect_status(0);
    let (received, hash) = report(&boot);
    assert!(
        (READ_BACK..=SENT).contains(&received),
        "received {received}; output:\n{}",
        boot.output()
    );
    assert_eq!(hash, sha256_hex(&data[..received]), "{}", boot.output());
}

#[test]
fn no_console_device_is_a_clear_error() {
    let boot = Guest::start(&[], &["wait_ms=300"]).end();
    boot.expect_status(1);
    boot.expect("cannot open channel echo: no channel named \"echo\" (this machine has none)");
}

#[test]
fn no_port_of_that_name_is_a_clear_error() {
    let socket = SocketPath::new("other");
    let listener = socket.listen();
    let guest = Guest::start(&[socket.channel_option("other")], &["wait_ms=300"]);
    let (guest, _stream) = guest.accept(&listener);
    let boot = guest.end();
    boot.expect_status(1);
    boot.expect("cannot open channel echo: no channel named \"echo\" (channels: other)");
}

#[test]
fn bad_channel_options_are_refused_by_scripts_run() {
    let root = lichen_tests::root();
    for (option, message) in [
        ("Echo=/tmp/x", "bad --channel 'Echo=/tmp/x'"),
        ("echo", "bad --channel 'echo'"),
        ("echo=", "bad --channel 'echo='"),
    ] {
        let out = Command::new(root.join("scripts/run"))
            .args(["channel-echo", "--print-command", "--channel", option])
            .env("LICHEN_NO_BUILD", "1")
            .output()
            .expect("run scripts/run");
        assert_eq!(out.status.code(), Some(2), "{option}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{option}: {stderr}");
    }
    let out = Command::new(root.join("scripts/run"))
        .args(["channel-echo", "--print-command"])
        .args(["--channel", "echo=/tmp/a", "--channel", "echo=/tmp/b"])
        .env("LICHEN_NO_BUILD", "1")
        .output()
        .expect("run scripts/run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--channel echo given twice"));
}

#[test]
fn channel_options_become_one_serial_device_and_a_port_each() {
    let command = Run::new("channel-echo")
        .script_option("--channel", Some("echo=/tmp/a,b.sock"))
        .script_option("--channel", Some("logs=/tmp/logs.sock"))
        .command();
    let devices: Vec<&String> = command
        .iter()
        .filter(|a| a.starts_with("virtio-serial-device"))
        .collect();
    assert_eq!(devices, ["virtio-serial-device,id=channels,max_ports=3"]);
    for expected in [
        "socket,id=channel0,path=/tmp/a,,b.sock",
        "virtserialport,bus=channels.0,chardev=channel0,name=echo",
        "socket,id=channel1,path=/tmp/logs.sock",
        "virtserialport,bus=channels.0,chardev=channel1,name=logs",
    ] {
        assert!(
            command.iter().any(|a| a == expected),
            "{expected}: {command:?}"
        );
    }
    let plain = Run::new("channel-echo").command();
    assert!(
        !plain.iter().any(|a| a.contains("virtio-serial")),
        "{plain:?}"
    );
}
