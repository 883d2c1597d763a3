//! How long reports are kept, per kind: by age and by count per device. The controller applies it
//! in the background ([`super::Store::retire`]).

use super::TelemetryKind;

/// What is kept of one kind of report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindRetention {
    /// Reports older than this many milliseconds are deleted (`None`: no age limit).
    pub max_age_ms: Option<u64>,
    /// Only the newest this many reports per device are kept (`None`: no count limit).
    pub max_per_device: Option<u64>,
}

/// What is kept of each kind of report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Indexed by [`TelemetryKind`] in [`TelemetryKind::ALL`] order.
    kinds: [KindRetention; TelemetryKind::ALL.len()],
}

const DAY_MS: u64 = 24 * 3600 * 1000;

impl Default for Retention {
    /// Info: 30 days, 1,000 per device; metrics: 7 days, 10,000 per device (a day of 10 s
    /// reports); logs, newlogs and app logs: 14 days, 10,000; flow logs: 7 days, 1,000; hardware
    /// health: 30 days, 1,000.
    fn default() -> Self {
        let keep = |days: u64, count: u64| KindRetention {
            max_age_ms: Some(days * DAY_MS),
            max_per_device: Some(count),
        };
        let mut retention = Self {
            kinds: [keep(0, 0); TelemetryKind::ALL.len()],
        };
        retention.set(TelemetryKind::Info, keep(30, 1_000));
        retention.set(TelemetryKind::Metrics, keep(7, 10_000));
        retention.set(TelemetryKind::Logs, keep(14, 10_000));
        retention.set(TelemetryKind::FlowLog, keep(7, 1_000));
        retention.set(TelemetryKind::NewLogs, keep(14, 10_000));
        retention.set(TelemetryKind::AppLogs, keep(14, 10_000));
        retention.set(TelemetryKind::AppNewLogs, keep(14, 10_000));
        retention.set(TelemetryKind::HardwareHealth, keep(30, 1_000));
        retention
    }
}

impl Retention {
    /// Keeps everything.
    pub const FOREVER: Self = Self {
        kinds: [KindRetention {
            max_age_ms: None,
            max_per_device: None,
        }; TelemetryKind::ALL.len()],
    };

    fn index(kind: TelemetryKind) -> usize {
        kind as usize - 1
    }

    /// What is kept of `kind`.
    pub fn get(&self, kind: TelemetryKind) -> KindRetention {
        self.kinds[Self::index(kind)]
    }

    /// Sets what is kept of `kind`.
    pub fn set(&mut self, kind: TelemetryKind, keep: KindRetention) {
        self.kinds[Self::index(kind)] = keep;
    }

    /// Parses `KIND=AGE,COUNT` as given on the command line: AGE in days (`d`), hours (`h`) or
    /// minutes (`m`), or `-` for no limit; COUNT per device, or `-`.
    pub fn apply_arg(&mut self, arg: &str) -> Result<(), String> {
        let (kind, rest) = arg
            .split_once('=')
            .ok_or_else(|| format!("{arg:?}: expected KIND=AGE,COUNT"))?;
        let kind = TelemetryKind::from_name(kind)
            .ok_or_else(|| format!("{arg:?}: unknown report kind {kind:?}"))?;
        let (age, count) = rest
            .split_once(',')
            .ok_or_else(|| format!("{arg:?}: expected KIND=AGE,COUNT"))?;
        let max_age_ms = match age {
            "-" => None,
            _ => {
                let (number, unit) = age.split_at(age.len().saturating_sub(1));
                let unit_ms = match unit {
                    "d" => DAY_MS,
                    "h" => 3600 * 1000,
                    "m" => 60 * 1000,
                    _ => return Err(format!("{arg:?}: age needs a unit (d, h or m)")),
                };
                let number: u64 = number
                    .parse()
                    .map_err(|_| format!("{arg:?}: bad age {age:?}"))?;
                Some(number.saturating_mul(unit_ms))
            }
        };
        let max_per_device = match count {
            "-" => None,
            _ => Some(
                count
                    .parse()
                    .map_err(|_| format!("{arg:?}: bad count {count:?}"))?,
            ),
        };
        self.set(
            kind,
            KindRetention {
                max_age_ms,
                max_per_device,
            },
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_retention_is_parsed_or_refused_clearly() {
        let mut retention = Retention::default();
        retention.apply_arg("metrics=2h,50").unwrap();
        retention.apply_arg("logs=-,-").unwrap();
        assert_eq!(
            retention.get(TelemetryKind::Metrics),
            KindRetention {
                max_age_ms: Some(2 * 3600 * 1000),
                max_per_device: Some(50)
            }
        );
        assert_eq!(
            retention.get(TelemetryKind::Logs),
            Retention::FOREVER.get(TelemetryKind::Logs)
        );
        assert_eq!(
            retention.get(TelemetryKind::Info).max_per_device,
            Some(1_000)
        );
        for bad in [
            "metrics",
            "metrics=2h",
            "bogus=1d,1",
            "info=2,1",
            "info=xd,1",
            "info=1d,x",
        ] {
            assert!(retention.apply_arg(bad).is_err(), "{bad}");
        }
    }
}
