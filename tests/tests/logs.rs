//! The logs pillar under QEMU microvm (TCG) against the real lichen-controller on the host:
//! log lines of a service (this test, speaking the log channel's frames on a virtio-console
//! port) and the pillar's own are batched, gzipped and posted to `id/{uuid}/newlogs`, signed
//! with the device key, and show in the controller's `admin logs`; the controller stopped,
//! lines logged meanwhile wait in the queue and arrive once it is back; every line the service
//! sent is acknowledged.
//!
//! The guest runs with `device=config` (the pillar's test mode without zedagent and a vault):
//! the device is one lichen-devsim registered, its certificate and key in the config
//! partition. The pillar with zedagent's identity and the vault's queue is the Xen node's.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use lichen_tests::controller::{binaries, config_partition, onboarding_cert, Controller, TempDir};
use lichen_tests::{run_console_watching, Accel, Run};
use log_wire::{encode, Decoder, Line, Message};

/// Runs `lichen-devsim ARGS`, which must succeed.
fn devsim(args: &[&str]) {
    let status = Command::new(binaries().join("lichen-devsim"))
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("run lichen-devsim");
    assert!(status.success(), "lichen-devsim {args:?} failed");
}

/// Adds `files` (`NAME=FILE`) to the config partition `image` with img/mkconfig.
fn add_files(image: &Path, files: &[(&str, &Path)]) {
    let mut command = Command::new("python3");
    command
        .arg(lichen_tests::root().join("img/mkconfig"))
        .arg(image);
    for (name, file) in files {
        command.arg(format!("{name}={}", file.display()));
    }
    let status = command.stdout(Stdio::null()).status().unwrap();
    assert!(status.success(), "img/mkconfig failed");
}

/// The host's side of the log channel: a service called `feeder` (boot 42) that sends the
/// lines it is told to, numbered from 0, and records the last one acknowledged.
fn feeder(listener: UnixListener, lines: mpsc::Receiver<String>, acked: Arc<AtomicU64>) {
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("QEMU connects");
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut out = Vec::new();
        encode(
            &Message::Hello {
                boot: 42,
                first: 0,
                service: "feeder".into(),
            },
            &mut out,
        );
        stream.write_all(&out).unwrap();
        let (mut seq, mut decoder, mut buf) = (0u64, Decoder::new(), [0u8; 256]);
        loop {
            while let Ok(text) = lines.try_recv() {
                let mut out = Vec::new();
                encode(
                    &Message::Line(Line {
                        seq,
                        at_ns: seq * 1000,
                        wall_ms: 0,
                        level: 2,
                        text: text.as_bytes().into(),
                    }),
                    &mut out,
                );
                seq += 1;
                if stream.write_all(&out).is_err() {
                    return;
                }
            }
            match stream.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => decoder
                    .push(&buf[..n], |message| {
                        if let Message::Ack { boot: 42, seq } = message {
                            acked.store(seq + 1, Ordering::SeqCst);
                        }
                    })
                    .expect("the pillar's acknowledgements decode"),
                Err(_) => {}
            }
        }
    });
}

/// The device's log lines as `admin logs` prints them.
fn logs(controller: &Controller, uuid: &str) -> String {
    controller.admin(&["logs", uuid, "--limit", "500"])
}

/// Waits up to `within` for the controller to show a line containing `needle`.
fn wait_for_line(controller: &Controller, uuid: &str, needle: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let lines = logs(controller, uuid);
        if lines.contains(needle) || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn lines_reach_the_controller_and_survive_its_outage() {
    let dir = TempDir::new("logs-outage");
    let state = dir.0.join("state");
    let started = Controller::start(&state, &["10.0.2.2"]);
    let (port, url) = (started.port, format!("https://127.0.0.1:{}", started.port));
    let mut controller = Some(started);
    let admin = |c: &Option<Controller>, args: &[&str]| c.as_ref().unwrap().admin(args);

    // A device registered by devsim: the pillar signs as it.
    onboarding_cert(&dir.0);
    let onboard = dir.0.join("onboard.pem");
    admin(
        &controller,
        &[
            "onboarding",
            "add",
            onboard.to_str().unwrap(),
            "--serial",
            "logs-*",
        ],
    );
    let ids = dir.0.join("ids");
    let ca = dir.0.join("state/ca.pem");
    devsim(&[
        "run",
        "--url",
        &url,
        "--ca",
        ca.to_str().unwrap(),
        "--onboarding",
        dir.0.to_str().unwrap(),
        "--identities",
        ids.to_str().unwrap(),
        "--serial-prefix",
        "logs-",
        "--report-interval",
        "0",
        "--duration",
        "2",
    ]);
    let devices = admin(&controller, &["devices", "list"]);
    let uuid = devices
        .lines()
        .find(|l| l.contains("logs-0"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("devsim's device is not listed:\n{devices}"))
        .to_string();

    let image = config_partition(&dir.0, &ca, &format!("10.0.2.2:{port}"), "logs-0", false);
    add_files(
        &image,
        &[
            ("device.cert.pem", &ids.join("logs-0.pem")),
            ("device.key.pem", &ids.join("logs-0.key")),
        ],
    );

    let socket = dir.0.join("feeder.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let (send, lines) = mpsc::channel();
    let acked = Arc::new(AtomicU64::new(0));
    feeder(listener, lines, acked.clone());
    for i in 0..3 {
        send.send(format!("feeder: line {i} before the outage"))
            .unwrap();
    }

    let status = Command::new(lichen_tests::root().join("scripts/build"))
        .arg("logs")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "scripts/build logs failed");
    let argv = Run::new("logs")
        .accel(Accel::Tcg)
        .timeout(Duration::from_secs(300))
        .script_option("--hostfwd", Some("none"))
        .script_option(
            "--disk",
            Some(&format!("{},ro,name=config", image.display())),
        )
        .script_option(
            "--channel",
            Some(&format!("log-feeder={}", socket.display())),
        )
        .arg("device=config")
        .arg(&format!("uuid={uuid}"))
        .arg("sources=feeder")
        .arg("batch_interval=2")
        .command();

    let (mut before, mut after) = (String::new(), String::new());
    let mut stage = 0;
    let boot = run_console_watching(
        &argv,
        Duration::from_secs(300),
        Some("the controller takes logs again"),
        |line| {
            if stage == 0 && line.text.contains("first batch delivered") {
                before = wait_for_line(
                    controller.as_ref().unwrap(),
                    &uuid,
                    "line 2 before the outage",
                    Duration::from_secs(60),
                );
                // The outage: lines logged now wait in the pillar's queue.
                controller = None;
                for i in 0..3 {
                    send.send(format!("feeder: line {i} during the outage"))
                        .unwrap();
                }
                stage = 1;
            } else if stage == 1 && line.text.contains("upload failed") {
                std::thread::sleep(Duration::from_secs(3));
                controller = Some(Controller::start_on(&state, &["10.0.2.2"], port));
                stage = 2;
            } else if stage == 2 && line.text.contains("the controller takes logs again") {
                // The pillar's own report of the failure is in a later batch than the
                // feeder's lines; the guest runs on while the test waits for it.
                after = wait_for_line(
                    controller.as_ref().unwrap(),
                    &uuid,
                    "logs: upload failed",
                    Duration::from_secs(60),
                );
                stage = 3;
            }
        },
    );
    assert_eq!(stage, 3, "{}", boot.output());
    boot.expect("logs: first batch delivered to the controller");
    boot.expect("logs: upload failed (");
    boot.expect("logs: the controller takes logs again");

    // Before the outage: the feeder's lines, as warnings from source "feeder", and the
    // pillar's own.
    assert!(
        before.contains("warning feeder       feeder: line 0 before the outage"),
        "{before}"
    );
    assert!(before.contains("line 2 before the outage"), "{before}");
    assert!(before.contains("logs: "), "{before}");
    // After it: the lines logged while the controller was down, and the pillar's own report of
    // the failure.
    for i in 0..3 {
        assert!(
            after.contains(&format!("feeder: line {i} during the outage")),
            "{after}"
        );
    }
    assert!(after.contains("logs: upload failed"), "{after}");
    // Each line once.
    assert_eq!(
        after.matches("line 1 during the outage").count(),
        1,
        "{after}"
    );
    // Every line the feeder sent was acknowledged once kept.
    assert_eq!(acked.load(Ordering::SeqCst), 6);
}

/// Builds `image` with scripts/build.
fn build(image: &str) {
    let status = Command::new(lichen_tests::root().join("scripts/build"))
        .arg(image)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "scripts/build {image} failed");
}

/// The kernel's side: `channel-echo` (an image that forwards its lines; `hello`, the size
/// reference, does not) with a `log` channel (`log_channel=yes`, a virtio-console port this
/// test plays the logs pillar on) sends every line it logs, numbered from 0 in order, the
/// same text as its console, its last line (logged just before main returns) included, and
/// reads the acknowledgements. The test also plays its `echo` peer, so that it logs a few
/// lines and exits.
#[test]
fn a_service_kernel_forwards_its_lines_to_the_pillar() {
    let dir = TempDir::new("logs-forward");
    let socket = dir.0.join("log.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let pillar = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("QEMU connects");
        let (mut decoder, mut buf) = (Decoder::new(), [0u8; 4096]);
        let (mut hello, mut lines) = (None, Vec::new());
        loop {
            let n = match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut acks = Vec::new();
            decoder
                .push(&buf[..n], |message| match message {
                    Message::Hello {
                        boot,
                        first,
                        service,
                    } => hello = Some((boot, first, service.into_owned())),
                    Message::Line(line) => {
                        acks.push(line.seq);
                        lines.push((line.seq, line.level, line.text_lossy().into_owned()));
                    }
                    Message::Ack { .. } => panic!("the kernel sent an acknowledgement"),
                })
                .expect("the kernel's frames decode");
            if let (Some(&seq), Some((boot, _, _))) = (acks.last(), &hello) {
                let mut out = Vec::new();
                encode(&Message::Ack { boot: *boot, seq }, &mut out);
                let _ = stream.write_all(&out);
            }
        }
        (hello, lines)
    });
    let echo_socket = dir.0.join("echo.sock");
    let echo_listener = UnixListener::bind(&echo_socket).unwrap();
    // The echo peer: five bytes, then end of stream (what comes back is channel.rs's test).
    let peer = std::thread::spawn(move || {
        let (mut stream, _) = echo_listener.accept().expect("QEMU connects");
        stream.write_all(b"hello").unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let _ = stream.read_to_end(&mut Vec::new());
    });
    build("channel-echo");
    let boot = Run::new("channel-echo")
        .accel(Accel::Tcg)
        .timeout(Duration::from_secs(120))
        .script_option("--channel", Some(&format!("log={}", socket.display())))
        .script_option(
            "--channel",
            Some(&format!("echo={}", echo_socket.display())),
        )
        .arg("log_channel=yes")
        .boot();
    boot.expect_status(0);
    peer.join().unwrap();
    let (hello, lines) = pillar.join().unwrap();
    let (boot_id, first, service) = hello.expect("a hello");
    assert_eq!((first, service.as_str()), (0, "channel-echo"));
    assert_ne!(boot_id, 0);
    // Numbered 0, 1, 2, ... with nothing missing, from the very first line.
    for (i, (seq, _, _)) in lines.iter().enumerate() {
        assert_eq!(*seq, i as u64, "{lines:?}");
    }
    assert!(
        lines.iter().all(|(_, level, _)| *level == 3),
        "all info: {lines:?}"
    );
    // Every line, the last one too (boot waits for it after main returned).
    for tick in ["channel echo open on", "received 5 bytes sha256"] {
        let console = boot.expect(tick);
        let sent = lines
            .iter()
            .find(|(_, _, text)| text.contains(tick))
            .unwrap_or_else(|| panic!("{tick} not forwarded: {lines:?}"));
        assert!(
            console.text.ends_with(&sent.2),
            "{} / {}",
            console.text,
            sent.2
        );
    }
}
