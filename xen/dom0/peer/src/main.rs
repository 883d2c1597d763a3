//! `lichen-udp-peer`: UDP peers for dom0's test hooks (xen/dom0/hooks), where busybox's `nc`
//! speaks TCP only and there is no DNS server.
//!
//! - `lichen-udp-peer dns PORT NAME=A.B.C.D...`: a DNS server answering A queries for the
//!   names given (NXDOMAIN for others, NOTIMP for anything but one IN question), logging each
//!   query as `udp-peer: dns NAME from ADDR -> ANSWER`. Runs until killed.
//! - `lichen-udp-peer sink PORT IDLE_S MAX_S`: counts the datagrams that arrive on PORT, and
//!   once IDLE_S seconds pass with none after the first (or MAX_S in all) prints
//!   `udp-peer: sink port P datagrams N bytes B span_ms S` (S: from the first arrival to the
//!   last) and exits. A rate limit's passed rate is then `(N - 1) / S`.
//!
//! Built like the launcher (static glibc) and put in dom0's initramfs by xen/mkinitramfs.
//! What the peer may corrupt: any datagram. A query that does not parse gets FORMERR (or
//! nothing when it is shorter than a DNS header), and never a panic (`dns::answer`'s tests).

use lichen_dom0_peer::dns;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("dns") => serve_dns(&args[1..]),
        Some("sink") => sink(&args[1..]),
        _ => Err("usage: lichen-udp-peer dns PORT NAME=A.B.C.D... | sink PORT IDLE_S MAX_S".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("udp-peer: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parses a number argument, naming it in the error.
fn number<T: std::str::FromStr>(args: &[String], at: usize, what: &str) -> Result<T, String> {
    let text = args.get(at).ok_or_else(|| format!("missing {what}"))?;
    text.parse().map_err(|_| format!("bad {what}: {text:?}"))
}

/// Binds UDP `port` on every address.
fn bind(port: u16) -> Result<UdpSocket, String> {
    UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
        .map_err(|e| format!("bind udp {port}: {e}"))
}

/// The DNS server: answers until killed.
fn serve_dns(args: &[String]) -> Result<(), String> {
    let port: u16 = number(args, 0, "PORT")?;
    let mut records = Vec::new();
    for pair in &args[1..] {
        let (name, addr) = pair
            .split_once('=')
            .ok_or_else(|| format!("bad record {pair:?}: expected NAME=A.B.C.D"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("bad address in {pair:?}"))?;
        records.push((name.trim_end_matches('.').to_ascii_lowercase(), addr));
    }
    let socket = bind(port)?;
    println!("udp-peer: dns on udp {port}, {} names", records.len());
    let mut buf = [0u8; 1500];
    loop {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) => return Err(format!("receive: {e}")),
        };
        let lookup = |name: &str| {
            records
                .iter()
                .find(|(n, _)| n.as_str() == name)
                .map(|(_, a)| *a)
        };
        if let Some((reply, what)) = dns::answer(&buf[..n], lookup) {
            println!("udp-peer: dns {what} from {from}");
            if let Err(e) = socket.send_to(&reply, from) {
                println!("udp-peer: dns reply to {from}: {e}");
            }
        }
    }
}

/// The sink: counts datagrams until idle, prints the count and span.
fn sink(args: &[String]) -> Result<(), String> {
    let port: u16 = number(args, 0, "PORT")?;
    let idle = Duration::from_secs(number(args, 1, "IDLE_S")?);
    let max = Duration::from_secs(number(args, 2, "MAX_S")?);
    let socket = bind(port)?;
    let start = Instant::now();
    let (mut datagrams, mut bytes) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    let mut last = start;
    let mut buf = [0u8; 65536];
    loop {
        let now = Instant::now();
        let deadline = match first {
            Some(_) => (last + idle).min(start + max),
            None => start + max,
        };
        if now >= deadline {
            break;
        }
        socket
            .set_read_timeout(Some(deadline - now))
            .map_err(|e| format!("timeout: {e}"))?;
        match socket.recv_from(&mut buf) {
            Ok((n, _)) => {
                last = Instant::now();
                first.get_or_insert(last);
                datagrams += 1;
                bytes += n as u64;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("receive: {e}")),
        }
    }
    let span = first.map_or(0, |f| last.duration_since(f).as_millis());
    println!("udp-peer: sink port {port} datagrams {datagrams} bytes {bytes} span_ms {span}");
    Ok(())
}
