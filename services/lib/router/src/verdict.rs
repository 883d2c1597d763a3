//! What the router did with a frame ([`Verdict`]), why it dropped one ([`Reason`]), and its
//! [`Counters`].

use crate::router::Side;
use crate::wire::Malformed;

/// Why a frame was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// It did not parse.
    Malformed(Malformed),
    /// Not addressed to the router (another MAC, a local destination, multicast).
    NotForUs,
    /// From the app side with a source outside the app subnet.
    Spoofed,
    /// TTL would reach zero.
    TtlExpired,
    /// A protocol or message the router does not translate (ICMP errors, other protocols).
    Unsupported,
    /// Denied by a drop rule or by default.
    AclDrop,
    /// Over a limit rule's rate.
    RateLimit,
    /// The connection table is full.
    NatFull,
    /// No open connection and none may open with this packet.
    NoConnection,
    /// The next hop's MAC is not known yet (an ARP request went out).
    ArpPending,
    /// A DHCP message that got no answer.
    Dhcp,
    /// The uplink has no address yet (its DHCP lease is not bound, or was lost).
    NoUplink,
}

impl Reason {
    /// Every reason but [`Reason::Malformed`] (counted per [`Malformed`] kind).
    pub const OTHERS: [Reason; 11] = [
        Reason::NotForUs,
        Reason::Spoofed,
        Reason::TtlExpired,
        Reason::Unsupported,
        Reason::AclDrop,
        Reason::RateLimit,
        Reason::NatFull,
        Reason::NoConnection,
        Reason::ArpPending,
        Reason::Dhcp,
        Reason::NoUplink,
    ];

    /// The reason's name, as counters show it.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Malformed(m) => m.name(),
            Reason::NotForUs => "not_for_us",
            Reason::Spoofed => "spoofed",
            Reason::TtlExpired => "ttl_expired",
            Reason::Unsupported => "unsupported",
            Reason::AclDrop => "acl_drop",
            Reason::RateLimit => "rate_limit",
            Reason::NatFull => "nat_full",
            Reason::NoConnection => "no_connection",
            Reason::ArpPending => "arp_pending",
            Reason::Dhcp => "dhcp",
            Reason::NoUplink => "no_uplink",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Reason::Malformed(m) => Malformed::ALL.iter().position(|x| *x == m).unwrap_or(0),
            other => {
                Malformed::ALL.len() + Reason::OTHERS.iter().position(|x| *x == other).unwrap_or(0)
            }
        }
    }
}

/// Number of drop counters.
pub const DROP_REASONS: usize = Malformed::ALL.len() + Reason::OTHERS.len();

/// What happened to a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Rewritten in place: send its first `len` bytes on `side`.
    Forward(Side, usize),
    /// Handled by the router (replies, if any, are in [`Router::take_output`]).
    Consumed,
    /// Dropped.
    Dropped(Reason),
}

/// The router's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames forwarded from the app side to the uplink.
    pub to_uplink: u64,
    /// Frames forwarded from the uplink to the app side.
    pub to_app: u64,
    /// Frames answered or absorbed by the router.
    pub consumed: u64,
    /// Frames dropped, by reason (see [`Router::drops`]).
    pub drops: [u64; DROP_REASONS],
    /// Replies not queued because the output queue was full.
    pub output_full: u64,
    /// DHCP leases acknowledged.
    pub dhcp_acks: u64,
    /// DNS answers recorded.
    pub dns_answers: u64,
    /// TCP resets sent for segments of connections the router does not know (its NAT table
    /// was lost with a restart): the frames themselves count as `no_connection` drops.
    pub resets: u64,
    /// Of the `rate_limit` drops, packets on their way to the app (the others came from it).
    pub limited_to_app: u64,
}
