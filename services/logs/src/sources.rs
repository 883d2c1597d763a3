//! Where lines come from: one task per log channel (`log-<service>`, wired by the launcher;
//! the frames are log-wire's), and one for the pillar's own ring.
//!
//! What a service may corrupt: its frames. A stream that does not decode is dropped (logged;
//! the service reconnects and sends again what was not acknowledged); numbers are taken as
//! newlog's `Source` says (duplicates skipped, gaps counted).

use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use kernel::{info, warn, Duration};
use log_wire::{Decoder, Message};

use crate::collector::Collector;

/// How often a source looks for an acknowledgement to send (and the own ring for lines).
const POLL: Duration = Duration::from_millis(250);

/// The service a log channel's name stands for.
pub fn service_of(channel: &str) -> Option<&str> {
    channel.strip_prefix("log-").filter(|s| !s.is_empty())
}

/// Reads the log channel `channel` for as long as the pillar runs.
pub async fn channel_source(collector: Rc<RefCell<Collector>>, slot: usize, channel: String) {
    let mut failures = 0u32;
    loop {
        let mut ch = match kernel::channel::open(&channel, Duration::from_secs(2)).await {
            Ok(ch) => ch,
            Err(e) => {
                if failures == 0 {
                    info!("logs: {channel}: waiting for the service ({e})");
                }
                failures += 1;
                kernel::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        failures = 0;
        collector.borrow_mut().slots[slot].connected = true;
        let end = serve(&collector, slot, &mut ch).await;
        collector.borrow_mut().slots[slot].connected = false;
        ch.close();
        if let Err(e) = end {
            warn!("logs: {channel}: {e}; reconnecting");
        }
        kernel::sleep(Duration::from_millis(500)).await;
    }
}

async fn serve(
    collector: &Rc<RefCell<Collector>>,
    slot: usize,
    ch: &mut kernel::channel::Channel,
) -> Result<(), String> {
    use alloc::format;
    let mut decoder = Decoder::new();
    let mut buf = alloc::vec![0u8; 4096];
    let mut acked = None;
    loop {
        let due = collector.borrow().slots[slot].ack_due;
        if let Some((boot, seq)) = due.filter(|_| due != acked) {
            let mut frame = Vec::new();
            log_wire::encode(&Message::Ack { boot, seq }, &mut frame);
            ch.write_all(&frame)
                .await
                .map_err(|e| format!("cannot acknowledge: {e}"))?;
            acked = due;
        }
        let n = match kernel::timeout(POLL, ch.read(&mut buf)).await {
            Err(_) => continue,
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(format!("{e}")),
        };
        let mut collector = collector.borrow_mut();
        decoder
            .push(&buf[..n], |message| collector.take(slot, message))
            .map_err(|e| format!("refused the stream: {e}"))?;
    }
}

/// Takes the pillar's own lines from its ring, as if from a channel.
pub async fn own_source(collector: Rc<RefCell<Collector>>, slot: usize) {
    let boot = kernel::random::word().unwrap_or(0);
    collector
        .borrow_mut()
        .take(slot, hello(boot, kernel::logring::acked_next()));
    collector.borrow_mut().slots[slot].connected = true;
    let mut next = kernel::logring::acked_next();
    let mut text = [0u8; log_wire::MAX_TEXT];
    // The wall time of boot, once the clock is known.
    let wall_at_boot =
        || kernel::wall_clock().map(|w| w.0.saturating_sub(kernel::now().as_nanos() as i64));
    loop {
        if let Some((_, seq)) = collector.borrow().slots[slot].ack_due {
            kernel::logring::ack(seq);
        }
        let base = wall_at_boot();
        while let Some(record) = kernel::logring::read(next, &mut text) {
            let wall_ms = base.map_or(0, |b| {
                (b.saturating_add(record.at_ns as i64) / 1_000_000).max(0) as u64
            });
            let line = log_wire::Line {
                seq: record.seq,
                at_ns: record.at_ns,
                wall_ms,
                level: record.level,
                text: (&text[..record.len]).into(),
            };
            collector.borrow_mut().take(slot, Message::Line(line));
            next = record.seq + 1;
        }
        kernel::sleep(POLL).await;
    }
}

fn hello(boot: u64, first: u64) -> Message<'static> {
    Message::Hello {
        boot,
        first,
        service: "logs".into(),
    }
}
