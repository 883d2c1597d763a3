//! The sessions the image runs, one after another, from its command line:
//! `sessions=KIND:ROLE:NAME[:ORDER],...`.
//!
//! - `serve:ROLE:NAME:ORDER`: vchan server for dom0 at `data/vchan-bench/NAME` (in this domain's
//!   home), both rings `2^ORDER` bytes, ORDER 12 to 20;
//! - `connect:ROLE:NAME`: vchan client of dom0's server at `/local/domain/0/data/vchan-bench/NAME`;
//! - `wired:ROLE:NAME`: the manifest channel NAME, in the role the launcher gave it;
//! - `node:ROLE:NAME`: the bus channel the launcher derived between the two bench images
//!   (`bus_io::Node`, multiplexed), bus roles only.
//!
//! ROLE is `control` (run the plan, report) or `respond`, or, on `wired` and `node` channels,
//! a bus role: `publish` (run the bus plan, report) or `subscribe` (see `bus.rs`; a `wired` bus
//! session uses the channels NAME and NAME-ack). NAME also labels the session's reports.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// How the session's channel is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Serve dom0, both rings of `2^order` bytes.
    Serve {
        /// log2 of each ring's size.
        order: u8,
    },
    /// Connect to dom0's server.
    Connect,
    /// The manifest channel of that name.
    Wired,
    /// The derived bus channel (bus sessions only).
    Node,
}

/// What this side does in the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Runs the plan and reports its figures.
    Control,
    /// Does what the controller's specs ask.
    Respond,
    /// Publishes the bus plan's objects and reports its figures.
    Publish,
    /// Subscribes to the publisher's objects, checks them and reports its progress.
    Subscribe,
}

impl Role {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Role::Control => "control",
            Role::Respond => "respond",
            Role::Publish => "publish",
            Role::Subscribe => "subscribe",
        }
    }

    /// Whether this is a lichen-bus role (which needs a `wired` channel).
    pub fn is_bus(self) -> bool {
        matches!(self, Role::Publish | Role::Subscribe)
    }
}

/// One session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// How its channel is opened.
    pub transport: Transport,
    /// What this side does.
    pub role: Role,
    /// The xenstore leaf or manifest channel name; labels the reports.
    pub name: String,
}

/// The smallest ring order a `serve` session takes (one page; libxenvchan's in-page orders 10
/// and 11 need two different sizes).
pub const MIN_SERVE_ORDER: u8 = 12;
/// The largest ring order vchan has.
pub const MAX_SERVE_ORDER: u8 = 20;

/// A session the command line got wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadSession(pub String);

impl fmt::Display for BadSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad session '{}' (want serve:ROLE:NAME:ORDER with ORDER {MIN_SERVE_ORDER}..={MAX_SERVE_ORDER}, \
             connect:ROLE:NAME or wired:ROLE:NAME; ROLE control or respond, or publish or subscribe \
             with wired; NAME of a-z0-9-)",
            self.0
        )
    }
}

/// Parses the `sessions=` list.
pub fn parse_sessions(text: &str) -> Result<Vec<Session>, BadSession> {
    text.split(',').map(parse_one).collect()
}

fn parse_one(item: &str) -> Result<Session, BadSession> {
    let bad = || BadSession(item.into());
    let fields: Vec<&str> = item.split(':').collect();
    let (kind, role, name) = match fields[..] {
        [kind, role, name] | [kind, role, name, _] => (kind, role, name),
        _ => return Err(bad()),
    };
    let role = match role {
        "control" => Role::Control,
        "respond" => Role::Respond,
        "publish" => Role::Publish,
        "subscribe" => Role::Subscribe,
        _ => return Err(bad()),
    };
    let good_name = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
    if !good_name {
        return Err(bad());
    }
    let transport = match (kind, fields.get(3)) {
        ("serve", Some(order)) => {
            let order: u8 = order.parse().map_err(|_| bad())?;
            if !(MIN_SERVE_ORDER..=MAX_SERVE_ORDER).contains(&order) {
                return Err(bad());
            }
            Transport::Serve { order }
        }
        ("connect", None) => Transport::Connect,
        ("wired", None) => Transport::Wired,
        ("node", None) => Transport::Node,
        _ => return Err(bad()),
    };
    let bus_transport = matches!(transport, Transport::Wired | Transport::Node);
    if (role.is_bus() && !bus_transport) || (transport == Transport::Node && !role.is_bus()) {
        return Err(bad());
    }
    Ok(Session {
        transport,
        role,
        name: name.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_sessions_are_bus_sessions() {
        let s = parse_sessions("node:publish:bus-mux-o14,node:subscribe:bus-mux-o14").unwrap();
        assert!(s
            .iter()
            .all(|s| s.transport == Transport::Node && s.role.is_bus()));
        for bad in ["node:control:x", "node:respond:x", "node:publish:x:16"] {
            assert!(parse_sessions(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn every_kind_parses() {
        let s =
            parse_sessions("serve:respond:lsrv-o16:16,connect:control:lcli-o20,wired:respond:ll16,wired:publish:bus-o16")
                .unwrap();
        assert_eq!(
            s,
            [
                Session {
                    transport: Transport::Serve { order: 16 },
                    role: Role::Respond,
                    name: "lsrv-o16".into()
                },
                Session {
                    transport: Transport::Connect,
                    role: Role::Control,
                    name: "lcli-o20".into()
                },
                Session {
                    transport: Transport::Wired,
                    role: Role::Respond,
                    name: "ll16".into()
                },
                Session {
                    transport: Transport::Wired,
                    role: Role::Publish,
                    name: "bus-o16".into()
                },
            ]
        );
    }

    #[test]
    fn mistakes_name_the_item() {
        for item in [
            "serve:respond:x",
            "serve:respond:x:11",
            "serve:respond:x:21",
            "connect:control:x:16",
            "wired:watch:x",
            "dial:control:x",
            "connect:control:Upper",
            "connect:control:a/b",
            "connect:control:",
            "connect",
            "serve:publish:x:16",
            "connect:subscribe:x",
        ] {
            assert_eq!(
                parse_sessions(&alloc::format!("wired:control:ok,{item}")),
                Err(BadSession(item.into())),
                "{item}"
            );
        }
    }
}
