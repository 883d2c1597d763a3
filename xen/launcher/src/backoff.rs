//! Restart policies: when a service that stopped is started again, and after how long.

use std::time::Duration;

use serde::Deserialize;

/// When a stopped service is restarted.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RestartMode {
    /// Never: the service runs once.
    Never,
    /// After a failure (a crash, a non-zero exit status, a timeout), not after a clean exit.
    #[default]
    OnFailure,
    /// After any exit; only failures count toward the limit.
    Always,
}

/// How one run of a service ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It powered off with exit status 0 (or none).
    Success,
    /// It crashed, rebooted, exited with a non-zero status, timed out or could not be started.
    Failure(String),
}

/// A restart policy: a mode, a limit and an exponential backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    /// When to restart.
    pub mode: RestartMode,
    /// How many restarts after failures in a row are allowed before giving up.
    pub max_restarts: u32,
    /// The delay before the first restart after a failure.
    pub initial_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
}

/// What to do once a run has ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Start the service again after this delay.
    Restart(Duration),
    /// The service is done and succeeded.
    Exited,
    /// The service is done and failed.
    Failed(String),
}

impl RestartPolicy {
    /// The delay before a restart that follows `failures_in_a_row` failures (at least one):
    /// the initial delay, doubled for each further failure, capped at the maximum.
    pub fn delay(&self, failures_in_a_row: u32) -> Duration {
        let doublings = failures_in_a_row.saturating_sub(1).min(31);
        self.initial_delay
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay)
    }

    /// Decides what follows a run that ended with `outcome`, given how many failures in a row
    /// there were before it (a success resets that count; the caller keeps it).
    pub fn decide(&self, outcome: &Outcome, failures_before: u32) -> Decision {
        match (outcome, self.mode) {
            (Outcome::Success, RestartMode::Always) => Decision::Restart(Duration::ZERO),
            (Outcome::Success, _) => Decision::Exited,
            (Outcome::Failure(why), RestartMode::Never) => Decision::Failed(why.clone()),
            (Outcome::Failure(why), _) => {
                let failures = failures_before + 1;
                if failures > self.max_restarts {
                    Decision::Failed(format!(
                        "{why}; gave up after {} restarts",
                        self.max_restarts
                    ))
                } else {
                    Decision::Restart(self.delay(failures))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: RestartMode, max_restarts: u32) -> RestartPolicy {
        RestartPolicy {
            mode,
            max_restarts,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(3),
        }
    }

    fn crash() -> Outcome {
        Outcome::Failure("crashed".into())
    }

    #[test]
    fn delays_double_up_to_the_maximum() {
        let p = policy(RestartMode::OnFailure, 10);
        let delays: Vec<u64> = (1..=6).map(|n| p.delay(n).as_millis() as u64).collect();
        assert_eq!(delays, [500, 1000, 2000, 3000, 3000, 3000]);
        assert_eq!(p.delay(u32::MAX), Duration::from_secs(3), "no overflow");
    }

    #[test]
    fn on_failure_restarts_with_backoff_then_gives_up() {
        let p = policy(RestartMode::OnFailure, 2);
        assert_eq!(
            p.decide(&crash(), 0),
            Decision::Restart(Duration::from_millis(500))
        );
        assert_eq!(
            p.decide(&crash(), 1),
            Decision::Restart(Duration::from_millis(1000))
        );
        let Decision::Failed(why) = p.decide(&crash(), 2) else {
            panic!("should give up")
        };
        assert!(
            why.contains("crashed") && why.contains("2 restarts"),
            "{why}"
        );
        assert_eq!(p.decide(&Outcome::Success, 1), Decision::Exited);
    }

    #[test]
    fn never_runs_once() {
        let p = policy(RestartMode::Never, 5);
        assert_eq!(p.decide(&Outcome::Success, 0), Decision::Exited);
        assert_eq!(p.decide(&crash(), 0), Decision::Failed("crashed".into()));
    }

    #[test]
    fn always_restarts_clean_exits_but_limits_failures() {
        let p = policy(RestartMode::Always, 1);
        assert_eq!(
            p.decide(&Outcome::Success, 0),
            Decision::Restart(Duration::ZERO)
        );
        assert_eq!(
            p.decide(&crash(), 0),
            Decision::Restart(Duration::from_millis(500))
        );
        assert!(matches!(p.decide(&crash(), 1), Decision::Failed(_)));
    }

    #[test]
    fn a_zero_limit_fails_on_the_first_failure() {
        assert!(matches!(
            policy(RestartMode::OnFailure, 0).decide(&crash(), 0),
            Decision::Failed(_)
        ));
    }
}
