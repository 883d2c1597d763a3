//! EdgeX pipeline test: `device-modbus` under QEMU microvm polls a real Modbus server
//! (pymodbus, `tests/edgex/modbus_sim.py`) through QEMU user networking and publishes EdgeX
//! events to a real broker (Debian's mosquitto on a private port); commands sent through the
//! broker write registers and coils, checked by reading them back with pymodbus' client.
//!
//! The broker starts only after the guest has had to drop events: the outbox's bound and its
//! drop counter are checked, then its backlog drains once the broker is up.
//! Needs `/usr/bin/python3` with pymodbus (Debian's python3-pymodbus) and mosquitto
//! (`scripts/test` installs both).

use lichen_tests::{build_images, free_port, root, Accel, Run};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(40);
const SERVICE_TOPIC: &str = "edgex/device/command/request/device-modbus/Thermostat-1";

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
        "{method} {path} HTTP/1.1\r\nHost: core-data\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
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
    // Keep-alive: Python's http.client sends three requests on one connection.
    let out = Command::new(python())
        .args([
            "-c",
            &format!(
                "import http.client\nc = http.client.HTTPConnection('127.0.0.1', {http_port}, timeout=20)\nsocks = set()\nfor path in ['/api/v3/ping', '/api/v3/event/count', '/api/v3/reading/count']:\n    c.request('GET', path)\n    r = c.getresponse()\n    r.read()\n    print(r.status)\n    socks.add(id(c.sock))\nprint('connections', len(socks), c.sock is not None)"
            ),
        ])
        .output()
        .expect("python3 http.client");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.trim(),
        "200\n200\n200\nconnections 1 True",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // device-mqtt: a device pushes its values; a push that does not parse is only counted.
    // The test plays the device's command side: it listens on its CommandTopic.
    let mut device_side = Proc::start(
        "mosquitto_sub (Sensor-1's command topic)",
        &[
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            &broker_port.to_string(),
            "-v",
            "-t",
            "command/Sensor-1/#",
        ],
    );
    let command = Run::new("device-mqtt")
        .accel(Accel::Tcg)
        .script_option("--hostfwd", Some("none"))
        .arg(&bus)
        .arg("mqtt=5")
        .arg("qos=1")
        .arg("command_timeout=1s")
        .arg("stats=300ms")
        .command();
    let mut pusher = Proc::start(
        "device-mqtt guest",
        &command.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    pusher.wait_for("device-mqtt's broker connection", 0, |l| {
        l.contains("mqtt: connected") && l.contains("(MQTT 5, QoS 1)")
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

    // device-mqtt's commands: a get goes to the device's CommandTopic, its answer on
    // command/response/<uuid> comes back as the response; a set carries the values; a device
    // that does not answer gets a 503 after command_timeout; a read-only resource a 405.
    let mqtt_requests = "edgex/device/command/request/device-mqtt/Sensor-1";
    let seen = sub.lines.lock().unwrap().len();
    publish(
        broker_port,
        &format!("{mqtt_requests}/values/get"),
        &request("m1", "{}"),
    );
    let (at, line) = device_side.wait_for("the get on the command topic", 0, |l| {
        l.starts_with("command/Sensor-1/values/get/")
    });
    let (topic, body) = line.split_once(' ').unwrap();
    assert_eq!(body, "{}");
    let uuid = topic.rsplit('/').next().unwrap();
    publish(
        broker_port,
        &format!("command/response/{uuid}"),
        r#"{"temperature":19.5,"message":"from the device"}"#,
    );
    let (_, line) = sub.wait_for("the get response", seen, |l| {
        l.starts_with("edgex/response/device-mqtt/m1 ")
    });
    let response = payload(&line);
    assert_eq!(response["payload"]["statusCode"], 200, "{line}");
    assert_eq!(
        value(&response["payload"]["event"], "temperature"),
        "19.5",
        "{line}"
    );
    assert_eq!(
        value(&response["payload"]["event"], "message"),
        "from the device"
    );
    publish(
        broker_port,
        &format!("{mqtt_requests}/message/set"),
        &request("m2", r#"{"message":"hello device"}"#),
    );
    let (_, line) = device_side.wait_for("the set on the command topic", at + 1, |l| {
        l.starts_with("command/Sensor-1/message/set/")
    });
    let (topic, body) = line.split_once(' ').unwrap();
    assert_eq!(body, r#"{"message":"hello device"}"#);
    publish(
        broker_port,
        &format!("command/response/{}", topic.rsplit('/').next().unwrap()),
        "{}",
    );
    let (_, line) = sub.wait_for("the set response", seen, |l| {
        l.starts_with("edgex/response/device-mqtt/m2 ")
    });
    assert_eq!(payload(&line)["payload"]["statusCode"], 200, "{line}");
    publish(
        broker_port,
        &format!("{mqtt_requests}/values/get"),
        &request("m3", "{}"),
    );
    publish(
        broker_port,
        &format!("{mqtt_requests}/temperature/set"),
        &request("m4", r#"{"temperature":"5"}"#),
    );
    let (_, line) = sub.wait_for("the read-only refusal", seen, |l| {
        l.starts_with("edgex/response/device-mqtt/m4 ")
    });
    assert_eq!(payload(&line)["payload"]["statusCode"], 405, "{line}");
    let (_, line) = sub.wait_for("the timeout", seen, |l| {
        l.starts_with("edgex/response/device-mqtt/m3 ")
    });
    assert_eq!(payload(&line)["payload"]["statusCode"], 503, "{line}");
    drop(device_side);

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

/// Runs `argv`, panicking with its error output unless it succeeds.
fn run_ok(argv: &[&str]) {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", argv[0]));
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA and a server certificate for 10.0.2.2 (the host as guests see it), 127.0.0.1 and
/// localhost, all P-256, made by `openssl` in `dir`: `ca.pem`, `ca.der`, `server.pem`,
/// `server.key`.
fn make_certificates(dir: &std::path::Path) {
    let path = |name: &str| dir.join(name).display().to_string();
    std::fs::write(
        dir.join("openssl.cnf"),
        "[req]\ndistinguished_name = dn\n[dn]\n\
         [ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier = hash\n\
         [server]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n\
         extendedKeyUsage = serverAuth\nsubjectAltName = IP:10.0.2.2,IP:127.0.0.1,DNS:localhost\n\
         authorityKeyIdentifier = keyid\n",
    )
    .unwrap();
    let cnf = path("openssl.cnf");
    run_ok(&[
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &path("ca.key"),
        "-out",
        &path("ca.pem"),
        "-days",
        "2",
        "-subj",
        "/CN=lichen test CA",
        "-config",
        &cnf,
        "-extensions",
        "ca",
    ]);
    run_ok(&[
        "openssl",
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &path("server.key"),
        "-out",
        &path("server.csr"),
        "-subj",
        "/CN=broker",
        "-config",
        &cnf,
    ]);
    run_ok(&[
        "openssl",
        "x509",
        "-req",
        "-in",
        &path("server.csr"),
        "-CA",
        &path("ca.pem"),
        "-CAkey",
        &path("ca.key"),
        "-CAcreateserial",
        "-out",
        &path("server.pem"),
        "-days",
        "2",
        "-extfile",
        &cnf,
        "-extensions",
        "server",
    ]);
    run_ok(&[
        "openssl",
        "x509",
        "-in",
        &path("ca.pem"),
        "-outform",
        "DER",
        "-out",
        &path("ca.der"),
    ]);
}

/// Standard Base64.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Python's base64 and gzip undo app-service's `compress=gzip` on each word of `messages`.
fn python_gunzip(messages: &[String]) -> Vec<serde_json::Value> {
    use std::io::Write;
    let mut child = Command::new(python())
        .args([
            "-c",
            "import sys,base64,gzip\nfor w in sys.stdin.read().split():\n    print(gzip.decompress(base64.b64decode(w, validate=True)).decode())",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(messages.join("\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python could not gunzip the exports");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// An EdgeX event envelope as a device service publishes it, for event `id`.
fn event_message(id: &str) -> String {
    format!(
        r#"{{"apiVersion":"v3","payload":{{"apiVersion":"v3","event":{{"apiVersion":"v3","id":"{id}","deviceName":"Meter-1","profileName":"P","sourceName":"S","origin":1,"readings":[{{"id":"r-{id}","origin":1,"deviceName":"Meter-1","resourceName":"Power","profileName":"P","valueType":"Int32","value":"7"}}]}}}},"contentType":"application/json"}}"#
    )
}

fn mosquitto_up(conf: &std::path::Path, port: u16) -> Proc {
    let proc = Proc::start(
        "mosquitto",
        &["/usr/sbin/mosquitto", "-c", conf.to_str().unwrap()],
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < WAIT, "mosquitto did not listen");
        thread::sleep(Duration::from_millis(20));
    }
    proc
}

/// app-service's export over MQTT 5 with QoS 1 to a TLS broker (Debian's mosquitto, certificates
/// made by openssl, the CA pinned in the guest), gzip-compressed, and over HTTPS to Python's
/// http.server with ssl, which decompresses with Python's gzip. The export broker freezes with
/// events in flight and dies without acknowledging them: they stay in the outbox, are sent again
/// (DUP) once it is back, and every event arrives at the subscriber.
#[test]
fn app_service_exports_mqtt5_qos1_over_tls_compressed_through_a_broker_restart() {
    exports_through_a_broker_restart(1);
}

/// The same at QoS 2 (exactly once, export and subscriber): the events sent again after the
/// restart arrive exactly once.
#[test]
fn app_service_exports_mqtt5_qos2_over_tls_compressed_through_a_broker_restart() {
    exports_through_a_broker_restart(2);
}

fn exports_through_a_broker_restart(qos: u8) {
    build_images();
    let qos_text = qos.to_string();
    let dir = temp_dir().join(format!("tls-qos{qos}"));
    std::fs::create_dir_all(&dir).unwrap();
    make_certificates(&dir);
    let path = |name: &str| dir.join(name).display().to_string();
    let (bus_port, export_port, sink_port) = (free_port(), free_port(), free_port());
    let bus_conf = dir.join("bus.conf");
    std::fs::write(
        &bus_conf,
        format!("listener {bus_port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_type error\n"),
    )
    .unwrap();
    let export_conf = dir.join("export.conf");
    std::fs::write(
        &export_conf,
        format!(
            "listener {export_port} 127.0.0.1\nuser root\nallow_anonymous false\npassword_file {}\ncafile {}\ncertfile {}\nkeyfile {}\ntls_version tlsv1.3\npersistence true\nautosave_interval 1\npersistence_location {}/\nlog_type error\n",
            path("passwords"),
            path("ca.pem"),
            path("server.pem"),
            path("server.key"),
            dir.display()
        ),
    )
    .unwrap();
    // The export broker takes logins only (EdgeX's AuthMode usernamepassword).
    run_ok(&[
        "mosquitto_passwd",
        "-b",
        "-c",
        &path("passwords"),
        "lichen",
        "s3cret-export",
    ]);
    let _bus = mosquitto_up(&bus_conf, bus_port);
    let mut export = mosquitto_up(&export_conf, export_port);
    let export_port_text = export_port.to_string();
    let ca_pem = path("ca.pem");
    let sub_argv = [
        "mosquitto_sub",
        "-h",
        "localhost",
        "-p",
        &export_port_text,
        "--cafile",
        &ca_pem,
        "-V",
        "mqttv5",
        "-q",
        &qos_text,
        "-c",
        "-i",
        "lichen-export-sub",
        "-u",
        "lichen",
        "-P",
        "s3cret-export",
        "-x",
        "600",
        "-t",
        "lichen/export",
        "-v",
    ];
    let sub = Proc::start(
        "mosquitto_sub (export, TLS, MQTT 5, persistent session)",
        &sub_argv,
    );
    let sink_script = root()
        .join("tests/edgex/http_sink.py")
        .display()
        .to_string();
    let mut sink = Proc::start(
        "https sink",
        &[
            python(),
            &sink_script,
            &sink_port.to_string(),
            "--tls",
            &path("server.pem"),
            &path("server.key"),
            "--decode",
            "gzip",
        ],
    );
    sink.wait_for("ready", 0, |l| l == "ready");

    let root_der = std::fs::read(dir.join("ca.der")).unwrap();
    let command = Run::new("app-service")
        .accel(Accel::Tcg)
        .script_option("--hostfwd", Some("none"))
        .arg(&format!("broker=10.0.2.2:{bus_port}"))
        .arg("mqtt=5")
        .arg("qos=1")
        .arg(&format!("export=tls://10.0.2.2:{export_port}"))
        .arg(&format!("export_qos={qos}"))
        .arg("export_user=lichen")
        .arg("export_password=s3cret-export")
        .arg("export_topic=lichen/export")
        .arg("compress=gzip")
        .arg(&format!("http_export=https://10.0.2.2:{sink_port}/in"))
        .arg(&format!("tls_root={}", base64(&root_der)))
        .arg("stats=300ms")
        .command();
    let mut app = Proc::start(
        "app-service guest",
        &command.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let export_connected = format!("as app-service-export (MQTT 5, QoS {qos})");
    app.wait_for("the TLS export connection, MQTT 5", 0, |l| {
        l.contains(&export_connected)
    });
    app.wait_for("the bus connection, MQTT 5", 0, |l| {
        l.contains("as app-service (MQTT 5, QoS 1)")
    });
    // The bus subscription is in place once a probe comes through.
    let start = Instant::now();
    loop {
        publish(
            bus_port,
            "edgex/events/device/test/P/Meter-1/S",
            &event_message("probe"),
        );
        let lines = app.lines.lock().unwrap().len();
        thread::sleep(Duration::from_millis(400));
        let seen = app.lines.lock().unwrap()[lines..]
            .iter()
            .any(|l| l.contains("app-service: stats") && counter(l, "received") > 0);
        if seen {
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "app-service received nothing:\n{}",
            app.output()
        );
    }
    let ids = |range: std::ops::Range<u32>| range.map(|i| format!("e{i}")).collect::<Vec<_>>();
    for id in ids(0..20) {
        publish(
            bus_port,
            "edgex/events/device/test/P/Meter-1/S",
            &event_message(&id),
        );
    }
    let exported = |subs: &[&Proc]| -> Vec<String> {
        let words: Vec<String> = subs
            .iter()
            .flat_map(|sub| sub.lines.lock().unwrap().clone())
            .filter_map(|l| l.strip_prefix("lichen/export ").map(String::from))
            .collect();
        python_gunzip(&words)
            .iter()
            .map(|e| e["id"].as_str().expect("an event id").to_string())
            .collect()
    };
    let wait_for_ids = |subs: &[&Proc], app: &Proc, want: &[String]| {
        let start = Instant::now();
        loop {
            let got = exported(subs);
            if want.iter().all(|id| got.contains(id)) {
                return;
            }
            assert!(
                start.elapsed() < WAIT,
                "missing at the export broker: {:?}\napp-service:\n{}",
                want.iter()
                    .filter(|id| !got.contains(id))
                    .collect::<Vec<_>>(),
                app.output()
            );
            thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for_ids(&[&sub], &app, &ids(0..20));

    // The export broker freezes (SIGSTOP): 20 more events are written to it and wait for their
    // PUBACKs, in flight and still in the outbox; then it dies (SIGKILL) without acknowledging
    // them. Its persistence (saved every second) keeps the subscriber's session.
    let pid = export.child.id().to_string();
    thread::sleep(Duration::from_millis(1500)); // an autosave with the subscriber's session
    run_ok(&["kill", "-STOP", &pid]);
    let before = app.lines.lock().unwrap().len();
    for id in ids(20..40) {
        publish(
            bus_port,
            "edgex/events/device/test/P/Meter-1/S",
            &event_message(&id),
        );
    }
    let (_, stats) = app.wait_for("events in flight, unacknowledged", before, |l| {
        l.contains("app-service: stats")
            && counter(l, "queued") >= 20
            && counter(l, "inflight") >= 1
    });
    eprintln!("{stats}");
    run_ok(&["kill", "-KILL", &pid]);
    let _ = export.child.wait();
    let _export = mosquitto_up(&export_conf, export_port);
    // mosquitto_sub ends with its broker; a new one resumes the persistent session.
    let sub2 = Proc::start("mosquitto_sub (the same session)", &sub_argv);
    wait_for_ids(&[&sub, &sub2], &app, &ids(0..40));
    if qos == 2 {
        // Sent again after the restart (DUP), delivered exactly once. (The first 20 are not
        // checked: the broker's last autosave decides whether it delivers those again.)
        thread::sleep(Duration::from_millis(1000));
        let got = exported(&[&sub, &sub2]);
        for id in ids(20..40) {
            let n = got.iter().filter(|g| **g == id).count();
            assert_eq!(n, 1, "{id} arrived {n} times at QoS 2: {got:?}");
        }
    }
    let (_, stats) = app.wait_for("the outbox drained", before, |l| {
        l.contains("app-service: stats")
            && counter(l, "queued") == 0
            && counter(l, "exported") >= 41
    });
    assert_eq!(counter(&stats, "dropped"), 0, "{stats}");
    assert_eq!(counter(&stats, "refused"), 0, "{stats}");
    // The first discards any earlier session, the second makes it, the third resumes it.
    assert!(counter(&stats, "export_connects") >= 3, "{stats}");
    assert!(
        counter(&stats, "resent") >= 1,
        "sent again with DUP: {stats}"
    );

    // HTTPS: every event posted, each body gzip that Python decodes to the event.
    let start = Instant::now();
    loop {
        let posted: Vec<String> = sink
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.strip_prefix("200 /in "))
            .map(|json| {
                serde_json::from_str::<serde_json::Value>(json)
                    .unwrap_or_else(|e| panic!("{e}: {json}"))["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        if ids(0..40).iter().all(|id| posted.contains(id)) {
            break;
        }
        assert!(start.elapsed() < WAIT, "HTTPS sink:\n{}", sink.output());
        thread::sleep(Duration::from_millis(200));
    }
    assert!(!sink.output().contains("400 /in"), "{}", sink.output());
    eprintln!("{stats}");
    let output = app.output();
    assert!(
        !output.contains("PANIC") && !output.contains("FATAL"),
        "{output}"
    );
    drop((sub, sub2));
    let _ = std::fs::remove_dir_all(dir);
}

/// core-data subscribed at MQTT 3.1.1 and QoS 1 (clean session off) keeps its session through
/// a broker restart: messages published while it is away wait at the broker and arrive.
#[test]
fn a_subscriber_session_survives_a_broker_restart_mqtt311_qos1() {
    subscription_through_a_broker_restart(4, 1);
}

/// The same at MQTT 5 and QoS 2 (a session expiry, exactly once).
#[test]
fn a_subscriber_session_survives_a_broker_restart_mqtt5_qos2() {
    subscription_through_a_broker_restart(5, 2);
}

/// core-data, subscribed to EdgeX's event topics at `qos` over MQTT level `mqtt`, receives 5
/// events; then its guest freezes (SIGSTOP on QEMU: no reconnection, no packet), Debian's
/// mosquitto (persistence on) stops and starts again, 10 events are published at `qos` while
/// core-data is away and the guest resumes: its next connection resumes the session the
/// broker kept through its restart, and the 10 events arrive, each once, as core-data's REST
/// API shows. (Without a persistent session, a 3.1.1 client made with clean session on, the
/// broker forgets the subscription and the 10 are lost.)
fn subscription_through_a_broker_restart(mqtt: u8, qos: u8) {
    build_images();
    let dir = temp_dir().join(format!("session-mqtt{mqtt}-qos{qos}"));
    std::fs::create_dir_all(&dir).unwrap();
    let (port, http_port) = (free_port(), free_port());
    let conf = dir.join("broker.conf");
    std::fs::write(
        &conf,
        format!(
            // `user root`: mosquitto started as root would write its database as `mosquitto`.
            "listener {port} 127.0.0.1\nuser root\nallow_anonymous true\npersistence true\npersistence_location {}/\nlog_type error\n",
            dir.display()
        ),
    )
    .unwrap();
    let mut broker = mosquitto_up(&conf, port);
    let command = Run::new("core-data")
        .accel(Accel::Tcg)
        .script_option("--hostfwd", Some(&format!("{http_port}:59880")))
        .arg(&format!("broker=10.0.2.2:{port}"))
        .arg(&format!("mqtt={mqtt}"))
        .arg(&format!("qos={qos}"))
        .command();
    let mut core = Proc::start(
        "core-data guest",
        &command.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let connected = format!(
        "as core-data (MQTT {}, QoS {qos})",
        if mqtt == 5 { "5" } else { "3.1.1" }
    );
    let (first, _) = core.wait_for("the broker connection", 0, |l| l.contains(&connected));
    assert!(
        core.output().contains("earlier session discarded"),
        "a clean connection first:\n{}",
        core.output()
    );
    let topic = "edgex/events/device/test/P/Meter-1/S";
    // Published at the subscription's QoS: the broker keeps them for the session.
    let publish_qos = |id: &str| {
        run_ok(&[
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            &qos.to_string(),
            "-t",
            topic,
            "-m",
            &event_message(id),
        ])
    };
    let count = || {
        http(http_port, "GET", "/api/v3/event/count", "").1["Count"]
            .as_u64()
            .expect("a count")
    };
    let wait_count = |want: u64, what: &str, core: &Proc| {
        let start = Instant::now();
        loop {
            let n = count();
            if n >= want {
                return n;
            }
            assert!(
                start.elapsed() < WAIT,
                "{what}: {n} events of {want}:\n{}",
                core.output()
            );
            thread::sleep(Duration::from_millis(200));
        }
    };
    // The subscription is in place once a probe comes through.
    let start = Instant::now();
    while count() == 0 {
        publish_qos("probe");
        thread::sleep(Duration::from_millis(300));
        assert!(
            start.elapsed() < WAIT,
            "no probe arrived:\n{}",
            core.output()
        );
    }
    thread::sleep(Duration::from_millis(1000)); // a probe still on its way
    let base = count();
    for i in 0..5 {
        publish_qos(&format!("before-{i}"));
    }
    assert_eq!(wait_count(base + 5, "before the restart", &core), base + 5);

    let qemu = core.child.id().to_string();
    run_ok(&["kill", "-STOP", &qemu]);
    run_ok(&["kill", "-TERM", &broker.child.id().to_string()]);
    let _ = broker.child.wait();
    broker = mosquitto_up(&conf, port);
    let away: Vec<String> = (0..10).map(|i| format!("away-{i}")).collect();
    for id in &away {
        publish_qos(id);
    }
    let lines = core.lines.lock().unwrap().len();
    run_ok(&["kill", "-CONT", &qemu]);
    core.wait_for("the session resumed", lines.max(first + 1), |l| {
        l.contains(&connected)
    });
    assert_eq!(
        wait_count(base + 15, "after the restart", &core),
        base + 15,
        "each event once"
    );
    let (status, all) = http(http_port, "GET", "/api/v3/event/all?limit=-1", "");
    assert_eq!(status, 200);
    let ids: Vec<&str> = all["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["id"].as_str().expect("an id"))
        .collect();
    for id in &away {
        assert_eq!(
            ids.iter().filter(|i| **i == id.as_str()).count(),
            1,
            "{id} in {ids:?}"
        );
    }
    let output = core.output();
    assert!(
        !output.contains("PANIC") && !output.contains("FATAL"),
        "{output}"
    );
    drop(broker);
    let _ = std::fs::remove_dir_all(dir);
}

/// One MQTT connection from the host, speaking lichen's codec (`mqtt::encode`/`decode`).
struct Peer {
    stream: std::net::TcpStream,
    input: Vec<u8>,
    version: mqtt::Version,
}

impl Peer {
    fn connect(port: u16, version: mqtt::Version) -> Peer {
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Peer {
            stream,
            input: Vec::new(),
            version,
        }
    }

    fn send(&mut self, packet: &mqtt::Packet) {
        use std::io::Write;
        let mut bytes = Vec::new();
        mqtt::encode(packet, self.version, &mut bytes).expect("encode");
        self.stream.write_all(&bytes).expect("write");
    }

    /// The next packet within `wait`; `None` when nothing came (or the broker closed).
    fn recv_within(&mut self, wait: Duration) -> Option<mqtt::Packet> {
        use std::io::{ErrorKind, Read};
        let deadline = Instant::now() + wait;
        loop {
            if let Some((packet, used)) = mqtt::decode(&self.input, self.version, 1 << 20)
                .expect("the broker's packet decodes")
            {
                self.input.drain(..used);
                return Some(packet);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 4096];
            let read = self.stream.read(&mut chunk);
            self.stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            match read {
                Ok(0) => return None,
                Ok(n) => self.input.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None
                }
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// The next packet; `None` when the broker closed the connection.
    fn recv(&mut self) -> Option<mqtt::Packet> {
        use std::io::Read;
        loop {
            if let Some((packet, used)) = mqtt::decode(&self.input, self.version, 1 << 20)
                .expect("the broker's packet decodes")
            {
                self.input.drain(..used);
                return Some(packet);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.input.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read: {e}"),
            }
        }
    }
}

/// The MQTT codec at both protocol levels against Debian's mosquitto, no guest: MQTT 5
/// properties the broker sends (CONNACK's limits, an assigned client id), properties that
/// travel through it (content type, user property, message expiry), reason codes (granted
/// QoS, PUBACK), and the broker's DISCONNECT for a packet over its maximum size.
#[test]
fn mqtt_codec_against_mosquitto() {
    use mqtt::properties::{id, Properties, Value};
    use mqtt::{Ack, Connect, Packet, Publish, QoS, Version};
    let port = free_port();
    let dir = temp_dir().join("mqtt5");
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_packet_size 1000\nmax_qos 1\nlog_type error\n"),
    )
    .unwrap();
    let _broker = mosquitto_up(&conf, port);

    // MQTT 3.1.1: no properties anywhere.
    let mut old = Peer::connect(port, Version::V311);
    old.send(&Packet::Connect(Connect {
        client_id: "lichen-311".into(),
        keep_alive: 30,
        clean_session: true,
        ..Connect::default()
    }));
    assert_eq!(
        old.recv(),
        Some(Packet::ConnAck {
            session_present: false,
            code: 0,
            properties: Properties::new()
        })
    );

    // MQTT 5: an empty client id gets one assigned; the CONNACK carries the broker's limits.
    let mut peer = Peer::connect(port, Version::V5);
    peer.send(&Packet::Connect(Connect {
        client_id: String::new(),
        keep_alive: 30,
        clean_session: true,
        properties: Properties::new().with(id::SESSION_EXPIRY_INTERVAL, Value::U32(0)),
        ..Connect::default()
    }));
    let Some(Packet::ConnAck {
        code: 0,
        properties,
        ..
    }) = peer.recv()
    else {
        panic!("no CONNACK");
    };
    eprintln!("mosquitto's CONNACK properties: {properties:?}");
    assert!(properties
        .str(id::ASSIGNED_CLIENT_IDENTIFIER)
        .is_some_and(|c| !c.is_empty()));
    assert_eq!(properties.u32(id::MAXIMUM_PACKET_SIZE), Some(1000));
    assert_eq!(properties.byte(id::MAXIMUM_QOS), Some(1));

    peer.send(&Packet::Subscribe {
        packet_id: 1,
        filters: vec![("lichen/v5/#".into(), QoS::AtLeastOnce)],
        properties: Properties::new(),
    });
    let Some(Packet::SubAck {
        packet_id: 1,
        codes,
        ..
    }) = peer.recv()
    else {
        panic!("no SUBACK");
    };
    assert_eq!(codes, [1], "granted QoS 1");

    // A QoS 1 message with properties comes back through the broker with them.
    let sent = Properties::new()
        .with(id::CONTENT_TYPE, Value::Str("application/json".into()))
        .with(id::MESSAGE_EXPIRY_INTERVAL, Value::U32(60))
        .with(
            id::USER_PROPERTY,
            Value::Pair("origin".into(), "lichen".into()),
        );
    peer.send(&Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        packet_id: Some(7),
        properties: sent,
        ..Publish::new("lichen/v5/a".into(), b"{\"v\":1}".to_vec())
    }));
    let mut acked = false;
    let mut delivered = None;
    while !acked || delivered.is_none() {
        match peer.recv().expect("the broker answers") {
            Packet::PubAck(Ack {
                packet_id: 7,
                reason,
                ..
            }) => {
                assert_eq!(reason, 0, "accepted");
                acked = true;
            }
            Packet::Publish(p) => {
                let id = p.packet_id.expect("QoS 1 has a packet id");
                peer.send(&Packet::PubAck(Ack::new(id)));
                delivered = Some(p);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let p = delivered.unwrap();
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("lichen/v5/a", &b"{\"v\":1}"[..])
    );
    assert_eq!(p.properties.str(id::CONTENT_TYPE), Some("application/json"));
    assert!(p.properties.0.contains(&(
        id::USER_PROPERTY,
        Value::Pair("origin".into(), "lichen".into())
    )));
    assert!(p
        .properties
        .u32(id::MESSAGE_EXPIRY_INTERVAL)
        .is_some_and(|s| s <= 60));

    // Nobody subscribes: accepted, with reason "no matching subscribers" (or plain success).
    peer.send(&Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        packet_id: Some(8),
        ..Publish::new("nobody/listens".into(), b"x".to_vec())
    }));
    let Some(Packet::PubAck(Ack {
        packet_id: 8,
        reason,
        ..
    })) = peer.recv()
    else {
        panic!("no PUBACK");
    };
    assert!(
        reason == mqtt::reason::NO_MATCHING_SUBSCRIBERS || reason == 0,
        "{reason:#x}"
    );

    // Over the broker's maximum packet size: it says so (DISCONNECT 0x95) and closes.
    peer.send(&Packet::Publish(Publish::new(
        "lichen/v5/big".into(),
        vec![b'x'; 2000],
    )));
    match peer.recv() {
        Some(Packet::Disconnect { reason, .. }) => {
            eprintln!("mosquitto: DISCONNECT {reason:#x}");
            assert_eq!(reason, 0x95, "{}", mqtt::reason::describe(reason))
        }
        None => eprintln!("mosquitto closed without DISCONNECT"),
        other => panic!("unexpected {other:?}"),
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// QoS 2's handshakes between lichen's codec and Debian's mosquitto, at both protocol levels,
/// no guest: a publisher's PUBLISH gets PUBREC; the same PUBLISH again (DUP, as after a lost
/// connection) gets PUBREC again and is not delivered twice; the connection breaks before
/// PUBREL; the next one resumes the session (session present) and its PUBREL gets PUBCOMP. The
/// subscriber (QoS 2) gets the message once, answers PUBREC, and completes on the broker's
/// PUBREL.
#[test]
fn mqtt_qos2_handshakes_against_mosquitto() {
    use mqtt::properties::{id, Properties, Value};
    use mqtt::{Ack, Connect, Packet, Publish, QoS, Version};
    let port = free_port();
    let dir = temp_dir().join("mqtt-qos2");
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_type error\n"
        ),
    )
    .unwrap();
    let _broker = mosquitto_up(&conf, port);
    for version in [Version::V311, Version::V5] {
        let tag = if version == Version::V5 { "5" } else { "311" };
        let session = |clean: bool, name: &str| {
            let properties = match version {
                Version::V5 => Properties::new().with(id::SESSION_EXPIRY_INTERVAL, Value::U32(60)),
                _ => Properties::new(),
            };
            Packet::Connect(Connect {
                client_id: format!("lichen-qos2-{name}-{tag}"),
                keep_alive: 30,
                clean_session: clean,
                properties,
                ..Connect::default()
            })
        };
        let connack = |peer: &mut Peer| match peer.recv() {
            Some(Packet::ConnAck {
                code: 0,
                session_present,
                ..
            }) => session_present,
            other => panic!("no CONNACK: {other:?}"),
        };
        let topic = format!("lichen/qos2/{tag}");
        let mut sub = Peer::connect(port, version);
        sub.send(&session(true, "sub"));
        connack(&mut sub);
        sub.send(&Packet::Subscribe {
            packet_id: 1,
            filters: vec![(topic.clone(), QoS::ExactlyOnce)],
            properties: Properties::new(),
        });
        match sub.recv() {
            Some(Packet::SubAck { codes, .. }) => assert_eq!(codes, [2], "granted QoS 2"),
            other => panic!("no SUBACK: {other:?}"),
        }

        // Clean start, then the session kept for the next connection.
        let mut publisher = Peer::connect(port, version);
        publisher.send(&session(true, "pub"));
        connack(&mut publisher);
        drop(publisher);
        let mut publisher = Peer::connect(port, version);
        publisher.send(&session(false, "pub"));
        connack(&mut publisher);
        let message = Publish {
            qos: QoS::ExactlyOnce,
            packet_id: Some(5),
            ..Publish::new(topic.clone(), b"once".to_vec())
        };
        publisher.send(&Packet::Publish(message.clone()));
        match publisher.recv() {
            Some(Packet::PubRec(Ack {
                packet_id: 5,
                reason,
                ..
            })) => assert!(reason < 0x80),
            other => panic!("no PUBREC: {other:?}"),
        }
        publisher.send(&Packet::Publish(Publish {
            dup: true,
            ..message
        }));
        match publisher.recv() {
            Some(Packet::PubRec(Ack { packet_id: 5, .. })) => {}
            other => panic!("no second PUBREC: {other:?}"),
        }
        // The connection breaks before PUBREL; the session resumes and PUBREL completes.
        drop(publisher);
        let mut publisher = Peer::connect(port, version);
        publisher.send(&session(false, "pub"));
        assert!(
            connack(&mut publisher),
            "MQTT {tag}: the broker kept the session"
        );
        publisher.send(&Packet::PubRel(Ack::new(5)));
        match publisher.recv() {
            Some(Packet::PubComp(Ack {
                packet_id: 5,
                reason,
                ..
            })) => assert_eq!(reason, 0),
            other => panic!("no PUBCOMP: {other:?}"),
        }

        // The subscriber: the message once, at QoS 2, completed on the broker's PUBREL.
        let Some(Packet::Publish(p)) = sub.recv() else {
            panic!("MQTT {tag}: nothing delivered");
        };
        assert_eq!((p.qos, &p.payload[..]), (QoS::ExactlyOnce, &b"once"[..]));
        let delivered_id = p.packet_id.expect("QoS 2 has a packet id");
        sub.send(&Packet::PubRec(Ack::new(delivered_id)));
        match sub.recv() {
            Some(Packet::PubRel(Ack { packet_id, .. })) => assert_eq!(packet_id, delivered_id),
            other => panic!("no PUBREL: {other:?}"),
        }
        sub.send(&Packet::PubComp(Ack::new(delivered_id)));
        let again = sub.recv_within(Duration::from_millis(700));
        assert_eq!(again, None, "MQTT {tag}: delivered twice");
    }
    let _ = std::fs::remove_dir_all(dir);
}
