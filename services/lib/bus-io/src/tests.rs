//! The drivers against each other over in-memory pipes: synchronisation, live changes, a peer
//! that disappears and comes back, a restarted publisher, protocol errors, backpressure, close.

use alloc::{format, rc::Rc, string::String, vec::Vec};
use core::cell::RefCell;

use bus::{FrameError, OwnedEvent, ProtocolError, Publisher, Topic, Volatile};

use crate::testing::{pipe, run, yield_now, Offered, PipeEnd, Tasks};
use crate::{EndReason, Link, SharedPublisher, Subscription, Update};

const TOPIC: Topic = Topic::new("test/numbers", 1);

/// A publisher, a subscription, and the connectors the test feeds them through.
struct Node {
    tasks: Tasks,
    publisher: SharedPublisher<u32>,
    subscription: Subscription<u32>,
    publisher_side: Offered<PipeEnd>,
    subscriber_side: Offered<PipeEnd>,
    /// What the publisher's driver reported.
    publisher_links: Rc<RefCell<Vec<Link>>>,
}

impl Node {
    fn new(subscription: Subscription<u32>) -> Node {
        let node = Node {
            tasks: Tasks::default(),
            publisher: SharedPublisher::new(Publisher::new(TOPIC, Volatile).unwrap()),
            subscription,
            publisher_side: Offered::new(),
            subscriber_side: Offered::new(),
            publisher_links: Rc::default(),
        };
        node.serve(node.publisher.clone());
        let (subscription, connector) = (node.subscription.clone(), node.subscriber_side.clone());
        node.tasks
            .spawn(async move { subscription.run(connector).await });
        node
    }

    /// Starts a driver serving `publisher` through the publisher side's connector.
    fn serve(&self, publisher: SharedPublisher<u32>) {
        let (connector, links) = (self.publisher_side.clone(), self.publisher_links.clone());
        self.tasks.spawn(async move {
            publisher
                .serve(connector, |link| links.borrow_mut().push(link))
                .await
        });
    }

    /// Connects both sides through a new pipe of `capacity` bytes each way; returns a handle
    /// that cuts it.
    fn connect(&self, capacity: usize) -> crate::testing::Cutter {
        let (publisher_end, subscriber_end) = pipe(capacity);
        let cutter = publisher_end.cutter();
        self.publisher_side.offer(publisher_end);
        self.subscriber_side.offer(subscriber_end);
        cutter
    }

    /// The next `n` updates.
    async fn next(&self, n: usize) -> Vec<Update<u32>> {
        let mut updates = Vec::new();
        while updates.len() < n {
            updates.push(self.subscription.next().await);
        }
        updates
    }
}

fn created(key: &str, value: u32) -> Update<u32> {
    Update::Event(OwnedEvent::Created {
        key: key.into(),
        value,
    })
}

fn modified(key: &str, old: u32, new: u32) -> Update<u32> {
    Update::Event(OwnedEvent::Modified {
        key: key.into(),
        old,
        new,
    })
}

fn deleted(key: &str, value: u32) -> Update<u32> {
    Update::Event(OwnedEvent::Deleted {
        key: key.into(),
        value,
    })
}

const SYNCHRONIZED: Update<u32> = Update::Event(OwnedEvent::Synchronized);
const CONNECTED: Update<u32> = Update::Link(Link::Connected);
const PEER_CLOSED: Update<u32> = Update::Link(Link::Ended(EndReason::PeerClosed));

#[test]
fn a_subscription_synchronises_then_follows_live_changes() {
    let node = Node::new(Subscription::new(TOPIC));
    node.publisher.publish("a", &1).unwrap();
    node.publisher.publish("b", &2).unwrap();
    node.connect(64);
    run(&node.tasks, async {
        assert_eq!(
            node.next(4).await,
            [CONNECTED, created("a", 1), created("b", 2), SYNCHRONIZED]
        );
        node.publisher.publish("a", &3).unwrap();
        node.publisher.unpublish("b").unwrap();
        node.publisher.publish("c", &4).unwrap();
        assert_eq!(
            node.next(3).await,
            [modified("a", 1, 3), deleted("b", 2), created("c", 4)]
        );
    });
    assert_eq!(*node.publisher_links.borrow(), [Link::Connected]);
    node.subscription.with(|view| {
        assert!(view.is_synchronized());
        assert_eq!(view.iter().collect::<Vec<_>>(), [("a", &3), ("c", &4)]);
    });
}

#[test]
fn after_a_cut_both_sides_reconnect_and_exactly_the_missed_changes_are_reported() {
    let node = Node::new(Subscription::new(TOPIC));
    for (key, value) in [("a", 1), ("b", 2), ("d", 4), ("e", 5)] {
        node.publisher.publish(key, &value).unwrap();
    }
    let cutter = node.connect(64);
    run(&node.tasks, async {
        assert_eq!(node.next(6).await.last(), Some(&SYNCHRONIZED));
        cutter.cut();
        assert_eq!(node.next(1).await, [PEER_CLOSED]);
        // While disconnected: a change, a deletion, a creation, and a change undone.
        node.publisher.publish("a", &10).unwrap();
        node.publisher.unpublish("b").unwrap();
        node.publisher.publish("c", &3).unwrap();
        node.publisher.publish("e", &50).unwrap();
        node.publisher.publish("e", &5).unwrap();
        node.connect(64);
        assert_eq!(
            node.next(5).await,
            [
                CONNECTED,
                modified("a", 1, 10),
                created("c", 3),
                deleted("b", 2),
                SYNCHRONIZED
            ]
        );
        node.publisher.publish("d", &40).unwrap();
        assert_eq!(node.next(1).await, [modified("d", 4, 40)]);
    });
    assert_eq!(
        *node.publisher_links.borrow(),
        [
            Link::Connected,
            Link::Ended(EndReason::PeerClosed),
            Link::Connected
        ]
    );
    assert_eq!(node.subscription.queued(), 0, "nothing reported twice");
}

#[test]
fn a_restarted_publisher_is_resynchronised_with_only_the_differences() {
    let node = Node::new(Subscription::new(TOPIC));
    node.publisher.publish("a", &1).unwrap();
    node.publisher.publish("b", &2).unwrap();
    node.connect(64);
    run(&node.tasks, async {
        assert_eq!(node.next(4).await.last(), Some(&SYNCHRONIZED));
        // The publisher dies: its driver closes the connection.
        node.publisher.close();
        assert_eq!(node.next(1).await, [PEER_CLOSED]);
        // Its next life starts empty (volatile), republishes what it rebuilt, then says so.
        let reborn = SharedPublisher::new(Publisher::new(TOPIC, Volatile).unwrap());
        reborn.publish("a", &1).unwrap();
        reborn.publish("c", &3).unwrap();
        reborn.signal_restarted();
        node.serve(reborn);
        node.connect(64);
        assert_eq!(
            node.next(5).await,
            [
                CONNECTED,
                created("c", 3),
                deleted("b", 2),
                Update::Event(OwnedEvent::Restarted),
                SYNCHRONIZED
            ]
        );
    });
}

#[test]
fn a_protocol_error_ends_the_connection_and_the_subscription_reconnects() {
    let node = Node::new(Subscription::new(TOPIC));
    node.publisher.publish("a", &1).unwrap();
    let (mut impostor, subscriber_end) = pipe(64);
    node.subscriber_side.offer(subscriber_end);
    run(&node.tasks, async {
        use crate::ByteStream;
        assert_eq!(node.next(1).await, [CONNECTED]);
        impostor.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        assert_eq!(
            node.next(1).await,
            [Update::Link(Link::Ended(EndReason::Protocol(
                ProtocolError::Frame(FrameError::BadMagic { found: *b"HT" })
            )))]
        );
        // The impostor sees the subscription go.
        let mut rest = [0; 64];
        while impostor.read(&mut rest).await.unwrap() > 0 {}
        node.connect(64);
        assert_eq!(
            node.next(3).await,
            [CONNECTED, created("a", 1), SYNCHRONIZED]
        );
    });
}

#[test]
fn connection_failures_are_reported_and_retried() {
    let node = Node::new(Subscription::new(TOPIC));
    node.subscriber_side.fail("no peer yet");
    node.subscriber_side.fail("no peer yet");
    node.connect(64);
    run(&node.tasks, async {
        let no_peer = Update::Link(Link::ConnectFailed("no peer yet".into()));
        assert_eq!(
            node.next(4).await,
            [no_peer.clone(), no_peer, CONNECTED, SYNCHRONIZED]
        );
    });
}

#[test]
fn a_slow_application_stops_the_reader_and_loses_nothing() {
    const MAX_QUEUED: usize = 2;
    let node = Node::new(Subscription::with_max_queued(TOPIC, MAX_QUEUED));
    let keys: Vec<String> = (0..50).map(|i| format!("key-{i:02}")).collect();
    for (value, key) in (0u32..).zip(&keys) {
        node.publisher.publish(key, &value).unwrap();
    }
    // Sixteen bytes each way: one read holds at most two frames' worth of events.
    node.connect(16);
    let most_queued = run(&node.tasks, async {
        let mut most_queued = 0;
        let mut updates = Vec::new();
        while updates.last() != Some(&SYNCHRONIZED) {
            for _ in 0..8 {
                yield_now().await;
            }
            most_queued = most_queued.max(node.subscription.queued());
            updates.push(node.subscription.next().await);
        }
        let mut expected = Vec::from([CONNECTED]);
        expected.extend((0u32..).zip(&keys).map(|(value, key)| created(key, value)));
        expected.push(SYNCHRONIZED);
        assert_eq!(updates, expected);
        most_queued
    });
    assert!(
        most_queued <= MAX_QUEUED + 2,
        "the reader went on while the application lagged: {most_queued} queued"
    );
}

#[test]
fn changes_coalesce_while_the_stream_is_busy() {
    let node = Node::new(Subscription::new(TOPIC));
    node.connect(1);
    run(&node.tasks, async {
        assert_eq!(node.next(2).await, [CONNECTED, SYNCHRONIZED]);
        for value in 1..=100 {
            node.publisher.publish("a", &value).unwrap();
        }
        // The bus sends the latest state once the stream has room, not a hundred frames.
        assert_eq!(node.next(1).await, [created("a", 100)]);
        for _ in 0..100 {
            yield_now().await;
        }
        assert_eq!(node.subscription.queued(), 0);
    });
}

#[test]
fn closing_ends_the_drivers_and_the_peer_sees_the_connection_end() {
    let node = Node::new(Subscription::new(TOPIC));
    node.publisher.publish("a", &1).unwrap();
    node.connect(64);
    run(&node.tasks, async {
        assert_eq!(node.next(3).await.last(), Some(&SYNCHRONIZED));
        node.subscription.close();
        assert_eq!(
            node.next(1).await,
            [Update::Link(Link::Ended(EndReason::Closed))]
        );
        while node.publisher_links.borrow().len() < 2 {
            yield_now().await;
        }
        node.publisher.close();
    });
    run(&node.tasks, async {
        for _ in 0..10 {
            yield_now().await;
        }
    });
    assert!(node.tasks.all_done(), "a driver is still running");
    assert_eq!(
        *node.publisher_links.borrow(),
        [Link::Connected, Link::Ended(EndReason::PeerClosed)]
    );
    assert_eq!(node.subscription.queued(), 0);
    assert_eq!(node.subscriber_side.attempts.get(), 1, "no reconnection");
}
