//! What the store indexes of a device's report, taken from the report itself: the object an info
//! report or a flow log is about, and the lines of a log report.
//!
//! What the device controls here: everything. A payload that does not decode as its kind's
//! message (newlogs: not gzip) is refused (422); within one that does, any field may be empty or
//! odd. Newlogs lines that are not JSON objects are indexed as text with no severity; times that
//! are missing or out of range fall back to the arrival time; lines past [`MAX_LINES`] and text
//! past [`MAX_TEXT`] bytes are not indexed (the payload is stored whole regardless).

use lichen_api::hardwarehealth::ZHardwareHealth;
use lichen_api::logs::{AppInstanceLogBundle, LogBundle, LogEntry};
use lichen_api::{flowlog::FlowMessage, info::ZInfoMsg, metrics::ZMetricMsg};
use prost::Message;

use super::device_routes::gunzip;
use super::ApiError;
use crate::store::{LogLine, TelemetryKind};

/// Most log lines indexed per report.
pub const MAX_LINES: usize = 20_000;
/// Most bytes of one line's text indexed.
pub const MAX_TEXT: usize = 4096;

/// What is indexed of one report.
#[derive(Debug, Default, PartialEq)]
pub struct Indexed {
    /// See `Telemetry::object`.
    pub object: String,
    /// See `Telemetry::lines`.
    pub lines: Vec<LogLine>,
}

fn decode<M: Message + Default>(payload: &[u8], name: &str) -> Result<M, ApiError> {
    M::decode(payload).map_err(|error| ApiError::unprocessable(format!("not a {name}: {error}")))
}

/// Checks that `payload` is a report of `kind` and returns what to index of it.
pub fn index(
    kind: TelemetryKind,
    payload: &[u8],
    received_at_ms: u64,
) -> Result<Indexed, ApiError> {
    Ok(match kind {
        TelemetryKind::Info => Indexed {
            object: info_object(&decode::<ZInfoMsg>(payload, "ZInfoMsg")?),
            lines: Vec::new(),
        },
        TelemetryKind::Metrics => {
            decode::<ZMetricMsg>(payload, "ZMetricMsg")?;
            Indexed::default()
        }
        TelemetryKind::HardwareHealth => {
            decode::<ZHardwareHealth>(payload, "ZHardwareHealth")?;
            Indexed::default()
        }
        TelemetryKind::FlowLog => Indexed {
            object: decode::<FlowMessage>(payload, "FlowMessage")?
                .scope
                .map(|scope| scope.uuid)
                .unwrap_or_default(),
            lines: Vec::new(),
        },
        TelemetryKind::Logs => Indexed {
            object: String::new(),
            lines: entry_lines(
                decode::<LogBundle>(payload, "LogBundle")?.log,
                received_at_ms,
            ),
        },
        TelemetryKind::AppLogs => Indexed {
            object: String::new(),
            lines: entry_lines(
                decode::<AppInstanceLogBundle>(payload, "AppInstanceLogBundle")?.log,
                received_at_ms,
            ),
        },
        TelemetryKind::NewLogs | TelemetryKind::AppNewLogs => {
            let text = gunzip(payload).map_err(|error| {
                ApiError::unprocessable(format!("newlogs payload is not gzip: {error}"))
            })?;
            let text = String::from_utf8_lossy(&text);
            let lines = text
                .lines()
                .filter(|line| !line.trim().is_empty())
                .take(MAX_LINES)
                .map(|line| newlog_line(line, received_at_ms));
            Indexed {
                object: String::new(),
                lines: lines.collect(),
            }
        }
    })
}

fn entry_lines(entries: Vec<LogEntry>, received_at_ms: u64) -> Vec<LogLine> {
    let lines = entries.into_iter().take(MAX_LINES).map(|entry| LogLine {
        at_ms: entry
            .timestamp
            .and_then(|at| timestamp_ms(at.seconds, at.nanos))
            .unwrap_or(received_at_ms),
        severity: entry.severity,
        source: entry.source,
        text: clip(entry.content),
        ..LogLine::default()
    });
    lines.collect()
}

/// The object an info report is about: the app, network instance, volume or content tree; the
/// device itself for device info.
fn info_object(info: &ZInfoMsg) -> String {
    use lichen_api::info::z_info_msg::InfoContent;
    match &info.info_content {
        Some(InfoContent::Ainfo(app)) => app.app_id.clone(),
        Some(InfoContent::Niinfo(network)) => network.network_id.clone(),
        Some(InfoContent::Vinfo(volume)) => volume.uuid.clone(),
        Some(InfoContent::Cinfo(tree)) => tree.uuid.clone(),
        Some(InfoContent::Dinfo(_)) => info.dev_id.clone(),
        Some(InfoContent::Binfo(_)) | None => String::new(),
    }
}

/// One newlogs line: a JSON object in the proto3 JSON form of `LogEntry` (`severity`, `source`,
/// `content`, `timestamp` as an RFC 3339 string or `{seconds, nanos}`), or anything else as text.
fn newlog_line(line: &str, received_at_ms: u64) -> LogLine {
    let Ok(serde_json::Value::Object(entry)) = serde_json::from_str(line) else {
        return LogLine {
            at_ms: received_at_ms,
            text: clip(line.to_owned()),
            ..LogLine::default()
        };
    };
    let field = |name: &str| {
        entry
            .get(name)
            .and_then(|value| value.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let at_ms = match entry.get("timestamp") {
        Some(serde_json::Value::Object(at)) => {
            let number = |name: &str| at.get(name).and_then(|v| v.as_i64()).unwrap_or(0);
            timestamp_ms(number("seconds"), number("nanos") as i32)
        }
        Some(serde_json::Value::String(text)) => rfc3339_ms(text),
        _ => None,
    };
    LogLine {
        at_ms: at_ms.unwrap_or(received_at_ms),
        severity: field("severity"),
        source: field("source"),
        text: clip(field("content")),
        ..LogLine::default()
    }
}

fn timestamp_ms(seconds: i64, nanos: i32) -> Option<u64> {
    let ms = seconds
        .checked_mul(1000)?
        .checked_add(i64::from(nanos) / 1_000_000)?;
    u64::try_from(ms).ok().filter(|ms| *ms > 0)
}

/// Milliseconds of an RFC 3339 UTC time such as `2024-05-01T12:00:00.123Z` (other offsets and
/// forms: `None`).
fn rfc3339_ms(text: &str) -> Option<u64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut date = date.splitn(3, '-').map(|part| part.parse::<i64>().ok());
    let (year, month, day) = (date.next()??, date.next()??, date.next()??);
    let (clock, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut clock = clock.splitn(3, ':').map(|part| part.parse::<i64>().ok());
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let millis: i64 = format!("{:0<3}", &fraction[..fraction.len().min(3)])
        .parse()
        .ok()?;
    // Days from the civil date (proleptic Gregorian), after H. Hinnant's well-known method.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    u64::try_from(seconds * 1000 + millis).ok()
}

/// `text` cut to at most [`MAX_TEXT`] bytes, at a character boundary.
fn clip(mut text: String) -> String {
    if text.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devsim::reports;

    #[test]
    fn info_reports_are_about_their_object() {
        let device = reports::device_info("dev-1", "sim-1").encode_to_vec();
        assert_eq!(
            index(TelemetryKind::Info, &device, 1).unwrap().object,
            "dev-1"
        );
        let app = ZInfoMsg {
            dev_id: "dev-1".into(),
            info_content: Some(lichen_api::info::z_info_msg::InfoContent::Ainfo(
                lichen_api::info::ZInfoApp {
                    app_id: "app-9".into(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
        let indexed = index(TelemetryKind::Info, &app.encode_to_vec(), 1).unwrap();
        assert_eq!(indexed.object, "app-9");
        assert!(index(TelemetryKind::Info, b"\xff\xff", 1).is_err());
    }

    #[test]
    fn log_bundles_and_newlogs_become_lines() {
        let bundle = reports::logs("dev-1", 7, 2, "simulated log line").encode_to_vec();
        let lines = index(TelemetryKind::Logs, &bundle, 1).unwrap().lines;
        assert_eq!(lines.len(), 2);
        assert_eq!(
            (lines[0].severity.as_str(), lines[0].text.as_str()),
            ("info", "simulated log line 7")
        );
        assert!(lines[0].at_ms > 1, "the entry's own time");

        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let long = "x".repeat(MAX_TEXT + 10);
        let text = format!(
            "{}\n{}\nnot json at all\n\n{}\n[1,2]\n",
            r#"{"severity":"error","source":"zedagent","content":"boom","timestamp":"2024-05-01T12:00:00.25Z"}"#,
            r#"{"severity":"info","content":"ok","timestamp":{"seconds":1714564800,"nanos":500000000}}"#,
            serde_json::json!({ "content": long, "timestamp": "yesterday" }),
        );
        std::io::Write::write_all(&mut gzip, text.as_bytes()).unwrap();
        let lines = index(TelemetryKind::NewLogs, &gzip.finish().unwrap(), 42)
            .unwrap()
            .lines;
        let summary: Vec<(u64, &str, &str, usize)> = lines
            .iter()
            .map(|l| {
                (
                    l.at_ms,
                    l.severity.as_str(),
                    l.source.as_str(),
                    l.text.len(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (1_714_564_800_250, "error", "zedagent", 4),
                (1_714_564_800_500, "info", "", 2),
                (42, "", "", 15),
                (42, "", "", MAX_TEXT),
                (42, "", "", 5),
            ]
        );
        assert!(index(TelemetryKind::NewLogs, b"plain", 1).is_err());
    }

    #[test]
    fn odd_times_fall_back_to_arrival() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(rfc3339_ms("2000-02-29T23:59:59.9Z"), Some(951_868_799_900));
        for bad in [
            "2024-13-01T00:00:00Z",
            "2024-01-01T00:00:00+02:00",
            "2024-01-01",
            "",
            "T:Z",
        ] {
            assert_eq!(rfc3339_ms(bad), None, "{bad}");
        }
        assert_eq!(timestamp_ms(-5, 0), None);
        assert_eq!(timestamp_ms(i64::MAX, 0), None);
        assert_eq!(clip("é".repeat(MAX_TEXT)).len(), MAX_TEXT);
    }
}
