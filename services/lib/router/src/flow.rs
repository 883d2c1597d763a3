//! Flow records as EVE's flow log reports them (`FlowRecord` in `flowlog.proto`): the 5-tuple
//! seen from the app, who opened it, the ACL rule and its action, start and end, and bytes and
//! packets each way (tx: from the app, rx: to the app).
//!
//! Accepted connections keep their counters in their NAT entry ([`crate::nat::Entry`]) and
//! become records when they end or when a snapshot is taken; dropped packets are aggregated
//! here per 5-tuple in a table of fixed size (a full table counts what it could not keep).

use alloc::vec::Vec;

use crate::nat::{Endpoint, Entry};

/// Bytes and packets each way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCounters {
    /// Bytes from the app (IP packets, headers included).
    pub tx_bytes: u64,
    /// Packets from the app.
    pub tx_packets: u64,
    /// Bytes to the app.
    pub rx_bytes: u64,
    /// Packets to the app.
    pub rx_packets: u64,
}

impl FlowCounters {
    /// Counts one packet of `bytes`, from the app (`tx`) or to it.
    pub fn count(&mut self, tx: bool, bytes: usize) {
        if tx {
            self.tx_bytes += bytes as u64;
            self.tx_packets += 1;
        } else {
            self.rx_bytes += bytes as u64;
            self.rx_packets += 1;
        }
    }
}

/// What the ACL did with a flow (EVE's `ACLAction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowAction {
    /// Let through.
    Accept,
    /// Dropped (by a drop rule, the default deny, or a rate limit).
    Drop,
}

/// One flow record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    /// IP protocol.
    pub protocol: u8,
    /// The opener's end as the app sees it (the app for outbound flows).
    pub src: Endpoint,
    /// The other end as the app sees it.
    pub dst: Endpoint,
    /// Opened from the uplink.
    pub inbound: bool,
    /// The ACL rule's id (EVE's `aclId`; 0 for none: default deny or the router's own DNS).
    pub acl_id: i32,
    /// What was done.
    pub action: FlowAction,
    /// First packet, ms.
    pub start_ms: u64,
    /// Last packet, ms.
    pub end_ms: u64,
    /// Bytes and packets.
    pub counters: FlowCounters,
}

impl FlowRecord {
    /// The record of an accepted connection; `acl_id` is its rule's id.
    pub fn of_entry(e: &Entry, acl_id: i32) -> FlowRecord {
        let (src, dst) = if e.inbound {
            (e.app_sees, e.app)
        } else {
            (e.app, e.app_sees)
        };
        FlowRecord {
            protocol: e.protocol,
            src,
            dst,
            inbound: e.inbound,
            acl_id,
            action: FlowAction::Accept,
            start_ms: e.start_ms,
            end_ms: e.last_ms,
            counters: e.counters,
        }
    }
}

/// Finished records waiting to be reported, and dropped flows being aggregated.
pub struct FlowLog {
    finished: Vec<FlowRecord>,
    drops: Vec<FlowRecord>,
    capacity: usize,
    lost: u64,
}

impl FlowLog {
    /// A log keeping up to `capacity` finished records and `capacity` dropped flows between
    /// reports (memory grows with use, up to that bound).
    pub fn new(capacity: usize) -> FlowLog {
        FlowLog {
            finished: Vec::new(),
            drops: Vec::new(),
            capacity,
            lost: 0,
        }
    }

    /// Keeps a finished record.
    pub fn finish(&mut self, record: FlowRecord) {
        if self.finished.len() < self.capacity {
            self.finished.push(record);
        } else {
            self.lost += 1;
        }
    }

    /// Counts a dropped packet of `bytes`, aggregated with earlier drops of the same flow
    /// (same protocol, ends, direction and rule).
    pub fn drop_packet(&mut self, mut record: FlowRecord, tx: bool, bytes: usize, now_ms: u64) {
        if let Some(r) = self.drops.iter_mut().find(|r| {
            (r.protocol, r.src, r.dst, r.inbound, r.acl_id)
                == (
                    record.protocol,
                    record.src,
                    record.dst,
                    record.inbound,
                    record.acl_id,
                )
        }) {
            r.end_ms = now_ms;
            r.counters.count(tx, bytes);
            return;
        }
        if self.drops.len() >= self.capacity {
            self.lost += 1;
            return;
        }
        record.action = FlowAction::Drop;
        record.start_ms = now_ms;
        record.end_ms = now_ms;
        record.counters = FlowCounters::default();
        record.counters.count(tx, bytes);
        self.drops.push(record);
    }

    /// Takes every record kept so far (finished flows, then dropped ones).
    pub fn take(&mut self) -> Vec<FlowRecord> {
        let mut out = core::mem::take(&mut self.finished);
        out.append(&mut self.drops);
        out
    }

    /// Records that did not fit.
    pub fn lost(&self) -> u64 {
        self.lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    fn rec(port: u16) -> FlowRecord {
        FlowRecord {
            protocol: 6,
            src: Endpoint::new(Ipv4Addr::new(10, 1, 0, 2), port),
            dst: Endpoint::new(Ipv4Addr::new(1, 1, 1, 1), 80),
            inbound: false,
            acl_id: 0,
            action: FlowAction::Accept,
            start_ms: 0,
            end_ms: 0,
            counters: FlowCounters::default(),
        }
    }

    #[test]
    fn drops_aggregate_per_flow_and_the_log_is_bounded() {
        let mut log = FlowLog::new(2);
        log.drop_packet(rec(1), true, 60, 10);
        log.drop_packet(rec(1), true, 40, 20);
        log.drop_packet(rec(2), true, 60, 30);
        log.drop_packet(rec(3), true, 60, 30);
        assert_eq!(log.lost(), 1);
        let out = log.take();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].action, FlowAction::Drop);
        assert_eq!((out[0].start_ms, out[0].end_ms), (10, 20));
        assert_eq!(
            (out[0].counters.tx_packets, out[0].counters.tx_bytes),
            (2, 100)
        );
        assert!(log.take().is_empty());
        for p in 0..3 {
            log.finish(rec(p));
        }
        assert_eq!(log.take().len(), 2);
        assert_eq!(log.lost(), 2);
    }
}
