//! A service's place on the bus: its channels to its peers, and its publications and
//! subscriptions by [`Topic`].
//!
//! ```ignore
//! let node = Node::new("pong", &DECLARATION, spawn, log);
//! node.add_channel("ping", NamedChannel::new("ping"));   // kernel: Node::from_platform()
//! let seqs = node.subscribe(&topics::ping::SEQ)?;        // from whichever peer publishes it
//! let acks = node.publish(&topics::pong::ACK)?;          // to every peer that subscribes
//! acks.publish(&Global, &Ack { n: 1 })?;
//! ```
//!
//! Each channel carries a hello each way (the service's name and its declared topics), then
//! one multiplexed stream per subscription ([`crate::mux`]). A subscription finds its publisher
//! by the hellos; a schema version that differs from the publisher's is refused there, with
//! both sides named. A service may publish and subscribe only what its image declares (the
//! launcher wired the node from those declarations).

use alloc::{boxed::Box, format, rc::Rc, string::String, vec::Vec};
use core::cell::RefCell;
use core::fmt;
use core::future::Future;
use core::pin::Pin;

use bus::{PublishError, Publisher, Volatile};
use declare::{Declaration, Persistence, TopicDecl};
use serde::{de::DeserializeOwned, Serialize};
use topics::{Key, Topic};

use crate::mux::{self, stream_of, Accept, Channel, ChannelEvent, MuxStream};
use crate::notify::Notify;
use crate::stream::{Connector, Duplex};
use crate::{SharedPublisher, Subscription};

/// A task for the executor.
pub type Task = Pin<Box<dyn Future<Output = ()>>>;

/// Why the node refuses a publication or subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeError {
    /// The image does not declare it: the launcher did not wire it.
    Undeclared {
        /// `publish` or `subscribe`.
        what: &'static str,
        /// The topic.
        topic: &'static str,
    },
    /// The declaration says another schema version or persistence than the topic.
    DeclaredOtherwise(&'static str),
    /// Persistent tables need storage.
    NeedsStorage(&'static str),
    /// The topic is already published here.
    AlreadyPublished(&'static str),
    /// The publisher could not start (its stored table did not load).
    Start(String),
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::Undeclared { what, topic } => write!(
                f,
                "this image does not declare that it may {what} {topic} (kernel::service!)"
            ),
            NodeError::DeclaredOtherwise(topic) => {
                write!(f, "{topic} is declared with another schema or persistence")
            }
            NodeError::NeedsStorage(topic) => write!(
                f,
                "{topic} is persistent: publish it with storage (the vault)"
            ),
            NodeError::AlreadyPublished(topic) => write!(f, "{topic} is published already"),
            NodeError::Start(e) => write!(f, "cannot start publishing {e}"),
        }
    }
}

pub(crate) struct Inner {
    service: String,
    pub(crate) decl: &'static Declaration,
    hello: mux::wire::Hello,
    channels: RefCell<Vec<Rc<Channel>>>,
    changed: Rc<Notify>,
    spawn: Box<dyn Fn(Task)>,
    log: fn(fmt::Arguments<'_>),
    published: RefCell<Vec<&'static str>>,
    /// The vault's committed objects, once a persistent table needs them.
    pub(crate) stored: RefCell<Option<Rc<crate::persist::StoredMirror>>>,
}

/// A service's bus: see the module's documentation. Clones share it.
#[derive(Clone)]
pub struct Node {
    inner: Rc<Inner>,
}

impl Node {
    /// The bus of service `service`, whose image declares `decl`; `spawn` runs the node's
    /// drivers as tasks, `log` reports what happens to its channels.
    pub fn new(
        service: impl Into<String>,
        decl: &'static Declaration,
        spawn: impl Fn(Task) + 'static,
        log: fn(fmt::Arguments<'_>),
    ) -> Node {
        let service = service.into();
        let list =
            |topics: &[TopicDecl]| topics.iter().map(|t| (t.name.into(), t.schema)).collect();
        let hello = mux::wire::Hello {
            service: service.clone(),
            publishes: list(decl.publishes),
            subscribes: decl
                .subscribes
                .iter()
                .chain(decl.watches)
                .map(|t| (t.name.into(), t.schema))
                .collect(),
        };
        Node {
            inner: Rc::new(Inner {
                service,
                decl,
                hello,
                channels: RefCell::new(Vec::new()),
                changed: Rc::new(Notify::default()),
                spawn: Box::new(spawn),
                log,
                published: RefCell::new(Vec::new()),
                stored: RefCell::new(None),
            }),
        }
    }

    /// The service's name.
    pub fn service(&self) -> &str {
        &self.inner.service
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    pub(crate) fn spawn(&self, task: Task) {
        (self.inner.spawn)(task)
    }

    /// Adds the channel to a peer (called `name`, as wired) and keeps it connected. Add every
    /// channel before publishing: a publication serves the channels the node has then.
    pub fn add_channel<C>(&self, name: impl Into<String>, connector: C)
    where
        C: Connector + 'static,
        C::Stream: Duplex,
    {
        let channel = Rc::new(Channel::new(name));
        self.inner.channels.borrow_mut().push(channel.clone());
        let node = self.inner.clone();
        (self.inner.spawn)(Box::pin(async move {
            let log = node.log;
            let mut failures = 0u32;
            mux::run_channel(
                &channel,
                connector,
                &node.hello,
                &node.changed,
                |ch, event| match event {
                    ChannelEvent::Connected => failures = 0,
                    ChannelEvent::PeerSaid(peer) => log(format_args!(
                        "bus channel {}: {} publishes {} topics, subscribes to {}",
                        ch.name,
                        peer.service,
                        peer.publishes.len(),
                        peer.subscribes.len()
                    )),
                    ChannelEvent::ConnectFailed(e) => {
                        if failures == 0 {
                            log(format_args!(
                                "bus channel {}: waiting for the peer ({e})",
                                ch.name
                            ));
                        }
                        failures += 1;
                    }
                    ChannelEvent::Ended(end) => log(format_args!("bus channel {}: {end}", ch.name)),
                },
            )
            .await
        }));
    }

    /// Completes once every stream on every channel was closed by its driver and everything
    /// queued was written: a service that closed its publications and subscriptions and waits
    /// for this before it exits lets its peers see each stream end in order, rather than its
    /// channels vanish with its domain.
    pub async fn closed(&self) {
        let inner = &self.inner;
        inner
            .changed
            .wait_until(|| {
                inner
                    .channels
                    .borrow()
                    .iter()
                    .all(|c| c.is_closed_and_flushed())
            })
            .await
    }

    /// Whether the channel called `name` is connected (tests).
    #[cfg(test)]
    pub(crate) fn inner_channel_connected(&self, name: &str) -> bool {
        self.inner
            .channels
            .borrow()
            .iter()
            .any(|c| c.name == name && c.peer().is_some())
    }

    /// The names of the node's channels.
    pub fn channels(&self) -> Vec<String> {
        self.inner
            .channels
            .borrow()
            .iter()
            .map(|c| c.name.clone())
            .collect()
    }

    pub(crate) fn declared(
        &self,
        topic: TopicDecl,
        what: &'static str,
        list: &[TopicDecl],
    ) -> Result<(), NodeError> {
        match list.iter().find(|t| t.name == topic.name) {
            None => Err(NodeError::Undeclared {
                what,
                topic: topic.name,
            }),
            Some(declared) if declared.schema != topic.schema => {
                Err(NodeError::DeclaredOtherwise(topic.name))
            }
            Some(_) => Ok(()),
        }
    }

    /// Publishes a volatile `topic` to every peer that subscribes to it (a persistent one:
    /// [`publish_persistent`](Node::publish_persistent)).
    pub fn publish<K, T>(&self, topic: &Topic<K, T>) -> Result<Publication<K, T>, NodeError>
    where
        K: Key,
        T: Serialize + DeserializeOwned + 'static,
    {
        if topic.persistence() == Persistence::Persistent {
            return Err(NodeError::NeedsStorage(topic.name()));
        }
        self.declared(topic.decl(), "publish", self.inner.decl.publishes)?;
        let publisher = Publisher::new(bus::Topic::new(topic.name(), topic.schema()), Volatile)
            .map_err(|e| NodeError::Start(format!("{}: {e}", topic.name())))?;
        self.serve(topic.decl(), SharedPublisher::new(publisher))
            .map(|shared| Publication::new(shared, None))
    }

    /// Serves `shared` on every channel; `vault/Stored` is served to each peer filtered to the
    /// topics it publishes or subscribes to.
    pub(crate) fn serve<T, S>(
        &self,
        topic: TopicDecl,
        shared: SharedPublisher<T, S>,
    ) -> Result<SharedPublisher<T, S>, NodeError>
    where
        T: Serialize + DeserializeOwned + 'static,
        S: bus::Storage + 'static,
    {
        if self.inner.published.borrow().contains(&topic.name) {
            return Err(NodeError::AlreadyPublished(topic.name));
        }
        self.inner.published.borrow_mut().push(topic.name);
        let index = self
            .inner
            .decl
            .publishes
            .iter()
            .position(|t| t.name == topic.name)
            .unwrap_or_default() as u16;
        for channel in self.inner.channels.borrow().iter() {
            let accept = Accept {
                channel: channel.clone(),
                changed: self.inner.changed.clone(),
                index,
            };
            let shared = shared.clone();
            if topic.name == topics::vault::STORED.name() {
                let channel = channel.clone();
                let filter = move || Some(crate::persist::stored_filter(channel.peer()));
                (self.inner.spawn)(Box::pin(async move {
                    shared.serve_filtered(accept, filter, |_| {}).await
                }));
            } else {
                (self.inner.spawn)(Box::pin(async move { shared.serve(accept, |_| {}).await }));
            }
        }
        Ok(shared)
    }

    /// Subscribes to `topic`, from whichever peer publishes it.
    pub fn subscribe<K, T>(&self, topic: &Topic<K, T>) -> Result<Subscription<T>, NodeError>
    where
        T: DeserializeOwned + PartialEq + Clone + 'static,
    {
        let declared = self.declared(topic.decl(), "subscribe", self.inner.decl.subscribes);
        if let Err(error) = declared {
            self.declared(topic.decl(), "subscribe", self.inner.decl.watches)
                .map_err(|_| error)?;
        }
        let subscription = Subscription::new(bus::Topic::new(topic.name(), topic.schema()));
        let finder = FindPublisher {
            node: self.inner.clone(),
            topic: topic.decl(),
            refused: Vec::new(),
        };
        let driver = subscription.clone();
        (self.inner.spawn)(Box::pin(async move { driver.run(finder).await }));
        self.seed_from_vault(topic.decl(), &subscription);
        Ok(subscription)
    }
}

/// A publication of a typed table (see [`Node::publish`] and [`Node::publish_persistent`]).
pub struct Publication<K, T> {
    shared: SharedPublisher<T>,
    /// For a persistent table: the vault's copy.
    stored: Option<Rc<crate::persist::StoredMirror>>,
    key: core::marker::PhantomData<fn(K)>,
}

impl<K, T> Clone for Publication<K, T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            stored: self.stored.clone(),
            key: core::marker::PhantomData,
        }
    }
}

impl<K, T> Publication<K, T> {
    pub(crate) fn new(
        shared: SharedPublisher<T>,
        stored: Option<Rc<crate::persist::StoredMirror>>,
    ) -> Self {
        Self {
            shared,
            stored,
            key: core::marker::PhantomData,
        }
    }

    pub(crate) fn stored(&self) -> Option<Rc<crate::persist::StoredMirror>> {
        self.stored.clone()
    }
}

impl<K: Key, T: Serialize + DeserializeOwned> Publication<K, T> {
    /// Creates or replaces the object at `key`.
    pub fn publish(
        &self,
        key: &K,
        value: &T,
    ) -> Result<(), PublishError<core::convert::Infallible>> {
        self.shared.publish(&key.to_key(), value)
    }

    /// Deletes the object at `key`; returns whether there was one.
    pub fn unpublish(&self, key: &K) -> Result<bool, PublishError<core::convert::Infallible>> {
        self.shared.unpublish(&key.to_key())
    }

    /// Stops serving the table: subscribers see their streams end.
    pub fn close(&self) {
        self.shared.close()
    }

    /// The untyped publisher underneath.
    pub fn shared(&self) -> &SharedPublisher<T> {
        &self.shared
    }
}

/// Why a subscription could not connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaMismatch(String);

impl fmt::Display for SchemaMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Connects a subscription to whichever peer publishes its topic.
struct FindPublisher {
    node: Rc<Inner>,
    topic: TopicDecl,
    /// The connections (channel, number) whose publisher was refused already.
    refused: Vec<(String, u64)>,
}

impl Connector for FindPublisher {
    type Stream = MuxStream;
    type Error = SchemaMismatch;

    async fn connect(&mut self) -> Result<MuxStream, SchemaMismatch> {
        loop {
            let seen = self.node.changed.generation();
            let channels = self.node.channels.borrow().clone();
            for channel in &channels {
                let Some(peer) = channel.peer() else {
                    continue;
                };
                let Some(index) = peer
                    .publishes
                    .iter()
                    .position(|(n, _)| n == self.topic.name)
                else {
                    continue;
                };
                let schema = peer.publishes[index].1;
                if schema != self.topic.schema {
                    let at = (channel.name.clone(), channel.connection());
                    if self.refused.contains(&at) {
                        continue;
                    }
                    self.refused.push(at);
                    return Err(SchemaMismatch(format!(
                        "{}: {} subscribes to schema {}, but {} publishes schema {}",
                        self.topic.name, self.node.service, self.topic.schema, peer.service, schema
                    )));
                }
                let index = index as u16;
                if let Some(Some(generation)) = channel.with_mux(|mux| mux.open(index)) {
                    return Ok(stream_of(
                        channel,
                        &self.node.changed,
                        mux::state::Slot::Subscribed(index),
                        generation,
                    ));
                }
            }
            self.node.changed.changed_since(seen).await;
        }
    }
}
