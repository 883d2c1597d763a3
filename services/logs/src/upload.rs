//! The uploader (EVE's loguploader): the oldest batch waiting goes to the controller's
//! `id/{uuid}/newlogs`, signed with the device key like every device request; only a 201
//! takes it out of the queue. Failures back off (1 s doubling to 60 s, ±25 % jitter) and leave
//! the queue as it is; a batch the controller refuses for its content (400, 413, 422) can never
//! be taken and is dropped, said and counted.

use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use core::cell::RefCell;

use kernel::{error, info, warn, Duration};
use lichen_api::envelope::Signer;
use newlog::queue::key;

use crate::keeper::Kept;
use device_api::link::Link;

/// Who the device is, once known: its signer (from zedagent's identity) and UUID.
#[derive(Default)]
pub struct Device {
    /// Signs every request with the device key.
    pub signer: Option<Signer>,
    /// The device UUID the controller gave.
    pub uuid: String,
}

/// What the uploader did, for the status.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    /// Batches the controller accepted.
    pub uploaded: u64,
    /// Uploads that failed.
    pub failures: u64,
    /// The last failure.
    pub last_error: Option<String>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(60);

fn jittered(pause: Duration) -> Duration {
    let ms = pause.as_millis() as u64;
    let jitter = kernel::random::word().unwrap_or(0) % (ms / 2 + 1);
    Duration::from_millis(ms - ms / 4 + jitter)
}

/// Uploads the queue for as long as the pillar runs.
pub async fn run(
    mut link: Link,
    device: Rc<RefCell<Device>>,
    kept: Rc<RefCell<Kept>>,
    counts: Rc<RefCell<Counts>>,
) {
    let mut backoff = Duration::ZERO;
    let mut failing = false;
    loop {
        let ready = {
            let device = device.borrow();
            match (&device.signer, device.uuid.is_empty()) {
                (Some(signer), false) => kept
                    .borrow()
                    .queue
                    .oldest()
                    .map(|n| (n, signer.clone(), device.uuid.clone())),
                _ => None,
            }
        };
        let Some((n, signer, uuid)) = ready else {
            kernel::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let Some(batch) = kept.borrow().store.get(n) else {
            kept.borrow_mut().queue.remove(n);
            continue;
        };
        let body = signer.seal_to_bytes_raw(batch.gzip);
        let result = link.post(&format!("id/{uuid}/newlogs"), &body).await;
        let failure = match result {
            Ok(r) if r.status == 201 => {
                let mut kept = kept.borrow_mut();
                kept.queue.remove(n);
                kept.store.delete(&key(n));
                counts.borrow_mut().uploaded += 1;
                if failing {
                    info!(
                        "logs: the controller takes logs again: batch {n} delivered, {} waiting",
                        kept.queue.len()
                    );
                } else if counts.borrow().uploaded == 1 {
                    info!(
                        "logs: first batch delivered to the controller ({} lines)",
                        batch.lines
                    );
                }
                failing = false;
                backoff = Duration::ZERO;
                continue;
            }
            Ok(r) if matches!(r.status, 400 | 413 | 422) => {
                let mut kept = kept.borrow_mut();
                kept.queue.remove(n);
                kept.store.delete(&key(n));
                error!(
                    "logs: the controller refused batch {n} ({} lines) for good: {}; dropped",
                    batch.lines,
                    refusal(&r)
                );
                refusal(&r)
            }
            Ok(r) => refusal(&r),
            Err(e) => e,
        };
        {
            let mut c = counts.borrow_mut();
            c.failures += 1;
            if !failing {
                warn!("logs: upload failed ({failure}); batches stay queued, retrying");
            }
            c.last_error = Some(failure);
        }
        failing = true;
        backoff = if backoff.is_zero() {
            Duration::from_secs(1)
        } else {
            (backoff * 2).min(MAX_BACKOFF)
        };
        kernel::sleep(jittered(backoff)).await;
    }
}

fn refusal(response: &device_api::http::Response) -> String {
    match &response.reason {
        Some(reason) => format!("HTTP {}: {reason}", response.status),
        None => format!("HTTP {}", response.status),
    }
}
