//! Network tests: the `echo` service under QEMU microvm, reached from the host through
//! `scripts/run --hostfwd` (QEMU user networking), plus raw Ethernet frames injected through a
//! UDP-socket netdev to check that malformed input cannot crash the guest.
//!
//! The guests run under TCG: on the development machine KVM is nested and every first touch of
//! a guest page costs milliseconds, which turns bulk transfers into minutes.

use lichen_tests::{free_port, Accel, LiveGuest, Run};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long a guest may take to boot and lease an address.
const BOOT_TIMEOUT: Duration = Duration::from_secs(40);
/// Socket timeouts on the host side.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A running echo guest and its forwarded ports; killed when dropped.
struct Guest {
    live: LiveGuest,
    tcp: u16,
    udp: u16,
    http: u16,
}

impl Guest {
    fn boot(args: &[&str]) -> Guest {
        let (tcp, udp, http) = (free_port(), free_port(), free_port());
        let mut run = Run::new("echo")
            .accel(Accel::Tcg)
            .script_option("--hostfwd", Some(&format!("{tcp}:7")))
            .script_option("--hostfwd", Some(&format!("udp:{udp}:7")))
            .script_option("--hostfwd", Some(&format!("{http}:80")));
        for arg in args {
            run = run.arg(arg);
        }
        let guest = Guest::start(&run.command(), tcp, udp, http);
        guest.wait_for("echo: ipv4 address");
        guest
    }

    fn start(argv: &[String], tcp: u16, udp: u16, http: u16) -> Guest {
        Guest {
            live: LiveGuest::spawn(argv),
            tcp,
            udp,
            http,
        }
    }

    fn wait_for(&self, needle: &str) -> String {
        self.live.wait_for(needle, BOOT_TIMEOUT)
    }

    fn assert_healthy(&mut self) {
        self.live.assert_healthy();
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(("127.0.0.1", self.tcp)).expect("connect to echo");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
    }

    /// `GET path` over a fresh connection: status code and body.
    fn http_get(&self, request: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.http)).expect("connect to http");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("read the response");
        let code = response
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {response:?}"));
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (code, body)
    }

    fn status(&self) -> serde_json::Value {
        let (code, body) =
            self.http_get("GET /status HTTP/1.1\r\nHost: echo\r\nConnection: close\r\n\r\n");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("status is JSON")
    }
}

#[test]
fn dhcp_lease_then_tcp_echo_from_the_host() {
    let mut guest = Guest::boot(&[]);
    let lease = guest.wait_for("net: dhcp: leased");
    assert!(lease.contains("10.0.2.15/24"), "{lease}");
    assert!(lease.contains("10.0.2.2"), "router: {lease}");
    guest.wait_for("virtio-net: slot");
    guest.wait_for("ipv6 link-local fe80::");
    let mut stream = guest.connect();
    for message in [&b"hello lichen\n"[..], b"x", &[0u8; 3000]] {
        stream.write_all(message).unwrap();
        let mut back = vec![0u8; message.len()];
        stream.read_exact(&mut back).unwrap();
        assert_eq!(back, message);
    }
    stream.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "the guest closes after the client");
    guest.assert_healthy();
}

#[test]
fn static_address_from_the_command_line() {
    let mut guest = Guest::boot(&["ip=10.0.2.15/24", "gw=10.0.2.2", "dns=10.0.2.3"]);
    guest.wait_for("ipv4 10.0.2.15/24 gw Some(10.0.2.2)");
    assert!(!guest.live.console().contains("dhcp: leased"));
    let mut stream = guest.connect();
    stream.write_all(b"static").unwrap();
    let mut back = [0u8; 6];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"static");
    guest.assert_healthy();
}

/// Pipes bytes through `sha256sum` and returns the digest.
struct Sha256 {
    child: Child,
}

impl Sha256 {
    fn new() -> Sha256 {
        let child = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run sha256sum");
        Sha256 { child }
    }

    fn update(&mut self, bytes: &[u8]) {
        self.child.stdin.as_mut().unwrap().write_all(bytes).unwrap();
    }

    fn finish(mut self) -> String {
        drop(self.child.stdin.take());
        let out = self.child.wait_with_output().unwrap();
        String::from_utf8(out.stdout).unwrap()[..64].to_string()
    }
}

#[test]
fn hundred_mib_through_tcp_checked_by_sha256() {
    const TOTAL: usize = 100 << 20;
    let mut guest = Guest::boot(&[]);
    let stream = guest.connect();
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let mut digest = Sha256::new();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut chunk = vec![0u8; 64 * 1024];
        let mut sent = 0;
        while sent < TOTAL {
            for word in chunk.chunks_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                word.copy_from_slice(&state.to_le_bytes()[..word.len()]);
            }
            let n = chunk.len().min(TOTAL - sent);
            writer.write_all(&chunk[..n]).unwrap();
            digest.update(&chunk[..n]);
            sent += n;
        }
        writer.shutdown(Shutdown::Write).unwrap();
        digest.finish()
    });
    let start = Instant::now();
    let mut reader = stream;
    let mut digest = Sha256::new();
    let mut received = 0;
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut buffer).expect("read the echo");
        if n == 0 {
            break;
        }
        digest.update(&buffer[..n]);
        received += n;
    }
    let sent_digest = sender.join().unwrap();
    let elapsed = start.elapsed();
    eprintln!(
        "100 MiB echoed in {:.2} s ({:.0} Mbit/s each way)",
        elapsed.as_secs_f64(),
        TOTAL as f64 * 8.0 / elapsed.as_secs_f64() / 1e6
    );
    assert_eq!(received, TOTAL);
    assert_eq!(digest.finish(), sent_digest);
    let status = guest.status();
    assert_eq!(status["tcp"]["bytes"].as_u64(), Some(TOTAL as u64));
    assert_eq!(status["net"]["device_errors"].as_u64(), Some(0));
    guest.assert_healthy();
}

#[test]
fn two_hundred_fifty_six_concurrent_connections() {
    const CONNECTIONS: usize = 256;
    let mut guest = Guest::boot(&["tcp_buffer=8192", "backlog=256"]);
    // QEMU's slirp listens on the forwarded port with a backlog of 1: connecting faster than it
    // accepts makes the host drop SYNs (1 s retransmissions). So each connection is opened and
    // proven with a first echo before the next; they all stay open.
    let streams: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|i| {
            let mut s = guest.connect();
            s.write_all(&[i as u8]).unwrap();
            let mut first = [0u8; 1];
            s.read_exact(&mut first).unwrap();
            assert_eq!(first[0], i as u8);
            s
        })
        .collect();
    // Every connection is open at once; each sends its own message, then all read back.
    for (i, mut s) in streams.iter().enumerate() {
        s.write_all(format!("connection {i:03} says hi\n").as_bytes())
            .unwrap();
    }
    for (i, mut s) in streams.iter().enumerate() {
        let expected = format!("connection {i:03} says hi\n");
        let mut back = vec![0u8; expected.len()];
        s.read_exact(&mut back)
            .unwrap_or_else(|e| panic!("connection {i}: {e}; console:\n{}", guest.live.console()));
        assert_eq!(String::from_utf8(back).unwrap(), expected);
    }
    let status = guest.status();
    assert_eq!(
        status["tcp"]["active"].as_u64(),
        Some(CONNECTIONS as u64),
        "{status}"
    );
    drop(streams);
    guest.assert_healthy();
}

#[test]
fn udp_echo() {
    let mut guest = Guest::boot(&[]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    for size in [1, 100, 1400] {
        let datagram: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
        // UDP may drop: retry a few times before calling it lost.
        let back = (0..5).find_map(|_| {
            socket.send_to(&datagram, ("127.0.0.1", guest.udp)).unwrap();
            let mut buffer = [0u8; 2048];
            socket
                .recv_from(&mut buffer)
                .ok()
                .map(|(n, _)| buffer[..n].to_vec())
        });
        assert_eq!(back.as_deref(), Some(&datagram[..]), "{size}-byte datagram");
    }
    assert!(guest.status()["udp"]["datagrams"].as_u64().unwrap() >= 3);
    guest.assert_healthy();
}

#[test]
fn http_status_page_and_errors() {
    let mut guest = Guest::boot(&[]);
    let status = guest.status();
    assert_eq!(status["service"], "echo");
    assert_eq!(status["net"]["ipv4"], "10.0.2.15/24");
    assert!(status["uptime_ms"].as_u64().unwrap() > 0);
    assert!(status["memory"]["heap_used"].as_u64().unwrap() > 0);
    assert_eq!(status["net"]["dhcp_leases"].as_u64(), Some(1));
    assert_eq!(
        guest.status()["http"]["requests"].as_u64(),
        Some(2),
        "the counter counts"
    );
    let (code, body) = guest.http_get("GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!((code, body.as_str()), (404, "not found (try /status)\n"));
    let (code, _) = guest.http_get("POST /status HTTP/1.1\r\n\r\n");
    assert_eq!(code, 405);
    let (code, body) = guest.http_get("garbage\r\n\r\n");
    assert_eq!(code, 400, "{body}");
    let (code, _) = guest.http_get("GET /status HTTP/9.9\r\n\r\n");
    assert_eq!(code, 400);
    // Two requests on one keep-alive connection.
    let mut stream = TcpStream::connect(("127.0.0.1", guest.http)).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
        .write_all(b"GET /status HTTP/1.1\r\n\r\nGET /status HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut both = String::new();
    stream.read_to_string(&mut both).unwrap();
    assert_eq!(both.matches("HTTP/1.1 200 OK").count(), 2, "{both}");
    guest.assert_healthy();
}

#[test]
fn garbage_on_the_echo_ports_does_not_hurt() {
    let mut guest = Guest::boot(&[]);
    // Binary junk at the HTTP port, a huge header, and connections dropped mid-request.
    for junk in [vec![0xffu8; 5000], vec![b'A'; 20_000], b"GET /".to_vec()] {
        let mut s = TcpStream::connect(("127.0.0.1", guest.http)).unwrap();
        let _ = s.write_all(&junk);
        drop(s);
    }
    for _ in 0..20 {
        drop(TcpStream::connect(("127.0.0.1", guest.tcp)).unwrap());
    }
    let mut stream = guest.connect();
    stream.write_all(b"still here").unwrap();
    let mut back = [0u8; 10];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"still here");
    guest.assert_healthy();
}

// ---- Raw frames through a UDP-socket netdev ----

const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const HOST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x99];
const GUEST_IP: [u8; 4] = [10, 0, 2, 15];
const HOST_IP: [u8; 4] = [10, 0, 2, 99];

fn ones_complement_sum(data: &[u8], mut sum: u32) -> u32 {
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    sum
}

fn checksum(sum: u32) -> u16 {
    let mut sum = sum;
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ethernet(dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&HOST_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn arp_request() -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
    a.extend_from_slice(&HOST_MAC);
    a.extend_from_slice(&HOST_IP);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&GUEST_IP);
    ethernet([0xff; 6], 0x0806, &a)
}

fn ipv4_udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let udp_len = (8 + payload.len()) as u16;
    let mut udp = Vec::new();
    udp.extend_from_slice(&src_port.to_be_bytes());
    udp.extend_from_slice(&dst_port.to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&HOST_IP);
    pseudo.extend_from_slice(&GUEST_IP);
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&udp_len.to_be_bytes());
    let sum = checksum(ones_complement_sum(&udp, ones_complement_sum(&pseudo, 0)));
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
    let total = (20 + udp.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&HOST_IP);
    ip.extend_from_slice(&GUEST_IP);
    let sum = checksum(ones_complement_sum(&ip, 0));
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(&udp);
    ethernet(GUEST_MAC, 0x0800, &ip)
}

/// Frames that are wrong in every way a parser can trip over.
fn malformed_frames() -> Vec<Vec<u8>> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    };
    let good = ipv4_udp(4000, 7, b"payload");
    // (No empty datagram: QEMU's socket netdev takes one for end-of-stream and stops reading.)
    let mut frames = vec![
        vec![0x52],
        random(13),
        ethernet(GUEST_MAC, 0x0800, &[]),
        ethernet(GUEST_MAC, 0x0806, &[0, 1, 8, 0]),
        ethernet(GUEST_MAC, 0x86dd, &random(30)),
        ethernet([0xff; 6], 0x86dd, &random(200)),
        ethernet(GUEST_MAC, 0x88b5, &random(100)),
        random(1514),
        random(1600),
        random(9000),
    ];
    // IPv4 with a lying header length, a lying total length, a bad checksum, and a UDP header
    // whose length exceeds the packet.
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x4f;
    let mut bad_total = good.clone();
    bad_total[16..18].copy_from_slice(&60000u16.to_be_bytes());
    let mut bad_sum = good.clone();
    bad_sum[24] ^= 0xff;
    let mut bad_udp_len = good.clone();
    bad_udp_len[38..40].copy_from_slice(&0xffffu16.to_be_bytes());
    let truncated = good[..good.len() - 5].to_vec();
    // TCP SYN with garbage options to the echo port.
    let mut tcp = good.clone();
    tcp[23] = 6;
    frames.extend([bad_ihl, bad_total, bad_sum, bad_udp_len, truncated, tcp]);
    for _ in 0..200 {
        let n = (random(2)[0] as usize * 6) % 1515;
        let mut f = random(n.max(14));
        f[..6].copy_from_slice(&GUEST_MAC);
        frames.push(f);
    }
    frames
}

#[test]
fn malformed_frames_do_not_crash_the_guest() {
    let (guest_side, test_side) = (free_port(), free_port());
    let mut argv = Run::new("echo")
        .accel(Accel::Tcg)
        .arg("ip=10.0.2.15/24")
        .command();
    argv.extend([
        "-netdev".to_string(),
        format!("socket,id=raw0,udp=127.0.0.1:{test_side},localaddr=127.0.0.1:{guest_side}"),
        "-device".to_string(),
        "virtio-net-device,netdev=raw0".to_string(),
    ]);
    let mut guest = Guest::start(&argv, 0, 0, 0);
    guest.wait_for("echo: listening");
    let wire = UdpSocket::bind(("127.0.0.1", test_side)).unwrap();
    wire.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let send = |frame: &[u8]| {
        wire.send_to(frame, ("127.0.0.1", guest_side)).unwrap();
    };
    for frame in malformed_frames() {
        send(&frame);
    }
    // Still alive: it answers ARP, then echoes a well-formed datagram.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut echoed = false;
    while !echoed && Instant::now() < deadline {
        send(&arp_request());
        send(&ipv4_udp(4000, 7, b"are you alive?"));
        let mut buffer = [0u8; 2048];
        while let Ok(n) = wire.recv(&mut buffer) {
            let frame = &buffer[..n];
            if frame.len() > 42
                && frame[12..14] == [8, 0]
                && frame[23] == 17
                && frame.ends_with(b"are you alive?")
            {
                echoed = true;
                break;
            }
        }
    }
    assert!(
        echoed,
        "no echo after the garbage; console:\n{}",
        guest.live.console()
    );
    guest.assert_healthy();
}
