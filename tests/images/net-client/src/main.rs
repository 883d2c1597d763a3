//! `net-client`: an app stand-in behind a router (zedrouter's tests).
//!
//! Brings up the network like any service (DHCP by default), serves TCP echo on `echo_port`
//! (default 7), then, when asked:
//! - `resolve=NAME`: resolves NAME and logs `net-client: resolved NAME -> [addresses]`;
//! - `connect=A.B.C.D:PORT[,...]`: to each in turn: connects, sends `message` (default
//!   `hello from net-client`) and a newline, reads one line back and logs
//!   `net-client: reply from ADDR: <line>` (or the error; each connection times out after 20 s);
//!
//! then keeps serving until the machine stops.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use core::net::SocketAddr;
use kernel::net::{self, TcpListener, TcpOptions, TcpStream};
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
    loop {
        kernel::sleep(Duration::from_secs(3600)).await;
    }
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
