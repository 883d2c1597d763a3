//! Checks a sequence of round numbers as it is observed: each must be the previous one plus one.

use core::fmt;

/// How one observed value relates to the ones before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The first value.
    First,
    /// The previous value plus one.
    Next,
    /// Values were skipped.
    Gap {
        /// How many.
        missing: u64,
    },
    /// A value seen before, or an older one.
    Repeat,
}

/// What a sequence of observed values looked like.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    first: Option<u64>,
    last: Option<u64>,
    seen: u64,
    gaps: u64,
    duplicates: u64,
}

impl Tally {
    /// Records the next observed value. A repeated or older value is counted as a duplicate and
    /// does not move the sequence back.
    pub fn observe(&mut self, n: u64) -> Step {
        self.seen += 1;
        let step = match self.last {
            None => {
                self.first = Some(n);
                Step::First
            }
            Some(last) if n == last.saturating_add(1) => Step::Next,
            Some(last) if n > last => {
                self.gaps += n - last - 1;
                Step::Gap {
                    missing: n - last - 1,
                }
            }
            Some(_) => {
                self.duplicates += 1;
                return Step::Repeat;
            }
        };
        self.last = Some(n);
        step
    }

    /// The first value.
    pub fn first(&self) -> Option<u64> {
        self.first
    }

    /// The highest value.
    pub fn last(&self) -> Option<u64> {
        self.last
    }

    /// How many values were observed.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// How many values were skipped.
    pub fn gaps(&self) -> u64 {
        self.gaps
    }

    /// How many values were repeats of earlier ones.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Whether the values were exactly `first..=last`, each once, in order.
    pub fn is_exactly(&self, first: u64, last: u64) -> bool {
        self.gaps == 0
            && self.duplicates == 0
            && self.first == Some(first)
            && self.last == Some(last)
            && Some(self.seen) == (last + 1).checked_sub(first)
    }

    /// Whether the values so far were consecutive, each once, ending at `last`.
    pub fn is_unbroken_up_to(&self, last: u64) -> bool {
        self.first.is_some_and(|first| self.is_exactly(first, last))
    }
}

/// `first F last L seen S gaps G duplicates D` (`-` for a missing value): words that tests and
/// scripts read back.
impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |value: Option<u64>| {
            value.map_or(alloc::string::String::from("-"), |v| alloc::format!("{v}"))
        };
        write!(
            f,
            "first {} last {} seen {} gaps {} duplicates {}",
            show(self.first),
            show(self.last),
            self.seen,
            self.gaps,
            self.duplicates
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn tally(values: &[u64]) -> (Tally, alloc::vec::Vec<Step>) {
        let mut tally = Tally::default();
        let steps = values.iter().map(|&n| tally.observe(n)).collect();
        (tally, steps)
    }

    #[test]
    fn a_consecutive_run_is_exact() {
        let (tally, steps) = tally(&[21, 22, 23]);
        assert_eq!(steps, [Step::First, Step::Next, Step::Next]);
        assert!(tally.is_exactly(21, 23));
        assert!(tally.is_unbroken_up_to(23));
        assert!(!tally.is_exactly(1, 23), "it did not start at 1");
        assert!(!tally.is_unbroken_up_to(24), "it did not reach 24");
        assert_eq!(
            tally.to_string(),
            "first 21 last 23 seen 3 gaps 0 duplicates 0"
        );
    }

    #[test]
    fn skipped_values_are_counted_as_gaps() {
        let (tally, steps) = tally(&[1, 2, 5, 6]);
        assert_eq!(steps[2], Step::Gap { missing: 2 });
        assert_eq!(tally.gaps(), 2);
        assert_eq!(tally.last(), Some(6));
        assert!(!tally.is_exactly(1, 6));
    }

    #[test]
    fn repeats_and_older_values_are_duplicates_and_do_not_move_back() {
        let (tally, steps) = tally(&[1, 2, 2, 1, 3]);
        assert_eq!(
            steps,
            [
                Step::First,
                Step::Next,
                Step::Repeat,
                Step::Repeat,
                Step::Next
            ]
        );
        assert_eq!(tally.duplicates(), 2);
        assert_eq!(tally.seen(), 5);
        assert_eq!(tally.last(), Some(3));
        assert!(!tally.is_exactly(1, 3));
    }

    #[test]
    fn nothing_seen_is_not_exact() {
        let tally = Tally::default();
        assert!(!tally.is_unbroken_up_to(1));
        assert_eq!(
            tally.to_string(),
            "first - last - seen 0 gaps 0 duplicates 0"
        );
    }
}
