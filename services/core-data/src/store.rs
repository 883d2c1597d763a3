//! The bounded event store: the newest `capacity` events, the oldest dropped (and counted)
//! to make room; queries by device, by time and over readings, newest first as EdgeX answers.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use edgex::{Event, Reading};

/// Events kept in memory.
#[derive(Debug)]
pub struct Store {
    events: VecDeque<Event>,
    capacity: usize,
    dropped: u64,
}

impl Store {
    /// An empty store keeping at most `capacity` events (at least 1).
    pub fn new(capacity: usize) -> Store {
        Store {
            events: VecDeque::new(),
            capacity: capacity.max(1),
            dropped: 0,
        }
    }

    /// Whether an event with this id is kept.
    pub fn contains(&self, id: &str) -> bool {
        self.events.iter().any(|e| e.id == id)
    }

    /// Adds an event; `false` if an event with its id is already kept (then nothing changes).
    pub fn add(&mut self, event: Event) -> bool {
        if self.contains(&event.id) {
            return false;
        }
        if self.events.len() == self.capacity {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.events.push_back(event);
        true
    }

    /// Events dropped to make room.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Events kept.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no event is kept.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Events matching `keep`, newest first (by arrival).
    pub fn events<'a>(
        &'a self,
        keep: impl Fn(&Event) -> bool + 'a,
    ) -> impl Iterator<Item = &'a Event> + 'a {
        self.events.iter().rev().filter(move |e| keep(e))
    }

    /// Readings matching `keep`, newest first.
    pub fn readings<'a>(
        &'a self,
        keep: impl Fn(&Reading) -> bool + 'a,
    ) -> impl Iterator<Item = &'a Reading> + 'a {
        self.events
            .iter()
            .rev()
            .flat_map(|e| e.readings.iter())
            .filter(move |r| keep(r))
    }
}

/// `offset` and `limit` applied to an iterator (EdgeX: limit -1 means all).
pub fn page<T: Clone>(
    items: impl Iterator<Item = T>,
    offset: usize,
    limit: Option<usize>,
) -> Vec<T> {
    let items = items.skip(offset);
    match limit {
        Some(n) => items.take(n).collect(),
        None => items.collect(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    pub(crate) fn event(id: u32, device: &str, origin: i64) -> Event {
        Event {
            api_version: "v3".into(),
            id: id.to_string(),
            device_name: device.into(),
            profile_name: "P".into(),
            source_name: "S".into(),
            origin,
            readings: vec![Reading {
                id: alloc::format!("r{id}"),
                origin,
                device_name: device.into(),
                resource_name: "T".into(),
                profile_name: "P".into(),
                value_type: "Int16".into(),
                units: "".into(),
                value: id.to_string(),
            }],
        }
    }

    #[test]
    fn bounded_newest_first() {
        let mut s = Store::new(3);
        for i in 0..5 {
            assert!(s.add(event(i, if i % 2 == 0 { "A" } else { "B" }, i64::from(i))));
        }
        assert!(!s.add(event(4, "A", 4)));
        assert_eq!((s.len(), s.dropped()), (3, 2));
        let ids: Vec<&str> = s.events(|_| true).map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["4", "3", "2"]);
        assert_eq!(s.events(|e| e.device_name == "A").count(), 2);
        assert_eq!(s.readings(|r| r.value == "3").count(), 1);
        assert_eq!(page(s.events(|_| true), 1, Some(1))[0].id, "3");
        assert_eq!(page(s.events(|_| true), 0, None).len(), 3);
    }
}
