//! What the logs pillar knows of one service's lines (log-wire's numbering).
//!
//! A service numbers its lines 0, 1, 2, ... in each boot and sends again, on every new
//! connection, the lines not yet acknowledged; its hello says below which number everything was
//! acknowledged. So a line numbered below the next one expected is a duplicate (skipped), and
//! one numbered above it means the service dropped lines (counted as lost).
//!
//! What the service may corrupt: the numbers. Any sequence is taken: numbers that go back are
//! duplicates, a jump counts as lines lost (saturating), a new boot starts afresh.

use alloc::string::String;

/// One service's lines, as seen by the logs pillar.
#[derive(Clone, Debug)]
pub struct Source {
    /// The service's name.
    pub name: String,
    boot: Option<u64>,
    /// The next number expected (one past u64::MAX once that was taken).
    next: u128,
    lost: u64,
    received: u64,
    /// The last line taken (boot, number).
    last: Option<(u64, u64)>,
}

/// What to do with a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accept {
    /// A new line; `lost_before` lines were dropped by the service just before it.
    New {
        /// Lines lost just before this one.
        lost_before: u64,
    },
    /// Seen already (sent again after a reconnection): skip it.
    Duplicate,
}

impl Source {
    /// A service called `name`, not heard from yet.
    pub fn new(name: impl Into<String>) -> Self {
        Source {
            name: name.into(),
            boot: None,
            next: 0,
            lost: 0,
            received: 0,
            last: None,
        }
    }

    /// A hello: this boot of the service, every line below `first` acknowledged.
    pub fn hello(&mut self, boot: u64, first: u64) {
        if self.boot != Some(boot) {
            self.boot = Some(boot);
            self.next = u128::from(first);
        } else {
            self.next = self.next.max(u128::from(first));
        }
    }

    /// Takes a line numbered `seq` (after a hello; before one, it starts the count).
    pub fn accept(&mut self, seq: u64) -> Accept {
        let boot = *self.boot.get_or_insert(0);
        if u128::from(seq) < self.next {
            return Accept::Duplicate;
        }
        let lost_before = (u128::from(seq) - self.next) as u64;
        self.lost = self.lost.saturating_add(lost_before);
        self.next = u128::from(seq) + 1;
        self.received += 1;
        self.last = Some((boot, seq));
        Accept::New { lost_before }
    }

    /// Lines lost so far (gaps in the numbers).
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Lines taken so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The last line taken, as (boot, number): what to acknowledge once it is kept.
    pub fn mark(&self) -> Option<(u64, u64)> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_skipped_and_gaps_counted() {
        let mut s = Source::new("zedagent");
        s.hello(7, 0);
        assert_eq!(s.accept(0), Accept::New { lost_before: 0 });
        assert_eq!(s.accept(1), Accept::New { lost_before: 0 });
        assert_eq!(s.accept(5), Accept::New { lost_before: 3 });
        assert_eq!(s.mark(), Some((7, 5)));
        // A reconnection: the service sends again from its last acknowledged line.
        s.hello(7, 2);
        assert_eq!(s.accept(2), Accept::Duplicate);
        assert_eq!(s.accept(5), Accept::Duplicate);
        assert_eq!(s.accept(6), Accept::New { lost_before: 0 });
        assert_eq!((s.lost(), s.received()), (3, 4));
    }

    #[test]
    fn a_new_boot_or_a_new_pillar_starts_from_the_hello() {
        let mut s = Source::new("vault");
        // A pillar that restarted: lines below 40 were acknowledged by its previous life.
        s.hello(1, 40);
        assert_eq!(s.accept(40), Accept::New { lost_before: 0 });
        // Lines the service dropped while nobody collected show as a gap after the hello.
        s.hello(2, 0);
        assert_eq!(s.accept(3), Accept::New { lost_before: 3 });
        assert_eq!(s.mark(), Some((2, 3)));
    }

    #[test]
    fn hostile_numbers_saturate() {
        let mut s = Source::new("x");
        s.hello(1, u64::MAX);
        assert_eq!(s.accept(u64::MAX), Accept::New { lost_before: 0 });
        assert_eq!(s.accept(u64::MAX), Accept::Duplicate);
        let mut s = Source::new("y");
        assert_eq!(
            s.accept(u64::MAX),
            Accept::New {
                lost_before: u64::MAX
            }
        );
        assert_eq!(s.accept(0), Accept::Duplicate);
        assert_eq!(s.lost(), u64::MAX);
    }
}
