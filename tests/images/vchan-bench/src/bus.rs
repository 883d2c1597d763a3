//! The lichen-bus rows of `scripts/bench vchan`: bus messages per second between two lichen
//! domains, over manifest channels, driven by lichen-bus-io (the image's `bus_session.rs`).
//!
//! A *publish* session and a *subscribe* session share two channels: `NAME` carries the
//! publisher's table ([`SAMPLE_TOPIC`]) to the subscriber, [`ack_channel`]`(NAME)` carries the
//! subscriber's [`Progress`] back. The publisher runs its plan (`bus_plan=SIZExCOUNT,...`), one
//! run `r` (counted from 0) per item:
//!
//! 1. it waits for progress step `2r`: the subscriber is synchronised and its view is empty;
//! 2. it publishes `COUNT` objects under distinct keys ([`key_of`]), each a [`Sample`] holding
//!    the run, its index, the count and `SIZE` payload bytes, in batches of [`BATCH`], letting
//!    its driver write each batch before the next, so the bus neither coalesces nor
//!    resynchronises;
//! 3. the subscriber checks every update with a [`RunCheck`] and, once its view holds all
//!    `COUNT` objects of run `r`, publishes step `2r + 1`. The publisher's clock runs from its
//!    first publish to seeing that step: its row is `COUNT` messages in that time;
//! 4. the publisher deletes the objects (not timed); the subscriber checks every deletion and
//!    publishes step `2r + 2` once its view is empty again.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use bus::Topic;
use core::fmt;

use crate::protocol::parse_size_count;

/// The publisher's table: the samples of the run under way.
pub const SAMPLE_TOPIC: Topic = Topic::new(
    topics::vbench_a::SAMPLES.name(),
    topics::vbench_a::SAMPLES.schema(),
);
/// The subscriber's table: one object, [`PROGRESS_KEY`].
pub const PROGRESS_TOPIC: Topic = Topic::new(
    topics::vbench_b::PROGRESS.name(),
    topics::vbench_b::PROGRESS.schema(),
);
/// The key of the subscriber's one object.
pub const PROGRESS_KEY: &str = "progress";
/// Objects the publisher publishes (or deletes) before letting its driver write them: half the
/// bus's bound on a session's changed keys (`bus::DEFAULT_MAX_PENDING`), which a batch must
/// not overflow.
pub const BATCH: u32 = 128;
/// The largest payload of a sample: its frame must stay under the bus's 64 KiB.
pub const MAX_PAYLOAD: u32 = 60_000;
/// The most objects of one run (both domains hold them all at once).
pub const MAX_COUNT: u32 = 200_000;
/// The most runs of one plan.
pub const MAX_RUNS: usize = 64;

/// The channel carrying a bus session's progress back to its publisher.
pub fn ack_channel(name: &str) -> String {
    format!("{name}-ack")
}

/// The key of object `index` of a run.
pub fn key_of(index: u32) -> String {
    format!("s{index}")
}

pub use topics::vbench_a::Sample;
pub use topics::vbench_b::Progress;

/// One run of a plan: `count` objects of `size` payload bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusRun {
    /// Payload bytes per object.
    pub size: u32,
    /// Objects.
    pub count: u32,
}

/// A `bus_plan=` the command line got wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadBusPlan(pub String);

impl fmt::Display for BadBusPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad bus plan item '{}' (want SIZExCOUNT, SIZE 1..={MAX_PAYLOAD}, COUNT 1..={MAX_COUNT}, \
             at most {MAX_RUNS} items)",
            self.0
        )
    }
}

/// Parses a bus plan, `SIZExCOUNT[,...]`.
pub fn parse_bus_plan(text: &str) -> Result<Vec<BusRun>, BadBusPlan> {
    let runs = text
        .split(',')
        .map(|item| match parse_size_count(item) {
            Some((size, count))
                if (1..=MAX_PAYLOAD).contains(&size) && (1..=MAX_COUNT).contains(&count) =>
            {
                Ok(BusRun { size, count })
            }
            _ => Err(BadBusPlan(item.into())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if runs.len() > MAX_RUNS {
        return Err(BadBusPlan(format!("{} items", runs.len())));
    }
    Ok(runs)
}

/// What the subscriber saw that the publisher never sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckError {
    /// An object of another run than the one under way.
    WrongRun {
        /// Its key.
        key: String,
        /// The run under way.
        expected: u32,
        /// The object's run.
        got: u32,
    },
    /// A key that is not [`key_of`] the object's index.
    WrongKey {
        /// The key.
        key: String,
        /// The object's index.
        index: u32,
    },
    /// An index at or above the run's count.
    OutOfRange {
        /// The index.
        index: u32,
        /// The run's count.
        count: u32,
    },
    /// An object whose count or payload size differs from the run's first one.
    WrongShape {
        /// Its index.
        index: u32,
        /// (size, count) of the run's first object.
        expected: (u32, u32),
        /// Its (size, count).
        got: (u32, u32),
    },
    /// An object created again while the view holds it (a duplicate).
    Duplicate(u32),
    /// An object deleted that the view does not hold (a duplicate deletion).
    NotInView(u32),
    /// An event out of place: a creation while the run is being deleted, a deletion before
    /// the run is complete, or a modification (keys are never reused within a run).
    OutOfPlace {
        /// What happened.
        event: &'static str,
        /// Its key.
        key: String,
    },
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::WrongRun { key, expected, got } => {
                write!(f, "object {key} of run {got} during run {expected}")
            }
            CheckError::WrongKey { key, index } => {
                write!(
                    f,
                    "object {index} under key {key} instead of {}",
                    key_of(*index)
                )
            }
            CheckError::OutOfRange { index, count } => {
                write!(f, "object {index} of a run of {count}")
            }
            CheckError::WrongShape {
                index,
                expected,
                got,
            } => write!(
                f,
                "object {index} has {} bytes of a run of {}, the run's first {} of {}",
                got.0, got.1, expected.0, expected.1
            ),
            CheckError::Duplicate(index) => write!(f, "object {index} created twice"),
            CheckError::NotInView(index) => write!(f, "object {index} deleted but not held"),
            CheckError::OutOfPlace { event, key } => write!(f, "unexpected {event} of {key}"),
        }
    }
}

/// Where the run under way is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Objects are being created.
    Filling,
    /// Every object was seen; they are being deleted.
    Clearing,
}

/// The subscriber's check of the runs: every object of a run created exactly once, then
/// deleted exactly once, nothing else.
#[derive(Debug)]
pub struct RunCheck {
    run: u32,
    phase: Phase,
    /// (size, count) of the run under way, from its first object.
    shape: Option<(u32, u32)>,
    /// Which objects of the run the view holds.
    held: Vec<bool>,
    /// How many it holds.
    holding: u32,
    /// Creations checked, over all runs.
    created: u64,
    /// Deletions checked, over all runs.
    deleted: u64,
}

impl Default for RunCheck {
    fn default() -> Self {
        Self::new()
    }
}

impl RunCheck {
    /// Waits for run 0.
    pub fn new() -> Self {
        Self {
            run: 0,
            phase: Phase::Filling,
            shape: None,
            held: Vec::new(),
            holding: 0,
            created: 0,
            deleted: 0,
        }
    }

    /// The [`Progress::step`] reached.
    pub fn step(&self) -> u32 {
        2 * self.run + u32::from(self.phase == Phase::Clearing)
    }

    /// Runs completed (created and deleted).
    pub fn runs(&self) -> u32 {
        self.run
    }

    /// Creations and deletions checked, over all runs.
    pub fn totals(&self) -> (u64, u64) {
        (self.created, self.deleted)
    }

    /// Checks the creation of `key`; true when the view now holds the whole run.
    pub fn created(&mut self, key: &str, sample: &Sample) -> Result<bool, CheckError> {
        if self.phase != Phase::Filling {
            return Err(self.out_of_place("creation", key));
        }
        let index = self.index_of(key, sample)?;
        if core::mem::replace(&mut self.held[index as usize], true) {
            return Err(CheckError::Duplicate(index));
        }
        self.holding += 1;
        self.created += 1;
        if self.holding == sample.count {
            self.phase = Phase::Clearing;
            return Ok(true);
        }
        Ok(false)
    }

    /// Checks the deletion of `key`, whose value was `sample`; true when the view is empty
    /// again and the next run may start.
    pub fn deleted(&mut self, key: &str, sample: &Sample) -> Result<bool, CheckError> {
        if self.phase != Phase::Clearing {
            return Err(self.out_of_place("deletion", key));
        }
        let index = self.index_of(key, sample)?;
        if !core::mem::replace(&mut self.held[index as usize], false) {
            return Err(CheckError::NotInView(index));
        }
        self.holding -= 1;
        self.deleted += 1;
        if self.holding == 0 {
            self.run += 1;
            self.phase = Phase::Filling;
            self.shape = None;
            self.held = Vec::new();
            return Ok(true);
        }
        Ok(false)
    }

    /// A modification: never legitimate (every key is created, then deleted, once a run).
    pub fn modified(&self, key: &str) -> CheckError {
        self.out_of_place("modification", key)
    }

    fn out_of_place(&self, event: &'static str, key: &str) -> CheckError {
        CheckError::OutOfPlace {
            event,
            key: key.into(),
        }
    }

    /// Checks that `sample` belongs at `key` in the run under way; its index.
    fn index_of(&mut self, key: &str, sample: &Sample) -> Result<u32, CheckError> {
        if sample.run != self.run {
            return Err(CheckError::WrongRun {
                key: key.into(),
                expected: self.run,
                got: sample.run,
            });
        }
        if key != key_of(sample.index) {
            return Err(CheckError::WrongKey {
                key: key.into(),
                index: sample.index,
            });
        }
        let got = (sample.payload.len() as u32, sample.count);
        let expected = *self.shape.get_or_insert(got);
        if got != expected {
            return Err(CheckError::WrongShape {
                index: sample.index,
                expected,
                got,
            });
        }
        if sample.index >= sample.count {
            return Err(CheckError::OutOfRange {
                index: sample.index,
                count: sample.count,
            });
        }
        if self.held.is_empty() {
            self.held = vec![false; sample.count as usize];
        }
        Ok(sample.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(run: u32, index: u32, count: u32, size: usize) -> Sample {
        Sample {
            run,
            index,
            count,
            payload: vec![0xa5; size],
        }
    }

    /// Creates then deletes run `run` of `count` objects, in the order given, checking the
    /// steps.
    fn full_run(check: &mut RunCheck, run: u32, order: &[u32]) {
        let count = order.len() as u32;
        assert_eq!(check.step(), 2 * run);
        for (i, &index) in order.iter().enumerate() {
            let done = check
                .created(&key_of(index), &sample(run, index, count, 8))
                .unwrap();
            assert_eq!(done, i + 1 == order.len());
        }
        assert_eq!(check.step(), 2 * run + 1);
        for (i, &index) in order.iter().rev().enumerate() {
            let done = check
                .deleted(&key_of(index), &sample(run, index, count, 8))
                .unwrap();
            assert_eq!(done, i + 1 == order.len());
        }
        assert_eq!(check.step(), 2 * run + 2);
    }

    #[test]
    fn runs_complete_in_any_order_and_count() {
        let mut check = RunCheck::new();
        full_run(&mut check, 0, &[0, 1, 2]);
        full_run(&mut check, 1, &[4, 0, 3, 1, 2]);
        full_run(&mut check, 2, &[0]);
        assert_eq!(check.runs(), 3);
        assert_eq!(check.totals(), (9, 9));
    }

    #[test]
    fn duplicates_and_losses_are_caught() {
        let mut check = RunCheck::new();
        let s0 = sample(0, 0, 2, 8);
        assert_eq!(check.created("s0", &s0), Ok(false));
        assert_eq!(check.created("s0", &s0), Err(CheckError::Duplicate(0)));
        // Deleting before the run is complete means creations were lost.
        assert!(matches!(
            check.deleted("s0", &s0),
            Err(CheckError::OutOfPlace {
                event: "deletion",
                ..
            })
        ));
        assert_eq!(check.created("s1", &sample(0, 1, 2, 8)), Ok(true));
        assert_eq!(check.deleted("s1", &sample(0, 1, 2, 8)), Ok(false));
        assert_eq!(
            check.deleted("s1", &sample(0, 1, 2, 8)),
            Err(CheckError::NotInView(1))
        );
        // A creation before the deletions are complete.
        assert!(matches!(
            check.created("s1", &sample(0, 1, 2, 8)),
            Err(CheckError::OutOfPlace {
                event: "creation",
                ..
            })
        ));
        assert!(matches!(
            check.modified("s0"),
            CheckError::OutOfPlace {
                event: "modification",
                ..
            }
        ));
    }

    #[test]
    fn foreign_objects_are_refused() {
        let mut check = RunCheck::new();
        assert_eq!(
            check.created("s0", &sample(1, 0, 2, 8)),
            Err(CheckError::WrongRun {
                key: "s0".into(),
                expected: 0,
                got: 1
            })
        );
        assert_eq!(
            check.created("s7", &sample(0, 0, 2, 8)),
            Err(CheckError::WrongKey {
                key: "s7".into(),
                index: 0
            })
        );
        assert_eq!(
            check.created("s2", &sample(0, 2, 2, 8)),
            Err(CheckError::OutOfRange { index: 2, count: 2 })
        );
        assert_eq!(check.created("s0", &sample(0, 0, 2, 8)), Ok(false));
        assert_eq!(
            check.created("s1", &sample(0, 1, 2, 9)),
            Err(CheckError::WrongShape {
                index: 1,
                expected: (8, 2),
                got: (9, 2)
            })
        );
        assert_eq!(
            check.created("s1", &sample(0, 1, 3, 8)),
            Err(CheckError::WrongShape {
                index: 1,
                expected: (8, 2),
                got: (8, 3)
            })
        );
    }

    #[test]
    fn plans_parse_and_bad_ones_name_the_item() {
        assert_eq!(
            parse_bus_plan("64x20000,1024x4000"),
            Ok(alloc::vec![
                BusRun {
                    size: 64,
                    count: 20000
                },
                BusRun {
                    size: 1024,
                    count: 4000
                }
            ])
        );
        for item in [
            "0x5",
            "64x0",
            "60001x1",
            "64x200001",
            "64",
            "x5",
            "64x5x",
            "",
        ] {
            assert_eq!(
                parse_bus_plan(&format!("64x1,{item}")),
                Err(BadBusPlan(item.into())),
                "{item}"
            );
        }
        let long = alloc::vec!["1x1"; MAX_RUNS + 1].join(",");
        assert_eq!(
            parse_bus_plan(&long),
            Err(BadBusPlan(format!("{} items", MAX_RUNS + 1)))
        );
    }
}
