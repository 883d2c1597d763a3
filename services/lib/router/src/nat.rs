//! The connection table: source NAT to the uplink address and port maps, in a table of fixed
//! capacity.
//!
//! Each entry is one connection seen from both sides:
//!
//! ```text
//!  app side:  app (ip:port)  <->  app_sees (ip:port)        e.g. 10.1.0.2:40000 <-> 1.2.3.4:80
//!  uplink:    uplink_port    <->  remote (ip:port)          e.g. 10.0.2.15:1024 <-> 1.2.3.4:80
//! ```
//!
//! `app_sees` and `remote` differ only for the DNS forwarder (the app asks the gateway, the
//! query goes to the uplink's resolver). ICMP echo uses the identifier as both ports.
//!
//! All memory is allocated when the table is made: a full table refuses a new connection
//! ([`Full`]) after first reclaiming expired entries; it never allocates. Two open-addressed
//! indexes (inside key, outside key) find an entry in O(1); their hash is keyed with a seed
//! the caller draws at random, so a remote choosing ports cannot aim at one probe chain.
//! Entries expire ([`Timeouts`]); the expired ones are moved to [`NatTable::take_ended`] so
//! their flow records are not lost.

use alloc::vec::Vec;
use core::net::Ipv4Addr;

use crate::flow::FlowCounters;

/// An address and port (for ICMP echo, the identifier).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// IPv4 address.
    pub ip: Ipv4Addr,
    /// Port, or ICMP echo identifier.
    pub port: u16,
}

impl Endpoint {
    /// `ip:port`.
    pub fn new(ip: Ipv4Addr, port: u16) -> Endpoint {
        Endpoint { ip, port }
    }
}

/// How long an idle connection is kept, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// A TCP connection without FIN or RST (RFC 5382: at least 2 h 4 min).
    pub tcp_established_ms: u64,
    /// A TCP connection after a FIN or RST either way, or still in its handshake.
    pub tcp_closing_ms: u64,
    /// A UDP flow (RFC 4787: at least 2 min).
    pub udp_ms: u64,
    /// An ICMP echo exchange.
    pub icmp_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_established_ms: 7_440_000,
            tcp_closing_ms: 10_000,
            udp_ms: 120_000,
            icmp_ms: 30_000,
        }
    }
}

/// One connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// IP protocol (TCP, UDP or ICMP).
    pub protocol: u8,
    /// The app's address and port.
    pub app: Endpoint,
    /// The remote as the app addresses it.
    pub app_sees: Endpoint,
    /// The router's port on the uplink address.
    pub uplink_port: u16,
    /// The remote on the uplink.
    pub remote: Endpoint,
    /// Opened from the uplink (a port map) rather than by the app.
    pub inbound: bool,
    /// Index of the ACL rule that admitted it (`None` for the router's own services, DNS).
    pub rule: Option<u16>,
    /// When it was opened.
    pub start_ms: u64,
    /// When a packet last passed.
    pub last_ms: u64,
    /// TCP: established (SYN answered) and no FIN or RST seen yet.
    pub established: bool,
    /// TCP: a FIN or RST passed.
    pub closing: bool,
    /// Bytes and packets each way.
    pub counters: FlowCounters,
}

impl Entry {
    /// How long this entry may stay idle.
    pub fn timeout_ms(&self, t: &Timeouts) -> u64 {
        match self.protocol {
            crate::wire::PROTO_TCP if self.established && !self.closing => t.tcp_established_ms,
            crate::wire::PROTO_TCP => t.tcp_closing_ms,
            crate::wire::PROTO_UDP => t.udp_ms,
            _ => t.icmp_ms,
        }
    }

    /// Whether it has expired at `now_ms`.
    pub fn expired(&self, now_ms: u64, t: &Timeouts) -> bool {
        now_ms.saturating_sub(self.last_ms) > self.timeout_ms(t)
    }

    fn inside_key(&self) -> u128 {
        inside_key(self.protocol, self.app, self.app_sees)
    }

    fn outside_key(&self) -> u128 {
        outside_key(self.protocol, self.uplink_port, self.remote)
    }
}

fn endpoint_bits(e: Endpoint) -> u128 {
    (u128::from(u32::from(e.ip)) << 16) | u128::from(e.port)
}

fn inside_key(protocol: u8, app: Endpoint, app_sees: Endpoint) -> u128 {
    (u128::from(protocol) << 96) | (endpoint_bits(app) << 48) | endpoint_bits(app_sees)
}

fn outside_key(protocol: u8, uplink_port: u16, remote: Endpoint) -> u128 {
    (u128::from(protocol) << 96) | (u128::from(uplink_port) << 48) | endpoint_bits(remote)
}

/// The table is full of live connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

/// An entry's handle in the table (valid until the entry is removed).
pub type Slot = u32;

/// An open-addressed index from key hashes to slots (linear probing, backward-shift deletion).
struct Index {
    /// `slot + 1`, or 0 for an empty bucket.
    buckets: Vec<u32>,
    mask: usize,
}

impl Index {
    fn new(capacity: usize) -> Index {
        let size = (capacity * 2).next_power_of_two().max(8);
        Index {
            buckets: alloc::vec![0; size],
            mask: size - 1,
        }
    }

    fn find(&self, hash: u64, mut is: impl FnMut(Slot) -> bool) -> Option<Slot> {
        let mut i = hash as usize & self.mask;
        loop {
            match self.buckets[i] {
                0 => return None,
                s if is(s - 1) => return Some(s - 1),
                _ => i = (i + 1) & self.mask,
            }
        }
    }

    fn insert(&mut self, hash: u64, slot: Slot) {
        let mut i = hash as usize & self.mask;
        while self.buckets[i] != 0 {
            i = (i + 1) & self.mask;
        }
        self.buckets[i] = slot + 1;
    }

    fn remove(&mut self, hash: u64, slot: Slot, hash_of: impl Fn(Slot) -> u64) {
        let mut i = hash as usize & self.mask;
        while self.buckets[i] != slot + 1 {
            debug_assert!(self.buckets[i] != 0, "removing a slot not indexed");
            if self.buckets[i] == 0 {
                return;
            }
            i = (i + 1) & self.mask;
        }
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            if self.buckets[j] == 0 {
                break;
            }
            let home = hash_of(self.buckets[j] - 1) as usize & self.mask;
            // Leave the entry at j if its home lies cyclically in (i, j].
            let stays = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !stays {
                self.buckets[i] = self.buckets[j];
                i = j;
            }
        }
        self.buckets[i] = 0;
    }
}

fn mix(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// The connection table.
pub struct NatTable {
    slots: Vec<Option<Entry>>,
    free: Vec<Slot>,
    inside: Index,
    outside: Index,
    seed: [u64; 2],
    ports: (u16, u16),
    next_port: u16,
    timeouts: Timeouts,
    ended: Vec<Entry>,
    ended_lost: u64,
    sweep_at: usize,
}

/// Most ended entries kept for [`NatTable::take_ended`] before they are counted as lost.
const MAX_ENDED: usize = 1024;

impl NatTable {
    /// A table for `capacity` connections, giving dynamic uplink ports from `ports` (inclusive;
    /// the caller keeps port-mapped ports out with [`NatTable::open`]'s `reserved`), hashing
    /// with `seed` (draw it at random).
    pub fn new(capacity: usize, ports: (u16, u16), seed: [u64; 2], timeouts: Timeouts) -> NatTable {
        let capacity = capacity.max(1);
        let ports = (ports.0.max(1), ports.1.max(ports.0.max(1)));
        NatTable {
            slots: alloc::vec![None; capacity],
            free: (0..capacity as Slot).rev().collect(),
            inside: Index::new(capacity),
            outside: Index::new(capacity),
            seed,
            ports,
            next_port: ports.0,
            timeouts,
            ended: Vec::new(),
            ended_lost: 0,
            sweep_at: 0,
        }
    }

    fn hash(&self, key: u128, which: u64) -> u64 {
        NatTable::hash_fn(self.seed)(key, which)
    }

    fn inside_hash(&self, key: u128) -> u64 {
        self.hash(key, 1)
    }

    fn outside_hash(&self, key: u128) -> u64 {
        self.hash(key, 2)
    }

    /// Connections in the table (expired ones not yet reclaimed included).
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most connections it holds.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// The entry in `slot`.
    pub fn get(&self, slot: Slot) -> Option<&Entry> {
        self.slots.get(slot as usize)?.as_ref()
    }

    /// The entry in `slot`, to update its counters and state.
    pub fn get_mut(&mut self, slot: Slot) -> Option<&mut Entry> {
        self.slots.get_mut(slot as usize)?.as_mut()
    }

    /// Finds the live connection of a packet from the app.
    pub fn find_inside(
        &mut self,
        protocol: u8,
        app: Endpoint,
        app_sees: Endpoint,
        now_ms: u64,
    ) -> Option<Slot> {
        let key = inside_key(protocol, app, app_sees);
        let slots = &self.slots;
        let slot = self.inside.find(self.inside_hash(key), |s| {
            slots[s as usize].is_some_and(|e| e.inside_key() == key)
        })?;
        self.live(slot, now_ms)
    }

    /// Finds the live connection of a packet from the uplink to `uplink_port`.
    pub fn find_outside(
        &mut self,
        protocol: u8,
        uplink_port: u16,
        remote: Endpoint,
        now_ms: u64,
    ) -> Option<Slot> {
        let key = outside_key(protocol, uplink_port, remote);
        let slots = &self.slots;
        let slot = self.outside.find(self.outside_hash(key), |s| {
            slots[s as usize].is_some_and(|e| e.outside_key() == key)
        })?;
        self.live(slot, now_ms)
    }

    fn live(&mut self, slot: Slot, now_ms: u64) -> Option<Slot> {
        let entry = self.slots[slot as usize]?;
        if entry.expired(now_ms, &self.timeouts) {
            self.remove(slot);
            return None;
        }
        Some(slot)
    }

    /// Opens a connection for `entry`. With `entry.uplink_port == 0` a free dynamic port is
    /// chosen (skipping any `reserved(protocol, port)` says is taken, e.g. port maps);
    /// otherwise the given port is used. Fails with [`Full`] when no slot is free after
    /// reclaiming expired entries, or no port is free; an existing connection with the same
    /// keys is replaced.
    pub fn open(
        &mut self,
        mut entry: Entry,
        reserved: impl Fn(u8, u16) -> bool,
    ) -> Result<Slot, Full> {
        if self.free.is_empty() {
            self.expire_all(entry.last_ms);
        }
        if self.free.is_empty() {
            return Err(Full);
        }
        if entry.uplink_port == 0 {
            entry.uplink_port = self
                .free_port(entry.protocol, entry.remote, &reserved)
                .ok_or(Full)?;
        }
        let (ik, ok) = (entry.inside_key(), entry.outside_key());
        let slots = &self.slots;
        let clash_in = self.inside.find(self.inside_hash(ik), |s| {
            slots[s as usize].is_some_and(|e| e.inside_key() == ik)
        });
        let clash_out = self.outside.find(self.outside_hash(ok), |s| {
            slots[s as usize].is_some_and(|e| e.outside_key() == ok)
        });
        for s in [clash_in, clash_out].into_iter().flatten() {
            if self.slots[s as usize].is_some() {
                self.remove(s);
            }
        }
        let slot = self.free.pop().ok_or(Full)?;
        self.slots[slot as usize] = Some(entry);
        let (ih, oh) = (self.inside_hash(ik), self.outside_hash(ok));
        self.inside.insert(ih, slot);
        self.outside.insert(oh, slot);
        Ok(slot)
    }

    fn free_port(
        &mut self,
        protocol: u8,
        remote: Endpoint,
        reserved: &impl Fn(u8, u16) -> bool,
    ) -> Option<u16> {
        let span = u32::from(self.ports.1 - self.ports.0) + 1;
        // Bounded: at most 4096 candidates (a table this full of one remote is a flood).
        for _ in 0..span.min(4096) {
            let port = self.next_port;
            self.next_port = if port >= self.ports.1 {
                self.ports.0
            } else {
                port + 1
            };
            if reserved(protocol, port) {
                continue;
            }
            let key = outside_key(protocol, port, remote);
            let slots = &self.slots;
            if self
                .outside
                .find(self.outside_hash(key), |s| {
                    slots[s as usize].is_some_and(|e| e.outside_key() == key)
                })
                .is_none()
            {
                return Some(port);
            }
        }
        None
    }

    /// Removes the entry in `slot`, keeping it for [`NatTable::take_ended`].
    pub fn remove(&mut self, slot: Slot) {
        let Some(entry) = self.slots.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        // Hashes of the entries the indexes may shift: computed from the slots, which still
        // hold every other entry.
        let seed = self.seed;
        let table = NatTable::hash_fn(seed);
        let slots = &self.slots;
        self.inside.remove(table(entry.inside_key(), 1), slot, |s| {
            slots[s as usize].map_or(0, |e| table(e.inside_key(), 1))
        });
        self.outside
            .remove(table(entry.outside_key(), 2), slot, |s| {
                slots[s as usize].map_or(0, |e| table(e.outside_key(), 2))
            });
        self.free.push(slot);
        if self.ended.len() < MAX_ENDED {
            self.ended.push(entry);
        } else {
            self.ended_lost += 1;
        }
    }

    fn hash_fn(seed: [u64; 2]) -> impl Fn(u128, u64) -> u64 {
        move |key, which| {
            mix(
                (key as u64) ^ seed[0],
                ((key >> 64) as u64)
                    ^ seed[1]
                    ^ which.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    ^ 0x2545_f491_4f6c_dd1d,
            )
        }
    }

    /// Reclaims every expired entry.
    pub fn expire_all(&mut self, now_ms: u64) {
        for slot in 0..self.slots.len() as Slot {
            if self.slots[slot as usize].is_some_and(|e| e.expired(now_ms, &self.timeouts)) {
                self.remove(slot);
            }
        }
    }

    /// Reclaims expired entries among the next `budget` slots (a sweep spread over calls).
    pub fn expire_some(&mut self, now_ms: u64, budget: usize) {
        for _ in 0..budget.min(self.slots.len()) {
            let slot = self.sweep_at as Slot;
            self.sweep_at = (self.sweep_at + 1) % self.slots.len();
            if self.slots[slot as usize].is_some_and(|e| e.expired(now_ms, &self.timeouts)) {
                self.remove(slot);
            }
        }
    }

    /// Entries removed since the last call (expired or replaced), for their flow records.
    pub fn take_ended(&mut self) -> Vec<Entry> {
        core::mem::take(&mut self.ended)
    }

    /// Ended entries dropped because [`NatTable::take_ended`] was not called in time.
    pub fn ended_lost(&self) -> u64 {
        self.ended_lost
    }

    /// Every live entry (for flow snapshots and status).
    pub fn iter(&self) -> impl Iterator<Item = (Slot, &Entry)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.as_ref().map(|e| (i as Slot, e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{PROTO_TCP, PROTO_UDP};
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn ep(last: u8, port: u16) -> Endpoint {
        Endpoint::new(Ipv4Addr::new(10, 1, 0, last), port)
    }

    fn entry(app_port: u16, remote_port: u16, now: u64) -> Entry {
        let remote = Endpoint::new(Ipv4Addr::new(1, 2, 3, 4), remote_port);
        Entry {
            protocol: PROTO_UDP,
            app: ep(2, app_port),
            app_sees: remote,
            uplink_port: 0,
            remote,
            inbound: false,
            rule: Some(0),
            start_ms: now,
            last_ms: now,
            established: false,
            closing: false,
            counters: FlowCounters::default(),
        }
    }

    fn no_reserved(_: u8, _: u16) -> bool {
        false
    }

    #[test]
    fn open_find_both_ways_and_expire() {
        let mut t = NatTable::new(4, (1024, 1030), [1, 2], Timeouts::default());
        let s = t.open(entry(5000, 53, 0), no_reserved).unwrap();
        let e = *t.get(s).unwrap();
        assert_eq!(e.uplink_port, 1024);
        assert_eq!(t.find_inside(PROTO_UDP, e.app, e.app_sees, 10), Some(s));
        assert_eq!(t.find_outside(PROTO_UDP, 1024, e.remote, 10), Some(s));
        assert_eq!(t.find_outside(PROTO_TCP, 1024, e.remote, 10), None);
        assert_eq!(t.find_outside(PROTO_UDP, 1024, ep(9, 53), 10), None);
        // Idle past the UDP timeout: gone, and handed over for its flow record.
        assert_eq!(t.find_inside(PROTO_UDP, e.app, e.app_sees, 200_000), None);
        assert_eq!(t.len(), 0);
        assert_eq!(t.take_ended(), alloc::vec![e]);
    }

    #[test]
    fn full_table_refuses_then_reclaims_expired() {
        let mut t = NatTable::new(2, (1024, 2000), [3, 4], Timeouts::default());
        t.open(entry(1, 53, 0), no_reserved).unwrap();
        t.open(entry(2, 53, 0), no_reserved).unwrap();
        assert_eq!(t.open(entry(3, 53, 1000), no_reserved), Err(Full));
        // Later, both have expired: the table makes room.
        assert!(t.open(entry(3, 53, 500_000), no_reserved).is_ok());
        assert_eq!(t.len(), 1);
        assert_eq!(t.take_ended().len(), 2);
    }

    #[test]
    fn reserved_ports_are_skipped_and_ports_run_out() {
        let mut t = NatTable::new(8, (1024, 1026), [5, 6], Timeouts::default());
        let reserved = |_: u8, p: u16| p == 1025;
        let a = t.open(entry(1, 53, 0), reserved).unwrap();
        let b = t.open(entry(2, 53, 0), reserved).unwrap();
        assert_eq!(
            (t.get(a).unwrap().uplink_port, t.get(b).unwrap().uplink_port),
            (1024, 1026)
        );
        // Same remote, every usable port taken.
        assert_eq!(t.open(entry(3, 53, 0), reserved), Err(Full));
        // Another remote may reuse a port: the outside key includes the remote.
        assert!(t.open(entry(3, 54, 0), reserved).is_ok());
    }

    #[test]
    fn tcp_timeouts_follow_state() {
        let t = Timeouts::default();
        let mut e = entry(1, 80, 0);
        e.protocol = PROTO_TCP;
        assert!(
            e.expired(t.tcp_closing_ms + 1, &t),
            "a handshake that never finished"
        );
        e.established = true;
        assert!(!e.expired(3_600_000, &t));
        e.closing = true;
        assert!(e.expired(t.tcp_closing_ms + 1, &t));
    }

    proptest! {
        /// Against a model: the indexes always find exactly the live entries, whatever the
        /// order of opens and removals (backward-shift deletion keeps probe chains whole).
        #[test]
        fn indexes_agree_with_a_model(ops in proptest::collection::vec((any::<bool>(), 0u16..40, 0u16..3), 1..300)) {
            let mut t = NatTable::new(16, (1024, 1100), [7, 8], Timeouts::default());
            let mut model: HashMap<(u16, u16), Slot> = HashMap::new();
            for (open, app, remote) in ops {
                if open {
                    match t.open(entry(app, 53 + remote, 0), no_reserved) {
                        Ok(s) => {
                            model.retain(|_, v| t.get(*v).is_some());
                            model.insert((app, remote), s);
                        }
                        Err(Full) => prop_assert!(t.len() == 16 || model.len() >= 16),
                    }
                } else if let Some(s) = model.remove(&(app, remote)) {
                    t.remove(s);
                }
                model.retain(|_, v| t.get(*v).is_some());
                for (&(app, remote), &s) in &model {
                    let e = *t.get(s).unwrap();
                    prop_assert_eq!(t.find_inside(PROTO_UDP, ep(2, app), e.app_sees, 1), Some(s));
                    prop_assert_eq!(t.find_outside(PROTO_UDP, e.uplink_port, Endpoint::new(Ipv4Addr::new(1, 2, 3, 4), 53 + remote), 1), Some(s));
                }
                prop_assert_eq!(t.len(), model.len());
            }
        }
    }
}
