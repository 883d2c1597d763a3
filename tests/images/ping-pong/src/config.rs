//! The command line: `rounds=N interval_ms=N report_every=N stall_s=N` (the image says the role).

use core::fmt;

use kernel::cmdline::{Args, BadValue};

/// A ping-pong service's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// How many rounds the exchange has (`rounds`, default 60).
    pub rounds: u64,
    /// ping's pause between an acknowledgement and the next round (`interval_ms`, default 150).
    pub interval_ms: u64,
    /// Log a progress line every this many rounds (`report_every`, default 10).
    pub report_every: u64,
    /// Give up when the peer's table does not change for this long (`stall_s`, default 120).
    pub stall_s: u64,
}

/// Why the command line is not usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A number did not parse.
    BadValue(BadValue),
    /// A count that must be positive is 0.
    Zero(&'static str),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadValue(bad) => write!(f, "{bad}: expected a whole number"),
            Self::Zero(key) => write!(f, "`{key}` must be at least 1"),
        }
    }
}

impl Config {
    /// Reads the settings from the command line.
    pub fn from_args(args: &Args) -> Result<Config, ConfigError> {
        let number = |key: &'static str, default: u64| {
            args.parse_value::<u64>(key)
                .map(|value| value.unwrap_or(default))
                .map_err(ConfigError::BadValue)
        };
        let positive = |key: &'static str, default: u64| match number(key, default)? {
            0 => Err(ConfigError::Zero(key)),
            value => Ok(value),
        };
        Ok(Config {
            rounds: positive("rounds", 60)?,
            interval_ms: number("interval_ms", 150)?,
            report_every: positive("report_every", 10)?,
            stall_s: positive("stall_s", 120)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(line: &str) -> Result<Config, ConfigError> {
        Config::from_args(&Args::parse(line).unwrap())
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(
            config(""),
            Ok(Config {
                rounds: 60,
                interval_ms: 150,
                report_every: 10,
                stall_s: 120,
            })
        );
        let ping = config("rounds=5 interval_ms=0 report_every=1 stall_s=9").unwrap();
        assert_eq!(
            (
                ping.rounds,
                ping.interval_ms,
                ping.report_every,
                ping.stall_s
            ),
            (5, 0, 1, 9)
        );
    }

    #[test]
    fn bad_command_lines_are_refused_with_the_reason() {
        assert_eq!(config("rounds=0"), Err(ConfigError::Zero("rounds")));
        let error = config("rounds=many").unwrap_err();
        assert_eq!(
            alloc::string::ToString::to_string(&error),
            "bad value for `rounds`: `many`: expected a whole number"
        );
    }
}
