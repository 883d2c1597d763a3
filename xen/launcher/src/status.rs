//! The status table the launcher prints whenever a service changes, and the same rows written
//! in xenstore for the pillar that reports them ([`Publisher`], `launcher_api::services`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use launcher_api::services::{self, Service};

use crate::platform::Usage;
use crate::wiring::{Permissions, Wiring};

/// One service's row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The service's name.
    pub service: String,
    /// Its current domid, if it has a domain.
    pub domid: Option<u32>,
    /// Its state (`waiting`, `running`, `backoff`, `exited`, `failed`, `stopped`).
    pub state: String,
    /// How many times it was restarted.
    pub restarts: u32,
    /// Its memory in MiB.
    pub memory: u32,
}

/// Renders rows as an aligned table with a header.
pub fn render(rows: &[Row]) -> String {
    let header = ["SERVICE", "DOMID", "STATE", "RESTARTS", "MEMORY"].map(String::from);
    let cells: Vec<[String; 5]> = std::iter::once(header)
        .chain(rows.iter().map(|r| {
            [
                r.service.clone(),
                r.domid.map_or("-".into(), |d| d.to_string()),
                r.state.clone(),
                r.restarts.to_string(),
                format!("{} MiB", r.memory),
            ]
        }))
        .collect();
    let widths: Vec<usize> = (0..5)
        .map(|i| cells.iter().map(|row| row[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &cells {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Writes the services' rows at [`services::PATH`] for the services allowed to read them:
/// whenever a row's state, restarts or domain changed, and every `refresh` (the CPU times).
///
/// The readers are the services whose image watches [`services::READER`] (their declaration
/// asks; dom0 decides nothing else). The node is dom0's (`n0`: no one else may write it), and
/// readable by the readers that run now (`r<domid>`), no one else. Without readers nothing is
/// written.
pub struct Publisher {
    readers: Vec<String>,
    refresh: Duration,
    /// The rows last written, without the usage figures, and when.
    last: Option<(String, Instant)>,
}

impl Publisher {
    /// A publisher for `readers`, rewriting at least every `refresh`.
    pub fn new(readers: Vec<String>, refresh: Duration) -> Publisher {
        Publisher {
            readers,
            refresh,
            last: None,
        }
    }

    /// Whether a write is due at `now` for `rows` (asking Xen for the usage only then).
    pub fn due(&self, rows: &[Row], now: Instant) -> bool {
        if self.readers.is_empty() {
            return false;
        }
        match &self.last {
            None => true,
            Some((last, at)) => {
                *last != services::encode(&to_services(rows, &HashMap::new()))
                    || now.duration_since(*at) >= self.refresh
            }
        }
    }

    /// The xenstore changes that write `rows` with `usage` (by domid), readable by the readers
    /// running now (`domids`); noted as written at `now`.
    pub fn write(
        &mut self,
        rows: &[Row],
        usage: &HashMap<u32, Usage>,
        domids: &HashMap<String, u32>,
        now: Instant,
    ) -> Wiring {
        let plain = services::encode(&to_services(rows, &HashMap::new()));
        self.last = Some((plain, now));
        let mut perms = vec!["n0".to_string()];
        for reader in &self.readers {
            if let Some(domid) = domids.get(reader) {
                perms.push(format!("r{domid}"));
            }
        }
        Wiring {
            removes: vec![],
            writes: vec![(
                services::PATH.to_string(),
                services::encode(&to_services(rows, usage)),
            )],
            perms: vec![Permissions {
                path: services::PATH.to_string(),
                perms,
                recursive: false,
            }],
        }
    }
}

/// The rows as `launcher_api::services` lines, with Xen's figures for their domains.
fn to_services(rows: &[Row], usage: &HashMap<u32, Usage>) -> Vec<Service> {
    rows.iter()
        .map(|r| {
            let used = r
                .domid
                .and_then(|d| usage.get(&d))
                .copied()
                .unwrap_or_default();
            Service {
                name: r.service.clone(),
                state: r.state.clone(),
                restarts: r.restarts,
                memory_mib: r.memory,
                domid: r.domid,
                cpu_ms: used.cpu_ns / 1_000_000,
                used_kib: used.pages.saturating_mul(4),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(service: &str, domid: Option<u32>, state: &str) -> Row {
        Row {
            service: service.into(),
            domid,
            state: state.into(),
            restarts: 0,
            memory: 16,
        }
    }

    #[test]
    fn services_are_written_on_change_and_every_refresh_for_the_running_readers_only() {
        let start = Instant::now();
        let mut publisher = Publisher::new(vec!["zedagent".into()], Duration::from_secs(10));
        let rows = vec![
            row("vault", Some(3), "running"),
            row("zedagent", Some(4), "running"),
        ];
        assert!(publisher.due(&rows, start));
        let usage = HashMap::from([(
            4,
            Usage {
                cpu_ns: 2_500_000_000,
                pages: 1024,
            },
        )]);
        let domids = HashMap::from([("vault".to_string(), 3), ("zedagent".to_string(), 4)]);
        let wiring = publisher.write(&rows, &usage, &domids, start);
        assert_eq!(
            wiring.writes,
            vec![(
                services::PATH.to_string(),
                "vault running 0 16 3 0 0\nzedagent running 0 16 4 2500 4096\n".to_string()
            )]
        );
        assert_eq!(wiring.perms[0].perms, vec!["n0", "r4"]);
        // Nothing changed: due again only after the refresh.
        assert!(!publisher.due(&rows, start + Duration::from_secs(5)));
        assert!(publisher.due(&rows, start + Duration::from_secs(10)));
        // A state changed: due at once.
        let crashed = vec![
            row("vault", None, "backoff"),
            row("zedagent", Some(4), "running"),
        ];
        assert!(publisher.due(&crashed, start + Duration::from_secs(1)));
        // A reader not running is not given access.
        let wiring = publisher.write(&crashed, &usage, &HashMap::new(), start);
        assert_eq!(wiring.perms[0].perms, vec!["n0"]);
    }

    #[test]
    fn without_readers_nothing_is_written() {
        let publisher = Publisher::new(vec![], Duration::from_secs(10));
        assert!(!publisher.due(&[row("vault", Some(3), "running")], Instant::now()));
    }

    #[test]
    fn aligns_columns_under_a_header() {
        let rows = [
            Row {
                service: "hello".into(),
                domid: Some(12),
                state: "running".into(),
                restarts: 0,
                memory: 32,
            },
            Row {
                service: "bus".into(),
                domid: None,
                state: "failed".into(),
                restarts: 3,
                memory: 128,
            },
        ];
        let table = render(&rows);
        assert_eq!(
            table,
            "SERVICE  DOMID  STATE    RESTARTS  MEMORY\n\
             hello    12     running  0         32 MiB\n\
             bus      -      failed   3         128 MiB\n"
        );
    }
}
