//! The log forwarder: sends this service's log lines ([`crate::logring`]) to the logs pillar
//! over the channel `log`, and forgets them once the pillar acknowledges them (docs/logs.md;
//! the frames are `log-wire`'s).
//!
//! It runs as a task beside `main` in every image, but only where there is a `log` channel:
//! under Xen when the launcher wired one (the node has a logs pillar), under microvm when the
//! command line says `log_channel=yes` (a test gives the port). Otherwise it ends at once and
//! the ring just keeps the latest lines.
//!
//! It never holds up the service: `log` only appends to the ring, and this task writes as the
//! channel takes bytes. When the pillar is down or slow the ring fills and its oldest lines go,
//! counted ([`crate::logring::dropped`]), which the pillar sees as a gap in the line numbers.
//! Every connection starts with a hello and sends again every line not yet acknowledged, so a
//! pillar that restarted loses nothing the ring still holds (it may see a line twice).
//!
//! What the pillar may corrupt: its acknowledgements. A frame that does not decode ends the
//! connection (the next one starts afresh); an acknowledgement for another boot is ignored,
//! and one beyond the last line sent acknowledges only what was sent.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;

use log_wire::{Decoder, Message};

use crate::channel::{self, Channel, Error, Transferred};

/// The channel's name on the service's side.
pub const CHANNEL: &str = "log";

/// Bytes of frames written at a time.
const BATCH: usize = 4096;
/// How often the ring is looked at when there is nothing to send.
const POLL: Duration = Duration::from_millis(200);

/// Whether a connection is up (then [`flush`] has something to wait for).
static CONNECTED: AtomicBool = AtomicBool::new(false);
/// Every line numbered below this was written to the channel.
static WRITTEN: AtomicU64 = AtomicU64::new(0);

/// Waits, at most `limit`, until every line logged so far was written to the channel: boot
/// calls it once `main` returned, so that a service's last words reach the pillar. Returns at
/// once when no connection is up.
pub(crate) async fn flush(limit: Duration) {
    let deadline = crate::now().saturating_add(limit);
    while CONNECTED.load(Ordering::Relaxed)
        && WRITTEN.load(Ordering::Relaxed) < crate::logring::next_seq()
        && crate::now() < deadline
    {
        crate::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether this service has a `log` channel to forward to.
async fn wired(args: &crate::Args) -> bool {
    if crate::platform::kind() == crate::platform::Kind::Xen {
        crate::platform::xen::store::read("data/lichen/channels")
            .await
            .is_ok_and(|list| list.split_whitespace().any(|c| c == CHANNEL))
    } else {
        args.get("log_channel") == Some("yes")
    }
}

/// The forwarder's task (spawned by boot beside `main`).
pub(crate) async fn run(args: crate::Args) {
    if !wired(&args).await {
        return;
    }
    let boot = crate::random::word().unwrap_or_else(|_| crate::time::boot_tsc());
    let service = channel::service_name().await;
    loop {
        match channel::open(CHANNEL, Duration::from_secs(2)).await {
            Ok(mut ch) => {
                CONNECTED.store(true, Ordering::Relaxed);
                let _ = session(&mut ch, boot, &service).await;
                CONNECTED.store(false, Ordering::Relaxed);
                ch.close();
            }
            Err(Error::NotFound { .. })
                if crate::platform::kind() != crate::platform::Kind::Xen =>
            {
                return
            }
            Err(_) => {}
        }
        crate::sleep(Duration::from_millis(500)).await;
    }
}

/// One connection: hello, then every line not yet acknowledged, as the channel takes them.
async fn session(ch: &mut Channel, boot: u64, service: &str) -> Result<(), Error> {
    let mut out = Vec::with_capacity(BATCH + 600);
    log_wire::encode(
        &Message::Hello {
            boot,
            first: crate::logring::acked_next(),
            service: service.into(),
        },
        &mut out,
    );
    let mut next = crate::logring::acked_next();
    let mut sent_upto = next;
    let mut decoder = Decoder::new();
    let mut inp = [0u8; 256];
    let mut text = [0u8; log_wire::MAX_TEXT];
    loop {
        if out.is_empty() {
            // Wall time of boot, read here rather than on the logging path.
            let wall_at_boot = crate::time::wall_clock()
                .map(|wall| wall.0.saturating_sub(crate::time::now().as_nanos() as i64));
            while out.len() < BATCH {
                let Some(record) = crate::logring::read(next, &mut text) else {
                    break;
                };
                let wall_ms = wall_at_boot.map_or(0, |base| {
                    (base.saturating_add(record.at_ns as i64) / 1_000_000).max(0) as u64
                });
                log_wire::encode(
                    &Message::Line(log_wire::Line {
                        seq: record.seq,
                        at_ns: record.at_ns,
                        wall_ms,
                        level: record.level,
                        text: (&text[..record.len]).into(),
                    }),
                    &mut out,
                );
                next = record.seq + 1;
            }
            sent_upto = next;
        }
        // With nothing to send this only reads; either way it gives up after POLL to look at
        // the ring again (one future type: the code is in every image).
        let got = match crate::timeout(POLL, ch.transfer(&out, &mut inp)).await {
            Err(_) => continue,
            Ok(Ok(Transferred::Wrote(n))) => {
                out.drain(..n);
                if out.is_empty() {
                    WRITTEN.store(sent_upto, Ordering::Relaxed);
                }
                continue;
            }
            Ok(Ok(Transferred::Read(n))) => n,
            Ok(Err(e)) => return Err(e),
        };
        if got == 0 {
            return Err(Error::Closed);
        }
        let mut acked = None;
        decoder
            .push(&inp[..got], |message| {
                if let Message::Ack { boot: b, seq } = message {
                    if b == boot {
                        acked = Some(seq);
                    }
                }
            })
            .map_err(|_| Error::Closed)?;
        if let (Some(seq), Some(last_sent)) = (acked, sent_upto.checked_sub(1)) {
            crate::logring::ack(seq.min(last_sent));
        }
    }
}
