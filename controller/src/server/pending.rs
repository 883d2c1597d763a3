//! The onboarding queue: register attempts refused because their onboarding certificate or
//! serial is not admitted, kept so that an operator can admit them (web UI, admin API).
//!
//! What a peer controls here: everything in an entry. Anyone who holds the key of *some*
//! certificate can send a correctly signed register message, so the queue is bounded
//! ([`CAPACITY`] entries; the one heard from longest ago makes room), strings are clipped, and
//! admitting an entry is an operator decision shown with the certificate's subject and serial.
//! The queue lives in the memory of one controller process: it is empty after a restart, and
//! with several controllers each shows the attempts it received (devices retry `register`, so
//! an attempt shows up again within a retry interval).

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::admin_api::PendingRegistration;

/// Most entries kept.
pub const CAPACITY: usize = 256;
/// Longest serial or subject kept, in characters.
const MAX_TEXT: usize = 256;

/// Refused register attempts, by (onboarding certificate, serial).
#[derive(Default)]
pub struct PendingQueue {
    entries: Mutex<HashMap<String, Pending>>,
}

/// One refused (onboarding certificate, serial), with its certificate.
#[derive(Debug, Clone)]
pub struct Pending {
    /// What the admin API shows.
    pub shown: PendingRegistration,
    /// The onboarding certificate, DER.
    pub cert_der: Vec<u8>,
}

fn clip(text: &str) -> String {
    text.chars().take(MAX_TEXT).collect()
}

/// The queue key of an attempt: hex of the first 12 bytes of SHA-256(onboarding id, serial).
fn key(onboarding_id: &str, serial: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(onboarding_id.as_bytes());
    hash.update([0]);
    hash.update(serial.as_bytes());
    hash.finalize()[..12]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

impl PendingQueue {
    /// Records a refused attempt at `now_ms`.
    pub fn record(
        &self,
        cert_der: &[u8],
        onboarding_id: &str,
        subject: &str,
        serial: &str,
        now_ms: u64,
    ) {
        let serial = clip(serial);
        let id = key(onboarding_id, &serial);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = entries.get_mut(&id) {
            entry.shown.last_ms = now_ms;
            entry.shown.attempts = entry.shown.attempts.saturating_add(1);
            return;
        }
        if entries.len() >= CAPACITY {
            let oldest = entries
                .iter()
                .min_by_key(|(_, entry)| entry.shown.last_ms)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        let shown = PendingRegistration {
            id: id.clone(),
            onboarding_id: onboarding_id.to_owned(),
            subject: clip(subject),
            serial,
            first_ms: now_ms,
            last_ms: now_ms,
            attempts: 1,
        };
        entries.insert(
            id,
            Pending {
                shown,
                cert_der: cert_der.to_vec(),
            },
        );
    }

    /// Every entry, most recent attempt first.
    pub fn list(&self) -> Vec<PendingRegistration> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<_> = entries.values().map(|entry| entry.shown.clone()).collect();
        list.sort_by(|a, b| b.last_ms.cmp(&a.last_ms).then(a.id.cmp(&b.id)));
        list
    }

    /// The entry `id`, if queued.
    pub fn get(&self, id: &str) -> Option<Pending> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(id).cloned()
    }

    /// Removes the entry `id` (admitted or dismissed); whether it was there.
    pub fn remove(&self, id: &str) -> bool {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(id).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_counted_and_the_queue_is_bounded() {
        let queue = PendingQueue::default();
        queue.record(b"cert", "ob1", "CN=x", "serial-1", 10);
        queue.record(b"cert", "ob1", "CN=x", "serial-1", 20);
        let list = queue.list();
        assert_eq!(list.len(), 1);
        assert_eq!(
            (list[0].attempts, list[0].first_ms, list[0].last_ms),
            (2, 10, 20)
        );
        let id = list[0].id.clone();
        assert_eq!(queue.get(&id).unwrap().cert_der, b"cert");

        for n in 0..CAPACITY as u64 + 10 {
            queue.record(b"c", "ob2", "CN=y", &format!("s{n}"), 100 + n);
        }
        let list = queue.list();
        assert_eq!(list.len(), CAPACITY);
        // The oldest attempts made room; the newest is first.
        assert!(queue.get(&id).is_none());
        assert_eq!(list[0].serial, format!("s{}", CAPACITY + 9));
        assert!(queue.remove(&list[0].id));
        assert!(!queue.remove(&list[0].id));
    }

    #[test]
    fn long_strings_are_clipped() {
        let queue = PendingQueue::default();
        let long = "x".repeat(10_000);
        queue.record(b"c", "ob", &long, &long, 1);
        let entry = &queue.list()[0];
        assert_eq!(entry.serial.len(), MAX_TEXT);
        assert_eq!(entry.subject.len(), MAX_TEXT);
    }
}
