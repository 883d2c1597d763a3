//! Keeping the batches: sealed batches go into the queue (newlog's [`Queue`], within the
//! quota) and into the store, the vault's table `logs/Queue` on a node; once the vault has
//! committed a batch, its sources are acknowledged. The uploader takes them out again when the
//! controller accepted them.

use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use bus_io::Publication;
use kernel::{error, warn, Duration};
use newlog::queue::key;
use newlog::Queue;
use topics::logs::Batch;

use crate::collector::Collector;

/// Where the batches are kept.
pub enum Store {
    /// The persistent table `logs/Queue` (the vault commits it).
    Table(Publication<String, Batch>),
    /// Memory only: the test mode without a vault (QEMU microvm).
    Memory(BTreeMap<String, Batch>),
}

impl Store {
    /// Every batch held (at start).
    pub fn all(&self) -> Vec<(String, Batch)> {
        match self {
            Store::Table(table) => table.shared().with(|p| {
                p.iter()
                    .map(|(k, v)| (String::from(k), v))
                    .collect::<Vec<_>>()
            }),
            Store::Memory(map) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }

    /// Batch `n`.
    pub fn get(&self, n: u64) -> Option<Batch> {
        match self {
            Store::Table(table) => table.shared().with(|p| p.get(&key(n))),
            Store::Memory(map) => map.get(&key(n)).cloned(),
        }
    }

    fn put(&mut self, key: &str, batch: &Batch) -> Result<(), String> {
        match self {
            Store::Table(table) => table
                .publish(&String::from(key), batch)
                .map_err(|e| alloc::format!("{e}")),
            Store::Memory(map) => {
                map.insert(key.into(), batch.clone());
                Ok(())
            }
        }
    }

    /// Deletes the object at `key`.
    pub fn delete(&mut self, key: &str) {
        match self {
            Store::Table(table) => {
                let _ = table.unpublish(&String::from(key));
            }
            Store::Memory(map) => {
                map.remove(key);
            }
        }
    }

    /// The table, to wait for the vault (none in memory).
    fn table(&self) -> Option<Publication<String, Batch>> {
        match self {
            Store::Table(table) => Some(table.clone()),
            Store::Memory(_) => None,
        }
    }
}

/// The queue and its store, shared by the keeper and the uploader.
pub struct Kept {
    /// The batches waiting, by number.
    pub queue: Queue,
    /// Where they are.
    pub store: Store,
}

impl Kept {
    /// The queue as the store holds it at start; objects that are not batches are deleted.
    pub fn restore(quota: u64, mut store: Store) -> Kept {
        let mut queue = Queue::new(quota);
        for (k, batch) in store.all() {
            if !queue.restore(&k, &batch) {
                warn!("logs: deleting {k:?} from the queue's table: not a batch number");
                store.delete(&k);
            }
        }
        Kept { queue, store }
    }
}

/// Seals the open batch once it is `interval` old, keeps every sealed batch, acknowledges
/// its lines once kept.
pub async fn run(collector: Rc<RefCell<Collector>>, kept: Rc<RefCell<Kept>>, interval: Duration) {
    loop {
        kernel::sleep(Duration::from_millis(250)).await;
        {
            let mut c = collector.borrow_mut();
            if c.opened_at.is_some_and(|at| at.elapsed() >= interval) {
                c.seal();
            }
        }
        loop {
            let Some(sealed) = collector.borrow_mut().sealed.pop_front() else {
                break;
            };
            let table = {
                let mut kept = kept.borrow_mut();
                let (n, dropped) = kept.queue.push(&sealed.batch);
                if let Err(e) = kept.store.put(&key(n), &sealed.batch) {
                    // Only a batch too large for a bus object gets here (newlog keeps them
                    // under 32 KiB before compression): counted as dropped, and said.
                    error!(
                        "logs: batch {n} ({} lines) cannot be kept: {e}",
                        sealed.batch.lines
                    );
                    kept.queue.remove(n);
                }
                for d in &dropped {
                    kept.store.delete(&key(*d));
                }
                if !dropped.is_empty() {
                    let (batches, lines) = kept.queue.dropped();
                    warn!(
                        "logs: the queue is over its quota of {} KiB: {batches} batches ({lines} lines) dropped so far, oldest first",
                        kept.queue.quota() / 1024
                    );
                }
                kept.store.table()
            };
            if let Some(table) = table {
                table.durable().await;
            }
            let mut c = collector.borrow_mut();
            for (slot, mark) in sealed.marks {
                c.slots[slot].ack_due = Some(mark);
            }
        }
    }
}
