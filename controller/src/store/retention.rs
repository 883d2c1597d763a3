//! How long reports are kept, per kind: by age, by count per device and by size (payload bytes)
//! per device. The controller applies it in the background ([`super::Store::retire`]).

use super::TelemetryKind;

/// What is kept of one kind of report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindRetention {
    /// Reports older than this many milliseconds are deleted (`None`: no age limit).
    pub max_age_ms: Option<u64>,
    /// Only the newest this many reports per device are kept (`None`: no count limit).
    pub max_per_device: Option<u64>,
    /// Only the newest reports per device whose payloads add up to at most this many bytes are
    /// kept (`None`: no size limit).
    pub max_bytes_per_device: Option<u64>,
}

/// What is kept of each kind of report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Indexed by [`TelemetryKind`] in [`TelemetryKind::ALL`] order.
    kinds: [KindRetention; TelemetryKind::ALL.len()],
}

const DAY_MS: u64 = 24 * 3600 * 1000;

/// The default size limit of each kind of report per device: 64 MiB (a device flooding one kind
/// cannot fill the database).
pub const DEFAULT_MAX_BYTES_PER_DEVICE: u64 = 64 << 20;

impl Default for Retention {
    /// Info: 30 days, 1,000 per device; metrics: 7 days, 10,000 per device (a day of 10 s
    /// reports); logs, newlogs and app logs: 14 days, 10,000; flow logs: 7 days, 1,000; hardware
    /// health: 30 days, 1,000. Each kind: at most [`DEFAULT_MAX_BYTES_PER_DEVICE`] per device.
    fn default() -> Self {
        let keep = |days: u64, count: u64| KindRetention {
            max_age_ms: Some(days * DAY_MS),
            max_per_device: Some(count),
            max_bytes_per_device: Some(DEFAULT_MAX_BYTES_PER_DEVICE),
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
            max_bytes_per_device: None,
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

    /// Parses `KIND=AGE,COUNT[,SIZE]` as given on the command line: AGE in days (`d`), hours
    /// (`h`) or minutes (`m`); COUNT per device; SIZE per device in bytes, or with `k`, `m` or `g`
    /// (KiB, MiB, GiB); `-` for no limit. Without SIZE, the size limit stays as it was.
    pub fn apply_arg(&mut self, arg: &str) -> Result<(), String> {
        let (kind, rest) = arg
            .split_once('=')
            .ok_or_else(|| format!("{arg:?}: expected KIND=AGE,COUNT[,SIZE]"))?;
        let kind = TelemetryKind::from_name(kind)
            .ok_or_else(|| format!("{arg:?}: unknown report kind {kind:?}"))?;
        let parts: Vec<&str> = rest.split(',').collect();
        let [age, count, size @ ..] = parts.as_slice() else {
            return Err(format!("{arg:?}: expected KIND=AGE,COUNT[,SIZE]"));
        };
        if size.len() > 1 {
            return Err(format!("{arg:?}: expected KIND=AGE,COUNT[,SIZE]"));
        }
        let limit =
            |text: &str, what: &str, units: &[(&str, u64)]| -> Result<Option<u64>, String> {
                if text == "-" {
                    return Ok(None);
                }
                let (number, scale) = units
                    .iter()
                    .find_map(|(suffix, scale)| text.strip_suffix(suffix).map(|n| (n, *scale)))
                    .unwrap_or((text, 1));
                let number: u64 = number
                    .parse()
                    .map_err(|_| format!("{arg:?}: bad {what} {text:?}"))?;
                Ok(Some(number.saturating_mul(scale)))
            };
        let time_units = [("d", DAY_MS), ("h", 3600 * 1000), ("m", 60 * 1000)];
        if *age != "-" && !time_units.iter().any(|(unit, _)| age.ends_with(unit)) {
            return Err(format!("{arg:?}: age needs a unit (d, h or m)"));
        }
        let max_age_ms = limit(age, "age", &time_units)?;
        let max_per_device = limit(count, "count", &[])?;
        let max_bytes_per_device = match size.first() {
            Some(size) => limit(
                size,
                "size",
                &[("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30)],
            )?,
            None => self.get(kind).max_bytes_per_device,
        };
        self.set(
            kind,
            KindRetention {
                max_age_ms,
                max_per_device,
                max_bytes_per_device,
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
        retention.apply_arg("logs=-,-,-").unwrap();
        assert_eq!(
            retention.get(TelemetryKind::Metrics),
            KindRetention {
                max_age_ms: Some(2 * 3600 * 1000),
                max_per_device: Some(50),
                max_bytes_per_device: Some(DEFAULT_MAX_BYTES_PER_DEVICE),
            }
        );
        retention.apply_arg("flowlog=1d,-,3m").unwrap();
        assert_eq!(
            retention.get(TelemetryKind::FlowLog).max_bytes_per_device,
            Some(3 << 20)
        );
        retention.apply_arg("flowlog=1d,-,-").unwrap();
        assert_eq!(
            retention.get(TelemetryKind::FlowLog).max_bytes_per_device,
            None
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
            "info=1d,1,x",
            "info=1d,1,1x",
            "info=1d,1,1,1",
        ] {
            assert!(retention.apply_arg(bad).is_err(), "{bad}");
        }
    }
}
