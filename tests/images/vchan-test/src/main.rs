//! `vchan-test`: the kernel's vchan against a libxenvchan peer nobody here wrote, Xen's
//! `vchan-socket-proxy`, run in dom0 by the `vchan-interop` hook (xen/dom0/hooks).
//!
//! Phase a: server at `data/vchan-interop/a` (ring orders from `orders=L,R`, default 13,20),
//! the proxy is the client. Phase b: client of the proxy's server at
//! `/local/domain/0/data/vchan-interop/b` (libxenvchan picks orders 10 and 11). In both it echoes
//! `mib` MiB (default 64) and prints the sha256 of what it received. Phase c: client of a proxy
//! that dom0 kills once we are connected: the read must end. Prints `check <name>: ok ...` or
//! `FAILED`; exits 0 if every check passed.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec;
use kernel::vchan::Vchan;
use kernel::{info, Args, Duration};
use sha2::{Digest, Sha256};

kernel::service!(main);

async fn main(args: Args) -> i32 {
    if kernel::platform::kind() != kernel::platform::Kind::Xen {
        kernel::error!("vchan-test needs Xen");
        return 2;
    }
    let mib: u64 = args.parse_value("mib").ok().flatten().unwrap_or(64);
    let (left, right) = args
        .get("orders")
        .and_then(|o| o.split_once(','))
        .and_then(|(l, r)| Some((l.parse().ok()?, r.parse().ok()?)))
        .unwrap_or((13u8, 20u8));
    let mut failures = 0;
    let mut report = |name: &str, result: Result<String, String>| match result {
        Ok(detail) => info!("check {name}: ok {detail}"),
        Err(e) => {
            failures += 1;
            kernel::error!("check {name}: FAILED: {e}");
        }
    };
    let bytes = mib << 20;
    // Which phases to run: `phases=a` runs the server role only (see docs/vchan.md).
    let phases = args.get("phases").unwrap_or("abc");
    let a = async {
        let ch = Vchan::server(0, "data/vchan-interop/a", left, right)
            .await
            .map_err(describe)?;
        echo(ch, bytes).await
    };
    if phases.contains('a') {
        report("vchan server with libxenvchan client", a.await);
    }
    let b = async {
        let ch = Vchan::client(
            0,
            "/local/domain/0/data/vchan-interop/b",
            Duration::from_secs(600),
        )
        .await
        .map_err(describe)?;
        info!(
            "phase b: connected, rings {}/{}",
            ch.read_ring_size(),
            ch.write_ring_size()
        );
        echo(ch, bytes).await
    };
    if phases.contains('b') {
        report("vchan client with libxenvchan server", b.await);
    }
    if phases.contains('c') {
        report("vchan dead peer", dead_peer().await);
    }
    info!("{failures} check(s) failed");
    // `linger_s=N`: stay up so that dom0's side can report before the node stops.
    if let Ok(Some(seconds)) = args.parse_value::<u64>("linger_s") {
        kernel::sleep(Duration::from_secs(seconds)).await;
    }
    i32::from(failures != 0)
}

fn describe(e: impl core::fmt::Display) -> String {
    format!("{e}")
}

/// Echoes `bytes` bytes, hashing them; closes in order.
async fn echo(mut ch: Vchan, bytes: u64) -> Result<String, String> {
    let start = kernel::now();
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    while total < bytes {
        let want = buf.len().min((bytes - total) as usize);
        let n = ch.read(&mut buf[..want]).await.map_err(describe)?;
        if n == 0 {
            return Err(format!("the peer closed after {total} bytes"));
        }
        hash.update(&buf[..n]);
        ch.write_all(&buf[..n]).await.map_err(describe)?;
        total += n as u64;
    }
    ch.flush().await.map_err(describe)?;
    let (rd, wr) = (ch.read_ring_size(), ch.write_ring_size());
    ch.close();
    let secs = start.elapsed().as_nanos() as f64 / 1e9;
    let digest = hash.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(
        "received {total} sha256 {hex} rings {rd}/{wr} in {secs:.2} s ({:.1} MB/s each way)",
        total as f64 / 1e6 / secs
    ))
}

/// Connects to a proxy that dom0 then kills: the read must end (EOF or an error) by itself.
async fn dead_peer() -> Result<String, String> {
    let mut ch = Vchan::client(
        0,
        "/local/domain/0/data/vchan-interop/c",
        Duration::from_secs(120),
    )
    .await
    .map_err(describe)?;
    ch.write_all(b"x").await.map_err(describe)?;
    let connected = kernel::now();
    // dom0's hook kills the proxy when it sees this line.
    info!("phase c: connected");
    let mut buf = [0u8; 64];
    let ended = kernel::timeout(Duration::from_secs(60), async {
        loop {
            match ch.read(&mut buf).await {
                Ok(0) => return String::from("EOF"),
                Ok(_) => continue,
                Err(e) => return describe(e),
            }
        }
    })
    .await
    .map_err(|_| String::from("no end seen within 60 s"))?;
    let alive = ch.peer_alive();
    ch.close();
    if alive {
        return Err(String::from("the peer still looks alive"));
    }
    Ok(format!(
        "({ended} {} ms after connecting)",
        connected.elapsed().as_nanos() / 1_000_000
    ))
}
