//! `lichen-net-bench`: dom0's load generator for `scripts/bench router` (the `router-bench`
//! hook), against an echo server reached directly or through a router's port map:
//!
//! - `lichen-net-bench echo ADDR:PORT MIB RUNS`: MIB MiB through the echo on one connection,
//!   RUNS times; prints `net-bench: echo ADDR mib M mbit X runs_ms [..]` (X: the median run,
//!   in Mbit/s of payload each way).
//! - `lichen-net-bench connect ADDR:PORT SECONDS`: sequential connections (connect, one byte
//!   echoed, close) for SECONDS; prints `net-bench: connect ADDR count N ms T per_s R`.
//! - `lichen-net-bench rtt ADDR:PORT COUNT`: COUNT one-byte round trips on one connection;
//!   prints `net-bench: rtt ADDR count N mean_us E median_us M min_us A p90_us B` (E: the
//!   whole run over N, whatever the clock's resolution).
//! - `lichen-net-bench udp-spray ADDR:PORT COUNT`: COUNT datagrams, each from its own source
//!   port, 20000 and up (a router keeps one NAT entry each; ports in use are skipped), 150 a
//!   second; prints
//!   `net-bench: udp-spray ADDR sent N ms T`.
//!
//! A failed measurement prints `net-bench: <kind> ADDR error <why>` and exits 1. Built like
//! lichen-udp-peer (static glibc); the benchmark adds it to dom0 for its boot only. What the
//! peer may corrupt: the echo, which is checked byte for byte (`bench`'s tests).

use lichen_dom0_peer::bench;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: lichen-net-bench echo ADDR:PORT MIB RUNS | connect ADDR:PORT SECONDS \
                     | rtt ADDR:PORT COUNT | udp-spray ADDR:PORT COUNT";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(kind), Some(addr)) = (args.first(), args.get(1)) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = addr
        .parse::<SocketAddr>()
        .map_err(|_| format!("bad address {addr:?}: expected A.B.C.D:PORT"))
        .and_then(|addr| run(kind, addr, &args[2..]));
    match result {
        Ok(line) => {
            println!("net-bench: {kind} {addr} {line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("net-bench: {kind} {addr} error {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parses positional number `at` of `rest`, naming it in the error.
fn number<T: std::str::FromStr>(rest: &[String], at: usize, what: &str) -> Result<T, String> {
    let text = rest
        .get(at)
        .ok_or_else(|| format!("missing {what}; {USAGE}"))?;
    text.parse().map_err(|_| format!("bad {what}: {text:?}"))
}

/// Runs one measurement; the figures as the line's tail.
fn run(kind: &str, addr: SocketAddr, rest: &[String]) -> Result<String, String> {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    match kind {
        "echo" => {
            let mib: u64 = number(rest, 0, "MIB")?;
            let runs: usize = number(rest, 1, "RUNS")?;
            if mib == 0 || runs == 0 {
                return Err("MIB and RUNS must be at least 1".into());
            }
            let mut times = Vec::new();
            for _ in 0..runs {
                times.push(bench::echo(addr, mib << 20)?);
            }
            times.sort();
            let mid = bench::median(&times);
            let mbit = (mib << 20) as f64 * 8.0 / mid.as_secs_f64() / 1e6;
            let runs_ms: Vec<String> = times.iter().map(|t| format!("{:.0}", ms(*t))).collect();
            Ok(format!(
                "mib {mib} mbit {mbit:.2} runs_ms [{}]",
                runs_ms.join(",")
            ))
        }
        "connect" => {
            let seconds: f64 = number(rest, 0, "SECONDS")?;
            if !(seconds > 0.0 && seconds < 3600.0) {
                return Err("SECONDS must be in (0, 3600)".into());
            }
            let (n, took) = bench::connections(addr, Duration::from_secs_f64(seconds))?;
            Ok(format!(
                "count {n} ms {:.0} per_s {:.2}",
                ms(took),
                n as f64 / took.as_secs_f64()
            ))
        }
        "rtt" => {
            let count: usize = number(rest, 0, "COUNT")?;
            if count == 0 {
                return Err("COUNT must be at least 1".into());
            }
            let (times, all) = bench::round_trips(addr, count)?;
            Ok(format!(
                "count {count} mean_us {:.0} median_us {:.0} min_us {:.0} p90_us {:.0}",
                us(all) / count as f64,
                us(bench::median(&times)),
                us(times[0]),
                us(times[(times.len() * 9 / 10).min(times.len() - 1)])
            ))
        }
        "udp-spray" => {
            let count: u16 = number(rest, 0, "COUNT")?;
            if count > 40_000 {
                return Err("COUNT: at most 40000 (source ports 20000..60000)".into());
            }
            let start = Instant::now();
            // 150 a second, the same for every router: 10,000 go out well within the 2 min
            // that both routers keep a UDP entry; four threads, as under TCG one thread's
            // socket calls fall short of that.
            let sent = bench::udp_spray(addr, 20_000..20_000 + count, 4, 150.0)?;
            Ok(format!("sent {sent} ms {:.0}", ms(start.elapsed())))
        }
        _ => Err(format!("unknown measurement; {USAGE}")),
    }
}
