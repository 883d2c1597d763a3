//! The router's ARP caches (one per side): IPv4 address -> MAC, of fixed size, the oldest
//! entry replaced when full, and a limit of one request per target per second so that a flood
//! towards an unresolved address cannot turn into a flood of ARP requests.
//!
//! What a peer may corrupt: it may claim any address on its own side's subnet (the router
//! learns only from ARP aimed at it and from DHCP acknowledgements); broadcast and multicast
//! MACs and the unspecified address are never learned.

use alloc::vec::Vec;
use core::net::Ipv4Addr;

use crate::wire::{Mac, BROADCAST_MAC};

/// A small ARP cache of fixed size (the oldest entry is replaced).
pub(crate) struct ArpCache {
    entries: Vec<(Ipv4Addr, Mac, u64)>,
    capacity: usize,
    /// Requests sent recently, to send one per target per second at most.
    asked: Vec<(Ipv4Addr, u64)>,
}

impl ArpCache {
    pub(crate) fn new(capacity: usize) -> ArpCache {
        ArpCache {
            entries: Vec::with_capacity(capacity),
            capacity,
            asked: Vec::with_capacity(16),
        }
    }

    pub(crate) fn get(&self, ip: Ipv4Addr) -> Option<Mac> {
        self.entries.iter().find(|e| e.0 == ip).map(|e| e.1)
    }

    pub(crate) fn learn(&mut self, ip: Ipv4Addr, mac: Mac, now_ms: u64) {
        if mac == BROADCAST_MAC || mac[0] & 1 == 1 || ip.is_unspecified() {
            return;
        }
        if let Some(e) = self.entries.iter_mut().find(|e| e.0 == ip) {
            *e = (ip, mac, now_ms);
        } else if self.entries.len() < self.capacity {
            self.entries.push((ip, mac, now_ms));
        } else if let Some(oldest) = self.entries.iter_mut().min_by_key(|e| e.2) {
            *oldest = (ip, mac, now_ms);
        }
    }

    /// Whether to send a request for `ip` now (not within the last second).
    pub(crate) fn should_ask(&mut self, ip: Ipv4Addr, now_ms: u64) -> bool {
        self.asked.retain(|a| now_ms.saturating_sub(a.1) < 1000);
        if self.asked.iter().any(|a| a.0 == ip) || self.asked.len() >= 16 {
            return false;
        }
        self.asked.push((ip, now_ms));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_oldest_replaced_and_requests_rate_limited() {
        let mut c = ArpCache::new(2);
        let ip = |n| Ipv4Addr::new(10, 0, 0, n);
        c.learn(ip(1), [2, 0, 0, 0, 0, 1], 1);
        c.learn(ip(2), [2, 0, 0, 0, 0, 2], 2);
        c.learn(ip(3), [2, 0, 0, 0, 0, 3], 3);
        assert_eq!(
            (c.get(ip(1)), c.get(ip(3))),
            (None, Some([2, 0, 0, 0, 0, 3]))
        );
        c.learn(ip(4), BROADCAST_MAC, 4);
        c.learn(ip(4), [1, 0, 0, 0, 0, 1], 4);
        assert_eq!(
            c.get(ip(4)),
            None,
            "broadcast and multicast MACs are not learned"
        );
        assert!(c.should_ask(ip(9), 0));
        assert!(!c.should_ask(ip(9), 500));
        assert!(c.should_ask(ip(9), 1000));
    }
}
