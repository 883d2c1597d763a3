//! The subscribing side: a subscriber whose driver keeps it connected and queues what happens
//! for the application.

use alloc::{collections::VecDeque, rc::Rc, string::ToString, vec};
use core::cell::{Cell, RefCell};

use bus::{OwnedEvent, Subscriber, Topic};
use serde::de::DeserializeOwned;

use crate::{
    link::{keep_connected, send_filled, EndReason, Link},
    notify::Notify,
    race::{race, First},
    stream::{ByteStream, Connector},
    CHUNK,
};

/// How many updates a subscription queues before its driver stops reading (the publisher then
/// coalesces changes per key until the application catches up).
pub const DEFAULT_MAX_QUEUED: usize = 256;

/// What a subscription reports to the application, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update<T> {
    /// The connection changed.
    Link(Link),
    /// The view changed (or was synchronised): see [`bus::Event`].
    Event(OwnedEvent<T>),
}

/// A [`Subscriber`] that a driver keeps connected while the application takes its updates.
///
/// Clones share the subscription. The driver ([`run`](Self::run)) applies what it receives to
/// the view at once and queues the resulting events; the application takes them with
/// [`next`](Self::next). The view survives reconnections: after one, the bus reports exactly the
/// changes that were missed.
pub struct Subscription<T> {
    inner: Rc<Inner<T>>,
}

struct Inner<T> {
    subscriber: RefCell<Subscriber<T>>,
    queue: RefCell<VecDeque<Update<T>>>,
    max_queued: usize,
    /// Notified when updates are queued.
    queued: Notify,
    /// Notified when the application took updates, and on close.
    taken: Notify,
    closed: Cell<bool>,
}

impl<T> Clone for Subscription<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T: DeserializeOwned + PartialEq + Clone> Subscription<T> {
    /// A subscription to `topic`, queueing up to [`DEFAULT_MAX_QUEUED`] updates.
    pub fn new(topic: Topic) -> Self {
        Self::with_max_queued(topic, DEFAULT_MAX_QUEUED)
    }

    /// A subscription to `topic` whose driver stops reading while `max_queued` updates (at least
    /// one) wait for the application.
    pub fn with_max_queued(topic: Topic, max_queued: usize) -> Self {
        Self {
            inner: Rc::new(Inner {
                subscriber: RefCell::new(Subscriber::new(topic)),
                queue: RefCell::new(VecDeque::new()),
                max_queued: max_queued.max(1),
                queued: Notify::default(),
                taken: Notify::default(),
                closed: Cell::new(false),
            }),
        }
    }

    /// Keeps the subscription connected through `connector` until [`close`](Self::close):
    /// connects, follows the connection until it ends, and connects again.
    pub async fn run<C: Connector>(&self, mut connector: C) {
        keep_connected(
            &mut connector,
            || self.is_closed(),
            || self.closing(),
            async |stream| self.follow(stream).await,
            |link| self.push(Update::Link(link)),
        )
        .await
    }

    /// Follows one connection until it ends: subscribes, then applies the synchronisation and
    /// every change the publisher sends.
    pub async fn follow<B: ByteStream>(&self, stream: &mut B) -> EndReason {
        self.inner.subscriber.borrow_mut().connect();
        let end = self.pump(stream).await;
        self.inner.subscriber.borrow_mut().disconnect();
        end
    }

    async fn pump<B: ByteStream>(&self, stream: &mut B) -> EndReason {
        let (mut out, mut input) = (vec![0; CHUNK], vec![0; CHUNK]);
        loop {
            let fill = |out: &mut [u8]| self.inner.subscriber.borrow_mut().fill(out);
            if let Err(end) = send_filled(stream, &mut out, fill, || self.closing()).await {
                return end;
            }
            if !self.room_in_queue().await {
                return EndReason::Closed;
            }
            match race(stream.read(&mut input), self.closing()).await {
                First::Left(Ok(0)) => return EndReason::PeerClosed,
                First::Left(Ok(n)) => {
                    if let Err(error) = self.receive(&input[..n]) {
                        return EndReason::Protocol(error);
                    }
                }
                First::Left(Err(error)) => return EndReason::Stream(error.to_string()),
                First::Right(()) => return EndReason::Closed,
            }
        }
    }

    /// Puts an object kept by the vault into the view (`None`: its stored copy was deleted),
    /// queueing the events, while the publisher has never synchronised this subscription (see
    /// [`Subscriber::seed`]). A stored value that does not decode is dropped.
    pub fn seed(&self, key: &str, bytes: Option<&[u8]>) {
        {
            let mut queue = self.inner.queue.borrow_mut();
            let mut subscriber = self.inner.subscriber.borrow_mut();
            let push = |event: bus::Event<'_, T>| queue.push_back(Update::Event(event.to_owned()));
            match bytes {
                Some(bytes) => drop(subscriber.seed(key, bytes, push)),
                None => drop(subscriber.unseed(key, push)),
            }
        }
        self.inner.queued.notify();
    }

    /// Applies received bytes to the view and queues the events.
    fn receive(&self, bytes: &[u8]) -> Result<(), bus::ProtocolError> {
        let result = {
            let mut queue = self.inner.queue.borrow_mut();
            self.inner.subscriber.borrow_mut().receive(bytes, |event| {
                queue.push_back(Update::Event(event.to_owned()))
            })
        };
        self.inner.queued.notify();
        result
    }

    /// Waits while the queue is full; false once the subscription is closed.
    async fn room_in_queue(&self) -> bool {
        let has_room = || self.inner.queue.borrow().len() < self.inner.max_queued;
        self.inner
            .taken
            .wait_until(|| self.is_closed() || has_room())
            .await;
        !self.is_closed()
    }
}

impl<T> Subscription<T> {
    /// Runs `f` on the subscriber, e.g. to read the view. The view may be ahead of the updates
    /// not taken yet.
    pub fn with<R>(&self, f: impl FnOnce(&Subscriber<T>) -> R) -> R {
        f(&self.inner.subscriber.borrow())
    }

    /// The next update, waiting for one.
    pub async fn next(&self) -> Update<T> {
        loop {
            let seen = self.inner.queued.generation();
            if let Some(update) = self.try_next() {
                return update;
            }
            self.inner.queued.changed_since(seen).await;
        }
    }

    /// The next update, if one is queued.
    pub fn try_next(&self) -> Option<Update<T>> {
        let update = self.inner.queue.borrow_mut().pop_front();
        if update.is_some() {
            self.inner.taken.notify();
        }
        update
    }

    /// How many updates are queued.
    pub fn queued(&self) -> usize {
        self.inner.queue.borrow().len()
    }

    /// Stops following: [`run`](Self::run) drops its connection and returns. The view and the
    /// queued updates stay.
    pub fn close(&self) {
        self.inner.closed.set(true);
        self.inner.taken.notify();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.get()
    }

    fn push(&self, update: Update<T>) {
        self.inner.queue.borrow_mut().push_back(update);
        self.inner.queued.notify();
    }

    /// Completes once the subscription is closed.
    async fn closing(&self) {
        self.inner.taken.wait_until(|| self.is_closed()).await
    }
}
