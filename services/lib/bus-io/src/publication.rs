//! The publishing side: a publisher shared between the application, which changes its table, and
//! the drivers that serve it to subscriber connections.

use alloc::{rc::Rc, string::ToString, vec};
use core::cell::{Cell, RefCell};

use bus::{KeyFilter, PublishError, Publisher, SessionId, Storage, Volatile};
use serde::{de::DeserializeOwned, Serialize};

use crate::{
    link::{keep_connected, send_filled, EndReason, Link},
    notify::Notify,
    race::{race, First},
    stream::{ByteStream, Connector},
    CHUNK,
};

/// A [`Publisher`] that the application changes while drivers serve it.
///
/// Clones share the publisher. Every change wakes the drivers, which send it to their
/// subscribers as their streams take it (a slow subscriber makes changes coalesce in the bus,
/// never pile up here).
pub struct SharedPublisher<T, S = Volatile> {
    inner: Rc<Inner<T, S>>,
}

struct Inner<T, S> {
    publisher: RefCell<Publisher<T, S>>,
    /// Notified on every change of the table and on close.
    changed: Notify,
    closed: Cell<bool>,
}

impl<T, S> Clone for SharedPublisher<T, S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Serialize + DeserializeOwned, S: Storage> SharedPublisher<T, S> {
    /// Shares `publisher`.
    pub fn new(publisher: Publisher<T, S>) -> Self {
        Self {
            inner: Rc::new(Inner {
                publisher: RefCell::new(publisher),
                changed: Notify::default(),
                closed: Cell::new(false),
            }),
        }
    }

    /// Creates or replaces the object at `key` (see [`Publisher::publish`]).
    pub fn publish(&self, key: &str, value: &T) -> Result<(), PublishError<S::Error>> {
        let result = self.inner.publisher.borrow_mut().publish(key, value);
        self.inner.changed.notify();
        result
    }

    /// Deletes the object at `key`; returns whether there was one (see
    /// [`Publisher::unpublish`]).
    pub fn unpublish(&self, key: &str) -> Result<bool, PublishError<S::Error>> {
        let result = self.inner.publisher.borrow_mut().unpublish(key);
        self.inner.changed.notify();
        result
    }

    /// Serves the table over connections from `connector` until [`close`](Self::close):
    /// connects, serves the connection until it ends, and connects again. Reports each change
    /// of the connection to `on_link`.
    pub async fn serve<C: Connector>(&self, connector: C, on_link: impl FnMut(Link)) {
        self.serve_filtered(connector, || None, on_link).await
    }

    /// As [`serve`](Self::serve), each connection seeing only the keys of the filter that
    /// `filter` gives when it opens (see [`Publisher::connect_filtered`]).
    pub async fn serve_filtered<C: Connector>(
        &self,
        mut connector: C,
        filter: impl Fn() -> Option<KeyFilter>,
        on_link: impl FnMut(Link),
    ) {
        keep_connected(
            &mut connector,
            || self.is_closed(),
            || self.closing(),
            async |stream| self.serve_stream_filtered(stream, filter()).await,
            on_link,
        )
        .await
    }

    /// Serves the table over one connection, until it ends: a new subscriber session that sends
    /// a full synchronisation, then every change.
    pub async fn serve_stream<B: ByteStream>(&self, stream: &mut B) -> EndReason {
        self.serve_stream_filtered(stream, None).await
    }

    async fn serve_stream_filtered<B: ByteStream>(
        &self,
        stream: &mut B,
        filter: Option<KeyFilter>,
    ) -> EndReason {
        let session = self.inner.publisher.borrow_mut().connect_filtered(filter);
        let end = self.pump(session, stream).await;
        self.inner.publisher.borrow_mut().disconnect(session);
        end
    }

    async fn pump<B: ByteStream>(&self, session: SessionId, stream: &mut B) -> EndReason {
        let (mut out, mut input) = (vec![0; CHUNK], vec![0; CHUNK]);
        loop {
            // Taken before looking at the table: a change made while we write or read below
            // moves it, so it is never missed.
            let seen = self.inner.changed.generation();
            if self.is_closed() {
                return EndReason::Closed;
            }
            let fill = |out: &mut [u8]| self.inner.publisher.borrow_mut().fill(session, out);
            if let Err(end) = send_filled(stream, &mut out, fill, || self.closing()).await {
                return end;
            }
            let read = race(
                stream.read(&mut input),
                self.inner.changed.changed_since(seen),
            );
            match read.await {
                First::Left(Ok(0)) => return EndReason::PeerClosed,
                First::Left(Ok(n)) => {
                    let received = self
                        .inner
                        .publisher
                        .borrow_mut()
                        .receive(session, &input[..n]);
                    if let Err(error) = received {
                        return EndReason::Protocol(error);
                    }
                }
                First::Left(Err(error)) => return EndReason::Stream(error.to_string()),
                First::Right(()) => {}
            }
        }
    }
}

impl<T, S> SharedPublisher<T, S> {
    /// Runs `f` on the publisher, e.g. to read the table.
    pub fn with<R>(&self, f: impl FnOnce(&Publisher<T, S>) -> R) -> R {
        f(&self.inner.publisher.borrow())
    }

    /// Signals subscribers that this publisher restarted and republished its objects (see
    /// [`Publisher::signal_restarted`]).
    pub fn signal_restarted(&self) {
        self.inner.publisher.borrow_mut().signal_restarted();
        self.inner.changed.notify();
    }

    /// Stops serving: [`serve`](Self::serve) drops its connection (the peer sees it close) and
    /// returns. The table stays readable.
    pub fn close(&self) {
        self.inner.closed.set(true);
        self.inner.changed.notify();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.get()
    }

    /// Completes once the publication is closed.
    async fn closing(&self) {
        self.inner.changed.wait_until(|| self.is_closed()).await
    }
}
