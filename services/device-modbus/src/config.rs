//! device-modbus's command line.
//!
//! | word | meaning |
//! | --- | --- |
//! | `broker=HOST:PORT` | the MQTT broker of EdgeX's message bus (default `10.0.2.2:1883`, QEMU's host) |
//! | `mqtt=4\|5` | the broker's protocol level: 4 is MQTT 3.1.1 (default), 5 MQTT 5 |
//! | `qos=0\|1\|2` | QoS of events and responses published and of the command subscription (default 0) |
//! | `modbus=HOST:PORT` | overrides every device's `modbus-tcp` `Address`/`Port` |
//! | `interval=DURATION` | overrides every autoEvent's interval (Go syntax: `10ms`, `1s`) |
//! | `timeout=DURATION` | overrides every device's `modbus-tcp` `Timeout` (a transaction's limit) |
//! | `outbox=N` | events kept while the broker is away (default 1000; the oldest are dropped) |
//! | `service=NAME` | the service name in topics (default `device-modbus`) |
//! | `stats=DURATION` | how often the counters are logged (default `5s`) |

use alloc::format;
use alloc::string::{String, ToString};
use edgex::device::parse_duration_us;
use kernel::Args;

/// A `HOST:PORT` endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Name or IPv4 address.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Endpoint {
    /// Parses `HOST:PORT`.
    pub fn parse(text: &str) -> Option<Endpoint> {
        let (host, port) = text.rsplit_once(':')?;
        let port: u16 = port.parse().ok().filter(|&p| p != 0)?;
        (!host.is_empty()).then(|| Endpoint {
            host: host.to_string(),
            port,
        })
    }
}

/// The settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The broker.
    pub broker: Endpoint,
    /// The broker's protocol level.
    pub mqtt: mqtt::Version,
    /// QoS on the broker.
    pub qos: mqtt::QoS,
    /// Modbus endpoint override.
    pub modbus: Option<Endpoint>,
    /// Interval override, microseconds.
    pub interval_us: Option<u64>,
    /// Modbus transaction timeout override, microseconds.
    pub timeout_us: Option<u64>,
    /// Outbox capacity.
    pub outbox: usize,
    /// Service name.
    pub service: String,
    /// Counter log period, microseconds.
    pub stats_us: u64,
}

fn endpoint(args: &Args, key: &str) -> Result<Option<Endpoint>, String> {
    match args.get(key) {
        None => Ok(None),
        Some(v) => Endpoint::parse(v)
            .map(Some)
            .ok_or_else(|| format!("bad `{key}={v}`: expected HOST:PORT")),
    }
}

fn duration(args: &Args, key: &str) -> Result<Option<u64>, String> {
    match args.get(key) {
        None => Ok(None),
        Some(v) => match parse_duration_us(v) {
            Some(us) if us > 0 => Ok(Some(us)),
            _ => Err(format!(
                "bad `{key}={v}`: expected a duration like 10ms or 1s"
            )),
        },
    }
}

impl Config {
    /// Reads the command line.
    pub fn from_args(args: &Args) -> Result<Config, String> {
        let outbox = args
            .parse_value::<usize>("outbox")
            .map_err(|e| e.to_string())?
            .unwrap_or(1000);
        if outbox == 0 {
            return Err("bad `outbox=0`: must keep at least one event".into());
        }
        Ok(Config {
            broker: endpoint(args, "broker")?.unwrap_or(Endpoint {
                host: "10.0.2.2".into(),
                port: 1883,
            }),
            mqtt: mqtt::Version::from_arg("mqtt", args.get("mqtt"), mqtt::Version::V311)?,
            qos: mqtt::QoS::from_arg("qos", args.get("qos"), mqtt::QoS::AtMostOnce)?,
            modbus: endpoint(args, "modbus")?,
            interval_us: duration(args, "interval")?,
            timeout_us: duration(args, "timeout")?,
            outbox,
            service: args.get("service").unwrap_or("device-modbus").to_string(),
            stats_us: duration(args, "stats")?.unwrap_or(5_000_000),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = Config::from_args(&Args::parse("").unwrap()).unwrap();
        assert_eq!(
            c.broker,
            Endpoint {
                host: "10.0.2.2".into(),
                port: 1883
            }
        );
        assert_eq!(c.outbox, 1000);
        let c = Config::from_args(
            &Args::parse("broker=b:1 modbus=10.0.2.2:5020 interval=10ms outbox=5").unwrap(),
        )
        .unwrap();
        assert_eq!(c.modbus.unwrap().port, 5020);
        assert_eq!(c.interval_us, Some(10_000));
        assert_eq!(c.outbox, 5);
    }

    #[test]
    fn bad_values_are_named() {
        for (line, what) in [
            ("broker=nohost", "broker"),
            ("modbus=h:0", "modbus"),
            ("interval=fast", "interval"),
            ("timeout=0s", "timeout"),
            ("outbox=0", "outbox"),
            ("outbox=x", "outbox"),
        ] {
            let e = Config::from_args(&Args::parse(line).unwrap()).unwrap_err();
            assert!(e.contains(what), "{line}: {e}");
        }
    }
}
