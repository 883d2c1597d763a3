//! EdgeX pipeline test: `device-modbus` under QEMU microvm polls a real Modbus server
//! (pymodbus, `tests/edgex/modbus_sim.py`) through QEMU user networking and publishes EdgeX
//! events to a real broker (Debian's mosquitto on a private port); commands sent through the
//! broker write registers and coils, checked by reading them back with pymodbus' client.
//!
//! The broker starts only after the guest has had to drop events: the outbox's bound and its
//! drop counter are checked, then its backlog drains once the broker is up.
//! Needs `/usr/bin/python3` with pymodbus (Debian's python3-pymodbus) and mosquitto
//! (`scripts/test` installs both).

use lichen_tests::{build_images, root, Accel, Run};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(40);
const SERVICE_TOPIC: &str = "edgex/device/command/request/device-modbus/Thermostat-1";

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a host port");
    l.local_addr().expect("local address").port()
}

/// A child process whose stdout lines are collected; killed when dropped.
struct Proc {
    name: &'static str,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn start(name: &'static str, argv: &[&str]) -> Proc {
        let mut child = Command::new(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({}): {e}", argv[0]));
        let stdout = child.stdout.take().expect("piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Proc { name, child, lines }
    }

    fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits for a line satisfying `pred` after the first `skip` lines; returns it.
    fn wait_for(
        &mut self,
        what: &str,
        skip: usize,
        pred: impl Fn(&str) -> bool,
    ) -> (usize, String) {
        let start = Instant::now();
        loop {
            if let Some((i, l)) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .enumerate()
                .skip(skip)
                .find(|(_, l)| pred(l))
            {
                return (i, l.clone());
            }
            if let Some(status) = self.child.try_wait().expect("poll child") {
                panic!(
                    "{} exited ({status}) before {what}:\n{}",
                    self.name,
                    self.output()
                );
            }
            assert!(
                start.elapsed() < WAIT,
                "{}: no line for {what}; output:\n{}",
                self.name,
                self.output()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> &'static str {
    "/usr/bin/python3"
}

fn sim_script() -> String {
    root()
        .join("tests/edgex/modbus_sim.py")
        .display()
        .to_string()
}

fn modbus_read(port: u16, table: &str, address: u16) -> u32 {
    let out = Command::new(python())
        .args([
            &sim_script(),
            "read",
            &port.to_string(),
            table,
            &address.to_string(),
        ])
        .output()
        .expect("run modbus_sim.py read");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a number")
}

fn publish(port: u16, topic: &str, message: &str) {
    let status = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            topic,
            "-m",
            message,
        ])
        .status()
        .expect("run mosquitto_pub");
    assert!(status.success());
}

fn request(id: &str, payload: &str) -> String {
    format!(
        r#"{{"apiVersion":"v3","requestID":"{id}","correlationID":"c-{id}","payload":{payload},"contentType":"application/json"}}"#
    )
}

/// The JSON payload of a `mosquitto_sub -v` line.
fn payload(line: &str) -> serde_json::Value {
    let (_, json) = line.split_once(' ').expect("topic and payload");
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

/// The value of one counter in a `device-modbus: stats` line.
fn counter(line: &str, name: &str) -> u64 {
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w == name {
            return words
                .next()
                .and_then(|v| v.parse().ok())
                .expect("counter value");
        }
    }
    panic!("no counter {name} in {line}")
}

/// One HTTP request to 127.0.0.1:`port`: status and JSON body.
fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to core-data");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: core-data\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    let (_, json) = response.split_once("\r\n\r\n").unwrap_or(("", ""));
    let value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {response}"));
    (status, value)
}

fn temp_dir() -> PathBuf {
    let dir = root().join(format!("target/edgex-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the test directory");
    dir
}

#[test]
fn modbus_readings_reach_mosquitto_and_commands_write_registers() {
    build_images();
    let (modbus_port, broker_port) = (free_port(), free_port());
    let mut sim = Proc::start(
        "modbus simulator",
        &[python(), &sim_script(), "serve", &modbus_port.to_string()],
    );
    sim.wait_for("ready", 0, |l| l == "ready");

    // The guest starts with no broker: its outbox (5 events) must fill and drop the oldest.
    let run = Run::new("device-modbus")
        .accel(Accel::Tcg)
        .script_option("--hostfwd", Some("none"))
        .arg(&format!("modbus=10.0.2.2:{modbus_port}"))
        .arg(&format!("broker=10.0.2.2:{broker_port}"))
        .arg("outbox=5")
        .arg("stats=500ms");
    let command = run.command();
    let argv: Vec<&str> = command.iter().map(String::as_str).collect();
    let mut guest = Proc::start("device-modbus guest", &argv);
    let (_, first) = guest.wait_for("the first event", 0, |l| {
        l.contains("first event from Thermostat-1")
    });
    eprintln!("{first}");
    let (at, stats) = guest.wait_for("dropped events", 0, |l| {
        l.contains("device-modbus: stats") && counter(l, "dropped") >= 2
    });
    assert_eq!(counter(&stats, "queued"), 5, "{stats}");
    assert_eq!(counter(&stats, "published"), 0, "{stats}");

    let dir = temp_dir();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {broker_port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_type error\nlog_type warning\n"),
    )
    .unwrap();
    let mosquitto = Proc::start(
        "mosquitto",
        &["/usr/sbin/mosquitto", "-c", conf.to_str().unwrap()],
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", broker_port)).is_err() {
        assert!(
            start.elapsed() < WAIT,
            "mosquitto did not listen:\n{}",
            mosquitto.output()
        );
        thread::sleep(Duration::from_millis(20));
    }
    let mut sub = Proc::start(
        "mosquitto_sub",
        &[
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            &broker_port.to_string(),
            "-v",
            "-t",
            "edgex/#",
            "-t",
            "lichen/#",
        ],
    );

    // The backlog drains once the broker is there.
    let (_, stats) = guest.wait_for("the backlog drained", at + 1, |l| {
        l.contains("device-modbus: stats")
            && counter(l, "published") >= 5
            && counter(l, "queued") == 0
    });
    assert!(counter(&stats, "dropped") >= 2, "{stats}");
    assert!(counter(&stats, "broker_connects") >= 1, "{stats}");

    // Readings arrive at the broker in EdgeX's format, with the profile's scale applied.
    let readings_topic =
        "edgex/events/device/device-modbus/Modbus-Thermostat/Thermostat-1/Readings ";
    let (_, line) = sub.wait_for("a Readings event", 0, |l| l.starts_with(readings_topic));
    let event = &payload(&line)["payload"]["event"];
    assert_eq!(event["deviceName"], "Thermostat-1");
    assert_eq!(event["profileName"], "Modbus-Thermostat");
    let value = |event: &serde_json::Value, name: &str| {
        event["readings"]
            .as_array()
            .expect("readings")
            .iter()
            .find(|r| r["resourceName"] == name)
            .unwrap_or_else(|| panic!("no {name} in {event}"))["value"]
            .clone()
    };
    assert_eq!(value(event, "Temperature"), "21.5");
    assert_eq!(value(event, "Setpoint"), "20");
    assert_eq!(value(event, "Humidity"), "45");

    // A command writes the setpoint register (22.5 with scale 0.1 -> 225).
    let seen = sub.lines.lock().unwrap().len();
    publish(
        broker_port,
        &format!("{SERVICE_TOPIC}/Setpoint/set"),
        &request("w1", r#"{"Setpoint":"22.5"}"#),
    );
    let (_, line) = sub.wait_for("the set response", seen, |l| {
        l.starts_with("edgex/response/device-modbus/w1 ")
    });
    let response = payload(&line);
    assert_eq!(response["errorCode"], 0, "{line}");
    assert_eq!(response["payload"]["statusCode"], 200, "{line}");
    assert_eq!(response["correlationID"], "c-w1");
    assert_eq!(modbus_read(modbus_port, "hr", 1), 225);
    let (_, line) = sub.wait_for("an event with the new setpoint", seen, |l| {
        l.starts_with(readings_topic)
            && value(&payload(l)["payload"]["event"], "Setpoint") == "22.5"
    });
    assert_eq!(
        value(&payload(&line)["payload"]["event"], "Temperature"),
        "21.5"
    );

    // Out of the profile's range: refused, nothing written.
    publish(
        broker_port,
        &format!("{SERVICE_TOPIC}/Setpoint/set"),
        &request("w2", r#"{"Setpoint":"99"}"#),
    );
    let (_, line) = sub.wait_for("the refusal", seen, |l| {
        l.starts_with("edgex/response/device-modbus/w2 ")
    });
    let response = payload(&line);
    assert_eq!(response["errorCode"], 1, "{line}");
    assert_eq!(response["payload"]["statusCode"], 400, "{line}");
    assert!(
        response["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("maximum"),
        "{line}"
    );
    assert_eq!(modbus_read(modbus_port, "hr", 1), 225);

    // A coil, and a read-only resource.
    publish(
        broker_port,
        &format!("{SERVICE_TOPIC}/Switch/set"),
        &request("w3", r#"{"Switch":true}"#),
    );
    let (_, line) = sub.wait_for("the switch response", seen, |l| {
        l.starts_with("edgex/response/device-modbus/w3 ")
    });
    assert_eq!(payload(&line)["payload"]["statusCode"], 200, "{line}");
    assert_eq!(modbus_read(modbus_port, "co", 0), 1);
    publish(
        broker_port,
        &format!("{SERVICE_TOPIC}/Humidity/set"),
        &request("w4", r#"{"Humidity":"50"}"#),
    );
    let (_, line) = sub.wait_for("the read-only refusal", seen, |l| {
        l.starts_with("edgex/response/device-modbus/w4 ")
    });
    assert_eq!(payload(&line)["payload"]["statusCode"], 405, "{line}");

    // A get answers with a fresh event; an unknown device and a malformed request get errors.
    publish(
        broker_port,
        &format!("{SERVICE_TOPIC}/Readings/get"),
        &request("r1", "{}"),
    );
    let (_, line) = sub.wait_for("the get response", seen, |l| {
        l.starts_with("edgex/response/device-modbus/r1 ")
    });
    assert_eq!(
        value(&payload(&line)["payload"]["event"], "Setpoint"),
        "22.5",
        "{line}"
    );
    publish(
        broker_port,
        "edgex/device/command/request/device-modbus/Nobody/Readings/get",
        &request("r2", "{}"),
    );
    let (_, line) = sub.wait_for("the unknown device", seen, |l| {
        l.starts_with("edgex/response/device-modbus/r2 ")
    });
    assert_eq!(payload(&line)["payload"]["statusCode"], 404, "{line}");
    publish(
        broker_port,
        &format!("{SERVICE_TOPIC}/Setpoint/set"),
        "not json at all",
    );
    publish(
        broker_port,
        &format!("{SERVICE_TOPIC}/Setpoint/set"),
        &request("w5", "[1,2]"),
    );
    let (_, line) = sub.wait_for("the malformed request", seen, |l| {
        l.starts_with("edgex/response/device-modbus/w5 ")
    });
    assert_eq!(payload(&line)["payload"]["statusCode"], 400, "{line}");

    // The onChange autoEvent publishes the switch once, when it changed.
    let switch_topic = "edgex/events/device/device-modbus/Modbus-Thermostat/Thermostat-1/Switch ";
    sub.wait_for("a Switch event with true", seen, |l| {
        l.starts_with(switch_topic) && value(&payload(l)["payload"]["event"], "Switch") == "true"
    });

    // core-data and core-command: events from the bus behind EdgeX's v3 REST API, commands
    // forwarded to device-modbus; app-service exports Temperature readings to another topic.
    let http_port = free_port();
    let bus = format!("broker=10.0.2.2:{broker_port}");
    let command = Run::new("core-data")
        .accel(Accel::Tcg)
        .script_option("--hostfwd", Some(&format!("{http_port}:59880")))
        .arg(&bus)
        .command();
    let mut core = Proc::start(
        "core-data guest",
        &command.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let sink_port = free_port();
    let sink_script = root()
        .join("tests/edgex/http_sink.py")
        .display()
        .to_string();
    let mut sink = Proc::start(
        "http sink",
        &[
            python(),
            &sink_script,
            &sink_port.to_string(),
            "--fail-first",
            "2",
        ],
    );
    sink.wait_for("ready", 0, |l| l == "ready");
    let command = Run::new("app-service")
        .accel(Accel::Tcg)
        .script_option("--hostfwd", Some("none"))
        .arg(&bus)
        .arg("resources=Temperature")
        .arg("export_topic=lichen/export")
        .arg(&format!("http_export=10.0.2.2:{sink_port}/edgex/events"))
        .command();
    let mut app = Proc::start(
        "app-service guest",
        &command.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    core.wait_for("core-data's broker connection", 0, |l| {
        l.contains("mqtt: connected")
    });
    app.wait_for("app-service's broker connections", 0, |l| {
        l.contains("as app-service-export")
    });
    let (_, line) = sub.wait_for("an exported event", seen, |l| {
        l.starts_with("lichen/export ")
    });
    let exported = payload(&line);
    assert_eq!(exported["deviceName"], "Thermostat-1", "{line}");
    let names: Vec<&str> = exported["readings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["resourceName"].as_str().unwrap())
        .collect();
    assert!(
        names.iter().all(|n| *n == "Temperature") && !names.is_empty(),
        "{line}"
    );

    // The HTTP export: the receiver fails twice (503), the same message is retried and lands.
    let (i, first) = sink.wait_for("a 503", 0, |l| l.starts_with("503 /edgex/events "));
    let (_, delivered) = sink.wait_for("a delivery", i, |l| l.starts_with("200 /edgex/events "));
    assert_eq!(
        first[4..],
        delivered[4..],
        "the failed message is the one delivered next"
    );
    let posted: serde_json::Value =
        serde_json::from_str(&delivered["200 /edgex/events ".len()..]).unwrap();
    assert_eq!(posted["deviceName"], "Thermostat-1", "{delivered}");

    let start = Instant::now();
    while http(http_port, "GET", "/api/v3/event/count", "").1["Count"]
        .as_u64()
        .unwrap_or(0)
        < 2
    {
        assert!(
            start.elapsed() < WAIT,
            "core-data stored no events:\n{}",
            core.output()
        );
        thread::sleep(Duration::from_millis(100));
    }
    let (status, body) = http(
        http_port,
        "GET",
        "/api/v3/event/device/name/Thermostat-1?limit=2",
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["events"].as_array().unwrap().len(), 2, "{body}");
    let (_, body) = http(
        http_port,
        "GET",
        "/api/v3/reading/resourceName/Temperature?limit=1",
        "",
    );
    assert_eq!(body["readings"][0]["value"], "21.5", "{body}");
    let (status, body) = http(
        http_port,
        "PUT",
        "/api/v3/device/name/Thermostat-1/Setpoint",
        r#"{"Setpoint":"23"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(modbus_read(modbus_port, "hr", 1), 230);
    let (status, body) = http(
        http_port,
        "GET",
        "/api/v3/device/name/Thermostat-1/Readings",
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(value(&body["event"], "Setpoint"), "23", "{body}");
    let (status, body) = http(
        http_port,
        "PUT",
        "/api/v3/device/name/Thermostat-1/Setpoint",
        r#"{"Setpoint":"99"}"#,
    );
    assert_eq!(
        (status, body["statusCode"].as_u64()),
        (400, Some(400)),
        "{body}"
    );
    assert_eq!(modbus_read(modbus_port, "hr", 1), 230);
    let (status, body) = http(http_port, "GET", "/api/v3/device/name/Nobody/Readings", "");
    assert_eq!(status, 404, "{body}");
    let (status, _) = http(http_port, "GET", "/api/v3/event/all?limit=100000", "");
    assert_eq!(status, 400);

    // device-mqtt: a device pushes its values; a push that does not parse is only counted.
    let command = Run::new("device-mqtt")
        .accel(Accel::Tcg)
        .script_option("--hostfwd", Some("none"))
        .arg(&bus)
        .arg("stats=300ms")
        .command();
    let mut pusher = Proc::start(
        "device-mqtt guest",
        &command.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    pusher.wait_for("device-mqtt's broker connection", 0, |l| {
        l.contains("mqtt: connected")
    });
    let seen = sub.lines.lock().unwrap().len();
    publish(broker_port, "incoming/data/Sensor-1/values", "not json");
    publish(
        broker_port,
        "incoming/data/Sensor-1/values",
        r#"{"temperature":23.5,"message":"hello"}"#,
    );
    let (_, line) = sub.wait_for("the pushed event", seen, |l| {
        l.starts_with("edgex/events/device/device-mqtt/MQTT-Sensor/Sensor-1/values ")
    });
    let event = &payload(&line)["payload"]["event"];
    assert_eq!(value(event, "temperature"), "23.5", "{line}");
    assert_eq!(value(event, "message"), "hello", "{line}");
    pusher.wait_for("the rejected push counted", 0, |l| {
        l.contains("device-mqtt: stats") && counter(l, "rejected") == 1 && counter(l, "events") == 1
    });
    let start = Instant::now();
    while http(
        http_port,
        "GET",
        "/api/v3/event/count/device/name/Sensor-1",
        "",
    )
    .1["Count"]
        != 1
    {
        assert!(
            start.elapsed() < WAIT,
            "core-data did not store the pushed event"
        );
        thread::sleep(Duration::from_millis(100));
    }

    for (name, proc) in [
        ("device-modbus", &mut guest),
        ("core-data", &mut core),
        ("app-service", &mut app),
        ("device-mqtt", &mut pusher),
    ] {
        let output = proc.output();
        assert!(
            !output.contains("PANIC") && !output.contains("FATAL"),
            "{name}:\n{output}"
        );
        assert!(
            proc.child.try_wait().unwrap().is_none(),
            "{name} stopped:\n{output}"
        );
    }
    drop(sub);
    drop(mosquitto);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_hostile_modbus_server_is_counted_and_polling_goes_on() {
    build_images();
    let modbus_port = free_port();
    let script = root()
        .join("tests/edgex/hostile_modbus.py")
        .display()
        .to_string();
    let mut server = Proc::start(
        "hostile modbus server",
        &[python(), &script, &modbus_port.to_string()],
    );
    server.wait_for("ready", 0, |l| l == "ready");
    // No broker at all: the outbox bounds what waits.
    let run = Run::new("device-modbus")
        .accel(Accel::Tcg)
        .script_option("--hostfwd", Some("none"))
        .arg(&format!("modbus=10.0.2.2:{modbus_port}"))
        .arg(&format!("broker=10.0.2.2:{}", free_port()))
        .arg("interval=20ms")
        .arg("timeout=300ms")
        .arg("outbox=50")
        .arg("stats=500ms");
    let command = run.command();
    let argv: Vec<&str> = command.iter().map(String::as_str).collect();
    let mut guest = Proc::start("device-modbus guest", &argv);
    let (_, stats) = guest.wait_for("every kind of error, and events between them", 0, |l| {
        l.contains("device-modbus: stats")
            && ["exceptions", "malformed", "stale", "timeouts", "io_errors"]
                .iter()
                .all(|c| counter(l, c) > 0)
            && counter(l, "events") >= 10
            && counter(l, "modbus_connects") >= 2
    });
    // Nothing was published: every event waits in the outbox, beyond 50 the oldest dropped.
    let events = counter(&stats, "events");
    assert_eq!(counter(&stats, "queued"), events.min(50), "{stats}");
    assert_eq!(
        counter(&stats, "dropped"),
        events.saturating_sub(50),
        "{stats}"
    );
    // Polling goes on: more events after that.
    let (at, _) = guest.wait_for("the stats line", 0, |l| l == stats);
    guest.wait_for("more events", at + 1, |l| {
        l.contains("device-modbus: stats") && counter(l, "events") > events
    });
    let output = guest.output();
    assert!(
        !output.contains("PANIC") && !output.contains("FATAL"),
        "{output}"
    );
}
