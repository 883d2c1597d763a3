//! `net-client`: an app stand-in behind a router (zedrouter's tests).
//!
//! Brings up the network like any service (DHCP by default), serves TCP echo on `echo_port`
//! (default 7), then, when asked:
//! - `resolve=NAME`: resolves NAME and logs `net-client: resolved NAME -> [addresses]`;
//! - `connect=A.B.C.D:PORT[,...]`: to each in turn: connects, sends `message` (default
//!   `hello from net-client`) and a newline, reads one line back and logs
//!   `net-client: reply from ADDR: <line>` (or the error; each connection times out after 20 s);
//! - `flood=A.B.C.D:PORT` (with `flood_pps`, default 100, and `flood_s`, default 10): sends
//!   that many 64-byte UDP datagrams a second, evenly paced, for that long, and logs
//!   `net-client: flood ADDR sent N datagrams in T ms` (a rate limit's test: the peer counts
//!   what passed); with `flood_trigger=PORT` it first waits for a TCP connection on PORT
//!   (so a test can start it when the node is quiet), reads a line and answers `flooding`;
//!
//! then keeps serving until the machine stops.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use core::net::SocketAddr;
use kernel::net::{self, TcpListener, TcpOptions, TcpStream, UdpOptions, UdpSocket};
use kernel::{error, info, Args, Duration};

kernel::service!(main);

async fn main(args: Args) -> i32 {
    if let Err(e) = net::start(&args) {
        error!("net-client: {e}");
        return 2;
    }
    match net::wait_for_ipv4().await {
        Ok((addr, prefix)) => info!("net-client: ipv4 address {addr}/{prefix}"),
        Err(e) => {
            error!("net-client: {e}");
            return 2;
        }
    }
    let echo_port = args
        .parse_value::<u16>("echo_port")
        .ok()
        .flatten()
        .unwrap_or(7);
    let listener = match TcpListener::bind(echo_port, 16, TcpOptions::default()) {
        Ok(l) => l,
        Err(e) => {
            error!("net-client: echo on {echo_port}: {e}");
            return 2;
        }
    };
    info!("net-client: echo on port {echo_port}");
    kernel::spawn(async move {
        loop {
            let Ok(mut stream) = listener.accept().await else {
                continue;
            };
            kernel::spawn(async move {
                let mut buf = [0u8; 2048];
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    if stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    if let Some(name) = args.get("resolve") {
        match net::resolve(name).await {
            Ok(addrs) => info!("net-client: resolved {name} -> {addrs:?}"),
            Err(e) => info!("net-client: resolve {name}: {e}"),
        }
    }
    let message = args.get("message").unwrap_or("hello from net-client");
    for target in args
        .get("connect")
        .unwrap_or("")
        .split(',')
        .filter(|t| !t.is_empty())
    {
        match target.parse::<SocketAddr>() {
            Ok(addr) => match exchange(addr, message).await {
                Ok(line) => info!("net-client: reply from {addr}: {line}"),
                Err(e) => info!("net-client: connect {addr}: {e}"),
            },
            Err(_) => {
                error!("net-client: bad `connect={target}`: expected A.B.C.D:PORT");
                return 2;
            }
        }
    }
    if let Some(target) = args.get("flood") {
        let Ok(to) = target.parse::<SocketAddr>() else {
            error!("net-client: bad `flood={target}`: expected A.B.C.D:PORT");
            return 2;
        };
        let pps = args
            .parse_value::<u32>("flood_pps")
            .ok()
            .flatten()
            .unwrap_or(100);
        let seconds = args
            .parse_value::<u32>("flood_s")
            .ok()
            .flatten()
            .unwrap_or(10);
        if let Ok(Some(port)) = args.parse_value::<u16>("flood_trigger") {
            if let Err(e) = trigger(port).await {
                error!("net-client: flood trigger on {port}: {e:?}");
                return 2;
            }
        }
        match flood(to, pps.max(1), seconds).await {
            Ok((sent, ms)) => info!("net-client: flood {to} sent {sent} datagrams in {ms} ms"),
            Err(e) => info!("net-client: flood {to}: {e:?}"),
        }
    }
    loop {
        kernel::sleep(Duration::from_secs(3600)).await;
    }
}

/// Waits for a TCP connection on `port`, reads what it sends first and answers `flooding`.
async fn trigger(port: u16) -> Result<(), net::TcpError> {
    let listener = TcpListener::bind(port, 1, TcpOptions::default())?;
    info!("net-client: flood waits for a connection on port {port}");
    let mut stream = listener.accept().await?;
    let mut line = [0u8; 64];
    let _ = stream.read(&mut line).await?;
    stream.write_all(b"flooding\n").await?;
    stream.close().await
}

/// Sends `pps` datagrams a second to `to` for `seconds`, each at its own time on a fixed
/// schedule (a late one is sent at once, never skipped). Returns how many and the milliseconds
/// from the first to the last.
async fn flood(to: SocketAddr, pps: u32, seconds: u32) -> Result<(u64, u64), net::UdpError> {
    let socket = UdpSocket::bind(40_000, UdpOptions::default())?;
    let count = u64::from(pps) * u64::from(seconds);
    let period_ns = 1_000_000_000 / u64::from(pps);
    let start = kernel::now();
    let mut datagram = [b'.'; 64];
    for i in 0..count {
        let due = kernel::Instant::from_nanos(start.as_nanos() + i * period_ns);
        let wait = due.saturating_duration_since(kernel::now());
        if !wait.is_zero() {
            kernel::sleep(wait).await;
        }
        datagram[..8].copy_from_slice(&i.to_be_bytes());
        socket.send_to(&datagram, to).await?;
    }
    let ms = kernel::now().saturating_duration_since(start).as_millis();
    Ok((count, u64::try_from(ms).unwrap_or(u64::MAX)))
}

/// Sends `message` and a newline, returns the first line that comes back.
async fn exchange(addr: SocketAddr, message: &str) -> Result<String, net::TcpError> {
    let options = TcpOptions {
        timeout: Some(Duration::from_secs(20)),
        ..TcpOptions::default()
    };
    let mut stream = TcpStream::connect(addr, options).await?;
    stream.write_all(message.as_bytes()).await?;
    stream.write_all(b"\n").await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.contains(&b'\n') && got.len() < 4096 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let line = got.split(|b| *b == b'\n').next().unwrap_or_default();
    Ok(String::from_utf8_lossy(line).into_owned())
}
