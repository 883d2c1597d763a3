//! A Linux VM as an app on the EVE node (docs/apps.md, "A Linux VM app"), one boot of
//! xen/nodes/eve.toml with the bundled controller on the host. Ignored by default (a Xen boot
//! of several minutes under TCG, and Debian's kernel booting in it); run it with
//!
//! ```sh
//! cargo test -p lichen-xen-tests --test linux_app -- --ignored --nocapture
//! ```
//!
//! `img/mklinuxapp` makes the app from Debian's kernel (target/xen/vmlinuz, the dom0 kernel):
//! a bundle (kernel, initramfs, command line) and a small ext4 root disk. Once the node
//! onboarded, `admin app deploy linux.app --disk root.img` serves both from the controller's
//! HTTPS datastore; the node downloads and verifies them onto two volumes like any app's, and
//! the launcher boots the bundle through `xl` with the root disk as `xvda`. Then:
//!
//! 1. the app is RUNNING (diag's line);
//! 2. the guest's console (in the launcher's log) shows its root disk mounted and its address
//!    from zedrouter's DHCP on the network instance (`linux-app: up 10.1.0.x`);
//! 3. the guest reaches the host through zedrouter's NAT (its user data, its kernel's command
//!    line, names the test's HTTP listener, which it fetches with that address in the query,
//!    allowed by the app's ACL).
//!
//! The measured times (deploy to RUNNING, to the network up) are printed at the end.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lichen_tests::controller::{config_partition, onboarding_cert, Controller, TempDir};
use lichen_xen_tests::{boot_watching, repo};

const MANIFEST: &str = include_str!("../../../xen/nodes/eve.toml");
const SERIAL: &str = "xen-linux-1";

/// An HTTP listener on the host that answers every request 200 and keeps the request lines.
fn listener() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the test's listener");
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            if reader.read_line(&mut line).is_ok() {
                sink.lock().unwrap().push(line.trim().to_string());
            }
            let _ = (&stream).write_all(
                b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
            );
        }
    });
    (port, seen)
}

/// Where the test stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Onboarding,
    Booting,
    Networking,
    Reporting,
    Done,
}

#[test]
#[ignore = "a Xen boot of several minutes: cargo test -p lichen-xen-tests --test linux_app -- --ignored"]
fn a_linux_vm_app_boots_from_its_root_disk_and_gets_its_address_from_zedrouter() {
    let dir = TempDir::new("xen-linux-app");
    let app_dir = dir.0.join("app");
    let made = Command::new(repo().join("img/mklinuxapp"))
        .arg(&app_dir)
        .status()
        .expect("run img/mklinuxapp");
    assert!(made.success(), "img/mklinuxapp failed");
    let (port, requests) = listener();
    let user_data = dir.0.join("linux.conf");
    // The QEMU user network's host is 10.0.2.2; its port forwarding is not needed: the guest's
    // connection to 10.0.2.2 is QEMU's connection to 127.0.0.1.
    std::fs::write(
        &user_data,
        format!(
            "# the guest reports here once it has its address\nlinuxapp.report=10.0.2.2:{port}\n"
        ),
    )
    .unwrap();

    let state = dir.0.join("state");
    let controller = Controller::start(&state, &["10.0.2.2"]);
    onboarding_cert(&dir.0);
    controller.admin(&[
        "onboarding",
        "add",
        dir.0.join("onboard.pem").to_str().unwrap(),
        "--serial",
        SERIAL,
    ]);
    let config = config_partition(
        &dir.0,
        &state.join("ca.pem"),
        &format!("10.0.2.2:{}", controller.port),
        SERIAL,
        true,
    );
    let manifest = MANIFEST.replace(
        "cmdline = \"config_interval=10\"",
        "cmdline = \"config_interval=2\"",
    );
    assert!(
        manifest.contains("config_interval=2"),
        "eve.toml's zedagent line changed"
    );

    let mut step = Step::Onboarding;
    let started = Instant::now();
    let mut deployed = started;
    let mut timings: Vec<(&str, Duration)> = Vec::new();
    let run = boot_watching(
        "linux-app",
        &manifest,
        &[
            "--fresh-disks",
            "--disk",
            &format!("config={}", config.display()),
        ],
        Duration::from_secs(1800),
        |line| {
            match step {
                Step::Onboarding => {
                    if line.contains("onboarded as device ") {
                        timings.push(("onboarded (from the test's start)", started.elapsed()));
                        controller.admin(&[
                            "app",
                            "deploy",
                            app_dir.join("linux.app").to_str().unwrap(),
                            "--name",
                            "linux",
                            "--disk",
                            app_dir.join("root.img").to_str().unwrap(),
                            "--memory-mib",
                            "160",
                            "--user-data",
                            user_data.to_str().unwrap(),
                            "--acl",
                            "ip:10.0.2.2,protocol:tcp->accept",
                        ]);
                        deployed = Instant::now();
                        step = Step::Booting;
                    }
                }
                Step::Booting => {
                    if line.contains("app linux RUNNING") {
                        timings.push(("deploy to RUNNING", deployed.elapsed()));
                        step = Step::Networking;
                    }
                }
                Step::Networking => {
                    if line.contains("linux-app: up 10.1.0.") {
                        timings.push(("deploy to the guest's address (DHCP)", deployed.elapsed()));
                        step = Step::Reporting;
                    }
                }
                Step::Reporting => {
                    let reported = requests
                        .lock()
                        .unwrap()
                        .iter()
                        .any(|r| r.starts_with("GET /up?ip=10.1.0."));
                    if reported {
                        timings.push((
                            "deploy to the guest's request at the host",
                            deployed.elapsed(),
                        ));
                        step = Step::Done;
                        return true;
                    }
                }
                Step::Done => return true,
            }
            false
        },
    );
    eprintln!("timings: {timings:?}");
    assert_eq!(
        step,
        Step::Done,
        "the node stopped at {step:?}:\n{}",
        run.log
    );
    // The guest's own lines, on its console (the launcher prefixes them with the domain's
    // name, `app-<the app's UUID>`): its initramfs, its root disk, its address.
    run.assert_has(" | linux-app: initramfs");
    run.assert_has(" | linux-app: root disk mounted");
    run.assert_has(" | linux-app: up 10.1.0.");
    assert!(
        run.log
            .lines()
            .any(|l| l.contains("linux-app: root disk mounted") && l.contains("app-")),
        "the root disk line is the app domain's console"
    );
    let ip = requests
        .lock()
        .unwrap()
        .iter()
        .find_map(|r| {
            r.strip_prefix("GET /up?ip=")
                .map(|r| r.split(' ').next().unwrap_or("").to_string())
        })
        .expect("the guest's request");
    run.assert_has(&format!("linux-app: up {ip}"));
}
