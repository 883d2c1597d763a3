//! zedrouter's packet paths: what a router stub-domain does to raw Ethernet frames between the
//! app side of a local network instance and the uplink, as pure `no_std` code (no sockets, no
//! clock, no driver: the caller passes frames and the time in milliseconds).
//!
//! - [`wire`]: Ethernet, ARP, IPv4, UDP, TCP and ICMP parsing, checksums and their incremental
//!   rewrite; every malformed frame is a [`wire::Malformed`] reason, never a panic;
//! - [`nat`]: source NAT to the uplink address and port maps (uplink port -> app address:port)
//!   in a table of fixed capacity whose entries expire;
//! - [`acl`]: EVE's access control entries (matches ip, host, protocol, lport, fport; actions
//!   accept, drop, limit as a token bucket, portmap), default deny;
//! - `ace` (feature `topics`): rules from zedagent's ACE table, checked;
//! - [`flow`]: flow records (5-tuple, start and end, bytes and packets each way, ACL id and
//!   action) as EVE's flow log reports them;
//! - [`dhcp`]: a DHCP server for the instance's subnet and range, leases stable per MAC;
//! - [`dhcp_client`]: a DHCP client for the uplink's own address;
//! - [`dns`]: the DNS forwarder's record of answers (name -> addresses, EVE's `dnsReqs`);
//! - [`router`]: the whole path, frame in, frame out, with counters.
//! - [`ports`]: several instances behind one uplink (NAT port slices, which instance an uplink
//!   frame belongs to) and an instance's settings from the controller's fields;
//! - [`verdict`]: what happened to a frame, drop reasons and counters;
//! - [`settings`]: a configuration from `key=value` settings (the image's command line).
//!
//! Everything the app side or the uplink sends is hostile: docs/router.md says what each
//! module checks; the unit tests and the fuzz targets (`fuzz/`) try it.

#![no_std]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

#[cfg(feature = "topics")]
pub mod ace;
pub mod acl;
mod arp;
pub mod dhcp;
pub mod dhcp_client;
pub mod dns;
pub mod flow;
pub mod nat;
pub mod ports;
pub mod router;
pub mod settings;
pub mod verdict;
pub mod wire;

pub use router::{Config, Router, Side};
