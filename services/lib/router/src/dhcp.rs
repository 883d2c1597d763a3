//! A DHCPv4 server (RFC 2131) for one subnet and address range: DISCOVER -> OFFER,
//! REQUEST -> ACK or NAK, RELEASE. A MAC keeps its address for as long as the range does not
//! run out (an expired lease is only reclaimed, oldest first, for a MAC that has none), so an
//! app keeps its address across renewals and router restarts that keep the table.
//!
//! The client may send anything: short packets, options running past the end, an option
//! overload, a wrong magic cookie, a hardware type other than Ethernet. Each is an
//! [`Error`]; nothing is answered.

use alloc::vec::Vec;
use core::net::Ipv4Addr;

use crate::wire::Mac;

pub(crate) const OP_REQUEST: u8 = 1;
pub(crate) const OP_REPLY: u8 = 2;
pub(crate) const MAGIC: [u8; 4] = [99, 130, 83, 99];
pub(crate) const FIXED_LEN: usize = 236;

/// DHCP message types.
pub(crate) const DISCOVER: u8 = 1;
pub(crate) const OFFER: u8 = 2;
pub(crate) const REQUEST: u8 = 3;
pub(crate) const DECLINE: u8 = 4;
pub(crate) const ACK: u8 = 5;
pub(crate) const NAK: u8 = 6;
pub(crate) const RELEASE: u8 = 7;

/// Why a message got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Not a BOOTREQUEST over Ethernet, cut short, or without the magic cookie.
    Malformed,
    /// An option runs past the end, or there is no message type.
    Options,
    /// A type the server does not answer (or a REQUEST for another server).
    Ignored,
    /// The range is full of live leases.
    Exhausted,
}

/// A lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The client.
    pub mac: Mac,
    /// Its address.
    pub ip: Ipv4Addr,
    /// When it ends, ms.
    pub expires_ms: u64,
}

/// The server's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DhcpConfig {
    /// The server's (and gateway's) address.
    pub server: Ipv4Addr,
    /// Subnet prefix length.
    pub prefix: u8,
    /// First and last address leased.
    pub range: (Ipv4Addr, Ipv4Addr),
    /// Resolver announced (the gateway, where the forwarder listens), if any.
    pub dns: Option<Ipv4Addr>,
    /// Lease length, seconds.
    pub lease_secs: u32,
}

/// A reply to send to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The DHCP message (UDP payload, server port 67 to client port 68).
    pub payload: Vec<u8>,
    /// The client's MAC.
    pub client_mac: Mac,
    /// The address offered or acknowledged (unspecified for a NAK).
    pub yiaddr: Ipv4Addr,
    /// Whether it is an ACK (a lease is now bound).
    pub ack: bool,
}

/// The server.
pub struct DhcpServer {
    config: DhcpConfig,
    leases: Vec<Lease>,
}

struct Request {
    kind: u8,
    xid: [u8; 4],
    flags: [u8; 2],
    ciaddr: Ipv4Addr,
    mac: Mac,
    requested: Option<Ipv4Addr>,
    server_id: Option<Ipv4Addr>,
}

/// The options of a DHCP message whose fixed part and magic cookie were checked: `(code,
/// value)` in order, padding skipped, up to the end option or the message's end. An option
/// whose length runs past the end is [`Error::Options`] (and ends the walk).
pub(crate) fn options(msg: &[u8]) -> impl Iterator<Item = Result<(u8, &[u8]), Error>> {
    let mut at = FIXED_LEN + MAGIC.len();
    core::iter::from_fn(move || {
        while *msg.get(at)? == 0 {
            at += 1;
        }
        if msg[at] == 255 {
            at = msg.len();
            return None;
        }
        let code = msg[at];
        let value = msg
            .get(at + 1)
            .and_then(|len| msg.get(at + 2..at + 2 + usize::from(*len)));
        match value {
            Some(value) => {
                at += 2 + value.len();
                Some(Ok((code, value)))
            }
            None => {
                at = msg.len();
                Some(Err(Error::Options))
            }
        }
    })
}

fn parse(msg: &[u8]) -> Result<Request, Error> {
    if msg.len() < FIXED_LEN + 4
        || msg[0] != OP_REQUEST
        || msg[1] != 1
        || msg[2] != 6
        || msg[236..240] != MAGIC
    {
        return Err(Error::Malformed);
    }
    let ip = |at: usize| Ipv4Addr::new(msg[at], msg[at + 1], msg[at + 2], msg[at + 3]);
    let mut mac = [0; 6];
    mac.copy_from_slice(&msg[28..34]);
    let (mut kind, mut requested, mut server_id) = (None, None, None);
    for option in options(msg) {
        let (code, value) = option?;
        match (code, value.len()) {
            (53, 1) => kind = Some(value[0]),
            (50, 4) => requested = Some(Ipv4Addr::new(value[0], value[1], value[2], value[3])),
            (54, 4) => server_id = Some(Ipv4Addr::new(value[0], value[1], value[2], value[3])),
            _ => {}
        }
    }
    Ok(Request {
        kind: kind.ok_or(Error::Options)?,
        xid: [msg[4], msg[5], msg[6], msg[7]],
        flags: [msg[10], msg[11]],
        ciaddr: ip(12),
        mac,
        requested,
        server_id,
    })
}

impl DhcpServer {
    /// A server for `config` with no leases.
    pub fn new(config: DhcpConfig) -> DhcpServer {
        DhcpServer {
            config,
            leases: Vec::new(),
        }
    }

    /// Changes the resolver announced in new OFFERs and ACKs (the uplink's DNS came or went).
    pub fn set_dns(&mut self, dns: Option<Ipv4Addr>) {
        self.config.dns = dns;
    }

    /// The leases, live or expired.
    pub fn leases(&self) -> &[Lease] {
        &self.leases
    }

    /// The live lease of `ip`, if any.
    pub fn lease_of_ip(&self, ip: Ipv4Addr, now_ms: u64) -> Option<&Lease> {
        self.leases
            .iter()
            .find(|l| l.ip == ip && l.expires_ms > now_ms)
    }

    fn in_range(&self, ip: Ipv4Addr) -> bool {
        (self.config.range.0..=self.config.range.1).contains(&ip) && ip != self.config.server
    }

    /// The address for `mac`: its own (live or expired), else a never-leased one, else the
    /// oldest expired lease's.
    fn address_for(&mut self, mac: Mac, now_ms: u64) -> Option<usize> {
        if let Some(i) = self.leases.iter().position(|l| l.mac == mac) {
            return Some(i);
        }
        let (lo, hi) = (
            u32::from(self.config.range.0),
            u32::from(self.config.range.1),
        );
        // Bounded: the range is at most what the leases vector may hold (checked by the caller
        // of `new` through the config: a /16 is 65k addresses, 1 MiB of leases at worst).
        for n in lo..=hi {
            let ip = Ipv4Addr::from(n);
            if self.in_range(ip) && !self.leases.iter().any(|l| l.ip == ip) {
                self.leases.push(Lease {
                    mac,
                    ip,
                    expires_ms: now_ms,
                });
                return Some(self.leases.len() - 1);
            }
        }
        let oldest = self
            .leases
            .iter()
            .enumerate()
            .filter(|(_, l)| l.expires_ms <= now_ms)
            .min_by_key(|(_, l)| l.expires_ms)
            .map(|(i, _)| i)?;
        self.leases[oldest].mac = mac;
        Some(oldest)
    }

    /// Takes back a lease an earlier server gave (zedrouter's leases, kept by the vault across
    /// its restart): `mac` holds `ip` again for a lease time from `now_ms`, as if it had just
    /// renewed, so the address is never offered to another client meanwhile. Refused (`false`)
    /// for an address out of the range (the instance changed), one another MAC holds, or a
    /// MAC that holds another address already.
    pub fn restore(&mut self, mac: Mac, ip: Ipv4Addr, now_ms: u64) -> bool {
        if !self.in_range(ip) || mac == [0; 6] {
            return false;
        }
        if let Some(l) = self.leases.iter().find(|l| l.mac == mac || l.ip == ip) {
            return l.mac == mac && l.ip == ip;
        }
        self.leases.push(Lease {
            mac,
            ip,
            expires_ms: now_ms + u64::from(self.config.lease_secs) * 1000,
        });
        true
    }

    /// Answers one DHCP message from a client.
    pub fn handle(&mut self, msg: &[u8], now_ms: u64) -> Result<Reply, Error> {
        let req = parse(msg)?;
        let lease_ms = u64::from(self.config.lease_secs) * 1000;
        match req.kind {
            DISCOVER => {
                let i = self.address_for(req.mac, now_ms).ok_or(Error::Exhausted)?;
                let ip = self.leases[i].ip;
                Ok(self.reply(&req, OFFER, ip))
            }
            REQUEST => {
                if req.server_id.is_some_and(|s| s != self.config.server) {
                    return Err(Error::Ignored);
                }
                let wanted = req.requested.unwrap_or(req.ciaddr);
                let own = self.leases.iter().position(|l| l.mac == req.mac);
                let taken_by_other = self
                    .leases
                    .iter()
                    .any(|l| l.ip == wanted && l.mac != req.mac && l.expires_ms > now_ms);
                let ok = match own {
                    Some(i) => self.leases[i].ip == wanted,
                    None => self.in_range(wanted) && !taken_by_other,
                };
                if !ok {
                    return Ok(self.reply(&req, NAK, Ipv4Addr::UNSPECIFIED));
                }
                let i = match own {
                    Some(i) => i,
                    None => {
                        // A client that lost our offer asks straight for a free address.
                        self.leases.retain(|l| l.ip != wanted);
                        self.leases.push(Lease {
                            mac: req.mac,
                            ip: wanted,
                            expires_ms: now_ms,
                        });
                        self.leases.len() - 1
                    }
                };
                self.leases[i].expires_ms = now_ms + lease_ms;
                Ok(self.reply(&req, ACK, wanted))
            }
            RELEASE => {
                if let Some(l) = self.leases.iter_mut().find(|l| l.mac == req.mac) {
                    l.expires_ms = now_ms;
                }
                Err(Error::Ignored)
            }
            DECLINE => {
                // The address is in use by someone else: keep it out of the range for a lease
                // time, bound to no client.
                if let Some(l) = self.leases.iter_mut().find(|l| l.mac == req.mac) {
                    l.mac = [0; 6];
                    l.expires_ms = now_ms + lease_ms;
                }
                Err(Error::Ignored)
            }
            _ => Err(Error::Ignored),
        }
    }

    fn reply(&self, req: &Request, kind: u8, yiaddr: Ipv4Addr) -> Reply {
        let c = &self.config;
        let mut m = alloc::vec![0u8; 240];
        m[0] = OP_REPLY;
        m[1] = 1;
        m[2] = 6;
        m[4..8].copy_from_slice(&req.xid);
        m[10..12].copy_from_slice(&req.flags);
        m[12..16].copy_from_slice(&req.ciaddr.octets());
        m[16..20].copy_from_slice(&yiaddr.octets());
        m[20..24].copy_from_slice(&c.server.octets());
        m[28..34].copy_from_slice(&req.mac);
        m[236..240].copy_from_slice(&MAGIC);
        m.extend_from_slice(&[53, 1, kind, 54, 4]);
        m.extend_from_slice(&c.server.octets());
        if kind != NAK {
            let mask = if c.prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(c.prefix))
            };
            m.extend_from_slice(&[51, 4]);
            m.extend_from_slice(&c.lease_secs.to_be_bytes());
            m.extend_from_slice(&[1, 4]);
            m.extend_from_slice(&mask.to_be_bytes());
            m.extend_from_slice(&[3, 4]);
            m.extend_from_slice(&c.server.octets());
            if let Some(dns) = c.dns {
                m.extend_from_slice(&[6, 4]);
                m.extend_from_slice(&dns.octets());
            }
        }
        m.push(255);
        // Pad to BOOTP's 300-byte minimum.
        m.resize(m.len().max(300), 0);
        Reply {
            payload: m,
            client_mac: req.mac,
            yiaddr,
            ack: kind == ACK,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn config() -> DhcpConfig {
        DhcpConfig {
            server: Ipv4Addr::new(10, 1, 0, 1),
            prefix: 24,
            range: (Ipv4Addr::new(10, 1, 0, 2), Ipv4Addr::new(10, 1, 0, 4)),
            dns: Some(Ipv4Addr::new(10, 1, 0, 1)),
            lease_secs: 60,
        }
    }

    /// A client message of `kind` from `mac`, with a requested address.
    pub(crate) fn message(kind: u8, mac: Mac, requested: Option<Ipv4Addr>) -> Vec<u8> {
        let mut m = alloc::vec![0u8; 240];
        m[0] = 1;
        m[1] = 1;
        m[2] = 6;
        m[4..8].copy_from_slice(&[1, 2, 3, 4]);
        m[28..34].copy_from_slice(&mac);
        m[236..240].copy_from_slice(&MAGIC);
        m.extend_from_slice(&[53, 1, kind]);
        if let Some(ip) = requested {
            m.extend_from_slice(&[50, 4]);
            m.extend_from_slice(&ip.octets());
        }
        m.push(255);
        m
    }

    fn option(reply: &[u8], code: u8) -> Option<&[u8]> {
        let mut at = 240;
        while at + 1 < reply.len() && reply[at] != 255 {
            let len = usize::from(reply[at + 1]);
            if reply[at] == code {
                return Some(&reply[at + 2..at + 2 + len]);
            }
            at += 2 + len;
        }
        None
    }

    const M1: Mac = [2, 0, 0, 0, 0, 1];
    const M2: Mac = [2, 0, 0, 0, 0, 2];

    #[test]
    fn discover_request_ack_with_options() {
        let mut s = DhcpServer::new(config());
        let offer = s.handle(&message(DISCOVER, M1, None), 0).unwrap();
        assert_eq!(offer.yiaddr, Ipv4Addr::new(10, 1, 0, 2));
        assert_eq!(option(&offer.payload, 53), Some(&[OFFER][..]));
        let ack = s
            .handle(&message(REQUEST, M1, Some(offer.yiaddr)), 10)
            .unwrap();
        assert!(ack.ack);
        assert_eq!(option(&ack.payload, 1), Some(&[255, 255, 255, 0][..]));
        assert_eq!(option(&ack.payload, 3), Some(&[10, 1, 0, 1][..]));
        assert_eq!(option(&ack.payload, 6), Some(&[10, 1, 0, 1][..]));
        assert_eq!(option(&ack.payload, 51), Some(&60u32.to_be_bytes()[..]));
        assert_eq!(s.lease_of_ip(offer.yiaddr, 20).map(|l| l.mac), Some(M1));
    }

    #[test]
    fn leases_are_stable_per_mac_and_reclaimed_when_the_range_runs_out() {
        let mut s = DhcpServer::new(config());
        let a1 = s.handle(&message(DISCOVER, M1, None), 0).unwrap().yiaddr;
        s.handle(&message(REQUEST, M1, Some(a1)), 0).unwrap();
        let a2 = s.handle(&message(DISCOVER, M2, None), 0).unwrap().yiaddr;
        assert_ne!(a1, a2);
        // After expiry M1 still gets the same address.
        assert_eq!(
            s.handle(&message(DISCOVER, M1, None), 1_000_000)
                .unwrap()
                .yiaddr,
            a1
        );
        // Asking for someone else's live address is refused.
        s.handle(&message(REQUEST, M2, Some(a2)), 0).unwrap();
        let nak = s.handle(&message(REQUEST, M2, Some(a1)), 10).unwrap();
        assert!(!nak.ack && nak.yiaddr.is_unspecified());
        // Fill the range (3 addresses), then one more MAC: exhausted while all are live...
        let m3 = [2, 0, 0, 0, 0, 3];
        let a3 = s.handle(&message(DISCOVER, m3, None), 0).unwrap().yiaddr;
        s.handle(&message(REQUEST, m3, Some(a3)), 0).unwrap();
        s.handle(&message(REQUEST, M1, Some(a1)), 0).unwrap();
        let m4 = [2, 0, 0, 0, 0, 4];
        assert_eq!(
            s.handle(&message(DISCOVER, m4, None), 100),
            Err(Error::Exhausted)
        );
        // ...and gets the oldest expired one later.
        assert!(s.handle(&message(DISCOVER, m4, None), 70_000).is_ok());
    }

    #[test]
    fn restored_leases_keep_their_addresses_from_other_clients() {
        let mut server = DhcpServer::new(config());
        let (a, b) = ([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb]);
        let ip = Ipv4Addr::new(10, 1, 0, 3);
        // As a restarted server: a's lease restored, then b asks for any address.
        assert!(server.restore(a, ip, 0));
        assert!(server.restore(a, ip, 0), "restoring twice is harmless");
        assert!(!server.restore(b, ip, 0), "another MAC's address");
        assert!(
            !server.restore(a, Ipv4Addr::new(10, 1, 0, 4), 0),
            "a holds one already"
        );
        assert!(
            !server.restore(b, Ipv4Addr::new(10, 9, 0, 1), 0),
            "out of the range"
        );
        assert!(
            !server.restore(b, Ipv4Addr::new(10, 1, 0, 1), 0),
            "the server's own"
        );
        let offer = server.handle(&message(DISCOVER, b, None), 1).unwrap();
        assert_ne!(offer.yiaddr, ip);
        // b asking for a's address outright is refused while a's lease lives.
        let nak = server.handle(&message(REQUEST, b, Some(ip)), 2).unwrap();
        assert!(!nak.ack);
        // a renews (or reboots asking for it): the same address.
        let ack = server.handle(&message(REQUEST, a, Some(ip)), 3).unwrap();
        assert!(ack.ack && ack.yiaddr == ip);
        assert_eq!(server.lease_of_ip(ip, 4).unwrap().mac, a);
    }

    #[test]
    fn bad_messages_get_no_answer() {
        let mut s = DhcpServer::new(config());
        let good = message(DISCOVER, M1, None);
        assert_eq!(s.handle(&good[..200], 0), Err(Error::Malformed));
        let mut bad = good.clone();
        bad[236] = 0;
        assert_eq!(s.handle(&bad, 0), Err(Error::Malformed));
        let mut bad = good.clone();
        bad[0] = 2;
        assert_eq!(s.handle(&bad, 0), Err(Error::Malformed));
        let mut bad = good[..241].to_vec();
        bad.extend_from_slice(&[50, 200, 1]); // runs past the end (after a cut type option)
        assert_eq!(s.handle(&bad, 0), Err(Error::Options));
        let mut bad = good.clone();
        bad[240] = 0; // no type: the option becomes padding then garbage codes
        assert!(s.handle(&bad, 0).is_err());
        let mut other_server = message(REQUEST, M1, Some(Ipv4Addr::new(10, 1, 0, 2)));
        other_server.pop();
        other_server.extend_from_slice(&[54, 4, 10, 9, 9, 9, 255]);
        assert_eq!(s.handle(&other_server, 0), Err(Error::Ignored));
    }
}
