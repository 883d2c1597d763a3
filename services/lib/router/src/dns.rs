//! What the DNS forwarder learns: the A records in the answers it relays back to apps, as
//! name -> addresses (EVE reports them in flow logs as `dnsReqs`, and `host` ACL matches use
//! them).
//!
//! The forwarding itself is NAT (the app asks the gateway on port 53, the router sends the
//! query on to the uplink's resolver and maps the answer back: [`crate::router`]); this module
//! only reads answers. The resolver's answer is untrusted: compression pointers that loop or
//! point forward, names over 255 bytes, counts that lie, records cut short are all
//! [`Malformed`] and recorded nothing.

use alloc::string::String;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

/// The answer could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed;

/// A name and the addresses an answer gave for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The question's name, lower case, without the final dot.
    pub name: String,
    /// A records in the answer section (CNAME chains followed implicitly: every A record of
    /// the answer counts for the question's name).
    pub addrs: Vec<Ipv4Addr>,
}

/// Most compression jumps followed in one name.
const MAX_JUMPS: usize = 16;

/// Reads the name at `at`; returns it and the offset after it (in the original position).
fn read_name(msg: &[u8], mut at: usize) -> Result<(String, usize), Malformed> {
    let mut name = String::new();
    let mut after = None;
    let mut jumps = 0;
    loop {
        let len = *msg.get(at).ok_or(Malformed)?;
        match len {
            0 => {
                return Ok((name, after.unwrap_or(at + 1)));
            }
            l if l & 0xc0 == 0xc0 => {
                let lo = *msg.get(at + 1).ok_or(Malformed)?;
                let target = usize::from(l & 0x3f) << 8 | usize::from(lo);
                // Only backwards: a pointer must point before itself (no loops).
                if target >= at || jumps >= MAX_JUMPS {
                    return Err(Malformed);
                }
                jumps += 1;
                after.get_or_insert(at + 2);
                at = target;
            }
            l if l & 0xc0 == 0 => {
                let label = msg.get(at + 1..at + 1 + usize::from(l)).ok_or(Malformed)?;
                if name.len() + label.len() + 1 > 255 {
                    return Err(Malformed);
                }
                if !name.is_empty() {
                    name.push('.');
                }
                for &b in label {
                    name.push(char::from(b.to_ascii_lowercase()));
                }
                at += 1 + usize::from(l);
            }
            _ => return Err(Malformed),
        }
    }
}

/// Reads a DNS response: the first question's name and the answer section's A records.
pub fn parse_answer(msg: &[u8]) -> Result<Answer, Malformed> {
    if msg.len() < 12 || msg[2] & 0x80 == 0 {
        return Err(Malformed);
    }
    let count = |at: usize| usize::from(u16::from_be_bytes([msg[at], msg[at + 1]]));
    let (questions, answers) = (count(4), count(6));
    if questions != 1 {
        return Err(Malformed);
    }
    let (name, mut at) = read_name(msg, 12)?;
    at += 4; // type, class
    if at > msg.len() {
        return Err(Malformed);
    }
    let mut addrs = Vec::new();
    // Each record takes at least 11 bytes: a count beyond that lies, and is cut short below.
    for _ in 0..answers.min(msg.len() / 11) {
        let (_, after) = read_name(msg, at)?;
        let header = msg.get(after..after + 10).ok_or(Malformed)?;
        let (kind, class) = (count_at(header, 0), count_at(header, 2));
        let rdlen = count_at(header, 8);
        let data = msg.get(after + 10..after + 10 + rdlen).ok_or(Malformed)?;
        if kind == 1 && class == 1 && rdlen == 4 && addrs.len() < 32 {
            addrs.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at = after + 10 + rdlen;
    }
    Ok(Answer { name, addrs })
}

fn count_at(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

/// A recorded lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The name.
    pub name: String,
    /// Its addresses.
    pub addrs: Vec<Ipv4Addr>,
    /// When the answer passed, ms.
    pub time_ms: u64,
    /// The app address that asked last (`None`: not known).
    pub asker: Option<Ipv4Addr>,
}

/// The names learned, most recent kept when full.
pub struct DnsRecords {
    records: Vec<Record>,
    capacity: usize,
    /// Records added or changed since the last [`DnsRecords::take_new`].
    fresh: Vec<usize>,
}

impl DnsRecords {
    /// A store of up to `capacity` names.
    pub fn new(capacity: usize) -> DnsRecords {
        DnsRecords {
            records: Vec::new(),
            capacity: capacity.max(1),
            fresh: Vec::new(),
        }
    }

    /// Records an answer with addresses, asked by `asker` (answers without A records are not
    /// kept).
    pub fn record(&mut self, answer: Answer, asker: Option<Ipv4Addr>, now_ms: u64) {
        if answer.addrs.is_empty() {
            return;
        }
        let i = match self.records.iter().position(|r| r.name == answer.name) {
            Some(i) => {
                self.records[i].addrs = answer.addrs;
                self.records[i].time_ms = now_ms;
                self.records[i].asker = asker;
                i
            }
            None if self.records.len() < self.capacity => {
                self.records.push(Record {
                    name: answer.name,
                    addrs: answer.addrs,
                    time_ms: now_ms,
                    asker,
                });
                self.records.len() - 1
            }
            None => {
                let oldest = (0..self.records.len())
                    .min_by_key(|&i| self.records[i].time_ms)
                    .unwrap_or(0);
                self.records[oldest] = Record {
                    name: answer.name,
                    addrs: answer.addrs,
                    time_ms: now_ms,
                    asker,
                };
                oldest
            }
        };
        if !self.fresh.contains(&i) {
            self.fresh.push(i);
        }
    }

    /// Whether an answer gave `addr` for `host` or one of its subdomains.
    pub fn host_has(&self, host: &str, addr: Ipv4Addr) -> bool {
        self.records.iter().any(|r| {
            let under = r.name == host
                || (r.name.len() > host.len()
                    && r.name.ends_with(host)
                    && r.name.as_bytes()[r.name.len() - host.len() - 1] == b'.');
            under && r.addrs.contains(&addr)
        })
    }

    /// Records added or updated since the last call (for the flow log's `dnsReqs`).
    pub fn take_new(&mut self) -> Vec<Record> {
        let fresh = core::mem::take(&mut self.fresh);
        fresh
            .into_iter()
            .filter_map(|i| self.records.get(i).cloned())
            .collect()
    }

    /// Every record.
    pub fn records(&self) -> &[Record] {
        &self.records
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A response for `name` with A records `addrs`, the answers' names compressed.
    pub(crate) fn response(name: &str, addrs: &[[u8; 4]]) -> Vec<u8> {
        let mut m = alloc::vec![
            0x12,
            0x34,
            0x81,
            0x80,
            0,
            1,
            0,
            addrs.len() as u8,
            0,
            0,
            0,
            0
        ];
        for label in name.split('.') {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        for a in addrs {
            m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            m.extend_from_slice(a);
        }
        m
    }

    #[test]
    fn reads_a_records_with_compression() {
        let a = parse_answer(&response(
            "Example.COM",
            &[[93, 184, 216, 34], [1, 2, 3, 4]],
        ))
        .unwrap();
        assert_eq!(a.name, "example.com");
        assert_eq!(
            a.addrs,
            alloc::vec![Ipv4Addr::new(93, 184, 216, 34), Ipv4Addr::new(1, 2, 3, 4)]
        );
    }

    #[test]
    fn hostile_answers_are_refused() {
        let good = response("a.b", &[[1, 1, 1, 1]]);
        // A query, not a response.
        let mut q = good.clone();
        q[2] = 0;
        assert_eq!(parse_answer(&q), Err(Malformed));
        // A pointer to itself, and one pointing forward.
        let mut looped = good.clone();
        let at = 12 + 5 + 4; // the first answer's name
        looped[at + 1] = at as u8;
        assert_eq!(parse_answer(&looped), Err(Malformed));
        // Answer count lies: cut short.
        let mut lying = good.clone();
        lying[7] = 9;
        assert_eq!(parse_answer(&lying), Err(Malformed));
        // Record data length beyond the message.
        let mut long = good.clone();
        let n = long.len();
        long[n - 5] = 200;
        assert_eq!(parse_answer(&long), Err(Malformed));
        // A name over 255 bytes.
        let huge = response(
            &["abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0"; 5].join("."),
            &[],
        );
        assert_eq!(parse_answer(&huge), Err(Malformed));
        assert_eq!(parse_answer(&good[..11]), Err(Malformed));
    }

    #[test]
    fn records_match_hosts_and_subdomains_and_stay_bounded() {
        let mut r = DnsRecords::new(2);
        r.record(
            parse_answer(&response("www.example.com", &[[1, 1, 1, 1]])).unwrap(),
            Some(Ipv4Addr::new(10, 1, 0, 2)),
            1,
        );
        assert!(r.host_has("example.com", Ipv4Addr::new(1, 1, 1, 1)));
        assert!(r.host_has("www.example.com", Ipv4Addr::new(1, 1, 1, 1)));
        assert!(!r.host_has("ample.com", Ipv4Addr::new(1, 1, 1, 1)));
        assert!(!r.host_has("example.com", Ipv4Addr::new(1, 1, 1, 2)));
        r.record(
            parse_answer(&response("b.org", &[[2, 2, 2, 2]])).unwrap(),
            None,
            2,
        );
        r.record(
            parse_answer(&response("c.net", &[[3, 3, 3, 3]])).unwrap(),
            None,
            3,
        );
        assert_eq!(r.records().len(), 2);
        assert!(
            !r.host_has("example.com", Ipv4Addr::new(1, 1, 1, 1)),
            "the oldest went"
        );
        let fresh = r.take_new();
        assert_eq!(fresh.len(), 2);
        assert!(r.take_new().is_empty());
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_answer(&bytes);
        }
    }
}
