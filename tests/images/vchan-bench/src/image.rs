//! lichen's side of `scripts/bench vchan`, built as two images, `vbench-a` and `vbench-b`, that
//! differ only in what they declare (src/bin): vbench-a publishes the bus sessions' samples
//! (`topics::vbench_a`), vbench-b their subscriber's progress (`topics::vbench_b`), so that the
//! launcher derives the bus channel between them. It runs the sessions its command line lists,
//! one after another, over `kernel::vchan`, against libxenvchan's side in dom0
//! (`xen/dom0/bench/vchan-bench.c`, driven by the `vchan-bench` dom0 hook), or with the other
//! bench domain on a manifest channel or on the derived bus channel. The protocol is in
//! `protocol.rs`.
//!
//! Command line:
//! - `sessions=KIND:ROLE:NAME[:ORDER],...` (see `session.rs`), required;
//! - `plan=op:SIZExCOUNT,...`, what a controlling session runs (required if one does);
//! - `bus_plan=SIZExCOUNT,...`, the lichen-bus runs a publishing session runs (required if one
//!   does; see `vchan_bench::bus` and `bus_session.rs`);
//! - `wait_s=S` (default 600): how long to wait for a session's peer;
//! - `op_timeout_s=S` (default 120): how long one operation may take before its row fails;
//! - `linger_s=S`: stay up that long at the end.
//!
//! It prints the same lines as the C side: `vbench-session ...` when a session's channel is
//! open, `vbench-row ...` per operation a controller (or bus run a publisher) timed,
//! `vbench-fail ...` when one failed; a subscribing session ends with `vbench-bus-check ...`.
//! Exits 0 when every session ended cleanly.

#[path = "bus_session.rs"]
mod bus_session;

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use kernel::vchan::{self, Vchan};
use kernel::{error, info, Args, Duration};
use vchan_bench::bus::parse_bus_plan;
use vchan_bench::protocol::{parse_plan, Latency, Op, Spec, ACK_BYTES, SPEC_BYTES};
use vchan_bench::session::{parse_sessions, Role, Session, Transport};

/// The byte every message is filled with (the benchmark measures moving bytes, not their value).
const FILL: u8 = 0xa5;

/// Why a session stopped early: the operation (or `setup`) and the reason.
struct Failure {
    op: &'static str,
    size: u32,
    reason: String,
}

impl Failure {
    fn new(op: &'static str, size: u32, reason: impl core::fmt::Display) -> Failure {
        Failure {
            op,
            size,
            reason: format!("{reason}"),
        }
    }
}

/// Timeouts of one run.
#[derive(Clone, Copy)]
pub struct Limits {
    wait: Duration,
    op: Duration,
}

/// The image's `main` (both images).
pub async fn main(args: Args) -> i32 {
    if kernel::platform::kind() != kernel::platform::Kind::Xen {
        error!("vchan-bench needs Xen");
        return 2;
    }
    match run(&args).await {
        Ok(failed) => {
            if let Ok(Some(seconds)) = args.parse_value::<u64>("linger_s") {
                kernel::sleep(Duration::from_secs(seconds)).await;
            }
            info!("vchan-bench: {failed} session(s) failed");
            i32::from(failed != 0)
        }
        Err(e) => {
            error!("vchan-bench: {e}");
            2
        }
    }
}

/// Runs every session; the number that failed, or what is wrong with the command line.
async fn run(args: &Args) -> Result<usize, String> {
    let sessions = parse_sessions(args.get("sessions").ok_or("no sessions= given")?)
        .map_err(|e| format!("{e}"))?;
    let plan = match args.get("plan") {
        Some(text) => parse_plan(text).map_err(|e| format!("plan: {e}"))?,
        None if sessions.iter().any(|s| s.role == Role::Control) => {
            return Err("a controlling session needs plan=".into())
        }
        None => Vec::new(),
    };
    let bus_plan = match args.get("bus_plan") {
        Some(text) => parse_bus_plan(text).map_err(|e| format!("bus_plan: {e}"))?,
        None if sessions.iter().any(|s| s.role == Role::Publish) => {
            return Err("a publishing session needs bus_plan=".into())
        }
        None => Vec::new(),
    };
    let seconds = |key: &str, default: u64| match args.parse_value::<u64>(key) {
        Ok(v) => Ok(Duration::from_secs(v.unwrap_or(default))),
        Err(e) => Err(format!("{e}")),
    };
    let limits = Limits {
        wait: seconds("wait_s", 600)?,
        op: seconds("op_timeout_s", 120)?,
    };
    // The bus node, once, if a session runs on the derived channel.
    let node = match sessions.iter().any(|s| s.transport == Transport::Node) {
        true => Some(bus_io::channel::node().await),
        false => None,
    };
    let mut failed = 0;
    for session in &sessions {
        let node = node
            .as_ref()
            .filter(|_| session.transport == Transport::Node);
        let result = match session.role {
            Role::Publish => bus_session::publish(&session.name, &bus_plan, limits, node).await,
            Role::Subscribe => bus_session::subscribe(&session.name, limits, node).await,
            Role::Control | Role::Respond => run_session(session, &plan, limits).await,
        };
        if let Err(f) = result {
            failed += 1;
            error!(
                "vbench-fail session={} op={} size={} reason={}",
                session.name, f.op, f.size, f.reason
            );
        }
    }
    Ok(failed)
}

async fn run_session(session: &Session, plan: &[Spec], limits: Limits) -> Result<(), Failure> {
    let name = session.name.as_str();
    let opened = match session.transport {
        Transport::Serve { order } => {
            let path = format!("data/vchan-bench/{name}");
            kernel::timeout(limits.wait, Vchan::server(0, &path, order, order)).await
        }
        Transport::Connect => {
            let path = format!("/local/domain/0/data/vchan-bench/{name}");
            Ok(Vchan::client(0, &path, limits.wait).await)
        }
        Transport::Wired => Ok(vchan::open_wired(name, limits.wait).await),
        Transport::Node => unreachable!("the derived channel carries bus sessions only"),
    };
    let mut ch = opened
        .map_err(|_| Failure::new("setup", 0, "no peer came"))?
        .map_err(|e| Failure::new("setup", 0, e))?;
    info!(
        "vbench-session session={name} impl=lichen vchan={} bench={} read_ring={} write_ring={}",
        match ch.role() {
            vchan::Role::Server => "server",
            vchan::Role::Client => "client",
        },
        session.role.name(),
        ch.read_ring_size(),
        ch.write_ring_size()
    );
    let result = match session.role {
        Role::Control => control(&mut ch, name, plan, limits.op).await,
        Role::Respond => respond(&mut ch, limits.op).await,
        Role::Publish | Role::Subscribe => unreachable!("bus sessions run in bus_session"),
    };
    ch.close();
    result
}

fn closed(e: vchan::Error) -> String {
    format!("{e}")
}

/// Writes `count` messages of `size` bytes from `buf`.
async fn stream(ch: &mut Vchan, buf: &[u8], size: u32, count: u32) -> Result<(), String> {
    for _ in 0..count {
        ch.write_all(&buf[..size as usize]).await.map_err(closed)?;
    }
    Ok(())
}

/// Reads `count * size` bytes in reads of at most `size` bytes; the byte count.
async fn drain(ch: &mut Vchan, buf: &mut [u8], size: u32, count: u32) -> Result<u64, String> {
    let want = u64::from(size) * u64::from(count);
    let mut got = 0;
    while got < want {
        let chunk = (want - got).min(u64::from(size)) as usize;
        match ch.read(&mut buf[..chunk]).await.map_err(closed)? {
            0 => return Err(format!("the peer closed after {got} of {want} bytes")),
            n => got += n as u64,
        }
    }
    Ok(got)
}

/// Grows `buf` to `size` bytes of [`FILL`].
fn room(buf: &mut Vec<u8>, size: u32) {
    if buf.len() < size as usize {
        buf.resize(size as usize, FILL);
    }
}

/// Runs one operation `what` within `limit`.
async fn timed_op<T>(
    spec: Spec,
    limit: Duration,
    what: impl core::future::Future<Output = Result<T, String>>,
) -> Result<T, Failure> {
    within(spec.op.name(), spec.size, limit, what).await
}

/// Runs `what` (operation `op` on messages of `size` bytes) within `limit`; a failure names
/// them.
async fn within<T>(
    op: &'static str,
    size: u32,
    limit: Duration,
    what: impl core::future::Future<Output = Result<T, String>>,
) -> Result<T, Failure> {
    match kernel::timeout(limit, what).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure::new(op, size, e)),
        Err(_) => Err(Failure::new(
            op,
            size,
            format!("timeout-{}s", limit.as_secs()),
        )),
    }
}

/// The responder: does what each spec asks until END or the peer's close.
async fn respond(ch: &mut Vchan, limit: Duration) -> Result<(), Failure> {
    let mut buf = Vec::new();
    loop {
        let mut raw = [0u8; SPEC_BYTES];
        // The first byte of a spec may take as long as the controller likes.
        match ch.read(&mut raw).await {
            Ok(0) => return Ok(()),
            Ok(n) => ch
                .read_exact(&mut raw[n..])
                .await
                .map_err(|e| Failure::new("spec", 0, e))?,
            Err(e) => return Err(Failure::new("spec", 0, e)),
        }
        let spec = Spec::decode(&raw).map_err(|e| Failure::new("spec", 0, e))?;
        if spec.op == Op::End {
            return Ok(());
        }
        room(&mut buf, spec.size);
        timed_op(spec, limit, async {
            match spec.op {
                Op::Push => {
                    let got = drain(ch, &mut buf, spec.size, spec.count).await?;
                    ch.write_all(&got.to_le_bytes()).await.map_err(closed)
                }
                Op::Pull => stream(ch, &buf, spec.size, spec.count).await,
                Op::Ping => {
                    let message = &mut buf[..spec.size as usize];
                    for _ in 0..spec.count {
                        ch.read_exact(message).await.map_err(closed)?;
                        ch.write_all(message).await.map_err(closed)?;
                    }
                    Ok(())
                }
                Op::End => Ok(()),
            }
        })
        .await?;
    }
}

/// The controller: runs the plan, printing a row per operation, then ends the session.
async fn control(
    ch: &mut Vchan,
    name: &str,
    plan: &[Spec],
    limit: Duration,
) -> Result<(), Failure> {
    let largest = plan.iter().map(|s| s.size).max().unwrap_or(0);
    let mut buf = vec![FILL; largest.max(ACK_BYTES as u32) as usize];
    for &spec in plan {
        if spec.op == Op::Ping {
            let mut round_trips = Vec::with_capacity(spec.count as usize);
            timed_op(spec, limit, async {
                ch.write_all(&spec.encode()).await.map_err(closed)?;
                let message = &mut buf[..spec.size as usize];
                for _ in 0..spec.count {
                    let sent = kernel::now();
                    ch.write_all(message).await.map_err(closed)?;
                    ch.read_exact(message).await.map_err(closed)?;
                    round_trips.push(sent.elapsed().as_nanos() as u64);
                }
                Ok(())
            })
            .await?;
            let l = Latency::of(&mut round_trips).ok_or(Failure::new(
                "ping",
                spec.size,
                "no round trips",
            ))?;
            info!(
                "vbench-row session={name} op=ping size={} count={} median_us={:.1} p99_us={:.1} min_us={:.1}",
                spec.size, spec.count, l.median_us, l.p99_us, l.min_us
            );
            continue;
        }
        let start = kernel::now();
        let moved = timed_op(spec, limit, async {
            ch.write_all(&spec.encode()).await.map_err(closed)?;
            if spec.op == Op::Push {
                stream(ch, &buf, spec.size, spec.count).await?;
                let mut ack = [0u8; ACK_BYTES];
                ch.read_exact(&mut ack).await.map_err(closed)?;
                Ok(u64::from_le_bytes(ack))
            } else {
                drain(ch, &mut buf, spec.size, spec.count).await
            }
        })
        .await?;
        let us = start.elapsed().as_nanos() as f64 / 1e3;
        if moved != spec.total_bytes() {
            return Err(Failure::new(
                spec.op.name(),
                spec.size,
                format!("short-transfer {moved} of {}", spec.total_bytes()),
            ));
        }
        info!(
            "vbench-row session={name} op={} size={} count={} bytes={moved} us={us:.0}",
            spec.op.name(),
            spec.size,
            spec.count
        );
    }
    ch.write_all(&Spec::END.encode())
        .await
        .map_err(|e| Failure::new("end", 0, e))?;
    // The responder reads END before it sees our close.
    ch.flush().await.map_err(|e| Failure::new("end", 0, e))
}
