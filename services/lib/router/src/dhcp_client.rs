//! A DHCPv4 client (RFC 2131) for the uplink: zedrouter has no TCP/IP stack, so it asks the
//! uplink's DHCP server for its address itself, over raw frames, and NATs to whatever it is
//! given.
//!
//! The states are RFC 2131's (section 4.4): INIT sends a DISCOVER; SELECTING takes the first
//! OFFER and REQUESTs it; REQUESTING waits for the ACK (four tries, then INIT again); BOUND
//! renews at T1 with a REQUEST sent to the server (RENEWING), broadcasts it from T2
//! (REBINDING), and gives the address up when the lease ends. A NAK in any state goes back to
//! INIT. Retransmissions back off from 4 s to 64 s with up to a second of jitter; in RENEWING
//! and REBINDING they come after half the time left, at least 60 s apart (and at T2 and at the
//! lease's end). The address is not probed with ARP before use (RFC 2131's SHOULD): the
//! uplink's server is trusted to hand out free addresses.
//!
//! The client is pure like the rest of the crate: [`DhcpClient::poll`] and
//! [`DhcpClient::handle`] take the time in milliseconds and return a [`Step`]: a frame to
//! send, if any, and an [`Event`] when the address is bound or lost.
//!
//! The uplink may send anything: a reply is only taken when it is a whole UDP datagram from
//! port 67 to port 68, a BOOTREPLY for Ethernet with this client's transaction id and MAC, the
//! magic cookie, well-formed options, a message type that fits the state, a server identifier,
//! a usable address (not 0.0.0.0, broadcast, multicast or loopback) and, in an ACK, a lease
//! time. Anything else is ignored and counted ([`DhcpClient::ignored`]).

use alloc::vec::Vec;
use core::net::Ipv4Addr;

use crate::dhcp::{
    options, ACK, DISCOVER, FIXED_LEN, MAGIC, NAK, OFFER, OP_REPLY, OP_REQUEST, REQUEST,
};
use crate::wire::{build_udp, parse, Endpoints, Mac, Packet, Transport, BROADCAST_MAC};

/// The client's UDP port.
pub const CLIENT_PORT: u16 = 68;
/// The server's UDP port.
pub const SERVER_PORT: u16 = 67;

/// The first retransmission delay in INIT, SELECTING and REQUESTING, ms.
const FIRST_BACKOFF_MS: u64 = 4_000;
/// The longest retransmission delay in SELECTING, ms.
const MAX_BACKOFF_MS: u64 = 64_000;
/// REQUESTs sent in REQUESTING before starting over.
const REQUEST_TRIES: u32 = 4;
/// How soon a frame the card could not take is tried again, ms.
const UNSENT_RETRY_MS: u64 = 1_000;
/// The shortest retransmission delay in RENEWING and REBINDING, ms.
const MIN_RENEW_RETRY_MS: u64 = 60_000;

/// An address the uplink's DHCP server acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UplinkLease {
    /// The address.
    pub ip: Ipv4Addr,
    /// The subnet's prefix length (option 1; the address class's when the server sends none).
    pub prefix: u8,
    /// The first router (option 3), if the server named one.
    pub gateway: Option<Ipv4Addr>,
    /// The first DNS server (option 6), if any.
    pub dns: Option<Ipv4Addr>,
    /// The server's identifier (option 54).
    pub server: Ipv4Addr,
    /// The lease's length, seconds (option 51).
    pub lease_secs: u32,
}

/// What changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// An ACK: the address is the uplink's from now on (also on each renewal, which may change
    /// the other settings).
    Bound(UplinkLease),
    /// The lease ended or the server refused it (NAK): the uplink has no address.
    Lost(Ipv4Addr),
}

/// What [`DhcpClient::poll`] or [`DhcpClient::handle`] asks the caller to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// A frame to send on the uplink.
    pub send: Option<Vec<u8>>,
    /// A change of address, if any.
    pub event: Option<Event>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Init,
    Selecting,
    Requesting {
        offered: Ipv4Addr,
        server: Ipv4Addr,
        sent: u32,
    },
    Bound,
    Renewing,
    Rebinding,
}

/// A bound lease and its timers (T1 is `next_ms` while BOUND).
#[derive(Clone, Copy, Debug)]
struct Binding {
    lease: UplinkLease,
    /// The server's MAC (the ACK's Ethernet source): where RENEWING's requests go.
    server_mac: Mac,
    t2_ms: u64,
    end_ms: u64,
}

/// The client of one uplink card.
pub struct DhcpClient {
    mac: Mac,
    rng: u64,
    xid: u32,
    state: State,
    binding: Option<Binding>,
    /// When [`DhcpClient::poll`] next has something to do.
    next_ms: u64,
    backoff_ms: u64,
    ignored: u64,
}

/// A reply's fields the client uses.
struct Reply {
    kind: u8,
    yiaddr: Ipv4Addr,
    mask: Option<[u8; 4]>,
    router: Option<Ipv4Addr>,
    dns: Option<Ipv4Addr>,
    lease_secs: Option<u32>,
    server: Option<Ipv4Addr>,
    t1: Option<u32>,
    t2: Option<u32>,
}

fn ip4(v: &[u8]) -> Option<Ipv4Addr> {
    let b: [u8; 4] = v.get(..4)?.try_into().ok()?;
    Some(Ipv4Addr::from(b))
}

fn secs(v: &[u8]) -> Option<u32> {
    (v.len() == 4).then(|| u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
}

fn usable(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback())
}

/// The prefix length of a contiguous netmask.
fn prefix_of(mask: [u8; 4]) -> Option<u8> {
    let m = u32::from_be_bytes(mask);
    let ones = m.leading_ones();
    (m.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

/// The classful prefix of `ip` (RFC 2132 leaves the mask optional).
fn class_prefix(ip: Ipv4Addr) -> u8 {
    match ip.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

impl DhcpClient {
    /// A client for the card with `mac`, in INIT (its first [`DhcpClient::poll`] sends a
    /// DISCOVER); `seed` varies the transaction ids and jitter.
    pub fn new(mac: Mac, seed: u64) -> DhcpClient {
        DhcpClient {
            mac,
            rng: seed | 1,
            xid: 0,
            state: State::Init,
            binding: None,
            next_ms: 0,
            backoff_ms: FIRST_BACKOFF_MS,
            ignored: 0,
        }
    }

    /// The bound lease, if any (also while renewing or rebinding it).
    pub fn lease(&self) -> Option<UplinkLease> {
        self.binding.map(|b| b.lease)
    }

    /// When [`DhcpClient::poll`] next has something to do, ms.
    pub fn next_ms(&self) -> u64 {
        self.next_ms
    }

    /// Replies ignored so far (malformed, another client's, out of place).
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// Whether `frame` is for the client: UDP to port 68 (the caller hands it to
    /// [`DhcpClient::handle`] and to nobody else).
    pub fn wants(frame: &[u8]) -> bool {
        matches!(
            parse(frame),
            Ok(Packet::Ipv4(p)) if matches!(p.transport, Transport::Udp { dst: CLIENT_PORT, .. })
        )
    }

    fn random(&mut self) -> u64 {
        // xorshift64: jitter and transaction ids need to differ between clients, not to be
        // unpredictable (the server's replies are checked against the MAC too).
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn jitter(&mut self) -> u64 {
        self.random() % 1000
    }

    /// Runs the timers: retransmissions, T1, T2 and the lease's end.
    pub fn poll(&mut self, now_ms: u64) -> Step {
        if now_ms < self.next_ms {
            return Step::default();
        }
        match self.state {
            State::Init => {
                self.xid = self.random() as u32;
                self.state = State::Selecting;
                self.backoff_ms = FIRST_BACKOFF_MS;
                self.next_ms = now_ms + self.backoff_ms + self.jitter();
                self.sent(self.discover())
            }
            State::Selecting => {
                self.backoff_ms = (self.backoff_ms * 2).min(MAX_BACKOFF_MS);
                self.next_ms = now_ms + self.backoff_ms + self.jitter();
                self.sent(self.discover())
            }
            State::Requesting {
                offered,
                server,
                sent,
            } => {
                if sent >= REQUEST_TRIES {
                    self.state = State::Init;
                    self.next_ms = now_ms;
                    return Step::default();
                }
                self.state = State::Requesting {
                    offered,
                    server,
                    sent: sent + 1,
                };
                self.next_ms = now_ms + FIRST_BACKOFF_MS * (1 << sent.min(4)) + self.jitter();
                self.sent(self.request_offer(offered, server))
            }
            State::Bound | State::Renewing | State::Rebinding => self.renew(now_ms),
        }
    }

    /// The frame of the last step could not be sent (the card's transmit ring was full or not
    /// connected yet): tries again in a second, as if that try had not happened.
    pub fn unsent(&mut self, now_ms: u64) {
        match &mut self.state {
            State::Selecting => self.backoff_ms = (self.backoff_ms / 2).max(FIRST_BACKOFF_MS / 2),
            State::Requesting { sent, .. } => *sent = sent.saturating_sub(1),
            _ => {}
        }
        self.next_ms = self.next_ms.min(now_ms + UNSENT_RETRY_MS);
    }

    /// BOUND, RENEWING and REBINDING's timers.
    fn renew(&mut self, now_ms: u64) -> Step {
        let Some(b) = self.binding else {
            self.state = State::Init;
            self.next_ms = now_ms;
            return Step::default();
        };
        if now_ms >= b.end_ms {
            self.lose(now_ms);
            return Step {
                send: None,
                event: Some(Event::Lost(b.lease.ip)),
            };
        }
        let (state, until) = if now_ms >= b.t2_ms {
            (State::Rebinding, b.end_ms)
        } else {
            (State::Renewing, b.t2_ms)
        };
        if state != self.state {
            self.xid = self.random() as u32;
        }
        self.state = state;
        let retry = ((until - now_ms) / 2).max(MIN_RENEW_RETRY_MS);
        self.next_ms = (now_ms + retry).min(until);
        let frame = self.request_renewal(&b, state == State::Renewing);
        self.sent(frame)
    }

    fn lose(&mut self, now_ms: u64) {
        self.binding = None;
        self.state = State::Init;
        self.next_ms = now_ms;
    }

    fn sent(&self, frame: Vec<u8>) -> Step {
        Step {
            send: Some(frame),
            event: None,
        }
    }

    /// Takes a frame [`DhcpClient::wants`]: a reply from the uplink's server.
    pub fn handle(&mut self, frame: &[u8], now_ms: u64) -> Step {
        match self.reply(frame, now_ms) {
            Some(step) => step,
            None => {
                self.ignored += 1;
                Step::default()
            }
        }
    }

    fn reply(&mut self, frame: &[u8], now_ms: u64) -> Option<Step> {
        let Ok(Packet::Ipv4(p)) = parse(frame) else {
            return None;
        };
        if p.transport
            != (Transport::Udp {
                src: SERVER_PORT,
                dst: CLIENT_PORT,
            })
            || (p.dst_mac != self.mac && p.dst_mac != BROADCAST_MAC)
        {
            return None;
        }
        let reply = self.parse(&frame[p.payload_range(frame)])?;
        match (self.state, reply.kind) {
            (State::Selecting, OFFER) => {
                let server = reply.server.filter(|s| usable(*s))?;
                self.state = State::Requesting {
                    offered: reply.yiaddr,
                    server,
                    sent: 1,
                };
                self.next_ms = now_ms + FIRST_BACKOFF_MS + self.jitter();
                Some(self.sent(self.request_offer(reply.yiaddr, server)))
            }
            (State::Requesting { offered, .. }, ACK) if reply.yiaddr == offered => {
                self.bind(&reply, p.src_mac, now_ms)
            }
            (State::Renewing | State::Rebinding, ACK) => self.bind(&reply, p.src_mac, now_ms),
            (State::Requesting { .. } | State::Renewing | State::Rebinding, NAK) => {
                let lost = self.binding.map(|b| b.lease.ip);
                self.lose(now_ms);
                Some(Step {
                    send: None,
                    event: lost.map(Event::Lost),
                })
            }
            _ => None,
        }
    }

    /// An ACK's lease, bound from `now_ms`.
    fn bind(&mut self, reply: &Reply, server_mac: Mac, now_ms: u64) -> Option<Step> {
        let lease_secs = reply.lease_secs.filter(|s| *s > 0)?;
        let server = reply
            .server
            .or(self.binding.map(|b| b.lease.server))
            .filter(|s| usable(*s))?;
        let prefix = match reply.mask {
            Some(mask) => prefix_of(mask).filter(|p| (1..=30).contains(p))?,
            None => class_prefix(reply.yiaddr),
        };
        let lease = UplinkLease {
            ip: reply.yiaddr,
            prefix,
            gateway: reply.router.filter(|g| usable(*g) && *g != reply.yiaddr),
            dns: reply.dns.filter(|d| usable(*d)),
            server,
            lease_secs,
        };
        let lease_ms = u64::from(lease_secs) * 1000;
        // T1 <= T2 <= the lease, whatever the server says.
        let t2 = reply
            .t2
            .map_or(lease_ms / 8 * 7, |t| u64::from(t) * 1000)
            .min(lease_ms);
        let t1 = reply
            .t1
            .map_or(lease_ms / 2, |t| u64::from(t) * 1000)
            .min(t2);
        self.binding = Some(Binding {
            lease,
            server_mac,
            t2_ms: now_ms + t2,
            end_ms: now_ms + lease_ms,
        });
        self.state = State::Bound;
        self.next_ms = now_ms + t1;
        Some(Step {
            send: None,
            event: Some(Event::Bound(lease)),
        })
    }

    fn parse(&self, msg: &[u8]) -> Option<Reply> {
        if msg.len() < FIXED_LEN + MAGIC.len()
            || msg[0] != OP_REPLY
            || msg[1] != 1
            || msg[2] != 6
            || msg[4..8] != self.xid.to_be_bytes()
            || msg[28..34] != self.mac
            || msg[FIXED_LEN..FIXED_LEN + 4] != MAGIC
        {
            return None;
        }
        let mut r = Reply {
            kind: 0,
            yiaddr: ip4(&msg[16..20])?,
            mask: None,
            router: None,
            dns: None,
            lease_secs: None,
            server: None,
            t1: None,
            t2: None,
        };
        for option in options(msg) {
            let (code, v) = option.ok()?;
            match code {
                53 if v.len() == 1 => r.kind = v[0],
                1 if v.len() == 4 => r.mask = Some([v[0], v[1], v[2], v[3]]),
                3 if v.len() % 4 == 0 => r.router = ip4(v),
                6 if v.len() % 4 == 0 => r.dns = ip4(v),
                51 => r.lease_secs = secs(v),
                54 if v.len() == 4 => r.server = ip4(v),
                58 => r.t1 = secs(v),
                59 => r.t2 = secs(v),
                _ => {}
            }
        }
        if r.kind != NAK && !usable(r.yiaddr) {
            return None;
        }
        Some(r)
    }

    /// A BOOTREQUEST of DHCP type `kind` with `ciaddr` and the given extra options.
    fn message(&self, kind: u8, ciaddr: Ipv4Addr, broadcast: bool, extra: &[u8]) -> Vec<u8> {
        let mut m = alloc::vec![0u8; FIXED_LEN];
        m[0] = OP_REQUEST;
        m[1] = 1;
        m[2] = 6;
        m[4..8].copy_from_slice(&self.xid.to_be_bytes());
        if broadcast {
            m[10] = 0x80;
        }
        m[12..16].copy_from_slice(&ciaddr.octets());
        m[28..34].copy_from_slice(&self.mac);
        m.extend_from_slice(&MAGIC);
        m.extend_from_slice(&[53, 1, kind]);
        // Client identifier: the hardware type and MAC.
        m.extend_from_slice(&[61, 7, 1]);
        m.extend_from_slice(&self.mac);
        // Parameters asked: mask, router, DNS, lease time, server id, T1, T2.
        m.extend_from_slice(&[55, 7, 1, 3, 6, 51, 54, 58, 59]);
        m.extend_from_slice(extra);
        m.push(255);
        // BOOTP's 300-byte minimum, which some servers still expect.
        m.resize(m.len().max(300), 0);
        m
    }

    fn broadcast(&self, src: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
        let ends = Endpoints {
            src_mac: self.mac,
            dst_mac: BROADCAST_MAC,
            src,
            dst: Ipv4Addr::BROADCAST,
        };
        build_udp(&ends, CLIENT_PORT, SERVER_PORT, payload)
    }

    fn discover(&self) -> Vec<u8> {
        let m = self.message(DISCOVER, Ipv4Addr::UNSPECIFIED, true, &[]);
        self.broadcast(Ipv4Addr::UNSPECIFIED, &m)
    }

    /// SELECTING's REQUEST: the offered address from the chosen server.
    fn request_offer(&self, offered: Ipv4Addr, server: Ipv4Addr) -> Vec<u8> {
        let mut extra = alloc::vec![50, 4];
        extra.extend_from_slice(&offered.octets());
        extra.extend_from_slice(&[54, 4]);
        extra.extend_from_slice(&server.octets());
        let m = self.message(REQUEST, Ipv4Addr::UNSPECIFIED, true, &extra);
        self.broadcast(Ipv4Addr::UNSPECIFIED, &m)
    }

    /// RENEWING's REQUEST (to the server) or REBINDING's (to everyone), from the address.
    fn request_renewal(&self, b: &Binding, to_server: bool) -> Vec<u8> {
        let ip = b.lease.ip;
        let m = self.message(REQUEST, ip, false, &[]);
        if to_server {
            let ends = Endpoints {
                src_mac: self.mac,
                dst_mac: b.server_mac,
                src: ip,
                dst: b.lease.server,
            };
            build_udp(&ends, CLIENT_PORT, SERVER_PORT, &m)
        } else {
            self.broadcast(ip, &m)
        }
    }
}

#[cfg(test)]
#[path = "dhcp_client_tests.rs"]
mod tests;
