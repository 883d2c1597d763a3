//! The node's services as the launcher sees them (state, restarts, memory, CPU time), for the
//! pillar that reports them to the controller (zedagent).
//!
//! The launcher writes them as one xenstore value at [`PATH`], owned by dom0, readable only by
//! the running services whose image *watches* [`READER`] in its declaration (a name no service
//! publishes: the watch is how an image asks, the launcher decides nothing else); others have
//! no access. It rewrites the value whenever a service changes state and every few seconds
//! (the CPU times). One line per service, fields separated by single spaces:
//!
//! ```text
//! NAME STATE RESTARTS MEMORY_MIB DOMID CPU_MS USED_KIB
//! ```
//!
//! `DOMID` is `-` for a service with no domain; `CPU_MS` and `USED_KIB` are what Xen says of
//! its current domain (0 without one): CPU time used since the domain was made, and the memory
//! it holds. The value stays under [`MAX_BYTES`] (xenstore's limit is 4096): services past it
//! are left out, and the reader sees fewer services than the node has.
//!
//! **What a peer may corrupt**: only dom0 writes the value (a guest cannot write a node dom0
//! owns), so the reader trusts its meaning; it still refuses a value that does not parse
//! (a launcher of another version), whole, with the reason. No guest but the readers can see
//! it.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Write;

/// Where the launcher writes the services.
pub const PATH: &str = "/local/domain/0/data/lichen/services";

/// The topic name an image watches to be allowed to read [`PATH`].
pub const READER: &str = "launcher/Services";

/// The most bytes the value holds.
pub const MAX_BYTES: usize = 4000;

/// One service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Service {
    /// Its name in the manifest.
    pub name: String,
    /// Its state: `waiting`, `running`, `backoff`, `exited`, `failed`, `stopped`.
    pub state: String,
    /// How many times it was restarted.
    pub restarts: u32,
    /// The memory the manifest gives it, MiB.
    pub memory_mib: u32,
    /// Its domain, if it has one.
    pub domid: Option<u32>,
    /// CPU time its current domain used, ms.
    pub cpu_ms: u64,
    /// Memory its current domain holds, KiB.
    pub used_kib: u64,
}

/// The value for `services`: each on a line, as many as fit in [`MAX_BYTES`].
pub fn encode(services: &[Service]) -> String {
    let mut out = String::new();
    for s in services {
        let domid = s.domid.map_or("-".to_string(), |d| d.to_string());
        let line = format!(
            "{} {} {} {} {} {} {}\n",
            s.name, s.state, s.restarts, s.memory_mib, domid, s.cpu_ms, s.used_kib
        );
        if out.len() + line.len() > MAX_BYTES {
            break;
        }
        let _ = out.write_str(&line);
    }
    out
}

/// The services in `value`; refused whole, with the line and the reason, if a line is not one.
pub fn parse(value: &str) -> Result<Vec<Service>, String> {
    let mut services = Vec::new();
    for (i, line) in value.lines().enumerate() {
        let bad = |why: &str| format!("services line {}: {why}: {line:?}", i + 1);
        let fields: Vec<&str> = line.split(' ').collect();
        let [name, state, restarts, memory, domid, cpu, used] = fields[..] else {
            return Err(bad("expected 7 fields"));
        };
        let word =
            |w: &str| !w.is_empty() && w.len() <= 64 && w.bytes().all(|b| b.is_ascii_graphic());
        if !word(name) || !word(state) {
            return Err(bad("a name or state that is not a word"));
        }
        let number = |w: &str| w.parse::<u64>().map_err(|_| bad("not a number"));
        let small = |w: &str| w.parse::<u32>().map_err(|_| bad("not a number"));
        services.push(Service {
            name: name.into(),
            state: state.into(),
            restarts: small(restarts)?,
            memory_mib: small(memory)?,
            domid: match domid {
                "-" => None,
                d => Some(small(d)?),
            },
            cpu_ms: number(cpu)?,
            used_kib: number(used)?,
        });
    }
    Ok(services)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn service(name: &str, domid: Option<u32>) -> Service {
        Service {
            name: name.into(),
            state: if domid.is_some() {
                "running"
            } else {
                "backoff"
            }
            .into(),
            restarts: 2,
            memory_mib: 32,
            domid,
            cpu_ms: 1234,
            used_kib: 32768,
        }
    }

    #[test]
    fn services_read_back_as_written() {
        let services = vec![service("zedagent", Some(7)), service("vault", None)];
        let value = encode(&services);
        assert_eq!(
            value,
            "zedagent running 2 32 7 1234 32768\nvault backoff 2 32 - 1234 32768\n"
        );
        assert_eq!(parse(&value).unwrap(), services);
        assert_eq!(parse("").unwrap(), vec![]);
    }

    #[test]
    fn the_value_stays_within_xenstores_limit() {
        let many: Vec<Service> = (0..200)
            .map(|i| service(&format!("service-{i}"), Some(i)))
            .collect();
        let value = encode(&many);
        assert!(value.len() <= MAX_BYTES);
        let back = parse(&value).unwrap();
        assert!(back.len() > 50 && back.len() < 200);
        assert_eq!(back[..], many[..back.len()]);
    }

    #[test]
    fn a_value_that_is_not_services_is_refused_whole() {
        for bad in [
            "zedagent running 2 32 7 1234\n",
            "zedagent running 2 32 7 1234 32768 extra\n",
            "zedagent running two 32 7 1234 32768\n",
            "zedagent running 2 32 7 -5 32768\n",
            "zedagent  2 32 7 1 1\n",
            "zed\u{e9}agent running 2 32 7 1 1\n",
            "ok running 0 1 - 0 0\nzedagent running 2 32 x 1 1\n",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.starts_with("services line "), "{e}");
        }
    }
}
