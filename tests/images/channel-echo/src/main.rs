//! `channel-echo`: opens channel `echo` with [`kernel::channel::open`], writes back everything
//! it reads until end of stream, then reports how many bytes it received and their sha256 and
//! exits 0. The same image runs under Xen (a manifest-wired vchan) and under microvm (a
//! virtio-console port, `scripts/run channel-echo --channel echo=PATH`).
//!
//! If the peer stops reading (it closed), the service stops echoing but keeps reading until
//! end of stream, so that what it reports is everything that arrived.
//!
//! Options: `wait_ms=N`: how long to wait for the channel and its peer (default 10000).
//! Exit status: 0 after end of stream, 1 if the channel cannot be opened, 2 on a channel error.
//! The report line: `received N bytes sha256 HEX echoed M bytes in S s`.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec;
use kernel::channel::{self, Channel};
use kernel::{error, info, Args, Duration};
use sha2::{Digest, Sha256};

kernel::service!(main);

/// The channel echoed.
const CHANNEL: &str = "echo";
/// Default `wait_ms`.
const DEFAULT_WAIT_MS: u64 = 10_000;
/// Bytes read at a time.
const CHUNK: usize = 16 * 1024;

async fn main(args: Args) -> i32 {
    let wait_ms = match args.parse_value::<u64>("wait_ms") {
        Ok(v) => v.unwrap_or(DEFAULT_WAIT_MS),
        Err(e) => {
            error!("{e}");
            return 1;
        }
    };
    let ch = match channel::open(CHANNEL, Duration::from_millis(wait_ms)).await {
        Ok(ch) => ch,
        Err(e) => {
            error!("cannot open channel {CHANNEL}: {e}");
            return 1;
        }
    };
    info!(
        "channel {} open on {}",
        ch.name(),
        kernel::platform::current().name()
    );
    match echo(ch).await {
        Ok(report) => {
            info!("{report}");
            0
        }
        Err(e) => {
            error!("{e}");
            2
        }
    }
}

/// Echoes until end of stream; returns the report line.
async fn echo(mut ch: Channel) -> Result<String, channel::Error> {
    let start = kernel::now();
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let (mut received, mut echoed) = (0u64, 0u64);
    let mut peer_reading = true;
    loop {
        let n = ch.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        received += n as u64;
        if peer_reading {
            match ch.write_all(&buf[..n]).await {
                Ok(()) => echoed += n as u64,
                Err(channel::Error::Closed) => {
                    info!("the peer stopped reading after {echoed} bytes");
                    peer_reading = false;
                }
                Err(e) => return Err(e),
            }
        }
    }
    match ch.flush().await {
        Ok(()) | Err(channel::Error::Closed) => {}
        Err(e) => return Err(e),
    }
    ch.close();
    let seconds = start.elapsed().as_nanos() as f64 / 1e9;
    let hex: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(
        "received {received} bytes sha256 {hex} echoed {echoed} bytes in {seconds:.2} s"
    ))
}
