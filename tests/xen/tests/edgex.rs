//! EdgeX's pipeline as apps on the EVE node (examples/edgex-node, docs/edgex.md), one boot of
//! xen/nodes/eve.toml with the bundled controller on the host. Ignored by default (a Xen boot
//! of several minutes under TCG, beside the node test's); run it with
//!
//! ```sh
//! cargo test -p lichen-xen-tests --test edgex -- --ignored
//! ```
//!
//! On the host: Debian's mosquitto (EdgeX's message bus) and the pymodbus thermostat
//! (tests/edgex/modbus_sim.py), on private ports. Once the node onboarded, `admin app deploy`
//! deploys device-modbus, core-data, app-service and device-mqtt, each with its
//! `examples/edgex-node/*.conf` as its user data (the ports replaced by the test's): EVE's
//! `userData` becomes each app's command line on the node. The apps sit on the local network
//! instance (10.1.0.x), NATed by zedrouter to the node's uplink, and reach the host's broker
//! and Modbus server at 10.0.2.2, as under microvm. Then, seen from the host:
//!
//! 1. all four apps RUNNING, each read its command line (its stats line in the node's log);
//! 2. device-modbus's events from the thermostat's registers reach the broker;
//! 3. app-service exports their Temperature readings to `lichen/export`;
//! 4. a command sent over the bus (as core-command sends it) writes the setpoint register;
//! 5. a value a device pushes to device-mqtt becomes an event;
//! 6. core-data receives the events (its stats line in the node's log).

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lichen_tests::controller::{config_partition, onboarding_cert, Controller, TempDir};
use lichen_tests::free_port;
use lichen_xen_tests::{boot_watching, repo};

const MANIFEST: &str = include_str!("../../../xen/nodes/eve.toml");
const SERIAL: &str = "xen-edgex-1";
const APPS: [&str; 4] = ["core-data", "app-service", "device-mqtt", "device-modbus"];

/// A host process, killed when dropped; its stdout lines collected.
struct Host {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Host {
    fn start(argv: &[&str]) -> Host {
        let mut child = Command::new(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", argv[0]));
        let stdout = child.stdout.take().expect("piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Host { child, lines }
    }

    fn any(&self, pred: impl Fn(&str) -> bool) -> bool {
        self.lines.lock().unwrap().iter().any(|l| pred(l))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn listening(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "nothing on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn publish(port: u16, topic: &str, message: &str) {
    let status = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
        .args(["-t", topic, "-m", message])
        .status()
        .expect("run mosquitto_pub");
    assert!(status.success(), "mosquitto_pub");
}

/// The thermostat's holding register `address`, read with pymodbus.
fn holding_register(port: u16, address: u16) -> Option<u32> {
    let out = Command::new("/usr/bin/python3")
        .arg(repo().join("tests/edgex/modbus_sim.py"))
        .args(["read", &port.to_string(), "hr", &address.to_string()])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// eve.toml as examples/edgex-node/node runs it (the same substitution, checked): four apps of
/// 1 vCPU each (eve.toml's `[apps]` allows 2 vCPUs in all).
fn edgex_node(manifest: &str) -> String {
    let script = std::fs::read_to_string(repo().join("examples/edgex-node/node")).unwrap();
    let (from, to) = ("\nvcpus = 2\n", "\nvcpus = 4\n");
    assert_eq!(manifest.matches(from).count(), 1, "eve.toml: {from:?}");
    assert!(
        script.contains("s/^vcpus = 2$/vcpus = 4/"),
        "the node script"
    );
    manifest.replace(from, to)
}

/// The ACE each app is deployed with, as examples/edgex-node/run does: TCP to the host
/// (10.0.2.2: the broker, the Modbus server), which zedrouter denies by default.
fn edgex_ace() -> &'static str {
    let ace = "ip:10.0.2.2,protocol:tcp->accept";
    let script = std::fs::read_to_string(repo().join("examples/edgex-node/run")).unwrap();
    assert!(
        script.contains(&format!("EDGEX_ACE='{ace}'")),
        "the run script's ACE"
    );
    ace
}

/// Where the test stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Onboarding,
    Starting,
    Flowing,
    Done,
}

#[test]
#[ignore = "a Xen boot of several minutes: cargo test -p lichen-xen-tests --test edgex -- --ignored"]
fn the_edgex_pipeline_runs_as_apps_configured_by_their_user_data() {
    let dir = TempDir::new("xen-edgex");
    let (broker, modbus) = (free_port(), free_port());
    std::fs::write(
        dir.0.join("mosquitto.conf"),
        format!("listener {broker} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )
    .unwrap();
    let _mosquitto = Host::start(&[
        "/usr/sbin/mosquitto",
        "-c",
        dir.0.join("mosquitto.conf").to_str().unwrap(),
    ]);
    let sim = repo().join("tests/edgex/modbus_sim.py");
    let _thermostat = Host::start(&[
        "/usr/bin/python3",
        sim.to_str().unwrap(),
        "serve",
        &modbus.to_string(),
    ]);
    listening(broker);
    listening(modbus);
    let sub = Host::start(&[
        "mosquitto_sub",
        "-p",
        &broker.to_string(),
        "-t",
        "edgex/#",
        "-t",
        "lichen/#",
        "-v",
    ]);

    // The example's user data, with the test's ports.
    let user_data: Vec<(&str, std::path::PathBuf)> = APPS
        .iter()
        .map(|app| {
            let example = repo().join(format!("examples/edgex-node/{app}.conf"));
            let text = std::fs::read_to_string(&example).unwrap();
            assert!(
                text.contains("10.0.2.2:18830"),
                "{app}.conf names the broker"
            );
            let text = text
                .replace("10.0.2.2:18830", &format!("10.0.2.2:{broker}"))
                .replace("10.0.2.2:15020", &format!("10.0.2.2:{modbus}"));
            let path = dir.0.join(format!("{app}.conf"));
            std::fs::write(&path, text).unwrap();
            (*app, path)
        })
        .collect();
    let built = Command::new(repo().join("scripts/build"))
        .args(APPS)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(built.success(), "scripts/build of the EdgeX images failed");

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
    // examples/edgex-node/node's changes (the apps' vCPUs, zedrouter's ACL), short polls.
    let manifest = edgex_node(MANIFEST).replace(
        "cmdline = \"config_interval=10\"",
        "cmdline = \"config_interval=2\"",
    );
    assert!(
        manifest.contains("config_interval=2"),
        "eve.toml's zedagent line changed"
    );

    let readings = "edgex/events/device/device-modbus/";
    let command = r#"{"apiVersion":"v3","requestID":"n1","correlationID":"c-n1","payload":{"Setpoint":"23"},"contentType":"application/json"}"#;
    let mut step = Step::Onboarding;
    let mut last_poke = Instant::now();
    let started = Instant::now();
    let mut timings = Vec::new();
    let run = boot_watching(
        "edgex-node",
        &manifest,
        &[
            "--fresh-disks",
            "--disk",
            &format!("config={}", config.display()),
        ],
        Duration::from_secs(1500),
        |line| {
            match step {
                Step::Onboarding => {
                    if line.contains("onboarded as device ") {
                        timings.push(("onboarded", started.elapsed()));
                        for (app, path) in &user_data {
                            let path = path.to_str().unwrap();
                            let image = repo().join(format!("target/images/{app}.elf"));
                            controller.admin(&[
                                "app",
                                "deploy",
                                image.to_str().unwrap(),
                                "--name",
                                app,
                                "--memory-mib",
                                "16",
                                "--user-data",
                                path,
                                "--acl",
                                edgex_ace(),
                            ]);
                        }
                        step = Step::Starting;
                    }
                }
                Step::Starting => {
                    if line.contains("device-modbus: stats") {
                        timings.push(("device-modbus's first stats", started.elapsed()));
                        step = Step::Flowing;
                    }
                }
                Step::Flowing => {
                    // Poke every few seconds: the command and a device's push.
                    if last_poke.elapsed() > Duration::from_secs(5) {
                        last_poke = Instant::now();
                        let topic =
                            "edgex/device/command/request/device-modbus/Thermostat-1/Setpoint/set";
                        publish(broker, topic, command);
                        publish(
                            broker,
                            "incoming/data/Sensor-1/values",
                            r#"{"temperature":23.5,"message":"hi"}"#,
                        );
                    }
                    let exported = sub.any(|l| l.starts_with("lichen/export "));
                    let modbus_events = sub.any(|l| l.starts_with(readings));
                    let set = sub.any(|l| l.starts_with("edgex/response/device-modbus/n1 "));
                    let pushed = sub.any(|l| {
                        l.starts_with("edgex/events/device/device-mqtt/") && l.contains("23.5")
                    });
                    if exported && modbus_events && set && pushed {
                        timings.push(("everything seen on the broker", started.elapsed()));
                        step = Step::Done;
                    }
                }
                Step::Done => {
                    // core-data's next stats line counts what it received.
                    if line.contains("core-data: stats received ") {
                        return true;
                    }
                }
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
    // 1. Every app ran, from its user data.
    for app in APPS {
        run.assert_has(&format!("app {app} RUNNING"));
    }
    for app in ["device-modbus", "app-service", "device-mqtt"] {
        // Their stats every 10 s: `stats=10s` came from the user data.
        run.assert_has(&format!("{app}: stats"));
    }
    run.assert_has("ipv4 address 10.1.0.");
    // 4. The command wrote the register (23 with scale 0.1).
    assert_eq!(holding_register(modbus, 1), Some(230));
    // 6. core-data stored events from the bus.
    let received: u64 = run
        .log
        .lines()
        .filter_map(|l| l.split("core-data: stats received ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .max()
        .unwrap_or(0);
    assert!(received > 0, "core-data received nothing:\n{}", run.log);
    eprintln!("core-data received {received} events");
}
