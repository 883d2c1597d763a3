//! Persistent tables: a node's side of the vault (topics::vault).
//!
//! The vault follows every persistent topic, commits each change, then publishes the committed
//! objects in `vault/Stored`, keyed `<topic>#<key>` and served to each peer filtered to the
//! topics that peer publishes or subscribes to. Through that one table:
//!
//! - [`Node::publish_persistent`] restores a publisher's table before it serves it (a publisher
//!   that started empty would make everyone, the vault included, delete the stored objects);
//! - [`Publication::durable`] waits until the vault has committed the publisher's table as it is;
//! - a subscription to a persistent topic is seeded with the stored objects until its publisher
//!   first synchronises it, so after a reboot subscribers see the last committed state before
//!   the publisher is up.
//!
//! An image that publishes or subscribes to persistent topics declares that it subscribes to
//! `vault/Stored` too; without it, [`Node::publish_persistent`] refuses (`NeedsStorage`) and
//! subscriptions are not seeded.

use alloc::{boxed::Box, format, rc::Rc, string::String, vec::Vec};
use core::cell::RefCell;

use bus::{KeyFilter, OwnedEvent, Publisher, Volatile};
use declare::{Persistence, TopicDecl};
use serde::{de::DeserializeOwned, Serialize};
use topics::vault::{split_stored_key, Stored, STORED};
use topics::{Key, Topic};

use crate::mux::wire::Hello;
use crate::node::{Node, NodeError, Publication};
use crate::notify::Notify;
use crate::{SharedPublisher, Subscription, Update};

/// Feeds stored objects of one topic into a subscription (`None`: deleted).
type Seeder = Box<dyn Fn(&str, Option<&[u8]>)>;

/// This node's view of the vault's committed objects.
pub(crate) struct StoredMirror {
    subscription: Subscription<Stored>,
    /// Notified whenever the view changed.
    changed: Notify,
    /// Subscriptions of persistent topics that take stored objects until their publisher
    /// synchronises them, by topic.
    seeders: RefCell<Vec<(&'static str, Seeder)>>,
}

impl StoredMirror {
    /// Runs `f` on the keys of the view (tests).
    #[cfg(test)]
    pub(crate) fn with_view<R>(&self, f: impl FnOnce(&[String]) -> R) -> R {
        let keys: Vec<String> = self
            .subscription
            .with(|s| s.iter().map(|(k, _)| String::from(k)).collect());
        f(&keys)
    }

    /// Whether the vault has synchronised this node's view.
    fn synchronized(&self) -> bool {
        self.subscription.with(|s| s.is_synchronized())
    }

    /// The stored objects of `topic`: object key to value bytes.
    fn objects_of(&self, topic: &str) -> Vec<(String, Vec<u8>)> {
        self.subscription.with(|s| {
            s.iter()
                .filter_map(|(key, stored)| match split_stored_key(key) {
                    Some((t, k)) if t == topic => Some((k.into(), stored.bytes.clone())),
                    _ => None,
                })
                .collect()
        })
    }

    /// Takes the vault's updates as they come: feeds the seeders, wakes the waiters.
    async fn follow(self: Rc<Self>) {
        loop {
            let update = self.subscription.next().await;
            if let Update::Event(event) = &update {
                let (key, bytes) = match event {
                    OwnedEvent::Created { key, value } => (key, Some(value.bytes.as_slice())),
                    OwnedEvent::Modified { key, new, .. } => (key, Some(new.bytes.as_slice())),
                    OwnedEvent::Deleted { key, .. } => (key, None),
                    _ => {
                        self.changed.notify();
                        continue;
                    }
                };
                if let Some((topic, object)) = split_stored_key(key) {
                    for (seeded, seed) in self.seeders.borrow().iter() {
                        if *seeded == topic {
                            seed(object, bytes);
                        }
                    }
                }
            }
            self.changed.notify();
        }
    }
}

/// The filter of what a peer may see of `vault/Stored`: the objects of the topics it publishes
/// or subscribes to. A peer not known yet sees nothing.
pub(crate) fn stored_filter(peer: Option<Hello>) -> KeyFilter {
    let topics: Vec<String> = peer
        .map(|hello| {
            hello
                .publishes
                .into_iter()
                .chain(hello.subscribes)
                .map(|(name, _)| name)
                .collect()
        })
        .unwrap_or_default();
    Rc::new(move |key: &str| {
        split_stored_key(key).is_some_and(|(topic, _)| topics.iter().any(|t| t == topic))
    })
}

impl Node {
    /// The node's mirror of `vault/Stored`, made on first use; `None` when the image neither
    /// subscribes to it nor watches it. An image that only watches it (its persistent tables
    /// are a nicety, not a need: zedrouter's leases) runs on a node without a vault, where
    /// [`publish_persistent`](Node::publish_persistent) then waits, as a watch does.
    pub(crate) fn stored(&self) -> Option<Rc<StoredMirror>> {
        if let Some(mirror) = self.inner().stored.borrow().as_ref() {
            return Some(mirror.clone());
        }
        let decl = &self.inner().decl;
        if !decl.subscribes.contains(&STORED.decl()) && !decl.watches.contains(&STORED.decl()) {
            return None;
        }
        let subscription = self.subscribe(&STORED).ok()?;
        let mirror = Rc::new(StoredMirror {
            subscription,
            changed: Notify::default(),
            seeders: RefCell::new(Vec::new()),
        });
        *self.inner().stored.borrow_mut() = Some(mirror.clone());
        self.spawn(Box::pin(mirror.clone().follow()));
        Some(mirror)
    }

    /// Publishes a persistent `topic`: waits for the vault's copy of its table, restores it,
    /// then serves it like [`publish`](Node::publish). Changes reach the vault as they reach
    /// any subscriber; [`Publication::durable`] tells when they are committed. Waits as long as
    /// the vault is not up: starting empty would delete the stored table.
    pub async fn publish_persistent<K, T>(
        &self,
        topic: &Topic<K, T>,
    ) -> Result<Publication<K, T>, NodeError>
    where
        K: Key,
        T: Serialize + DeserializeOwned + 'static,
    {
        if topic.persistence() != Persistence::Persistent {
            return Err(NodeError::DeclaredOtherwise(topic.name()));
        }
        self.declared(topic.decl(), "publish", self.inner().decl.publishes)?;
        let stored = self.stored().ok_or(NodeError::NeedsStorage(topic.name()))?;
        stored.changed.wait_until(|| stored.synchronized()).await;
        let mut publisher =
            Publisher::<T, _>::new(bus::Topic::new(topic.name(), topic.schema()), Volatile)
                .map_err(|e| NodeError::Start(format!("{}: {e}", topic.name())))?;
        for (key, bytes) in stored.objects_of(topic.name()) {
            let value: T = postcard::from_bytes(&bytes).map_err(|_| {
                NodeError::Start(format!(
                    "{}: the vault's copy of {key} does not decode as schema {}",
                    topic.name(),
                    topic.schema()
                ))
            })?;
            publisher
                .publish(&key, &value)
                .map_err(|e| NodeError::Start(format!("{}: {e}", topic.name())))?;
        }
        let shared = self.serve(topic.decl(), SharedPublisher::new(publisher))?;
        Ok(Publication::new(shared, Some(stored)))
    }

    /// Seeds `subscription` (of persistent `topic`) from the vault, if this image follows it.
    pub(crate) fn seed_from_vault<T>(&self, topic: TopicDecl, subscription: &Subscription<T>)
    where
        T: DeserializeOwned + PartialEq + Clone + 'static,
    {
        if topic.persistence != Persistence::Persistent || topic.name == STORED.name() {
            return;
        }
        let Some(stored) = self.stored() else {
            return;
        };
        for (key, bytes) in stored.objects_of(topic.name) {
            subscription.seed(&key, Some(&bytes));
        }
        let subscription = subscription.clone();
        stored.seeders.borrow_mut().push((
            topic.name,
            Box::new(move |key, bytes| subscription.seed(key, bytes)),
        ));
    }
}

impl<K: Key, T: Serialize + DeserializeOwned> Publication<K, T> {
    /// Completes once the vault has committed the table as it is now (at once for a volatile
    /// table): every object with its current value, and no other.
    pub async fn durable(&self) {
        let Some(stored) = self.stored() else {
            return;
        };
        let topic = self.shared().with(|p| p.topic().name);
        stored
            .changed
            .wait_until(|| {
                let kept = stored.objects_of(topic);
                self.shared().with(|p| {
                    kept.len() == p.len()
                        && kept
                            .iter()
                            .all(|(key, bytes)| p.encoded(key) == Some(bytes.as_slice()))
                })
            })
            .await
    }
}
