//! The keeper: follows the persistent topics, commits their changes, publishes what is
//! committed.
//!
//! Changes wait in `pending` (the latest state per key, so a burst of changes to one object
//! costs one write) until the commit loop takes them all as one atomic batch. Only after the
//! batch is durable does `vault/Stored` change: an object there is on disk. A failed commit
//! (a full disk, a disk error) commits nothing; its changes go back to `pending` unless newer
//! ones came meanwhile, and are retried after [`RETRY`].

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::future::poll_fn;
use core::task::{Poll, Waker};

use bus::OwnedEvent;
use bus_io::{Node, Publication, Update};
use kernel::block::Disk;
use kernel::{error, info, Duration};
use serde::Serialize;
use store::{Batch, Store};
use topics::vault::{split_stored_key, stored_key, Status, Stored, STATUS, STORED};
use topics::{Global, Key, Topic};

/// How long a failed commit waits before it is retried.
const RETRY: Duration = Duration::from_secs(1);

/// Changes not committed yet: stored key to value bytes (`None`: deleted).
type Pending = RefCell<BTreeMap<String, Option<Vec<u8>>>>;

/// Wakes the commit loop when changes arrive.
#[derive(Default)]
struct Signal {
    raised: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Signal {
    fn raise(&self) {
        self.raised.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    async fn wait(&self) {
        poll_fn(|cx| {
            if self.raised.replace(false) {
                return Poll::Ready(());
            }
            *self.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// The vault at work.
pub struct Keeper {
    store: Store<Disk>,
    stored: Publication<String, Stored>,
    status: Publication<Global, Status>,
    pending: Rc<Pending>,
    signal: Rc<Signal>,
    counts: Status,
    /// Bytes per sector of the persist disk.
    sector_size: u64,
}

impl Keeper {
    /// Publishes what the store holds, then follows every persistent topic.
    pub async fn start(
        node: &Node,
        mut store: Store<Disk>,
        sector_size: u32,
    ) -> Result<Keeper, String> {
        let stored = node.publish(&STORED).map_err(|e| e.to_string())?;
        let status = node.publish(&STATUS).map_err(|e| e.to_string())?;
        let keys: Vec<Vec<u8>> = store.keys_with_prefix(b"").map(Vec::from).collect();
        for key in keys {
            let name = String::from_utf8(key.clone()).map_err(|_| "a stored key is not UTF-8")?;
            let bytes = store
                .get(&key)
                .await
                .map_err(|e| format!("cannot read {name}: {e}"))?
                .unwrap_or_default();
            stored
                .publish(&name, &Stored { bytes })
                .map_err(|e| format!("cannot publish {name}: {e}"))?;
        }
        info!(
            "vault: {} objects restored from the persist disk",
            stored.shared().with(|p| p.len())
        );
        let keeper = Keeper {
            store,
            stored,
            status,
            pending: Rc::new(RefCell::new(BTreeMap::new())),
            signal: Rc::new(Signal::default()),
            counts: Status::default(),
            sector_size: u64::from(sector_size),
        };
        macro_rules! follow {
            ($topic:expr) => {
                keeper.follow(node, $topic)?
            };
        }
        topics::for_each_persistent_topic!(follow);
        Ok(keeper)
    }

    /// Follows persistent `topic`: its changes become pending; after each synchronisation,
    /// stored objects the publisher no longer has are deleted too.
    fn follow<K: Key + 'static, T>(&self, node: &Node, topic: &Topic<K, T>) -> Result<(), String>
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + Clone + 'static,
    {
        let subscription = node.subscribe(topic).map_err(|e| e.to_string())?;
        let (pending, signal, stored) = (
            self.pending.clone(),
            self.signal.clone(),
            self.stored.clone(),
        );
        let name = topic.name();
        kernel::spawn(async move {
            loop {
                let change = match subscription.next().await {
                    Update::Event(OwnedEvent::Created { key, value })
                    | Update::Event(OwnedEvent::Modified {
                        key, new: value, ..
                    }) => match postcard::to_allocvec(&value) {
                        Ok(bytes) => Some((key, Some(bytes))),
                        Err(e) => {
                            error!("vault: {name}/{key} does not encode: {e}");
                            None
                        }
                    },
                    Update::Event(OwnedEvent::Deleted { key, .. }) => Some((key, None)),
                    Update::Event(OwnedEvent::Synchronized) => {
                        // Objects deleted while the vault was not following.
                        let gone: Vec<String> = stored.shared().with(|p| {
                            p.keys()
                                .filter_map(|k| match split_stored_key(k) {
                                    Some((t, key)) if t == name => Some(key),
                                    _ => None,
                                })
                                .filter(|key| subscription.with(|s| s.get(key).is_none()))
                                .map(String::from)
                                .collect()
                        });
                        let mut pending = pending.borrow_mut();
                        for key in gone {
                            pending.insert(stored_key(name, &key), None);
                        }
                        signal.raise();
                        None
                    }
                    _ => None,
                };
                if let Some((key, value)) = change {
                    let key = stored_key(name, &key);
                    let unchanged = stored.shared().with(|p| match (&value, p.get(&key)) {
                        (Some(bytes), Some(kept)) => *bytes == kept.bytes,
                        (None, None) => true,
                        _ => false,
                    });
                    if unchanged {
                        pending.borrow_mut().remove(&key);
                    } else {
                        pending.borrow_mut().insert(key, value);
                        signal.raise();
                    }
                }
            }
        });
        Ok(())
    }

    /// Commits pending changes as they come, forever.
    pub async fn run(mut self) -> i32 {
        self.report();
        loop {
            self.signal.wait().await;
            let changes = core::mem::take(&mut *self.pending.borrow_mut());
            if changes.is_empty() {
                continue;
            }
            let mut batch = Batch::new();
            for (key, value) in &changes {
                match value {
                    Some(bytes) => batch.put(key.as_bytes(), bytes),
                    None => batch.delete(key.as_bytes()),
                };
            }
            match self.store.commit(batch).await {
                Ok(()) => {
                    self.counts.commits += 1;
                    for (key, value) in changes {
                        let published = match value {
                            Some(bytes) => self.stored.publish(&key, &Stored { bytes }),
                            None => self.stored.unpublish(&key).map(drop),
                        };
                        if let Err(e) = published {
                            error!("vault: committed {key} but cannot publish it: {e}");
                        }
                    }
                }
                Err(e) => {
                    self.counts.failures += 1;
                    self.counts.last_error = Some(format!("{e}"));
                    error!("vault: commit of {} changes failed: {e}", changes.len());
                    {
                        let mut pending = self.pending.borrow_mut();
                        for (key, value) in changes {
                            pending.entry(key).or_insert(value);
                        }
                    }
                    self.report();
                    kernel::sleep(RETRY).await;
                    self.signal.raise();
                    continue;
                }
            }
            self.report();
            if self.counts.commits.is_power_of_two() {
                info!("vault: {}", self.counts);
            }
        }
    }

    /// Publishes the vault's status.
    fn report(&mut self) {
        let stats = self.store.stats();
        let sector = self.sector_size;
        self.counts.objects = stats.keys as u64;
        self.counts.used_bytes = stats.used_sectors * sector;
        self.counts.capacity_bytes = stats.capacity_sectors * sector;
        self.counts.pending = self.pending.borrow().len() as u64;
        self.counts.heap_bytes = kernel::mem::heap_used();
        self.counts.heap_peak_bytes = self.counts.heap_peak_bytes.max(self.counts.heap_bytes);
        if let Err(e) = self.status.publish(&Global, &self.counts) {
            error!("vault: cannot publish its status: {e}");
        }
    }
}
