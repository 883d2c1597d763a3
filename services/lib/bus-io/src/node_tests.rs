//! Two nodes on one multiplexed channel: both directions, several topics, a cut channel, a
//! schema mismatch, undeclared topics.

use alloc::{rc::Rc, string::String, vec::Vec};
use core::cell::RefCell;
use std::format;

use bus::OwnedEvent;
use declare::{Declaration, Needs, TopicDecl};
use serde::{Deserialize, Serialize};
use topics::{Global, Topic};

use crate::testing::{pipe, run, Offered, PipeEnd, Tasks};
use crate::{Node, NodeError, Update};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Count(u64);

const UP: Topic<Global, Count> = Topic::volatile("left/Up", 1);
const NAMES: Topic<String, String> = Topic::volatile("left/Names", 1);
const DOWN: Topic<Global, Count> = Topic::volatile("right/Down", 1);
const DOWN_V2: Topic<Global, Count> = Topic::volatile("right/Down", 2);

static LEFT: Declaration = Declaration {
    memory_floor_mib: 4,
    needs: Needs::NONE,
    publishes: &[UP.decl(), NAMES.decl()],
    subscribes: &[DOWN.decl()],
    watches: &[],
};
static RIGHT: Declaration = Declaration {
    memory_floor_mib: 4,
    needs: Needs::NONE,
    publishes: &[DOWN.decl()],
    subscribes: &[UP.decl(), NAMES.decl()],
    watches: &[],
};
static RIGHT_V2: Declaration = Declaration {
    memory_floor_mib: 4,
    needs: Needs::NONE,
    publishes: &[DOWN_V2.decl()],
    subscribes: &[],
    watches: &[],
};

std::thread_local! {
    static LOG: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn log(args: core::fmt::Arguments<'_>) {
    LOG.with(|l| l.borrow_mut().push(format!("{args}")));
}

fn node(name: &str, decl: &'static Declaration, tasks: &Rc<Tasks>) -> Node {
    let tasks = tasks.clone();
    Node::new(name, decl, move |task| tasks.spawn(task), log)
}

/// Two nodes joined by channels that the test offers, one connection at a time.
fn pair(
    left_decl: &'static Declaration,
    right_decl: &'static Declaration,
    tasks: &Rc<Tasks>,
) -> (Node, Node, Offered<PipeEnd>, Offered<PipeEnd>) {
    let (left, right) = (
        node("left", left_decl, tasks),
        node("right", right_decl, tasks),
    );
    let (to_left, to_right) = (Offered::new(), Offered::new());
    left.add_channel("right", to_left.clone());
    right.add_channel("left", to_right.clone());
    (left, right, to_left, to_right)
}

fn connect(
    to_left: &Offered<PipeEnd>,
    to_right: &Offered<PipeEnd>,
    capacity: usize,
) -> crate::testing::Cutter {
    let (a, b) = pipe(capacity);
    let cutter = a.cutter();
    to_left.offer(a);
    to_right.offer(b);
    cutter
}

async fn next_value<T: Clone + PartialEq + serde::de::DeserializeOwned>(
    sub: &crate::Subscription<T>,
) -> T {
    loop {
        if let Update::Event(
            OwnedEvent::Created { value, .. } | OwnedEvent::Modified { new: value, .. },
        ) = sub.next().await
        {
            return value;
        }
    }
}

#[test]
fn topics_flow_both_ways_on_one_channel_and_resync_after_a_cut() {
    let tasks = Rc::new(Tasks::default());
    let (left, right, to_left, to_right) = pair(&LEFT, &RIGHT, &tasks);
    // A small pipe: every stream is chopped into many frames and flow control matters.
    let cutter = connect(&to_left, &to_right, 64);
    run(&tasks, async {
        let up = left.publish(&UP).unwrap();
        let names = left.publish(&NAMES).unwrap();
        let down = right.publish(&DOWN).unwrap();
        let ups = right.subscribe(&UP).unwrap();
        let all_names = right.subscribe(&NAMES).unwrap();
        let downs = left.subscribe(&DOWN).unwrap();
        for n in 1..=20 {
            up.publish(&Global, &Count(n)).unwrap();
            assert_eq!(next_value(&ups).await, Count(n));
            down.publish(&Global, &Count(100 + n)).unwrap();
            assert_eq!(next_value(&downs).await, Count(100 + n));
        }
        // A table larger than the flow-control window, while the other topics stay live.
        let big = "x".repeat(1000);
        for i in 0..40 {
            names.publish(&format!("name{i:02}"), &big).unwrap();
        }
        up.publish(&Global, &Count(21)).unwrap();
        assert_eq!(next_value(&ups).await, Count(21));
        while all_names.with(|s| s.iter().count()) < 40 {
            let _ = all_names.next().await;
        }

        // Cut: both sides reconnect on a new connection and resynchronise.
        cutter.cut();
        up.publish(&Global, &Count(22)).unwrap();
        names.unpublish(&"name00".into()).unwrap();
        connect(&to_left, &to_right, 4096);
        assert_eq!(next_value(&ups).await, Count(22));
        loop {
            if let Update::Event(OwnedEvent::Deleted { key, .. }) = all_names.next().await {
                assert_eq!(key, "name00");
                break;
            }
        }
        down.publish(&Global, &Count(500)).unwrap();
        assert_eq!(next_value(&downs).await, Count(500));
    });
    let log = LOG.with(|l| l.borrow().clone());
    assert!(
        log.iter()
            .any(|l| l.contains("bus channel right: right publishes 1 topics, subscribes to 2")),
        "{log:?}"
    );
}

#[test]
fn a_schema_mismatch_is_refused_naming_both_sides() {
    let tasks = Rc::new(Tasks::default());
    let (left, _right, to_left, to_right) = pair(&LEFT, &RIGHT_V2, &tasks);
    connect(&to_left, &to_right, 4096);
    run(&tasks, async {
        let downs = left.subscribe(&DOWN).unwrap();
        loop {
            if let Update::Link(crate::Link::ConnectFailed(reason)) = downs.next().await {
                assert_eq!(
                    reason,
                    "right/Down: left subscribes to schema 1, but right publishes schema 2"
                );
                break;
            }
        }
    });
}

#[test]
fn only_declared_topics_may_be_used() {
    let tasks = Rc::new(Tasks::default());
    let (left, right, _, _) = pair(&LEFT, &RIGHT, &tasks);
    assert_eq!(
        left.publish(&DOWN).err(),
        Some(NodeError::Undeclared {
            what: "publish",
            topic: "right/Down"
        })
    );
    assert!(matches!(
        right.subscribe(&DOWN),
        Err(NodeError::Undeclared { .. })
    ));
    assert_eq!(
        right.publish(&DOWN_V2).err(),
        Some(NodeError::DeclaredOtherwise("right/Down"))
    );
    const KEPT: Topic<Global, Count> = Topic::persistent("left/Up", 1);
    assert_eq!(
        left.publish(&KEPT).err(),
        Some(NodeError::NeedsStorage("left/Up"))
    );
    left.publish(&UP).unwrap();
    assert_eq!(
        left.publish(&UP).err(),
        Some(NodeError::AlreadyPublished("left/Up"))
    );
    let _: &[TopicDecl] = LEFT.publishes;
}

#[test]
fn a_closing_service_ends_its_streams_in_order_before_it_goes() {
    let tasks = Rc::new(Tasks::default());
    let (left, right, to_left, to_right) = pair(&LEFT, &RIGHT, &tasks);
    connect(&to_left, &to_right, 256);
    run(&tasks, async {
        let up = left.publish(&UP).unwrap();
        let downs = left.subscribe(&DOWN).unwrap();
        let down = right.publish(&DOWN).unwrap();
        let ups = right.subscribe(&UP).unwrap();
        up.publish(&Global, &Count(1)).unwrap();
        down.publish(&Global, &Count(2)).unwrap();
        assert_eq!(next_value(&ups).await, Count(1));
        assert_eq!(next_value(&downs).await, Count(2));
        // Closing ends the streams with a `Close` each: the peer sees them end while the
        // channel stays up.
        up.close();
        downs.close();
        left.closed().await;
        loop {
            if let Update::Link(crate::Link::Ended(end)) = ups.next().await {
                assert_eq!(end, crate::EndReason::PeerClosed);
                break;
            }
        }
        assert!(right.inner_channel_connected("left"));
    });
}

/// Not a test of behaviour: prints how long 20,000 objects take through a node pair and
/// through a dedicated pipe (`cargo test --release -p lichen-bus-io throughput -- --ignored --nocapture`).
#[test]
#[ignore]
fn throughput_through_nodes_and_dedicated_pipes() {
    const N: u64 = 20_000;
    let names: Vec<String> = (0..N).map(|i| format!("s{i}")).collect();
    // Through the nodes.
    let tasks = Rc::new(Tasks::default());
    let (left, right, to_left, to_right) = pair(&LEFT, &RIGHT, &tasks);
    connect(&to_left, &to_right, 16 * 1024);
    let start = std::time::Instant::now();
    run(&tasks, async {
        let names_pub = left.publish(&NAMES).unwrap();
        let sub = right.subscribe(&NAMES).unwrap();
        for (i, name) in names.iter().enumerate() {
            names_pub.publish(name, &"x".repeat(64)).unwrap();
            if i % 128 == 127 {
                while names_pub
                    .shared()
                    .with(|p| p.sessions().any(|s| p.wants_to_send(s)))
                {
                    crate::testing::yield_now().await;
                }
            }
        }
        while sub.with(|s| s.iter().count()) < N as usize {
            let _ = sub.next().await;
            while sub.try_next().is_some() {}
        }
    });
    let node = start.elapsed();
    // Through a dedicated pipe.
    let tasks = Rc::new(Tasks::default());
    let start = std::time::Instant::now();
    run(&tasks, async {
        let publisher = crate::SharedPublisher::new(
            bus::Publisher::new(bus::Topic::new("left/Names", 1), bus::Volatile).unwrap(),
        );
        let sub = crate::Subscription::<String>::new(bus::Topic::new("left/Names", 1));
        let (a, b) = pipe(16 * 1024);
        let (oa, ob) = (Offered::new(), Offered::new());
        oa.offer(a);
        ob.offer(b);
        let p2 = publisher.clone();
        tasks.spawn(async move { p2.serve(oa, |_| {}).await });
        let s2 = sub.clone();
        tasks.spawn(async move { s2.run(ob).await });
        for (i, name) in names.iter().enumerate() {
            publisher.publish(name, &"x".repeat(64)).unwrap();
            if i % 128 == 127 {
                while publisher.with(|p| p.sessions().any(|s| p.wants_to_send(s))) {
                    crate::testing::yield_now().await;
                }
            }
        }
        while sub.with(|s| s.iter().count()) < N as usize {
            let _ = sub.next().await;
            while sub.try_next().is_some() {}
        }
    });
    let dedicated = start.elapsed();
    std::println!("{N} objects: node {node:?}, dedicated pipe {dedicated:?}");
}
