//! A small cache of resolved names.
//!
//! Entries live for a fixed time (the resolver does not see record TTLs), names are compared
//! case-insensitively, and when the cache is full the entry closest to expiry is evicted.
//! Failed lookups are not cached.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::IpAddr;

use crate::time::{Duration, Instant};

/// Resolved names with expiry times.
pub struct DnsCache {
    entries: BTreeMap<String, Entry>,
    capacity: usize,
    ttl: Duration,
}

struct Entry {
    addresses: Vec<IpAddr>,
    expires: Instant,
}

impl DnsCache {
    /// A cache of at most `capacity` names, each kept for `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> DnsCache {
        DnsCache {
            entries: BTreeMap::new(),
            capacity,
            ttl,
        }
    }

    fn key(name: &str) -> String {
        name.trim_end_matches('.').to_ascii_lowercase()
    }

    /// The addresses of `name` if cached and not expired at `now`.
    pub fn get(&mut self, name: &str, now: Instant) -> Option<Vec<IpAddr>> {
        let key = Self::key(name);
        match self.entries.get(&key) {
            Some(entry) if entry.expires > now => Some(entry.addresses.clone()),
            Some(_) => {
                self.entries.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Remembers that `name` resolved to `addresses` at `now` (nothing for an empty answer).
    pub fn insert(&mut self, name: &str, addresses: Vec<IpAddr>, now: Instant) {
        if addresses.is_empty() || self.capacity == 0 {
            return;
        }
        self.entries.retain(|_, e| e.expires > now);
        let key = Self::key(name);
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            let soonest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.expires)
                .map(|(k, _)| k.clone());
            if let Some(k) = soonest {
                self.entries.remove(&k);
            }
        }
        self.entries.insert(
            key,
            Entry {
                addresses,
                expires: now + self.ttl,
            },
        );
    }

    /// Number of live or expired-but-unswept entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use core::net::Ipv4Addr;

    fn at(s: u64) -> Instant {
        Instant::from_nanos(s * 1_000_000_000)
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn hits_until_expiry_case_insensitively() {
        let mut c = DnsCache::new(4, Duration::from_secs(60));
        c.insert("Example.COM.", vec![ip(1), ip(2)], at(10));
        assert_eq!(c.get("example.com", at(69)), Some(vec![ip(1), ip(2)]));
        assert_eq!(c.get("example.com", at(70)), None, "expired");
        assert!(c.is_empty(), "expired entries are dropped on lookup");
        c.insert("empty.example", vec![], at(0));
        assert_eq!(c.get("empty.example", at(0)), None);
    }

    #[test]
    fn full_cache_evicts_the_soonest_to_expire() {
        let mut c = DnsCache::new(2, Duration::from_secs(60));
        c.insert("a", vec![ip(1)], at(0));
        c.insert("b", vec![ip(2)], at(1));
        c.insert("c", vec![ip(3)], at(2));
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("a", at(3)), None);
        assert_eq!(c.get("b", at(3)), Some(vec![ip(2)]));
        // Refreshing an existing name evicts nothing.
        c.insert("c", vec![ip(4)], at(4));
        assert_eq!(c.get("c", at(5)), Some(vec![ip(4)]));
        assert_eq!(c.len(), 2);
    }
}
