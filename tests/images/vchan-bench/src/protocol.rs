//! The benchmark protocol, as `xen/dom0/bench/vchan-bench.c` speaks it too: what travels on
//! the channel, the plans a controller runs and the figures it reports.
//!
//! A session has a *controller* and a *responder*, whatever their vchan roles. For each
//! operation of its plan the controller sends a 16-byte [`Spec`] (all integers little endian:
//! magic `"VBEN"`, op, size, count) and then:
//!
//! - [`Op::Push`]: writes `count` messages of `size` bytes; the responder reads them all and
//!   answers with the byte count it received (u64).
//! - [`Op::Pull`]: the responder writes `count` messages of `size` bytes; the controller reads.
//! - [`Op::Ping`]: `count` round trips: the controller writes `size` bytes, the responder echoes.
//! - [`Op::End`]: the session is over.
//!
//! Plans are written `op:SIZExCOUNT,...`, e.g. `push:4096x1024,ping:64x200`.

use alloc::vec::Vec;
use core::fmt;

/// `"VBEN"` read as a little-endian u32.
pub const SPEC_MAGIC: u32 = 0x4e45_4256;
/// Bytes of an encoded [`Spec`].
pub const SPEC_BYTES: usize = 16;
/// Bytes of the responder's answer to a push: the byte count it received.
pub const ACK_BYTES: usize = 8;
/// The largest message an operation may ask for.
pub const MAX_MESSAGE: u32 = 16 << 20;
/// The most round trips one ping operation may ask for (the controller keeps every one).
pub const MAX_PINGS: u32 = 100_000;
/// The most operations in one plan.
pub const MAX_PLAN: usize = 64;

/// What an operation does (see the crate documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// The session is over.
    End,
    /// Controller to responder stream.
    Push,
    /// Responder to controller stream.
    Pull,
    /// Round trips of one message.
    Ping,
}

impl Op {
    fn code(self) -> u32 {
        match self {
            Op::End => 0,
            Op::Push => 1,
            Op::Pull => 2,
            Op::Ping => 3,
        }
    }

    fn from_code(code: u32) -> Option<Op> {
        Some(match code {
            0 => Op::End,
            1 => Op::Push,
            2 => Op::Pull,
            3 => Op::Ping,
            _ => return None,
        })
    }

    /// The name used in plans and reports.
    pub fn name(self) -> &'static str {
        match self {
            Op::End => "end",
            Op::Push => "push",
            Op::Pull => "pull",
            Op::Ping => "ping",
        }
    }
}

/// One operation: `count` messages of `size` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    /// What to do.
    pub op: Op,
    /// Bytes per message.
    pub size: u32,
    /// Messages (or round trips).
    pub count: u32,
}

/// Why a spec or a plan was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The first four bytes are not [`SPEC_MAGIC`].
    BadMagic(u32),
    /// An op code this protocol does not have.
    UnknownOp(u32),
    /// A size of 0 or above [`MAX_MESSAGE`].
    BadSize(u32),
    /// A count of 0, or a ping count above [`MAX_PINGS`].
    BadCount(u32),
    /// A plan item not of the form `op:SIZExCOUNT` with op push, pull or ping.
    BadPlanItem(alloc::string::String),
    /// An empty plan, or one longer than [`MAX_PLAN`].
    BadPlanLength(usize),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadMagic(m) => write!(f, "bad spec magic {m:#010x}"),
            Error::UnknownOp(op) => write!(f, "unknown op {op}"),
            Error::BadSize(s) => write!(f, "message size {s} is not in 1..={MAX_MESSAGE}"),
            Error::BadCount(c) => write!(f, "bad count {c}"),
            Error::BadPlanItem(item) => write!(
                f,
                "bad plan item '{item}' (want op:SIZExCOUNT with op push, pull or ping)"
            ),
            Error::BadPlanLength(n) => write!(f, "a plan has 1 to {MAX_PLAN} items, not {n}"),
        }
    }
}

impl Spec {
    /// The spec that ends a session.
    pub const END: Spec = Spec {
        op: Op::End,
        size: 0,
        count: 0,
    };

    /// Checks the limits every operation but [`Op::End`] must respect.
    pub fn check(self) -> Result<Spec, Error> {
        if self.op == Op::End {
            return Ok(self);
        }
        if self.size == 0 || self.size > MAX_MESSAGE {
            return Err(Error::BadSize(self.size));
        }
        if self.count == 0 || (self.op == Op::Ping && self.count > MAX_PINGS) {
            return Err(Error::BadCount(self.count));
        }
        Ok(self)
    }

    /// The bytes on the wire.
    pub fn encode(self) -> [u8; SPEC_BYTES] {
        let mut b = [0; SPEC_BYTES];
        b[0..4].copy_from_slice(&SPEC_MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&self.op.code().to_le_bytes());
        b[8..12].copy_from_slice(&self.size.to_le_bytes());
        b[12..16].copy_from_slice(&self.count.to_le_bytes());
        b
    }

    /// Reads a spec from the wire, checking it.
    pub fn decode(b: &[u8; SPEC_BYTES]) -> Result<Spec, Error> {
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        if word(0) != SPEC_MAGIC {
            return Err(Error::BadMagic(word(0)));
        }
        let op = Op::from_code(word(4)).ok_or(Error::UnknownOp(word(4)))?;
        Spec {
            op,
            size: word(8),
            count: word(12),
        }
        .check()
    }

    /// Bytes a push or pull moves.
    pub fn total_bytes(self) -> u64 {
        u64::from(self.size) * u64::from(self.count)
    }
}

/// Parses a plan, `op:SIZExCOUNT[,...]`.
pub fn parse_plan(text: &str) -> Result<Vec<Spec>, Error> {
    let plan = text
        .split(',')
        .map(|item| {
            let bad = || Error::BadPlanItem(item.into());
            let (op, rest) = item.split_once(':').ok_or_else(bad)?;
            let op = match op {
                "push" => Op::Push,
                "pull" => Op::Pull,
                "ping" => Op::Ping,
                _ => return Err(bad()),
            };
            let (size, count) = parse_size_count(rest).ok_or_else(bad)?;
            Spec { op, size, count }.check()
        })
        .collect::<Result<Vec<_>, _>>()?;
    if plan.is_empty() || plan.len() > MAX_PLAN {
        return Err(Error::BadPlanLength(plan.len()));
    }
    Ok(plan)
}

/// Parses `SIZExCOUNT` (two decimal numbers, digits only); `None` if it is not that.
pub fn parse_size_count(text: &str) -> Option<(u32, u32)> {
    let (size, count) = text.split_once('x')?;
    let number = |s: &str| {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse::<u32>().ok()
    };
    Some((number(size)?, number(count)?))
}

/// Round-trip figures of a ping operation, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latency {
    /// The middle round trip (the upper one of an even count).
    pub median_us: f64,
    /// The 99th percentile: the round trip at index `(n - 1) * 99 / 100` once sorted.
    pub p99_us: f64,
    /// The fastest round trip.
    pub min_us: f64,
}

impl Latency {
    /// Summarises round trips given in nanoseconds (sorts them); `None` for none.
    pub fn of(round_trips_ns: &mut [u64]) -> Option<Latency> {
        if round_trips_ns.is_empty() {
            return None;
        }
        round_trips_ns.sort_unstable();
        let n = round_trips_ns.len();
        let us = |ns: u64| ns as f64 / 1e3;
        Some(Latency {
            median_us: us(round_trips_ns[n / 2]),
            p99_us: us(round_trips_ns[(n - 1) * 99 / 100]),
            min_us: us(round_trips_ns[0]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_round_trip_through_their_encoding() {
        for spec in [
            Spec::END,
            Spec {
                op: Op::Push,
                size: 4096,
                count: 1024,
            },
            Spec {
                op: Op::Pull,
                size: MAX_MESSAGE,
                count: 1,
            },
            Spec {
                op: Op::Ping,
                size: 64,
                count: MAX_PINGS,
            },
        ] {
            assert_eq!(Spec::decode(&spec.encode()), Ok(spec));
        }
    }

    #[test]
    fn the_encoding_is_the_documented_little_endian_layout() {
        let spec = Spec {
            op: Op::Ping,
            size: 0x0102_0304,
            count: 7,
        };
        assert_eq!(
            spec.encode(),
            [b'V', b'B', b'E', b'N', 3, 0, 0, 0, 4, 3, 2, 1, 7, 0, 0, 0]
        );
    }

    #[test]
    fn bad_specs_are_refused() {
        let mut b = Spec::END.encode();
        b[0] = b'X';
        assert!(matches!(Spec::decode(&b), Err(Error::BadMagic(_))));
        let mut b = Spec::END.encode();
        b[4] = 9;
        assert_eq!(Spec::decode(&b), Err(Error::UnknownOp(9)));
        let push = |size, count| {
            Spec {
                op: Op::Push,
                size,
                count,
            }
            .encode()
        };
        assert_eq!(Spec::decode(&push(0, 1)), Err(Error::BadSize(0)));
        assert_eq!(
            Spec::decode(&push(MAX_MESSAGE + 1, 1)),
            Err(Error::BadSize(MAX_MESSAGE + 1))
        );
        assert_eq!(Spec::decode(&push(1, 0)), Err(Error::BadCount(0)));
        let mut ping = push(64, MAX_PINGS + 1);
        ping[4] = 3;
        assert_eq!(Spec::decode(&ping), Err(Error::BadCount(MAX_PINGS + 1)));
    }

    #[test]
    fn plans_parse_in_order() {
        let plan = parse_plan("push:4096x1024,pull:1048576x4,ping:64x200").unwrap();
        assert_eq!(
            plan,
            [
                Spec {
                    op: Op::Push,
                    size: 4096,
                    count: 1024
                },
                Spec {
                    op: Op::Pull,
                    size: 1 << 20,
                    count: 4
                },
                Spec {
                    op: Op::Ping,
                    size: 64,
                    count: 200
                },
            ]
        );
        assert_eq!(plan[1].total_bytes(), 4 << 20);
    }

    #[test]
    fn bad_plans_are_refused_with_the_offending_item() {
        for (text, item) in [
            ("push:4096", "push:4096"),
            ("send:1x1", "send:1x1"),
            ("push:4096x", "push:4096x"),
            ("push:+4x1", "push:+4x1"),
            ("ping:64x2,,push:1x1", ""),
            ("end:0x0", "end:0x0"),
        ] {
            assert_eq!(
                parse_plan(text),
                Err(Error::BadPlanItem(item.into())),
                "{text}"
            );
        }
        assert_eq!(parse_plan("push:0x1"), Err(Error::BadSize(0)));
        assert_eq!(parse_plan("pull:1x0"), Err(Error::BadCount(0)));
        let long = alloc::vec!["ping:1x1"; MAX_PLAN + 1].join(",");
        assert_eq!(parse_plan(&long), Err(Error::BadPlanLength(MAX_PLAN + 1)));
    }

    #[test]
    fn latency_takes_median_p99_and_min() {
        let mut ns: Vec<u64> = (1..=200).rev().map(|i| i * 1000).collect();
        let l = Latency::of(&mut ns).unwrap();
        assert_eq!(l.min_us, 1.0);
        assert_eq!(l.median_us, 101.0);
        assert_eq!(l.p99_us, 198.0);
        assert_eq!(Latency::of(&mut []), None);
    }
}
