//! `echo`: TCP echo, UDP echo and an HTTP/1.1 `/status` page.
//!
//! Brings up the network (DHCP unless `ip=ADDRESS/PREFIX` is given, see `kernel::net`), then
//! serves until the machine is stopped:
//!
//! - TCP echo on `tcp_port` (default 7): every byte read is written back;
//! - UDP echo on `udp_port` (default 7): every datagram is sent back to its sender;
//! - HTTP on `http_port` (default 80): `GET /status` answers JSON with the uptime, the echo
//!   counters, the stack's counters and the heap in use; anything else gets a 4xx.
//!
//! Tuning: `tcp_buffer=BYTES` (socket buffers, default 32768), `backlog=N` (default 128).
//!
//! As an app on a network instance it can also resolve a name and try a connection now and
//! then (`resolve=`, `probe=`, `probe_every=`: [`probe`]).

#![no_std]
#![no_main]

extern crate alloc;

mod http;
mod probe;

use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use kernel::net::{self, TcpListener, TcpOptions, TcpStream, UdpOptions, UdpSocket};
use kernel::{info, warn, Args, Duration};

kernel::service!(main);

/// Bytes each connection reads (and writes back) at a time.
const CHUNK: usize = 8 * 1024;
/// How long an HTTP client may take to send a request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// What echo has done so far.
struct Counters {
    tcp_connections: AtomicU64,
    tcp_active: AtomicU64,
    tcp_bytes: AtomicU64,
    udp_datagrams: AtomicU64,
    udp_bytes: AtomicU64,
    http_requests: AtomicU64,
    heap_peak: AtomicU64,
}

static COUNTERS: Counters = Counters {
    tcp_connections: AtomicU64::new(0),
    tcp_active: AtomicU64::new(0),
    tcp_bytes: AtomicU64::new(0),
    udp_datagrams: AtomicU64::new(0),
    udp_bytes: AtomicU64::new(0),
    http_requests: AtomicU64::new(0),
    heap_peak: AtomicU64::new(0),
};

/// Records the heap in use, keeping the peak.
fn sample_heap() {
    COUNTERS
        .heap_peak
        .fetch_max(kernel::mem::heap_used(), Relaxed);
}

/// Settings from the command line.
struct Settings {
    tcp_port: u16,
    udp_port: u16,
    http_port: u16,
    backlog: usize,
    tcp: TcpOptions,
}

fn settings(args: &Args) -> Result<Settings, kernel::cmdline::BadValue> {
    let buffer: usize = args.parse_value("tcp_buffer")?.unwrap_or(32 * 1024);
    Ok(Settings {
        tcp_port: args.parse_value("tcp_port")?.unwrap_or(7),
        udp_port: args.parse_value("udp_port")?.unwrap_or(7),
        http_port: args.parse_value("http_port")?.unwrap_or(80),
        backlog: args.parse_value("backlog")?.unwrap_or(128),
        tcp: TcpOptions {
            rx_buffer: buffer,
            tx_buffer: buffer,
            ..TcpOptions::default()
        },
    })
}

async fn main(args: Args) -> i32 {
    let settings = match settings(&args) {
        Ok(s) => s,
        Err(e) => {
            kernel::error!("echo: {e}");
            return 2;
        }
    };
    let probe = match probe::Probe::from_args(&args) {
        Ok(p) => p,
        Err(e) => {
            kernel::error!("echo: {e}");
            return 2;
        }
    };
    if let Err(e) = net::start(&args) {
        kernel::error!("echo: {e}");
        return 1;
    }
    let tcp = match TcpListener::bind(settings.tcp_port, settings.backlog, settings.tcp) {
        Ok(l) => l,
        Err(e) => {
            kernel::error!("echo: tcp port {}: {e}", settings.tcp_port);
            return 1;
        }
    };
    let http = match TcpListener::bind(settings.http_port, 16, TcpOptions::default()) {
        Ok(l) => l,
        Err(e) => {
            kernel::error!("echo: http port {}: {e}", settings.http_port);
            return 1;
        }
    };
    let udp = match UdpSocket::bind(settings.udp_port, UdpOptions::default()) {
        Ok(s) => s,
        Err(e) => {
            kernel::error!("echo: udp port {}: {e}", settings.udp_port);
            return 1;
        }
    };
    info!(
        "echo: listening: tcp {}, udp {}, http {}",
        settings.tcp_port, settings.udp_port, settings.http_port
    );
    kernel::spawn(async {
        if let Ok((address, prefix)) = net::wait_for_ipv4().await {
            info!("echo: ipv4 address {address}/{prefix}");
        }
    });
    kernel::spawn(udp_echo(udp));
    if let Some(probe) = probe {
        kernel::spawn(probe.run());
    }
    kernel::spawn(serve_http(http));
    sample_heap();
    loop {
        match tcp.accept().await {
            Ok(stream) => {
                COUNTERS.tcp_connections.fetch_add(1, Relaxed);
                kernel::spawn(tcp_echo(stream));
            }
            Err(e) => {
                warn!("echo: accept: {e}");
                kernel::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn tcp_echo(mut stream: TcpStream) {
    COUNTERS.tcp_active.fetch_add(1, Relaxed);
    let mut buffer = alloc::vec![0u8; CHUNK];
    loop {
        let n = match stream.read(&mut buffer).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                kernel::debug!("echo: tcp read: {e}");
                break;
            }
        };
        sample_heap();
        if let Err(e) = stream.write_all(&buffer[..n]).await {
            kernel::debug!("echo: tcp write: {e}");
            break;
        }
        COUNTERS.tcp_bytes.fetch_add(n as u64, Relaxed);
    }
    drop(buffer);
    let _ = stream.close().await;
    COUNTERS.tcp_active.fetch_sub(1, Relaxed);
}

async fn udp_echo(socket: UdpSocket) {
    let mut buffer = alloc::vec![0u8; 2048];
    loop {
        match socket.recv_from(&mut buffer).await {
            Ok((n, from)) => {
                COUNTERS.udp_datagrams.fetch_add(1, Relaxed);
                COUNTERS.udp_bytes.fetch_add(n as u64, Relaxed);
                if let Err(e) = socket.send_to(&buffer[..n], from).await {
                    kernel::debug!("echo: udp send to {from}: {e}");
                }
            }
            Err(e) => kernel::debug!("echo: udp receive: {e}"),
        }
    }
}

async fn serve_http(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(mut stream) => {
                stream.set_timeout(Some(HTTP_TIMEOUT));
                kernel::spawn(async move {
                    if let Err(e) = http::serve(&mut stream, status_json).await {
                        kernel::debug!("echo: http: {e}");
                    }
                    let _ = stream.close().await;
                });
            }
            Err(e) => {
                warn!("echo: http accept: {e}");
                kernel::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The `/status` document.
fn status_json() -> String {
    COUNTERS.http_requests.fetch_add(1, Relaxed);
    sample_heap();
    let c = &COUNTERS;
    let net = match net::status() {
        Ok(s) => {
            let ipv4 = s
                .ipv4
                .map_or(String::from("null"), |(a, p)| format!("\"{a}/{p}\""));
            let ipv6 = s
                .ipv6_link_local
                .map_or(String::from("null"), |a| format!("\"{a}\""));
            let d = s.device;
            format!(
                "{{\"ipv4\":{ipv4},\"ipv6_link_local\":{ipv6},\"sockets\":{},\"rx_frames\":{},\"rx_bytes\":{},\"tx_frames\":{},\"tx_bytes\":{},\"rx_malformed\":{},\"tx_ring_full\":{},\"device_errors\":{},\"dhcp_leases\":{},\"tcp_accepted\":{},\"polls\":{},\"interrupts\":{},\"deadlines\":{},\"kicks\":{}}}",
                s.sockets,
                d.rx_frames,
                d.rx_bytes,
                d.tx_frames,
                d.tx_bytes,
                d.rx_malformed,
                d.tx_ring_full,
                d.device_errors,
                s.stack.dhcp_leases,
                s.stack.tcp_accepted,
                s.stack.polls,
                s.stack.interrupts,
                s.stack.deadlines,
                s.stack.kicks,
            )
        }
        Err(_) => String::from("null"),
    };
    format!(
        "{{\"service\":\"echo\",\"uptime_ms\":{},\"tcp\":{{\"connections\":{},\"active\":{},\"bytes\":{}}},\"udp\":{{\"datagrams\":{},\"bytes\":{}}},\"http\":{{\"requests\":{}}},\"net\":{net},\"memory\":{{\"heap_size\":{},\"heap_used\":{},\"heap_peak\":{}}}}}\n",
        kernel::now().since_boot().as_millis(),
        c.tcp_connections.load(Relaxed),
        c.tcp_active.load(Relaxed),
        c.tcp_bytes.load(Relaxed),
        c.udp_datagrams.load(Relaxed),
        c.udp_bytes.load(Relaxed),
        c.http_requests.load(Relaxed),
        kernel::mem::heap_size(),
        kernel::mem::heap_used(),
        c.heap_peak.load(Relaxed),
    )
}
