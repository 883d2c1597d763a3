//! Reports that must reach the controller (EVE's info: "must be delivered"), queued until it
//! takes them: [`Queue`] keeps them in order in memory and, on a node, in the persistent table
//! `zedagent/InfoQueue` (the vault commits it), so that neither a zedagent restart nor a
//! controller outage loses one.
//!
//! The queue is bounded ([`MAX_QUEUED`]): when the controller stays away that long, the oldest
//! report goes first (counted in [`Queue::dropped`]); a device's later report says more than
//! its earlier ones. A report about an app, a content tree or a volume replaces the one of the
//! same object still waiting ([`crate::objects::superseded_key`]): the controller keeps only
//! an object's newest report, so a download's progress does not push the device's reports out
//! while the controller is away. The device's own reports are each kept.
//!
//! **What the vault may hand back**: keys that are not sequence numbers (ignored and removed,
//! logged by the caller through [`Queue::restore`]'s count).

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use bus_io::Publication;
use lichen_api::info::ZInfoMsg;
use prost::Message;
use topics::zedagent::QueuedInfo;

use crate::objects::superseded_key;

/// The most reports kept.
pub const MAX_QUEUED: usize = 128;

/// Reports in the order they were made, each under a sequence number.
pub struct Queue {
    reports: BTreeMap<u64, Vec<u8>>,
    /// The sequence number of the report waiting for each object that a newer report of the
    /// same object replaces.
    objects: BTreeMap<String, u64>,
    next: u64,
    table: Option<Publication<String, QueuedInfo>>,
    /// Reports dropped because the queue was full.
    pub dropped: u64,
}

/// The table key of sequence number `seq`: zero-padded, so that key order is number order.
pub fn key(seq: u64) -> String {
    format!("{seq:020}")
}

impl Queue {
    /// An empty queue kept in memory only.
    pub fn in_memory() -> Queue {
        Queue {
            reports: BTreeMap::new(),
            objects: BTreeMap::new(),
            next: 0,
            table: None,
            dropped: 0,
        }
    }

    /// A queue kept in `table`, with the reports it holds (a restored persistent table).
    /// Returns the queue and how many objects were not reports (removed).
    pub fn restore(table: Publication<String, QueuedInfo>) -> (Queue, usize) {
        let held: Vec<(String, QueuedInfo)> = table
            .shared()
            .with(|p| p.iter().map(|(k, v)| (String::from(k), v)).collect());
        let mut queue = Queue::in_memory();
        let mut strays = 0;
        for (k, report) in held {
            match k.parse::<u64>() {
                Ok(seq) if k == key(seq) => {
                    if let Some(object) = object_of(&report.message) {
                        queue.objects.insert(object, seq);
                    }
                    queue.reports.insert(seq, report.message);
                    queue.next = queue.next.max(seq + 1);
                }
                _ => {
                    let _ = table.shared().unpublish(&k);
                    strays += 1;
                }
            }
        }
        queue.table = Some(table);
        (queue, strays)
    }

    /// Queues `report` (an encoded `ZInfoMsg`), in place of the waiting report of the same
    /// object if it is about an app, a content tree or a volume, dropping the oldest if the
    /// queue is full.
    pub fn push(&mut self, report: Vec<u8>) -> Result<(), String> {
        let object = object_of(&report);
        if let Some(&older) = object.as_ref().and_then(|o| self.objects.get(o)) {
            self.remove(older)?;
        }
        while self.reports.len() >= MAX_QUEUED {
            let Some((&oldest, _)) = self.reports.iter().next() else {
                break;
            };
            self.remove(oldest)?;
            self.dropped += 1;
        }
        let seq = self.next;
        self.next += 1;
        if let Some(table) = &self.table {
            table
                .publish(
                    &key(seq),
                    &QueuedInfo {
                        message: report.clone(),
                    },
                )
                .map_err(|e| format!("{e}"))?;
        }
        self.reports.insert(seq, report);
        if let Some(object) = object {
            self.objects.insert(object, seq);
        }
        Ok(())
    }

    /// The oldest report and its sequence number.
    pub fn first(&self) -> Option<(u64, &[u8])> {
        self.reports.iter().next().map(|(s, r)| (*s, r.as_slice()))
    }

    /// Removes report `seq` (delivered).
    pub fn remove(&mut self, seq: u64) -> Result<(), String> {
        if let Some(table) = &self.table {
            table.unpublish(&key(seq)).map_err(|e| format!("{e}"))?;
        }
        self.reports.remove(&seq);
        self.objects.retain(|_, s| *s != seq);
        Ok(())
    }

    /// How many reports wait.
    pub fn len(&self) -> usize {
        self.reports.len()
    }

    /// How many reports about apps, content trees and volumes wait (the others are the
    /// device's).
    pub fn objects_waiting(&self) -> usize {
        self.objects.len()
    }

    /// How many of the device's own reports wait.
    pub fn device_waiting(&self) -> usize {
        self.reports.len() - self.objects.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.reports.is_empty()
    }

    /// Completes once the vault committed the queue as it is (at once in memory).
    pub async fn durable(&self) {
        if let Some(table) = &self.table {
            table.durable().await;
        }
    }
}

/// See [`superseded_key`]; `None` for bytes that are not a `ZInfoMsg`.
fn object_of(report: &[u8]) -> Option<String> {
    superseded_key(&ZInfoMsg::decode(report).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use declare::{Declaration, Needs};
    use topics::Topic;

    /// The queue's table, volatile for the test (the vault's part is bus-io's, tested there).
    const TABLE: Topic<String, QueuedInfo> = Topic::volatile("zedagent/InfoQueue", 1);
    static ZEDAGENT: Declaration = Declaration {
        memory_floor_mib: 8,
        needs: Needs::NONE,
        publishes: &[TABLE.decl()],
        subscribes: &[],
        watches: &[],
    };

    fn table() -> Publication<String, QueuedInfo> {
        bus_io::Node::new("zedagent", &ZEDAGENT, drop, |_| {})
            .publish(&TABLE)
            .unwrap()
    }

    fn keys(table: &Publication<String, QueuedInfo>) -> Vec<String> {
        table
            .shared()
            .with(|p| p.keys().map(String::from).collect())
    }

    #[test]
    fn reports_leave_in_order_and_a_restored_queue_goes_on_numbering() {
        let table = table();
        let (mut queue, strays) = Queue::restore(table.clone());
        assert_eq!(strays, 0);
        queue.push(vec![1]).unwrap();
        queue.push(vec![2]).unwrap();
        assert_eq!(keys(&table), vec![key(0), key(1)]);
        assert_eq!(queue.first(), Some((0, &[1u8][..])));
        queue.remove(0).unwrap();
        assert_eq!(keys(&table), vec![key(1)]);

        // zedagent restarts: the table is what the vault gave back.
        let (mut again, _) = Queue::restore(table.clone());
        assert_eq!(again.len(), 1);
        assert_eq!(again.first(), Some((1, &[2u8][..])));
        again.push(vec![3]).unwrap();
        assert_eq!(keys(&table), vec![key(1), key(2)]);
        again.remove(1).unwrap();
        again.remove(2).unwrap();
        assert!(again.is_empty() && keys(&table).is_empty());
    }

    #[test]
    fn a_full_queue_drops_its_oldest_and_strays_are_removed() {
        let table = table();
        table
            .publish(&"not-a-number".into(), &QueuedInfo { message: vec![] })
            .unwrap();
        table
            .publish(&"7".into(), &QueuedInfo { message: vec![] })
            .unwrap();
        let (mut queue, strays) = Queue::restore(table.clone());
        assert_eq!(strays, 2);
        assert!(keys(&table).is_empty());
        for i in 0..MAX_QUEUED + 3 {
            queue.push(vec![i as u8]).unwrap();
        }
        assert_eq!(queue.len(), MAX_QUEUED);
        assert_eq!(queue.dropped, 3);
        assert_eq!(queue.first(), Some((3, &[3u8][..])));
        assert_eq!(keys(&table).len(), MAX_QUEUED);
        assert_eq!(keys(&table)[0], key(3));
    }

    fn app(uuid: &str, name: &str) -> Vec<u8> {
        use lichen_api::info::{z_info_msg::InfoContent, ZInfoApp};
        ZInfoMsg {
            info_content: Some(InfoContent::Ainfo(ZInfoApp {
                app_id: uuid.into(),
                app_name: name.into(),
                ..Default::default()
            })),
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn device(host: &str) -> Vec<u8> {
        use lichen_api::info::{z_info_msg::InfoContent, ZInfoDevice};
        ZInfoMsg {
            info_content: Some(InfoContent::Dinfo(ZInfoDevice {
                host_name: host.into(),
                ..Default::default()
            })),
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn an_objects_newer_report_replaces_the_waiting_one_and_device_reports_all_stay() {
        let table = table();
        let (mut queue, _) = Queue::restore(table.clone());
        queue.push(device("boot 1")).unwrap();
        queue.push(app("a", "first")).unwrap();
        queue.push(app("b", "other")).unwrap();
        queue.push(device("boot 2")).unwrap();
        queue.push(app("a", "second")).unwrap();
        assert_eq!(keys(&table), vec![key(0), key(2), key(3), key(4)]);
        assert_eq!((queue.device_waiting(), queue.objects_waiting()), (2, 2));
        // Restored from the vault, the queue still knows which report is whose.
        let (mut again, _) = Queue::restore(table.clone());
        again.push(app("a", "third")).unwrap();
        again.push(app("b", "gone")).unwrap();
        assert_eq!(keys(&table), vec![key(0), key(3), key(5), key(6)]);
        let mut left = Vec::new();
        while let Some((seq, bytes)) = again.first() {
            left.push(bytes.to_vec());
            again.remove(seq).unwrap();
        }
        assert_eq!(
            left,
            vec![
                device("boot 1"),
                device("boot 2"),
                app("a", "third"),
                app("b", "gone")
            ]
        );
        // Delivered: a new report of the object is queued, replacing nothing.
        again.push(app("a", "fourth")).unwrap();
        assert_eq!(again.len(), 1);
    }

    #[test]
    fn keys_sort_as_numbers() {
        assert!(key(9) < key(10));
        assert_eq!(key(42).len(), 20);
    }

    #[test]
    fn an_in_memory_queue_works_alike() {
        let mut queue = Queue::in_memory();
        queue.push(vec![5]).unwrap();
        assert_eq!(queue.first(), Some((0, &[5u8][..])));
        queue.remove(0).unwrap();
        assert!(queue.is_empty());
    }
}
