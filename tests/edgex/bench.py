#!/usr/bin/python3
"""The EdgeX benchmark driver (run by `scripts/bench edgex`; see that script)."""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIM = os.path.join(ROOT, "tests/edgex/modbus_sim.py")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Proc:
    """A child whose stdout lines are collected with their arrival time (time.time())."""

    def __init__(self, argv, env=None):
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  stdin=subprocess.DEVNULL, text=True, env=env,
                                  start_new_session=True)
        self.lines = []
        self.started = time.time()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.append((time.time(), line.rstrip("\n")))

    def wait_for(self, pred, timeout=60):
        end = time.time() + timeout
        seen = 0
        while time.time() < end:
            lines = self.lines
            for t, l in lines[seen:]:
                if pred(l):
                    return t, l
            seen = len(lines)
            if self.p.poll() is not None:
                break
            time.sleep(0.01)
        sys.exit("bench: timed out waiting; output:\n" + "\n".join(l for _, l in self.lines[-20:]))

    def stop(self):
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)


def guest(image, accel, mem, args, hostfwd="none"):
    out = subprocess.run([os.path.join(ROOT, "scripts/run"), image, accel, "--mem", str(mem),
                          "--hostfwd", hostfwd, "--print-command", "--", *args],
                         env=dict(os.environ, LICHEN_NO_BUILD="1"), check=True,
                         capture_output=True, text=True).stdout.split("\n")
    return Proc([a for a in out if a])


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round((len(xs) - 1) * q)))]


def reference_rate(port, seconds):
    """Events/s of a host pymodbus client doing an event's three reads back to back."""
    from pymodbus.client import ModbusTcpClient
    c = ModbusTcpClient("127.0.0.1", port=port)
    c.connect()
    n, end = 0, time.time() + seconds
    while time.time() < end:
        c.read_holding_registers(1, 1, slave=1)
        c.read_input_registers(0, 1, slave=1)
        c.read_holding_registers(2, 1, slave=1)
        n += 1
    c.close()
    return n / seconds


def mqtt_packet(kind, body):
    """An MQTT packet: fixed header byte, remaining length (varint), body."""
    n, length = len(body), bytearray()
    while True:
        byte, n = n % 128, n // 128
        length.append(byte | (128 if n else 0))
        if not n:
            return bytes([kind]) + bytes(length) + body


def mqtt_str(text):
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def mqtt_connect(port, client_id):
    """A host MQTT 3.1.1 connection (clean session, QoS 0), Nagle off like the guests' stack."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(mqtt_packet(0x10, mqtt_str("MQTT") + bytes([4, 2, 0, 60]) + mqtt_str(client_id)))
    assert s.recv(4) == bytes([0x20, 2, 0, 0]), "bench: the broker refused the reference"
    return s


def mqtt_parse(buf):
    """The first whole packet of `buf` as (first byte, body), removed from it; None if it is
    not all there yet."""
    length, shift = 0, 0
    for i in range(1, 5):
        if i >= len(buf):
            return None
        length |= (buf[i] & 127) << shift
        shift += 7
        if not buf[i] & 128:
            end = i + 1 + length
            if len(buf) < end:
                return None
            kind, body = buf[0], bytes(buf[i + 1:end])
            del buf[:end]
            return kind, body
    raise ValueError("bench: a remaining length of more than four bytes")


def mqtt_read(s, buf):
    """The next (topic, payload) PUBLISH (QoS 0) from `s`, other packets skipped; None at the
    end of the connection."""
    while True:
        packet = mqtt_parse(buf)
        if packet is None:
            try:
                data = s.recv(65536)
            except OSError:
                return None
            if not data:
                return None
            buf.extend(data)
        elif packet[0] >> 4 == 3:
            n = int.from_bytes(packet[1][:2], "big")
            return packet[1][2:2 + n].decode(), packet[1][2 + n:]


def reference_pipeline(modbus_port, broker_port, seconds, interval_s, stop):
    """The same pipeline on the host, natively: every `interval_s` a pymodbus client reads the
    thermostat's three registers in device-modbus's order (Temperature, Setpoint, Humidity),
    builds the EdgeX event and publishes it (raw MQTT 3.1.1, QoS 0) to
    edgex/events/device/reference/...; a relay (app-service's part) subscribes to it and
    publishes the event to lichen/export-reference. Same broker, same clock, same matching as
    the guests' figures: the lower bound of what this machine's measurement sees."""
    from pymodbus.client import ModbusTcpClient
    relay_sub = mqtt_connect(broker_port, "bench-reference-relay")
    relay_sub.sendall(mqtt_packet(0x82, (1).to_bytes(2, "big")
                                  + mqtt_str("edgex/events/device/reference/#") + bytes([0])))
    assert relay_sub.recv(5)[0] == 0x90, "bench: no SUBACK for the reference relay"
    relay_pub = mqtt_connect(broker_port, "bench-reference-export")

    def relay():
        buf = bytearray()
        while not stop.is_set():
            got = mqtt_read(relay_sub, buf)
            if got is None:
                return
            event = json.loads(got[1])["payload"]["event"]
            if stop.is_set():
                return
            relay_pub.sendall(mqtt_packet(0x30, mqtt_str("lichen/export-reference")
                                          + json.dumps(event).encode()))

    threading.Thread(target=relay, daemon=True).start()
    device = mqtt_connect(broker_port, "bench-reference-device")
    c = ModbusTcpClient("127.0.0.1", port=modbus_port)
    c.connect()
    topic = "edgex/events/device/reference/Thermostat/Thermostat-1/Readings"
    end, n = time.time() + seconds, 0
    while time.time() < end:
        due = time.time() + interval_s
        t = c.read_holding_registers(0, 1, slave=1).registers[0]
        sp = c.read_holding_registers(1, 1, slave=1).registers[0]
        hu = c.read_input_registers(0, 1, slave=1).registers[0]
        now = time.time_ns()
        readings = [{"id": f"r{n}-{i}", "origin": now, "deviceName": "Thermostat-1",
                     "resourceName": name, "profileName": "Thermostat", "valueType": vt,
                     "value": value}
                    for i, (name, vt, value) in enumerate((("Temperature", "Float32", str(t / 10)),
                                                           ("Setpoint", "Int16", str(sp)),
                                                           ("Humidity", "Uint16", str(hu))))]
        event = {"apiVersion": "v3", "id": f"e{n}", "deviceName": "Thermostat-1",
                 "profileName": "Thermostat", "sourceName": "Readings", "origin": now,
                 "readings": readings}
        envelope = {"apiVersion": "v3", "receivedTopic": "", "correlationID": f"c{n}",
                    "requestID": "", "errorCode": 0, "contentType": "application/json",
                    "payload": {"apiVersion": "v3", "requestId": "", "event": event}}
        device.sendall(mqtt_packet(0x30, mqtt_str(topic) + json.dumps(envelope).encode()))
        n += 1
        time.sleep(max(0.0, due - time.time()))
    c.close()
    time.sleep(0.5)
    for s in (device, relay_pub, relay_sub):
        s.close()
    return n


def match_latencies(sim_lines, window, device_prefix, export_topic):
    """Latencies (ms) of the events in `window` (mosquitto_sub lines): the event's last Modbus
    answer (Humidity) to its arrival at the broker (topics under `device_prefix`), its first
    answer (Temperature) to that arrival, and the last answer to the export's arrival (topic
    `export_topic`)."""
    # For each count n: when holding register 0 answered n (the event's first read) and
    # when the input register was next read (the event's last read, Humidity).
    reads, last_reads, pending = {}, {}, None
    for _, l in sim_lines:
        if l.startswith("read "):
            _, n, t = l.split()
            reads.setdefault(int(n), float(t))
            pending = int(n)
        elif l.startswith("ir ") and pending is not None:
            last_reads.setdefault(pending, float(l.split()[1]))
            pending = None
    latencies, event_latencies, export_latencies, readings = [], [], [], 0
    for _, l in window:
        t, topic, payload = l.split(" ", 2)
        if not (topic.startswith(device_prefix) or topic == export_topic):
            continue
        body = json.loads(payload)
        event = body["payload"]["event"] if topic.startswith("edgex/") else body
        if topic.startswith(device_prefix) and event["sourceName"] == "Readings":
            readings += len(event["readings"])
        temp = next((r for r in event["readings"] if r["resourceName"] == "Temperature"), None)
        if temp is None:
            continue
        n = int(round(float(temp["value"]) * 10))
        if n in last_reads and topic.startswith(device_prefix):
            latencies.append((float(t) - last_reads[n]) * 1000)
            event_latencies.append((float(t) - reads[n]) * 1000)
        elif n in last_reads:
            export_latencies.append((float(t) - last_reads[n]) * 1000)
    return latencies, event_latencies, export_latencies


def stats(proc, prefix):
    for _, l in reversed(proc.lines):
        if prefix in l:
            words = l.split(prefix, 1)[1].split()
            return {words[i]: int(words[i + 1]) for i in range(0, len(words) - 1, 2)}
    return {}


def parse_interval(text):
    """Seconds of a Go-style duration like 20ms or 1s."""
    for unit, scale in (("ms", 1e-3), ("us", 1e-6), ("s", 1.0)):
        if text.endswith(unit):
            return float(text[:-len(unit)]) * scale
    sys.exit(f"bench: bad interval {text}")


def summary(xs):
    return (round(percentile(xs, 0.5), 2), round(percentile(xs, 0.99), 2)) if xs else (None, None)


def main():
    seconds, interval, accel, mem, level, export_qos = 10, "20ms", "--tcg", 16, "4", "0"
    args = sys.argv[1:]
    while args:
        a = args.pop(0)
        if a == "--seconds":
            seconds = float(args.pop(0))
        elif a == "--interval":
            interval = args.pop(0)
        elif a in ("--kvm", "--tcg"):
            accel = a
        elif a == "--mem":
            mem = int(args.pop(0))
        elif a == "--mqtt" and args and args[0] in ("4", "5"):
            level = args.pop(0)
        elif a == "--export-qos" and args and args[0] in ("0", "1", "2"):
            export_qos = args.pop(0)
        else:
            sys.exit("usage: scripts/bench edgex [--seconds S] [--interval DURATION] [--mem MiB]"
                     " [--mqtt 4|5] [--export-qos 0|1|2] [--kvm|--tcg]")
    modbus, broker = free_port(), free_port()
    work = tempfile.mkdtemp(prefix="edgex-bench-", dir=os.path.join(ROOT, "target"))
    conf = os.path.join(work, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write(f"listener {broker} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_type error\n")
    procs = []
    try:
        mosq = Proc(["/usr/sbin/mosquitto", "-c", conf]); procs.append(mosq)
        sim = Proc(["/usr/bin/python3", SIM, "serve", str(modbus), "--count"]); procs.append(sim)
        sim.wait_for(lambda l: l == "ready")
        sub = Proc(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker), "-F", "%U %t %p",
                    "-t", "edgex/events/#", "-t", "lichen/export",
                    "-t", "lichen/export-reference"]); procs.append(sub)
        time.sleep(0.3)
        bus = f"broker=10.0.2.2:{broker} mqtt={level}".split()
        core = guest("core-data", accel, mem, [*bus, "stats=1s"]); procs.append(core)
        app = guest("app-service", accel, mem, [*bus, "stats=1s", "export_topic=lichen/export",
                                                f"export_qos={export_qos}"]); procs.append(app)
        core.wait_for(lambda l: "mqtt: connected" in l)
        app.wait_for(lambda l: "as app-service-export" in l)
        dev = guest("device-modbus", accel, mem,
                    [f"modbus=10.0.2.2:{modbus}", *bus, f"interval={interval}", "stats=1s"]); procs.append(dev)
        t_first, _ = sub.wait_for(lambda l: " edgex/events/" in l and "/Readings " in l)
        boot_to_first_ms = (t_first - dev.started) * 1000
        _, first_line = dev.wait_for(lambda l: "first event from" in l)
        in_guest_first_ms = int(first_line.split(" at ")[1].split()[0])
        warm = time.time() + 1
        while time.time() < warm:
            time.sleep(0.05)
        start_lines = len(sub.lines)
        t0 = time.time()
        time.sleep(seconds)
        t1 = time.time()
        window = sub.lines[start_lines:]
        latencies, event_latencies, export_latencies = match_latencies(
            sim.lines, window, "edgex/events/device/device-modbus/", "lichen/export")
        dev_stats = stats(dev, "device-modbus: stats ")
        core_stats = stats(core, "core-data: stats ")
        app_stats = stats(app, "app-service: stats ")
        dev.stop()
        # The reference, in the same run: the same pipeline natively on the host, at the same
        # interval, against the same pymodbus server and broker.
        time.sleep(0.5)
        sim_seen, ref_start = len(sim.lines), len(sub.lines)
        stop_ref = threading.Event()
        interval_s = parse_interval(interval)
        reference_pipeline(modbus, broker, seconds, interval_s, stop_ref)
        stop_ref.set()
        ref_lat, ref_event_lat, ref_export_lat = match_latencies(
            sim.lines[sim_seen:], sub.lines[ref_start:], "edgex/events/device/reference/",
            "lichen/export-reference")
        # Throughput: a second device-modbus polling back to back (interval 1 ms).
        fast = guest("device-modbus", accel, mem,
                     [f"modbus=10.0.2.2:{modbus}", *bus, "interval=1ms", "stats=1s"]); procs.append(fast)
        fast.wait_for(lambda l: "first event from" in l)
        time.sleep(1)
        before = len(sub.lines)
        f0 = time.time()
        time.sleep(seconds)
        f1 = time.time()
        fast_readings = sum(len(json.loads(l.split(" ", 2)[2])["payload"]["event"]["readings"])
                            for _, l in sub.lines[before:] if " edgex/events/" in l and "/Readings " in l)
        fast_stats = stats(fast, "device-modbus: stats ")
        fast.stop()
        reference = reference_rate(modbus, min(seconds, 3.0))
    finally:
        for p in reversed(procs):
            p.stop()
    if not latencies:
        sys.exit("bench: no matched events")
    if not ref_lat:
        sys.exit("bench: no matched events of the reference pipeline")
    rate = fast_readings / (f1 - f0)
    events_rate = rate / 3
    sizes = {name: os.path.getsize(os.path.join(ROOT, f"target/images/{name}.elf"))
             for name in ("device-modbus", "core-data", "app-service")}
    heaps = {"device-modbus": max(dev_stats.get("heap_used", 0), fast_stats.get("heap_used", 0)), "core-data": core_stats.get("heap_used", 0),
             "app-service": app_stats.get("heap_used", 0)}
    memory = {k: round((heaps[k] + sizes[k]) / 2**20, 2) for k in heaps}
    result = {
        "accel": accel.strip("-"),
        "mqtt": level,
        "export_qos": int(export_qos),
        "interval": interval,
        "seconds": round(t1 - t0, 2),
        "events": len(latencies),
        "p50_ms": round(percentile(latencies, 0.5), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "event_p50_ms": round(percentile(event_latencies, 0.5), 2),
        "event_p99_ms": round(percentile(event_latencies, 0.99), 2),
        "export_p50_ms": round(percentile(export_latencies, 0.5), 2) if export_latencies else None,
        "export_p99_ms": round(percentile(export_latencies, 0.99), 2) if export_latencies else None,
        "export_events": len(export_latencies),
        "in_guest_p50_us": dev_stats.get("publish_p50_us"),
        "in_guest_p99_us": dev_stats.get("publish_p99_us"),
        "in_guest_max_us": dev_stats.get("publish_max_us"),
        "in_guest_samples": dev_stats.get("publish_samples"),
        "p99_target_ms": 1.0,
        "p99_target_met": percentile(latencies, 0.99) <= 1.0,
        "reference_p50_ms": summary(ref_lat)[0],
        "reference_p99_ms": summary(ref_lat)[1],
        "reference_event_p99_ms": summary(ref_event_lat)[1],
        "reference_export_p50_ms": summary(ref_export_lat)[0],
        "reference_export_p99_ms": summary(ref_export_lat)[1],
        "reference_events": len(ref_lat),
        "p99_ratio_vs_reference": round(percentile(latencies, 0.99) / percentile(ref_lat, 0.99), 2),
        "export_p99_ratio_vs_reference": (round(percentile(export_latencies, 0.99) / percentile(ref_export_lat, 0.99), 2)
                                          if export_latencies and ref_export_lat else None),
        "readings_per_s": round(rate, 1),
        "events_per_s": round(events_rate, 1),
        "reference_host_pymodbus_events_per_s": round(reference, 1),
        "ratio_vs_reference": round(events_rate / reference, 3) if reference else None,
        "boot_to_first_reading_ms": round(boot_to_first_ms, 1),
        "in_guest_first_event_ms": in_guest_first_ms,
        "memory_per_service_mib": memory,
        "heap_used_bytes": heaps,
        "image_bytes": sizes,
        "guest_mem_mib": mem,
        "device_modbus": dev_stats,
        "device_modbus_fast": fast_stats,
        "core_data_stored": core_stats.get("stored"),
        "app_service_exported": app_stats.get("exported"),
    }
    os.makedirs(os.path.join(ROOT, "target/bench"), exist_ok=True)
    with open(os.path.join(ROOT, "target/bench/edgex.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(f"{'figure':44} {'value':>12}")
    for k in ("p50_ms", "p99_ms", "reference_p50_ms", "reference_p99_ms", "p99_ratio_vs_reference",
              "event_p50_ms", "event_p99_ms", "reference_event_p99_ms",
              "export_p50_ms", "export_p99_ms", "reference_export_p50_ms", "reference_export_p99_ms",
              "export_p99_ratio_vs_reference", "events", "export_events", "reference_events",
              "in_guest_p50_us", "in_guest_p99_us", "in_guest_max_us", "in_guest_samples",
              "readings_per_s", "events_per_s",
              "reference_host_pymodbus_events_per_s", "ratio_vs_reference", "boot_to_first_reading_ms",
              "in_guest_first_event_ms"):
        print(f"{k:44} {result[k]!s:>12}")
    for k, v in memory.items():
        print(f"{'memory_per_service_mib.' + k:44} {v:>12}")
    print(f"(accel {result['accel']}, MQTT level {level}, export QoS {export_qos}; latency at autoEvent interval {interval}, {result['events']} events"
          f" matched; readings/s polling back to back; target/bench/edgex.json)")


if __name__ == "__main__":
    main()
