//! Resource exhaustion: slow clients (silent TCP, headers or a body dribbled byte by byte, idle
//! keep-alive), too many connections from one address, and a process out of file descriptors.
//! In each, a legitimate device must still be served within 1 s (a functional bound, generous on
//! purpose: the benchmark measures latency).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use lichen_controller::client::HttpsClient;
use lichen_controller::devsim::fleet::Target;
use lichen_controller::server::{self, Limits};
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

/// The bound on every legitimate request while under attack.
const SERVED_WITHIN: Duration = Duration::from_secs(1);

/// A TCP connection to `addr` from the loopback address `from` (all of 127/8 is local).
async fn tcp_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(addr).await.unwrap()
}

fn tls_connector(ca_pem: &str) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// Waits until the peer closes `stream`; returns how long that took, or `None` after `within`.
async fn closed_within(
    stream: &mut (impl AsyncRead + Unpin),
    within: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0; 256];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return start.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

/// Writes `bytes` one at a time, `gap` apart, until done or the peer closes; then waits for
/// the close. Returns when the connection closed, counted from the first byte.
async fn dribble(
    stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    bytes: Vec<u8>,
    gap: Duration,
) -> Option<Duration> {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let writing = tokio::spawn(async move {
        for byte in bytes {
            if writer.write_all(&[byte]).await.is_err() || writer.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(gap).await;
        }
        std::future::pending::<()>().await;
    });
    let closed = closed_within(&mut reader, Duration::from_secs(20)).await;
    writing.abort();
    closed
}

/// A device onboards (certs, register, first config) and pings; each request within
/// [`SERVED_WITHIN`].
async fn device_is_served(target: &Target, serial: &str, url: &str, ca_pem: &str) {
    async fn timed<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
        let start = Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(10), future)
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer in 10 s"));
        let took = start.elapsed();
        assert!(took < SERVED_WITHIN, "{what} took {took:?}");
        result
    }
    let mut device = target.device(serial).unwrap();
    timed("certs", device.fetch_certs()).await.unwrap();
    let registered = timed("register", device.register()).await.unwrap();
    assert_eq!(registered, StatusCode::CREATED);
    timed("config", device.poll_config()).await.unwrap();
    let fresh = HttpsClient::new(url, ca_pem).unwrap();
    let ping = timed(
        "ping",
        fresh.send(http::Method::GET, "/api/v2/edgedevice/ping", None, None),
    )
    .await
    .unwrap();
    assert_eq!(ping.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_closed_and_a_device_is_still_served() {
    let state = tempfile::tempdir().unwrap();
    let mut options = server::Options::new(state.path().to_owned(), "127.0.0.1:0".parse().unwrap());
    options.limits = Limits {
        tls_handshake: Duration::from_secs(1),
        header: Duration::from_secs(1),
        idle: Duration::from_secs(3),
        body_grace: Duration::from_secs(1),
        min_body_rate: 100,
        ..Limits::default()
    };
    let controller = server::start(options).await.unwrap();
    let addr = controller.addr;
    let url = format!("https://{addr}");
    let (_admin, target) = common::connect(&url, state.path()).await;
    let tls = tls_connector(&controller.ca_pem);
    let name = ServerName::try_from("127.0.0.1").unwrap();

    let attacker = [127, 0, 0, 2];
    // Silent TCP: never starts the TLS handshake.
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(tcp_from(attacker, addr).await);
    }
    // Headers, one byte every 200 ms.
    let mut slow_headers = Vec::new();
    for _ in 0..5 {
        let stream = tls
            .connect(name.clone(), tcp_from(attacker, addr).await)
            .await
            .unwrap();
        let request = b"POST /api/v2/edgedevice/info HTTP/1.1\r\nHost: x\r\nX-Pad: ".repeat(10);
        slow_headers.push(tokio::spawn(dribble(
            stream,
            request,
            Duration::from_millis(200),
        )));
    }
    // Complete headers, then a body at 5 bytes/s against a floor of 100.
    let mut slow_bodies = Vec::new();
    for _ in 0..3 {
        let mut stream = tls
            .connect(name.clone(), tcp_from(attacker, addr).await)
            .await
            .unwrap();
        stream
            .write_all(
                b"POST /api/v2/edgedevice/info HTTP/1.1\r\nHost: x\r\n\
                  Content-Type: application/x-proto-binary\r\nContent-Length: 100000\r\n\r\n",
            )
            .await
            .unwrap();
        stream.flush().await.unwrap();
        slow_bodies.push(tokio::spawn(dribble(
            stream,
            vec![0; 1000],
            Duration::from_millis(200),
        )));
    }

    // The device is served while all of that is held open.
    device_is_served(&target, "sim-1", &url, &controller.ca_pem).await;

    // A kept-alive connection may wait longer than the header timeout between requests ...
    let mut keep_alive = tls
        .connect(name.clone(), tcp_from([127, 0, 0, 1], addr).await)
        .await
        .unwrap();
    let ping = b"GET /api/v2/edgedevice/ping HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut response = [0; 512];
    for round in 0..2 {
        keep_alive.write_all(ping).await.unwrap();
        let n = keep_alive.read(&mut response).await.unwrap();
        assert!(
            response[..n].starts_with(b"HTTP/1.1 200"),
            "round {round}: {:?}",
            String::from_utf8_lossy(&response[..n])
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }

    // ... and everything slow is closed, each soon after its limit.
    for mut stream in silent {
        let closed = closed_within(&mut stream, Duration::from_secs(5)).await;
        assert!(closed.is_some(), "a silent connection was kept open");
    }
    for task in slow_headers {
        let closed = task.await.unwrap().expect("slow headers were kept open");
        assert!(
            closed < Duration::from_secs(5),
            "slow headers closed after {closed:?}"
        );
    }
    for task in slow_bodies {
        let closed = task.await.unwrap().expect("a slow body was kept open");
        assert!(
            closed < Duration::from_secs(5),
            "slow body closed after {closed:?}"
        );
    }
    let idle = closed_within(&mut keep_alive, Duration::from_secs(6)).await;
    assert!(
        idle.is_some(),
        "an idle keep-alive connection was kept open"
    );
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_per_address_cap_are_closed_at_once() {
    let state = tempfile::tempdir().unwrap();
    let mut options = server::Options::new(state.path().to_owned(), "127.0.0.1:0".parse().unwrap());
    options.limits.max_connections_per_address = 16;
    options.limits.tls_handshake = Duration::from_secs(30);
    let controller = server::start(options).await.unwrap();
    let addr = controller.addr;
    let url = format!("https://{addr}");
    let (_admin, target) = common::connect(&url, state.path()).await;

    let mut held = Vec::new();
    for _ in 0..40 {
        held.push(tcp_from([127, 0, 0, 3], addr).await);
    }
    device_is_served(&target, "sim-1", &url, &controller.ca_pem).await;
    let mut closed = 0;
    for stream in &mut held {
        if closed_within(stream, Duration::from_millis(300))
            .await
            .is_some()
        {
            closed += 1;
        }
    }
    assert_eq!(closed, 24, "40 connections against a cap of 16");
    controller.stop().await;
}

/// The controller binary with `ulimit -n files`; returns it and its URL.
fn start_limited(state_dir: &Path, files: u32, extra: &[&str]) -> (Child, String) {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n {files} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_lichen-controller"))
        .args(["serve", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(state_dir)
        .args(extra)
        .stderr(Stdio::null());
    common::serve(command)
}

/// CPU time (user + system) the process has used.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

/// 200 idle connections against a 128-descriptor process: it must neither spin nor stop serving.
async fn survives_descriptor_exhaustion(extra: &[&str]) {
    let state = tempfile::tempdir().unwrap();
    let (mut child, url) = start_limited(state.path(), 128, extra);
    let addr: SocketAddr = url.strip_prefix("https://").unwrap().parse().unwrap();
    let (_admin, target) = common::connect(&url, state.path()).await;
    let ca_pem = std::fs::read_to_string(state.path().join("ca.pem")).unwrap();

    let cpu_before = cpu_time(child.id());
    let wall = Instant::now();
    let mut idle = Vec::new();
    for i in 0..200u8 {
        idle.push(tcp_from([127, 0, 1, 1 + i % 8], addr).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    device_is_served(&target, "sim-1", &url, &ca_pem).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Still served after the flood settled.
    device_is_served(&target, "sim-2", &url, &ca_pem).await;
    let cpu = cpu_time(child.id()) - cpu_before;
    let wall = wall.elapsed();
    assert!(
        cpu < wall / 2,
        "the controller used {cpu:?} of CPU in {wall:?}: it spins"
    );
    drop(idle);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_with_the_derived_cap() {
    survives_descriptor_exhaustion(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_with_a_cap_above_the_limit() {
    // The cap cannot stop accept() from failing with EMFILE here: the loop must back off.
    survives_descriptor_exhaustion(&["--max-connections", "100000"]).await;
}
