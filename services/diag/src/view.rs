//! One status topic as diag follows it: a subscription, a task that keeps its link state, and
//! the lines that describe it.

use alloc::{format, rc::Rc, string::String, vec::Vec};
use core::cell::Cell;
use core::fmt::Display;

use bus_io::{Link, Node, NodeError, Subscription, Update};
use serde::de::DeserializeOwned;
use topics::Topic;

/// A followed topic, with its objects rendered as text.
pub struct StatusView {
    name: &'static str,
    publisher: &'static str,
    connected: Rc<Cell<bool>>,
    ever_connected: Rc<Cell<bool>>,
    render: alloc::boxed::Box<dyn Fn() -> (bool, Vec<String>)>,
}

impl StatusView {
    /// Whether the view is synchronised with its publisher.
    pub fn synchronized(&self) -> bool {
        (self.render)().0
    }

    /// Whether the publisher is connected now.
    pub fn connected(&self) -> bool {
        self.connected.get()
    }

    /// Whether the publisher was ever connected.
    pub fn ever_connected(&self) -> bool {
        self.ever_connected.get()
    }

    /// The topic's heading line and one line per object.
    pub fn lines(&self) -> Vec<String> {
        let (synchronized, objects) = (self.render)();
        let state = match (self.connected.get(), synchronized) {
            (true, true) => "live",
            (true, false) => "syncing",
            (false, _) if objects.is_empty() => "waiting",
            (false, _) => "stale",
        };
        let mut lines = Vec::with_capacity(objects.len() + 1);
        lines.push(format!(
            "{:28} from {:12} {state:7} {} objects",
            self.name,
            self.publisher,
            objects.len()
        ));
        lines.extend(objects.into_iter().map(|o| format!("    {o}")));
        lines
    }
}

/// Subscribes to `topic` and follows it.
pub fn watch<K, T>(node: &Node, topic: &'static Topic<K, T>) -> Result<StatusView, NodeError>
where
    T: Display + DeserializeOwned + PartialEq + Clone + 'static,
{
    let subscription: Subscription<T> = node.subscribe(topic)?;
    let (connected, ever_connected) = (Rc::new(Cell::new(false)), Rc::new(Cell::new(false)));
    // Takes every update, so that the driver never waits for diag, and keeps the link state.
    drop(kernel::spawn({
        let (subscription, connected, ever) = (
            subscription.clone(),
            connected.clone(),
            ever_connected.clone(),
        );
        async move {
            loop {
                match subscription.next().await {
                    Update::Link(Link::Connected) => {
                        connected.set(true);
                        ever.set(true);
                    }
                    Update::Link(Link::Ended(_)) => connected.set(false),
                    Update::Link(Link::ConnectFailed(reason)) => {
                        kernel::warn!("{}: {reason}", topic.name())
                    }
                    Update::Event(_) => {}
                }
            }
        }
    }));
    let render = move || {
        subscription.with(|s| {
            let objects = s
                .iter()
                .map(|(key, value)| format!("{key}: {value}"))
                .collect();
            (s.is_synchronized(), objects)
        })
    };
    Ok(StatusView {
        name: topic.name(),
        publisher: topic.publisher(),
        connected,
        ever_connected,
        render: alloc::boxed::Box::new(render),
    })
}
