//! End-to-end tests: publishers and subscribers talking through the in-memory loopback.

use alloc::{
    collections::{BTreeMap, BTreeSet},
    string::{String, ToString},
    vec,
    vec::Vec,
};

use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{
    loopback,
    wire::{self, Message},
    MemoryStorage, OwnedEvent, ProtocolError, Publisher, Refusal, SessionId, SessionStatus,
    Storage, Subscriber, Topic, Volatile,
};

/// A typical status object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Link {
    name: String,
    up: bool,
    mtu: u16,
}

const LINKS: Topic = Topic::new("nim/links", 1);

fn link(name: &str, up: bool) -> Link {
    Link {
        name: name.into(),
        up,
        mtu: 1500,
    }
}

/// A publisher, one subscriber and the connection between them.
struct Bus<T, S> {
    publisher: Publisher<T, S>,
    session: SessionId,
    subscriber: Subscriber<T>,
}

impl<T, S> Bus<T, S>
where
    T: Serialize + for<'de> Deserialize<'de> + PartialEq + Clone,
    S: Storage,
{
    fn new(mut publisher: Publisher<T, S>) -> Self {
        let session = publisher.connect();
        let mut subscriber = Subscriber::new(publisher.topic());
        subscriber.connect();
        Self {
            publisher,
            session,
            subscriber,
        }
    }

    /// Moves bytes until both sides are idle; returns the events reported.
    fn pump(&mut self, chunk: usize) -> Vec<OwnedEvent<T>> {
        let mut events = Vec::new();
        loopback::pump(
            &mut self.publisher,
            self.session,
            &mut self.subscriber,
            chunk,
            |event| events.push(event.to_owned()),
        )
        .unwrap();
        events
    }

    /// Moves one chunk of at most `chunk` bytes each way; returns the events reported.
    fn step(&mut self, chunk: usize) -> Vec<OwnedEvent<T>> {
        let mut events = Vec::new();
        let mut channel = vec![0; chunk];
        loopback::step(
            &mut self.publisher,
            self.session,
            &mut self.subscriber,
            &mut channel,
            |event| events.push(event.to_owned()),
        )
        .unwrap();
        events
    }

    /// Drops the connection and opens a new one, as a transport does after a break.
    fn reconnect(&mut self) {
        self.publisher.disconnect(self.session);
        self.subscriber.disconnect();
        self.session = self.publisher.connect();
        self.subscriber.connect();
    }

    /// Stops the publisher and starts it again on the same storage; the connection breaks and
    /// the subscriber reconnects to the new publisher.
    fn restart_publisher(self) -> Self {
        let topic = self.publisher.topic();
        let publisher = Publisher::new(topic, self.publisher.into_storage()).unwrap();
        let mut subscriber = self.subscriber;
        subscriber.disconnect();
        let mut bus = Self::new(publisher);
        bus.subscriber = subscriber;
        bus.subscriber.connect();
        bus
    }
}

fn created<T>(key: &str, value: T) -> OwnedEvent<T> {
    OwnedEvent::Created {
        key: key.into(),
        value,
    }
}

fn modified<T>(key: &str, old: T, new: T) -> OwnedEvent<T> {
    OwnedEvent::Modified {
        key: key.into(),
        old,
        new,
    }
}

fn deleted<T>(key: &str, value: T) -> OwnedEvent<T> {
    OwnedEvent::Deleted {
        key: key.into(),
        value,
    }
}

fn links_publisher<S: Storage>(storage: S) -> Publisher<Link, S> {
    let mut publisher = Publisher::new(LINKS, storage).unwrap();
    publisher.publish("eth1", &link("eth1", false)).unwrap();
    publisher.publish("eth0", &link("eth0", true)).unwrap();
    publisher
}

#[test]
fn initial_sync_delivers_every_object_then_synchronized() {
    let mut bus = Bus::new(links_publisher(Volatile));
    assert!(!bus.subscriber.is_synchronized());
    let events = bus.pump(64);
    assert_eq!(
        events,
        [
            created("eth0", link("eth0", true)),
            created("eth1", link("eth1", false)),
            OwnedEvent::Synchronized
        ]
    );
    assert!(bus.subscriber.is_synchronized());
    assert_eq!(bus.subscriber.get("eth1"), Some(&link("eth1", false)));
    assert_eq!(
        bus.publisher.session_status(bus.session),
        Some(SessionStatus::Live)
    );
}

#[test]
fn an_empty_table_synchronizes_at_once() {
    let mut bus = Bus::new(Publisher::<Link>::new(LINKS, Volatile).unwrap());
    assert_eq!(bus.pump(1), [OwnedEvent::Synchronized]);
    assert!(bus.subscriber.is_empty() && bus.subscriber.is_synchronized());
}

#[test]
fn live_changes_arrive_in_order() {
    let mut bus = Bus::new(links_publisher(Volatile));
    bus.pump(64);
    bus.publisher
        .publish("wlan0", &link("wlan0", false))
        .unwrap();
    bus.publisher.publish("eth1", &link("eth1", true)).unwrap();
    bus.publisher.unpublish("eth0").unwrap();
    assert_eq!(
        bus.pump(7),
        [
            created("wlan0", link("wlan0", false)),
            modified("eth1", link("eth1", false), link("eth1", true)),
            deleted("eth0", link("eth0", true)),
        ]
    );
    assert_eq!(
        bus.subscriber
            .iter()
            .map(|(key, _)| key)
            .collect::<Vec<_>>(),
        ["eth1", "wlan0"]
    );
}

#[test]
fn republishing_an_equal_value_sends_nothing() {
    let mut bus = Bus::new(links_publisher(Volatile));
    bus.pump(64);
    bus.publisher.publish("eth0", &link("eth0", true)).unwrap();
    assert!(!bus.publisher.wants_to_send(bus.session));
    assert_eq!(bus.pump(64), []);
}

#[test]
fn a_slow_subscriber_gets_only_the_latest_state_of_each_key() {
    let mut bus = Bus::new(Publisher::<u32>::new(LINKS, Volatile).unwrap());
    bus.pump(64);
    for value in 1..=1000 {
        bus.publisher.publish("counter", &value).unwrap();
        bus.publisher
            .publish(if value % 2 == 0 { "even" } else { "odd" }, &value)
            .unwrap();
    }
    assert_eq!(
        bus.pump(64),
        [
            created("counter", 1000),
            created("odd", 999),
            created("even", 1000)
        ]
    );
}

#[test]
fn coalescing_waits_for_room_in_the_channel() {
    let mut bus = Bus::new(Publisher::<u32>::new(LINKS, Volatile).unwrap());
    bus.pump(64);
    bus.publisher.publish("a", &1).unwrap();
    // The channel takes half a frame: that frame is committed, the next change waits as a key.
    let mut half = [0; 8];
    let written = bus.publisher.fill(bus.session, &mut half);
    bus.publisher.publish("a", &2).unwrap();
    bus.publisher.publish("a", &3).unwrap();
    let mut events = Vec::new();
    bus.subscriber
        .receive(&half[..written], |event| events.push(event.to_owned()))
        .unwrap();
    events.extend(bus.pump(64));
    assert_eq!(events, [created("a", 1), modified("a", 1, 3)]);
}

#[test]
fn an_overflowing_subscriber_is_resynchronised_with_only_the_differences() {
    let mut publisher = Publisher::<u32>::new(LINKS, Volatile)
        .unwrap()
        .with_max_pending(4);
    for key in 0..10 {
        publisher.publish(&key.to_string(), &key).unwrap();
    }
    let mut bus = Bus::new(publisher);
    bus.pump(64);
    for key in 0..6 {
        bus.publisher.unpublish(&key.to_string()).unwrap();
    }
    bus.publisher.publish("7", &70).unwrap();
    bus.publisher.publish("new", &1).unwrap();
    let mut events = bus.pump(64);
    assert_eq!(
        events.pop(),
        Some(OwnedEvent::Synchronized),
        "a resync ends with Synchronized"
    );
    events.sort_by_key(event_key);
    let mut expected: Vec<_> = (0..6).map(|key| deleted(&key.to_string(), key)).collect();
    expected.extend([modified("7", 7, 70), created("new", 1)]);
    expected.sort_by_key(event_key);
    assert_eq!(events, expected);
}

fn event_key<T>(event: &OwnedEvent<T>) -> String {
    match event {
        OwnedEvent::Created { key, .. }
        | OwnedEvent::Modified { key, .. }
        | OwnedEvent::Deleted { key, .. } => key.clone(),
        OwnedEvent::Synchronized | OwnedEvent::Restarted => String::new(),
    }
}

#[test]
fn a_reconnection_mid_sync_reports_each_object_once() {
    let mut bus = Bus::new(links_publisher(Volatile));
    let mut events = Vec::new();
    for _ in 0..5 {
        events.extend(bus.step(16));
    }
    assert_eq!(events, [created("eth0", link("eth0", true))]);
    bus.reconnect();
    events.extend(bus.pump(3));
    assert_eq!(
        events,
        [
            created("eth0", link("eth0", true)),
            created("eth1", link("eth1", false)),
            OwnedEvent::Synchronized
        ]
    );
}

#[test]
fn a_persistent_table_survives_a_publisher_restart_without_duplicates() {
    let mut bus = Bus::new(links_publisher(MemoryStorage::default()));
    bus.pump(64);
    let mut bus = bus.restart_publisher();
    assert_eq!(bus.publisher.len(), 2);
    assert_eq!(bus.pump(64), [OwnedEvent::Synchronized]);
    bus.publisher.signal_restarted();
    assert_eq!(bus.pump(64), [OwnedEvent::Restarted]);
    assert!(bus.subscriber.publisher_restarted());
}

#[test]
fn a_volatile_table_comes_back_empty_after_a_publisher_restart() {
    let mut bus = Bus::new(links_publisher(Volatile));
    bus.pump(64);
    let mut bus = bus.restart_publisher();
    assert!(bus.publisher.is_empty());
    // The restarted publisher republishes one object before the subscriber reconnects.
    bus.publisher.publish("eth0", &link("eth0", true)).unwrap();
    bus.publisher.signal_restarted();
    assert_eq!(
        bus.pump(64),
        [
            deleted("eth1", link("eth1", false)),
            OwnedEvent::Restarted,
            OwnedEvent::Synchronized
        ]
    );
}

#[test]
fn the_restart_signal_is_reported_once_per_publisher_life() {
    let mut bus = Bus::new(links_publisher(MemoryStorage::default()));
    bus.publisher.signal_restarted();
    let events = bus.pump(64);
    assert_eq!(
        events[2..],
        [OwnedEvent::Restarted, OwnedEvent::Synchronized]
    );
    bus.publisher.signal_restarted();
    bus.reconnect();
    assert_eq!(bus.pump(64), [OwnedEvent::Synchronized]);
    let mut bus = bus.restart_publisher();
    assert_eq!(bus.pump(64), [OwnedEvent::Synchronized]);
    assert!(!bus.subscriber.publisher_restarted());
    bus.publisher.signal_restarted();
    assert_eq!(bus.pump(64), [OwnedEvent::Restarted]);
}

#[test]
fn a_subscription_to_another_topic_or_schema_is_refused() {
    let cases = [
        (
            Topic::new("nim/other", 1),
            Refusal::WrongTopic {
                published: LINKS.name.into(),
            },
        ),
        (
            Topic::new(LINKS.name, 2),
            Refusal::WrongSchema { published: 1 },
        ),
    ];
    for (topic, refusal) in cases {
        let mut publisher = links_publisher(Volatile);
        let session = publisher.connect();
        let mut subscriber = Subscriber::<Link>::new(topic);
        subscriber.connect();
        let error =
            loopback::pump(&mut publisher, session, &mut subscriber, 64, |_| {}).unwrap_err();
        assert_eq!(error, ProtocolError::Refused(refusal));
        assert_eq!(
            publisher.session_status(session),
            Some(SessionStatus::Closed)
        );
        assert!(!publisher.wants_to_send(session));
        assert!(!subscriber.is_connected());
    }
}

#[test]
fn a_repeated_frame_is_detected() {
    let mut bus = Bus::new(links_publisher(Volatile));
    bus.pump(64);
    bus.publisher.publish("eth0", &link("eth0", false)).unwrap();
    let mut frame = vec![0; 256];
    let length = bus.publisher.fill(bus.session, &mut frame);
    let frame = &frame[..length];
    bus.subscriber.receive(frame, |_| {}).unwrap();
    let error = bus.subscriber.receive(frame, |_| {}).unwrap_err();
    assert!(
        matches!(error, ProtocolError::OutOfSequence { .. }),
        "{error}"
    );
    assert!(!bus.subscriber.is_synchronized());
}

#[test]
fn a_value_of_another_type_is_rejected() {
    let mut publisher = Publisher::<String>::new(LINKS, Volatile).unwrap();
    publisher
        .publish("eth0", &"not a link".to_string())
        .unwrap();
    let session = publisher.connect();
    let mut subscriber = Subscriber::<Link>::new(LINKS);
    subscriber.connect();
    let mut buffer = [0; 256];
    let length = subscriber.fill(&mut buffer);
    publisher.receive(session, &buffer[..length]).unwrap();
    let length = publisher.fill(session, &mut buffer);
    let error = subscriber.receive(&buffer[..length], |_| {}).unwrap_err();
    assert!(
        matches!(
            error,
            ProtocolError::BadValue { .. } | ProtocolError::Malformed
        ),
        "{error}"
    );
}

#[test]
fn a_publisher_rejects_anything_but_one_subscribe() {
    let mut publisher = links_publisher(Volatile);
    let session = publisher.connect();
    let mut frame = Vec::new();
    wire::seal(&mut 0, Message::SyncStart, &mut frame);
    let error = publisher.receive(session, &frame).unwrap_err();
    assert_eq!(
        error,
        ProtocolError::Unexpected {
            message: "SyncStart"
        }
    );
    assert_eq!(
        publisher.session_status(session),
        Some(SessionStatus::Closed)
    );
    publisher.disconnect(session);
    assert_eq!(
        publisher.receive(session, &frame),
        Err(ProtocolError::NotConnected)
    );
}

#[test]
fn every_subscriber_gets_its_own_sync() {
    let mut publisher = links_publisher(Volatile);
    let first = publisher.connect();
    let mut early = Subscriber::<Link>::new(LINKS);
    early.connect();
    loopback::pump(&mut publisher, first, &mut early, 64, |_| {}).unwrap();
    publisher.publish("wlan0", &link("wlan0", true)).unwrap();
    let second = publisher.connect();
    let mut late = Subscriber::<Link>::new(LINKS);
    late.connect();
    loopback::pump(&mut publisher, second, &mut late, 64, |_| {}).unwrap();
    loopback::pump(&mut publisher, first, &mut early, 64, |_| {}).unwrap();
    assert_eq!(
        early.iter().collect::<Vec<_>>(),
        late.iter().collect::<Vec<_>>()
    );
    assert_eq!(late.len(), 3);
}

/// One step of a random scenario.
#[derive(Clone, Debug)]
enum Op {
    Publish(u8, u8),
    Unpublish(u8),
    /// Moves one chunk of this many bytes each way.
    Step(usize),
    /// Moves bytes until both sides are idle.
    Drain,
    Reconnect,
    RestartPublisher,
    SignalRestarted,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..8, 0u8..4).prop_map(|(key, value)| Op::Publish(key, value)),
        2 => (0u8..8).prop_map(Op::Unpublish),
        8 => (1usize..48).prop_map(Op::Step),
        1 => Just(Op::Drain),
        1 => Just(Op::Reconnect),
        1 => Just(Op::RestartPublisher),
        1 => Just(Op::SignalRestarted),
    ]
}

/// The view an application builds from the events alone; it fails on any event that does not
/// fit that view (a creation of a known key, a modification to an equal value, ...).
#[derive(Default)]
struct Model {
    objects: BTreeMap<String, u8>,
}

impl Model {
    fn apply(&mut self, event: &OwnedEvent<u8>) -> Result<(), TestCaseError> {
        match event {
            OwnedEvent::Created { key, value } => {
                prop_assert!(
                    self.objects.insert(key.clone(), *value).is_none(),
                    "created twice: {}",
                    key
                );
            }
            OwnedEvent::Modified { key, old, new } => {
                prop_assert_ne!(old, new);
                prop_assert_eq!(self.objects.insert(key.clone(), *new), Some(*old));
            }
            OwnedEvent::Deleted { key, value } => {
                prop_assert_eq!(self.objects.remove(key), Some(*value))
            }
            OwnedEvent::Synchronized | OwnedEvent::Restarted => {}
        }
        Ok(())
    }

    fn apply_all(&mut self, events: &[OwnedEvent<u8>]) -> Result<(), TestCaseError> {
        events.iter().try_for_each(|event| self.apply(event))
    }
}

/// Moves bytes until both sides are idle, then checks that the subscriber, still on the same
/// connection, has caught up with the table: no change was lost on the way.
fn drain<S: Storage>(bus: &mut Bus<u8, S>, model: &mut Model) -> Result<(), TestCaseError> {
    model.apply_all(&bus.pump(32))?;
    prop_assert!(bus.subscriber.is_synchronized());
    prop_assert_eq!(
        &model.objects,
        &table(&bus.publisher),
        "the live connection lost a change"
    );
    Ok(())
}

fn table<S: Storage>(publisher: &Publisher<u8, S>) -> BTreeMap<String, u8> {
    publisher
        .iter()
        .map(|(key, value)| (key.into(), value))
        .collect()
}

/// Runs `ops`, checking every event against the model and, whenever the connection drains, that
/// the subscriber caught up; then reconnects once more and checks that the resync reports
/// exactly the differences and leaves every view equal to the table.
fn check_scenario<S: Storage>(
    storage: S,
    max_pending: usize,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let mut bus = Bus::new(
        Publisher::<u8, S>::new(LINKS, storage)
            .unwrap()
            .with_max_pending(max_pending),
    );
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Publish(key, value) => bus.publisher.publish(&key.to_string(), &value).unwrap(),
            Op::Unpublish(key) => drop(bus.publisher.unpublish(&key.to_string()).unwrap()),
            Op::Step(chunk) => {
                model.apply_all(&bus.step(chunk))?;
            }
            Op::Drain => drain(&mut bus, &mut model)?,
            Op::Reconnect => bus.reconnect(),
            Op::RestartPublisher => bus = bus.restart_publisher(),
            Op::SignalRestarted => bus.publisher.signal_restarted(),
        }
        let view: BTreeMap<String, u8> = bus
            .subscriber
            .iter()
            .map(|(key, value)| (key.into(), *value))
            .collect();
        prop_assert_eq!(&view, &model.objects, "the events describe the view");
    }

    drain(&mut bus, &mut model)?;
    let before = model.objects.clone();
    bus.reconnect();
    let events = bus.pump(32);
    prop_assert_eq!(events.last(), Some(&OwnedEvent::Synchronized));
    model.apply_all(&events)?;
    let expected = table(&bus.publisher);
    prop_assert_eq!(
        &model.objects,
        &expected,
        "the subscriber reproduces the table"
    );
    let keys: BTreeSet<&String> = expected.keys().chain(before.keys()).collect();
    let changed: Vec<&&String> = keys
        .iter()
        .filter(|key| before.get(**key) != expected.get(**key))
        .collect();
    let object_events = events
        .iter()
        .filter(|event| !event_key(event).is_empty())
        .count();
    prop_assert_eq!(
        object_events,
        changed.len(),
        "one event per changed object, none for others"
    );
    prop_assert_eq!(
        bus.subscriber.publisher_restarted(),
        bus.publisher.has_signalled_restart()
    );
    Ok(())
}

/// What a confused or hostile publisher might send: any message, with values that may or may
/// not decode.
#[derive(Clone, Debug)]
enum Sent {
    SyncStart,
    Update(u8, Vec<u8>),
    Delete(u8),
    Complete(bool),
    Restarted,
    Refused,
    Subscribe,
}

fn sent() -> impl Strategy<Value = Sent> {
    let value = prop_oneof![
        4 => any::<u8>().prop_map(|value| postcard::to_allocvec(&value).unwrap()),
        1 => prop::collection::vec(any::<u8>(), 0..4),
    ];
    prop_oneof![
        1 => Just(Sent::SyncStart),
        6 => (0u8..6, value).prop_map(|(key, value)| Sent::Update(key, value)),
        2 => (0u8..6).prop_map(Sent::Delete),
        1 => any::<bool>().prop_map(Sent::Complete),
        1 => Just(Sent::Restarted),
        1 => Just(Sent::Refused),
        1 => Just(Sent::Subscribe),
    ]
}

/// The frames of `messages`, numbered from 0.
fn frames_of(messages: &[Sent]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut seq = 0;
    for message in messages {
        let key = |key: &u8| key.to_string();
        match message {
            Sent::SyncStart => wire::seal(&mut seq, Message::SyncStart, &mut bytes),
            Sent::Update(k, value) => {
                wire::seal(&mut seq, Message::object(&key(k), Some(value)), &mut bytes)
            }
            Sent::Delete(k) => wire::seal(&mut seq, Message::object(&key(k), None), &mut bytes),
            Sent::Complete(restarted) => wire::seal(
                &mut seq,
                Message::Complete {
                    restarted: *restarted,
                },
                &mut bytes,
            ),
            Sent::Restarted => wire::seal(&mut seq, Message::Restarted, &mut bytes),
            Sent::Refused => {
                let refusal = Refusal::WrongSchema { published: 2 };
                wire::seal(&mut seq, Message::Refused(refusal), &mut bytes)
            }
            Sent::Subscribe => {
                let subscribe = Message::Subscribe {
                    topic: LINKS.name,
                    schema: 1,
                };
                wire::seal(&mut seq, subscribe, &mut bytes)
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn persistent_tables_resync_exactly(max_pending in 1usize..6, ops in prop::collection::vec(op(), 0..80)) {
        check_scenario(MemoryStorage::default(), max_pending, ops)?;
    }

    #[test]
    fn volatile_tables_resync_exactly(max_pending in 1usize..6, ops in prop::collection::vec(op(), 0..80)) {
        check_scenario(Volatile, max_pending, ops)?;
    }

    #[test]
    fn a_subscriber_survives_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256), honest_prefix in any::<bool>()) {
        let mut bus = Bus::new(links_publisher(Volatile));
        if honest_prefix {
            bus.pump(64);
        }
        let _ = bus.subscriber.receive(&bytes, |_| {});
        let _ = bus.publisher.receive(bus.session, &bytes);
    }

    #[test]
    fn a_subscriber_stays_consistent_whatever_a_publisher_sends(
        messages in prop::collection::vec(sent(), 0..40),
        chunk in 1usize..64,
    ) {
        let mut subscriber = Subscriber::<u8>::new(LINKS);
        subscriber.connect();
        let mut model = Model::default();
        for piece in frames_of(&messages).chunks(chunk) {
            let mut events = Vec::new();
            let result = subscriber.receive(piece, |event| events.push(event.to_owned()));
            model.apply_all(&events)?;
            let view: BTreeMap<String, u8> =
                subscriber.iter().map(|(key, value)| (key.into(), *value)).collect();
            prop_assert_eq!(&view, &model.objects);
            if result.is_err() {
                prop_assert!(!subscriber.is_connected() && !subscriber.is_synchronized());
                break;
            }
        }
    }
}

#[test]
fn a_filtered_session_sees_only_its_keys() {
    let mut publisher = Publisher::<u32>::new(Topic::new("vault/Stored", 1), Volatile).unwrap();
    publisher.publish("a#1", &1).unwrap();
    publisher.publish("b#1", &2).unwrap();
    publisher.publish("a#2", &3).unwrap();
    let only_a: crate::KeyFilter = alloc::rc::Rc::new(|key: &str| key.starts_with("a#"));
    let session = publisher.connect_filtered(Some(only_a));
    let mut subscriber = Subscriber::new(publisher.topic());
    subscriber.connect();
    let mut events = Vec::new();
    loopback::pump(&mut publisher, session, &mut subscriber, 64, |e| {
        events.push(e.to_owned())
    })
    .unwrap();
    assert_eq!(
        events,
        [
            created("a#1", 1),
            created("a#2", 3),
            OwnedEvent::Synchronized
        ]
    );
    publisher.publish("b#2", &4).unwrap();
    publisher.publish("a#1", &5).unwrap();
    events.clear();
    loopback::pump(&mut publisher, session, &mut subscriber, 64, |e| {
        events.push(e.to_owned())
    })
    .unwrap();
    assert_eq!(events, [modified("a#1", 1, 5)]);
}

#[test]
fn seeded_objects_stand_until_the_publishers_first_sync_replaces_them() {
    let mut subscriber = Subscriber::<Link>::new(LINKS);
    let mut events = Vec::new();
    let bytes = |l: &Link| postcard::to_allocvec(l).unwrap();
    let taken = subscriber.seed("eth0", &bytes(&link("eth0", true)), |e| {
        events.push(e.to_owned())
    });
    assert_eq!(taken, Ok(true));
    subscriber
        .seed("eth1", &bytes(&link("eth1", true)), |_| {})
        .unwrap();
    assert!(subscriber.unseed("eth1", |e| events.push(e.to_owned())));
    assert_eq!(
        subscriber.seed("bad", &[0xff, 0xff, 0xff], |_| {}),
        Err(ProtocolError::BadValue { key: "bad".into() })
    );
    assert_eq!(
        events,
        [
            created("eth0", link("eth0", true)),
            deleted("eth1", link("eth1", true))
        ]
    );
    // The publisher comes up with eth0 down and wlan0: the view becomes its table.
    let mut publisher = links_publisher(Volatile);
    publisher.publish("eth0", &link("eth0", false)).unwrap();
    publisher.publish("wlan0", &link("wlan0", true)).unwrap();
    let session = publisher.connect();
    subscriber.connect();
    events.clear();
    loopback::pump(&mut publisher, session, &mut subscriber, 64, |e| {
        events.push(e.to_owned())
    })
    .unwrap();
    assert_eq!(
        events,
        [
            modified("eth0", link("eth0", true), link("eth0", false)),
            created("eth1", link("eth1", false)),
            created("wlan0", link("wlan0", true)),
            OwnedEvent::Synchronized
        ]
    );
    // Once synchronised, the stored copy is old news.
    assert_eq!(
        subscriber.seed("eth0", &bytes(&link("eth0", true)), |_| {}),
        Ok(false)
    );
    assert!(!subscriber.unseed("wlan0", |_| {}));
}
