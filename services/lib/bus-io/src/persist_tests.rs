//! Persistent tables through a vault: restore, seeding, durability, and what each peer may see.

use alloc::rc::Rc;

use bus::OwnedEvent;
use declare::{Declaration, Needs};
use serde::{Deserialize, Serialize};
use topics::vault::{stored_key, Stored, STORED};
use topics::{Global, Topic};

use crate::testing::{pipe, run, Offered, Tasks};
use crate::{Node, NodeError, Update};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Count(u64);

const KEPT: Topic<Global, Count> = Topic::persistent("counter/Kept", 1);
const SECRET: Topic<Global, Count> = Topic::persistent("other/Secret", 1);

static VAULT: Declaration = Declaration {
    memory_floor_mib: 4,
    needs: Needs::NONE,
    publishes: &[STORED.decl()],
    subscribes: &[],
    watches: &[],
};
static COUNTER: Declaration = Declaration {
    memory_floor_mib: 4,
    needs: Needs::NONE,
    publishes: &[KEPT.decl()],
    subscribes: &[STORED.decl()],
    watches: &[],
};
static READER: Declaration = Declaration {
    memory_floor_mib: 4,
    needs: Needs::NONE,
    publishes: &[],
    subscribes: &[KEPT.decl(), STORED.decl()],
    watches: &[],
};
static NO_VAULT: Declaration = Declaration {
    memory_floor_mib: 4,
    needs: Needs::NONE,
    publishes: &[KEPT.decl()],
    subscribes: &[],
    watches: &[],
};

static WATCHER: Declaration = Declaration {
    memory_floor_mib: 4,
    needs: Needs::NONE,
    publishes: &[KEPT.decl()],
    subscribes: &[],
    watches: &[STORED.decl()],
};

fn log(_: core::fmt::Arguments<'_>) {}

fn node(name: &str, decl: &'static Declaration, tasks: &Rc<Tasks>) -> Node {
    let tasks = tasks.clone();
    Node::new(name, decl, move |task| tasks.spawn(task), log)
}

/// Joins `a` and `b` by a channel (each names it after the other), connected at once.
fn join(a: &Node, b: &Node) {
    let (to_a, to_b) = (Offered::new(), Offered::new());
    a.add_channel(b.service(), to_a.clone());
    b.add_channel(a.service(), to_b.clone());
    let (x, y) = pipe(4096);
    to_a.offer(x);
    to_b.offer(y);
}

fn stored(value: u64) -> Stored {
    Stored {
        bytes: postcard::to_allocvec(&Count(value)).unwrap(),
    }
}

#[test]
fn a_persistent_table_is_restored_seeded_and_made_durable_through_the_vault() {
    let tasks = Rc::new(Tasks::default());
    let vault = node("vault", &VAULT, &tasks);
    let counter = node("counter", &COUNTER, &tasks);
    let reader = node("reader", &READER, &tasks);
    join(&vault, &counter);
    join(&vault, &reader);
    join(&counter, &reader);
    run(&tasks, async {
        // The vault comes up with what it committed before the reboot, and another service's
        // secret that neither counter nor reader may see.
        let table = vault.publish(&STORED).unwrap();
        table
            .publish(&stored_key(KEPT.name(), "global"), &stored(7))
            .unwrap();
        table
            .publish(&stored_key(SECRET.name(), "global"), &stored(99))
            .unwrap();

        // The reader sees the committed count before counter publishes anything.
        let counts = reader.subscribe(&KEPT).unwrap();
        loop {
            if let Update::Event(OwnedEvent::Created { value, .. }) = counts.next().await {
                assert_eq!(value, Count(7));
                break;
            }
        }

        // Counter restores its table from the vault, then counts on.
        let kept = counter.publish_persistent(&KEPT).await.unwrap();
        assert_eq!(kept.shared().with(|p| p.get("global")), Some(Count(7)));
        kept.publish(&Global, &Count(8)).unwrap();
        loop {
            if let Update::Event(OwnedEvent::Modified { new, .. }) = counts.next().await {
                assert_eq!(new, Count(8));
                break;
            }
        }

        // Durable once the vault committed 8 (here: published it back).
        let published = table.clone();
        let commit = async move {
            published
                .publish(&stored_key(KEPT.name(), "global"), &stored(8))
                .unwrap();
        };
        let (_, ()) = futures_join(kept.durable(), commit).await;

        // Nobody but the vault saw the other service's secret.
        let sees_secret = |node: &Node| {
            node.stored()
                .unwrap()
                .with_view(|keys| keys.iter().any(|k| k.starts_with(SECRET.name())))
        };
        assert!(!sees_secret(&counter) && !sees_secret(&reader));
        assert!(counter.stored().unwrap().with_view(|keys| keys.len() == 1));
    });
}

#[test]
fn a_persistent_table_needs_the_vault_declared() {
    let tasks = Rc::new(Tasks::default());
    let lonely = node("counter", &NO_VAULT, &tasks);
    let result = run(&tasks, async {
        lonely.publish_persistent(&KEPT).await.err()
    });
    assert_eq!(result, Some(NodeError::NeedsStorage("counter/Kept")));
    let vault = node("vault", &VAULT, &tasks);
    assert_eq!(
        run(&tasks, async {
            vault.publish_persistent(&KEPT).await.err()
        }),
        Some(NodeError::Undeclared {
            what: "publish",
            topic: "counter/Kept"
        })
    );
}

#[test]
fn a_vault_only_watched_restores_the_table_like_a_subscribed_one() {
    // (With no vault in the node, the publication waits for one, as a watch waits for its
    // publisher: zedrouter runs it in a task of its own and then keeps no leases.)
    // With one: restored like a subscriber's.
    let tasks = Rc::new(Tasks::default());
    let vault = node("vault", &VAULT, &tasks);
    let watcher = node("router", &WATCHER, &tasks);
    join(&vault, &watcher);
    let restored = run(&tasks, async {
        let table = vault.publish(&STORED).unwrap();
        table
            .publish(&stored_key(KEPT.name(), "global"), &stored(5))
            .unwrap();
        let kept = watcher.publish_persistent(&KEPT).await.unwrap();
        kept.shared().with(|p| p.get("global"))
    });
    assert_eq!(restored, Some(Count(5)));
}

/// Runs two futures to completion together.
async fn futures_join<A: core::future::Future, B: core::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    let (mut a, mut b) = (core::pin::pin!(a), core::pin::pin!(b));
    let (mut ra, mut rb) = (None, None);
    core::future::poll_fn(|cx| {
        if ra.is_none() {
            if let core::task::Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let core::task::Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        if ra.is_some() && rb.is_some() {
            core::task::Poll::Ready(())
        } else {
            core::task::Poll::Pending
        }
    })
    .await;
    (ra.unwrap(), rb.unwrap())
}
