//! Ethernet, ARP, IPv4, UDP, TCP and ICMP on the wire: parsing with every length, version and
//! checksum checked, and the in-place rewrites NAT needs (addresses, ports, TTL) with checksums
//! updated incrementally (RFC 1624).
//!
//! The peer (an app, or anything on the uplink) may send any bytes: runts, giants, lengths that
//! lie, options, fragments, broken checksums. [`parse`] answers a [`Packet`] only for a frame
//! whose every header it will later touch is whole and consistent; anything else is a
//! [`Malformed`] reason for the caller to count.

use core::net::Ipv4Addr;

/// An Ethernet (MAC) address.
pub type Mac = [u8; 6];
/// The broadcast MAC address.
pub const BROADCAST_MAC: Mac = [0xff; 6];

/// Bytes of an Ethernet header (no VLAN tag).
pub const ETH_LEN: usize = 14;
/// Longest Ethernet frame carried (no FCS).
pub const MAX_FRAME: usize = 1514;
/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// IP protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

/// TCP flag FIN.
pub const TCP_FIN: u8 = 0x01;
/// TCP flag SYN.
pub const TCP_SYN: u8 = 0x02;
/// TCP flag RST.
pub const TCP_RST: u8 = 0x04;
/// TCP flag ACK.
pub const TCP_ACK: u8 = 0x10;

/// Why a frame was dropped as malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Shorter than an Ethernet header, or longer than [`MAX_FRAME`].
    FrameLength,
    /// An EtherType other than IPv4 and ARP (IPv6 included: this router is IPv4 only).
    EtherType,
    /// An ARP packet that is not Ethernet/IPv4 or is cut short.
    Arp,
    /// IPv4 version, header length or total length impossible for the frame.
    Ipv4Header,
    /// IPv4 header checksum wrong.
    Ipv4Checksum,
    /// A fragment (more-fragments set or an offset): not reassembled, dropped.
    Fragment,
    /// TCP, UDP or ICMP header cut short or lying about its length.
    TransportHeader,
    /// TCP, UDP or ICMP checksum wrong.
    TransportChecksum,
}

impl Malformed {
    /// Every reason, in counter order.
    pub const ALL: [Malformed; 8] = [
        Malformed::FrameLength,
        Malformed::EtherType,
        Malformed::Arp,
        Malformed::Ipv4Header,
        Malformed::Ipv4Checksum,
        Malformed::Fragment,
        Malformed::TransportHeader,
        Malformed::TransportChecksum,
    ];

    /// The reason's name, as counters show it.
    pub fn name(self) -> &'static str {
        match self {
            Malformed::FrameLength => "frame_length",
            Malformed::EtherType => "ethertype",
            Malformed::Arp => "arp",
            Malformed::Ipv4Header => "ipv4_header",
            Malformed::Ipv4Checksum => "ipv4_checksum",
            Malformed::Fragment => "fragment",
            Malformed::TransportHeader => "transport_header",
            Malformed::TransportChecksum => "transport_checksum",
        }
    }
}

/// An ARP request or reply (Ethernet, IPv4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arp {
    /// 1 for a request, 2 for a reply (others are refused).
    pub op: u16,
    /// Sender hardware address.
    pub sender_mac: Mac,
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target hardware address.
    pub target_mac: Mac,
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

/// The transport header of an IPv4 packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// TCP: ports and flags.
    Tcp {
        /// Source port.
        src: u16,
        /// Destination port.
        dst: u16,
        /// Flags byte (FIN, SYN, RST, PSH, ACK, URG, ...).
        flags: u8,
    },
    /// UDP: ports.
    Udp {
        /// Source port.
        src: u16,
        /// Destination port.
        dst: u16,
    },
    /// ICMP echo request (type 8) or reply (type 0): the identifier plays the port.
    IcmpEcho {
        /// 8 for a request, 0 for a reply.
        kind: u8,
        /// Echo identifier.
        ident: u16,
    },
    /// Any other ICMP message (errors included: not translated, see docs/router.md).
    IcmpOther {
        /// ICMP type.
        kind: u8,
    },
    /// Another IP protocol.
    Other,
}

/// A whole, consistent IPv4 packet in a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4 {
    /// Ethernet source.
    pub src_mac: Mac,
    /// Ethernet destination.
    pub dst_mac: Mac,
    /// IP source.
    pub src: Ipv4Addr,
    /// IP destination.
    pub dst: Ipv4Addr,
    /// IP protocol number.
    pub protocol: u8,
    /// Time to live.
    pub ttl: u8,
    /// IP header length in bytes (20..=60).
    pub header_len: usize,
    /// IP total length (header and payload); the frame may carry padding after it.
    pub total_len: usize,
    /// The transport header.
    pub transport: Transport,
}

impl Ipv4 {
    /// Offset of the transport header in the frame.
    pub fn l4_offset(&self) -> usize {
        ETH_LEN + self.header_len
    }

    /// The transport payload's bytes range in the frame (after the TCP/UDP/ICMP header).
    pub fn payload_range(&self, frame: &[u8]) -> core::ops::Range<usize> {
        let l4 = self.l4_offset();
        let end = ETH_LEN + self.total_len;
        let start = match self.transport {
            Transport::Udp { .. } => l4 + 8,
            Transport::Tcp { .. } => l4 + usize::from(frame[l4 + 12] >> 4) * 4,
            Transport::IcmpEcho { .. } | Transport::IcmpOther { .. } => l4 + 8,
            Transport::Other => l4,
        };
        start.min(end)..end
    }

    /// The (source, destination) ports, or the echo identifier twice for ICMP echo.
    pub fn ports(&self) -> Option<(u16, u16)> {
        match self.transport {
            Transport::Tcp { src, dst, .. } | Transport::Udp { src, dst } => Some((src, dst)),
            Transport::IcmpEcho { ident, .. } => Some((ident, ident)),
            _ => None,
        }
    }
}

/// A parsed frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packet {
    /// ARP.
    Arp(Arp),
    /// IPv4 with its transport header.
    Ipv4(Ipv4),
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn ip_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

fn mac_at(b: &[u8], at: usize) -> Mac {
    let mut m = [0; 6];
    m.copy_from_slice(&b[at..at + 6]);
    m
}

/// Parses a frame, checking every header the router will use or rewrite.
pub fn parse(frame: &[u8]) -> Result<Packet, Malformed> {
    if frame.len() < ETH_LEN || frame.len() > MAX_FRAME {
        return Err(Malformed::FrameLength);
    }
    match be16(frame, 12) {
        ETHERTYPE_ARP => parse_arp(&frame[ETH_LEN..]).map(Packet::Arp),
        ETHERTYPE_IPV4 => parse_ipv4(frame).map(Packet::Ipv4),
        _ => Err(Malformed::EtherType),
    }
}

fn parse_arp(p: &[u8]) -> Result<Arp, Malformed> {
    if p.len() < 28 || be16(p, 0) != 1 || be16(p, 2) != ETHERTYPE_IPV4 || p[4] != 6 || p[5] != 4 {
        return Err(Malformed::Arp);
    }
    let op = be16(p, 6);
    if op != 1 && op != 2 {
        return Err(Malformed::Arp);
    }
    Ok(Arp {
        op,
        sender_mac: mac_at(p, 8),
        sender_ip: ip_at(p, 14),
        target_mac: mac_at(p, 18),
        target_ip: ip_at(p, 24),
    })
}

fn parse_ipv4(frame: &[u8]) -> Result<Ipv4, Malformed> {
    let ip = &frame[ETH_LEN..];
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return Err(Malformed::Ipv4Header);
    }
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let total_len = usize::from(be16(ip, 2));
    if header_len < 20 || total_len < header_len || total_len > ip.len() {
        return Err(Malformed::Ipv4Header);
    }
    if checksum(&ip[..header_len], 0) != 0 {
        return Err(Malformed::Ipv4Checksum);
    }
    let fragment = be16(ip, 6);
    if fragment & 0x3fff != 0 {
        return Err(Malformed::Fragment);
    }
    let src = ip_at(ip, 12);
    let dst = ip_at(ip, 16);
    let protocol = ip[9];
    let l4 = &ip[header_len..total_len];
    let transport = match protocol {
        PROTO_TCP => {
            if l4.len() < 20 {
                return Err(Malformed::TransportHeader);
            }
            let data_offset = usize::from(l4[12] >> 4) * 4;
            if data_offset < 20 || data_offset > l4.len() {
                return Err(Malformed::TransportHeader);
            }
            if checksum(l4, pseudo_header_sum(src, dst, protocol, l4.len())) != 0 {
                return Err(Malformed::TransportChecksum);
            }
            Transport::Tcp {
                src: be16(l4, 0),
                dst: be16(l4, 2),
                flags: l4[13],
            }
        }
        PROTO_UDP => {
            if l4.len() < 8 || usize::from(be16(l4, 4)) != l4.len() {
                return Err(Malformed::TransportHeader);
            }
            // Zero means "no checksum" in IPv4.
            if be16(l4, 6) != 0
                && checksum(l4, pseudo_header_sum(src, dst, protocol, l4.len())) != 0
            {
                return Err(Malformed::TransportChecksum);
            }
            Transport::Udp {
                src: be16(l4, 0),
                dst: be16(l4, 2),
            }
        }
        PROTO_ICMP => {
            if l4.len() < 8 {
                return Err(Malformed::TransportHeader);
            }
            if checksum(l4, 0) != 0 {
                return Err(Malformed::TransportChecksum);
            }
            match l4[0] {
                0 | 8 if l4[1] == 0 => Transport::IcmpEcho {
                    kind: l4[0],
                    ident: be16(l4, 4),
                },
                kind => Transport::IcmpOther { kind },
            }
        }
        _ => Transport::Other,
    };
    Ok(Ipv4 {
        dst_mac: mac_at(frame, 0),
        src_mac: mac_at(frame, 6),
        src,
        dst,
        protocol,
        ttl: ip[8],
        header_len,
        total_len,
        transport,
    })
}

/// The one's-complement sum of `data` folded into 16 bits and complemented, starting from
/// `initial` (a partial sum, e.g. [`pseudo_header_sum`]). Zero over data that includes a
/// correct checksum field.
pub fn checksum(data: &[u8], initial: u32) -> u16 {
    let mut sum = u64::from(initial);
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The partial sum of the TCP/UDP pseudo-header.
pub fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: usize) -> u32 {
    let s = src.octets();
    let d = dst.octets();
    u32::from(u16::from_be_bytes([s[0], s[1]]))
        + u32::from(u16::from_be_bytes([s[2], s[3]]))
        + u32::from(u16::from_be_bytes([d[0], d[1]]))
        + u32::from(u16::from_be_bytes([d[2], d[3]]))
        + u32::from(protocol)
        + len as u32
}

/// RFC 1624 eq. 3: the checksum `sum` after a 16-bit word of the covered data changes from
/// `old` to `new`: HC' = ~(~HC + ~m + m').
pub fn adjust_checksum(sum: u16, old: u16, new: u16) -> u16 {
    let mut acc = u32::from(!sum) + u32::from(!old) + u32::from(new);
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

fn write16(frame: &mut [u8], at: usize, value: u16) {
    frame[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// Where the transport checksum of `packet` sits in the frame, and whether the address
/// (pseudo-header) words are covered by it. `None` for a UDP datagram without a checksum and
/// for protocols without one the router touches.
fn l4_checksum_at(frame: &[u8], packet: &Ipv4) -> Option<(usize, bool)> {
    let l4 = packet.l4_offset();
    match packet.transport {
        Transport::Tcp { .. } => Some((l4 + 16, true)),
        Transport::Udp { .. } if be16(frame, l4 + 6) != 0 => Some((l4 + 6, true)),
        Transport::IcmpEcho { .. } => Some((l4 + 2, false)),
        _ => None,
    }
}

/// Replaces the 16-bit word at `at` with `new` and fixes the IP header checksum (when
/// `in_ip_header`) and the transport checksum (when the word is covered by it).
fn rewrite_word(frame: &mut [u8], packet: &Ipv4, at: usize, new: u16, in_ip_header: bool) {
    let old = be16(frame, at);
    if old == new {
        return;
    }
    write16(frame, at, new);
    if in_ip_header {
        let c = ETH_LEN + 10;
        let sum = be16(frame, c);
        write16(frame, c, adjust_checksum(sum, old, new));
    }
    if let Some((c, covers_addresses)) = l4_checksum_at(frame, packet) {
        if in_ip_header && !covers_addresses {
            return;
        }
        let sum = be16(frame, c);
        let mut fixed = adjust_checksum(sum, old, new);
        // A UDP checksum that computes to zero is sent as all ones (zero means "none").
        if matches!(packet.transport, Transport::Udp { .. }) && fixed == 0 {
            fixed = 0xffff;
        }
        write16(frame, c, fixed);
    }
}

/// Rewrites the IP source (`source`) or destination address of a parsed packet, fixing
/// checksums.
pub fn set_address(frame: &mut [u8], packet: &mut Ipv4, source: bool, addr: Ipv4Addr) {
    let at = ETH_LEN + if source { 12 } else { 16 };
    let o = addr.octets();
    rewrite_word(frame, packet, at, u16::from_be_bytes([o[0], o[1]]), true);
    rewrite_word(
        frame,
        packet,
        at + 2,
        u16::from_be_bytes([o[2], o[3]]),
        true,
    );
    if source {
        packet.src = addr;
    } else {
        packet.dst = addr;
    }
}

/// Rewrites the source (`source`) or destination port of a TCP or UDP packet, or the
/// identifier of an ICMP echo (either flag), fixing the checksum. Does nothing for others.
pub fn set_port(frame: &mut [u8], packet: &mut Ipv4, source: bool, port: u16) {
    let l4 = packet.l4_offset();
    match &mut packet.transport {
        Transport::Tcp { src, dst, .. } | Transport::Udp { src, dst } => {
            let at = if source { l4 } else { l4 + 2 };
            if source {
                *src = port;
            } else {
                *dst = port;
            }
            let p = *packet;
            rewrite_word(frame, &p, at, port, false);
        }
        Transport::IcmpEcho { ident, .. } => {
            *ident = port;
            let p = *packet;
            rewrite_word(frame, &p, l4 + 4, port, false);
        }
        _ => {}
    }
}

/// Decrements the TTL (fixing the header checksum); false when it was 0 or 1 (the packet must
/// not be forwarded).
pub fn decrement_ttl(frame: &mut [u8], packet: &mut Ipv4) -> bool {
    if packet.ttl <= 1 {
        return false;
    }
    let at = ETH_LEN + 8;
    let old = be16(frame, at);
    let new = old - 0x0100;
    write16(frame, at, new);
    let c = ETH_LEN + 10;
    let sum = be16(frame, c);
    write16(frame, c, adjust_checksum(sum, old, new));
    packet.ttl -= 1;
    true
}

/// Sets the Ethernet source and destination.
pub fn set_macs(frame: &mut [u8], src: Mac, dst: Mac) {
    frame[0..6].copy_from_slice(&dst);
    frame[6..12].copy_from_slice(&src);
}

/// Builds an ARP frame.
pub fn build_arp(arp: &Arp, eth_dst: Mac) -> alloc::vec::Vec<u8> {
    let mut f = alloc::vec![0u8; ETH_LEN + 28];
    set_macs(&mut f, arp.sender_mac, eth_dst);
    write16(&mut f, 12, ETHERTYPE_ARP);
    let p = &mut f[ETH_LEN..];
    p[0..8].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, arp.op as u8]);
    p[8..14].copy_from_slice(&arp.sender_mac);
    p[14..18].copy_from_slice(&arp.sender_ip.octets());
    p[18..24].copy_from_slice(&arp.target_mac);
    p[24..28].copy_from_slice(&arp.target_ip.octets());
    f
}

/// The addressing of a frame the router builds.
#[derive(Clone, Copy, Debug)]
pub struct Endpoints {
    /// Ethernet source.
    pub src_mac: Mac,
    /// Ethernet destination.
    pub dst_mac: Mac,
    /// IP source.
    pub src: Ipv4Addr,
    /// IP destination.
    pub dst: Ipv4Addr,
}

/// Builds an IPv4 frame carrying `l4` (a transport header and payload whose checksum the
/// caller fills, see [`build_udp`]) with TTL 64.
pub fn build_ipv4(ends: &Endpoints, protocol: u8, l4: &[u8]) -> alloc::vec::Vec<u8> {
    let total = 20 + l4.len();
    let mut f = alloc::vec![0u8; ETH_LEN + total];
    set_macs(&mut f, ends.src_mac, ends.dst_mac);
    write16(&mut f, 12, ETHERTYPE_IPV4);
    let ip = &mut f[ETH_LEN..];
    ip[0] = 0x45;
    write16(ip, 2, total as u16);
    ip[6] = 0x40; // don't fragment
    ip[8] = 64;
    ip[9] = protocol;
    ip[12..16].copy_from_slice(&ends.src.octets());
    ip[16..20].copy_from_slice(&ends.dst.octets());
    let sum = checksum(&ip[..20], 0);
    write16(ip, 10, sum);
    ip[20..].copy_from_slice(l4);
    f
}

/// Builds a UDP datagram in an IPv4 frame, checksummed.
pub fn build_udp(
    ends: &Endpoints,
    src_port: u16,
    dst_port: u16,
    payload: &[u8],
) -> alloc::vec::Vec<u8> {
    let len = 8 + payload.len();
    let mut l4 = alloc::vec![0u8; len];
    write16(&mut l4, 0, src_port);
    write16(&mut l4, 2, dst_port);
    write16(&mut l4, 4, len as u16);
    l4[8..].copy_from_slice(payload);
    let mut sum = checksum(&l4, pseudo_header_sum(ends.src, ends.dst, PROTO_UDP, len));
    if sum == 0 {
        sum = 0xffff;
    }
    write16(&mut l4, 6, sum);
    build_ipv4(ends, PROTO_UDP, &l4)
}

/// Builds a TCP segment (20-byte header, window 65535, no options) in an IPv4 frame,
/// checksummed, with sequence and acknowledgment numbers 0.
pub fn build_tcp(
    ends: &Endpoints,
    src_port: u16,
    dst_port: u16,
    flags: u8,
    payload: &[u8],
) -> alloc::vec::Vec<u8> {
    build_tcp_seq(ends, src_port, dst_port, (0, 0), flags, payload)
}

/// The reset that answers TCP `packet` in `frame` (RFC 9293 3.10.7.1, a segment that belongs
/// to no connection), from `ends` (the packet's ends swapped): `None` for a reset (never
/// answered) or anything that is not TCP.
pub fn build_tcp_reset(
    frame: &[u8],
    packet: &Ipv4,
    ends: &Endpoints,
) -> Option<alloc::vec::Vec<u8>> {
    let Transport::Tcp { src, dst, flags } = packet.transport else {
        return None;
    };
    if flags & TCP_RST != 0 {
        return None;
    }
    let l4 = packet.l4_offset();
    let word = |at: usize| {
        let b = frame.get(l4 + at..l4 + at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (seq, ack) = (word(4)?, word(8)?);
    Some(if flags & TCP_ACK != 0 {
        build_tcp_seq(ends, dst, src, (ack, 0), TCP_RST, &[])
    } else {
        // SYN and FIN each take a sequence number.
        let len = packet.payload_range(frame).len() as u32
            + u32::from(flags & TCP_SYN != 0)
            + u32::from(flags & TCP_FIN != 0);
        build_tcp_seq(
            ends,
            dst,
            src,
            (0, seq.wrapping_add(len)),
            TCP_RST | TCP_ACK,
            &[],
        )
    })
}

/// [`build_tcp`] with `(seq, ack)` numbers.
pub fn build_tcp_seq(
    ends: &Endpoints,
    src_port: u16,
    dst_port: u16,
    (seq, ack): (u32, u32),
    flags: u8,
    payload: &[u8],
) -> alloc::vec::Vec<u8> {
    let mut l4 = alloc::vec![0u8; 20 + payload.len()];
    write16(&mut l4, 0, src_port);
    write16(&mut l4, 2, dst_port);
    l4[4..8].copy_from_slice(&seq.to_be_bytes());
    l4[8..12].copy_from_slice(&ack.to_be_bytes());
    l4[12] = 5 << 4;
    l4[13] = flags;
    write16(&mut l4, 14, 65535);
    l4[20..].copy_from_slice(payload);
    let sum = checksum(
        &l4,
        pseudo_header_sum(ends.src, ends.dst, PROTO_TCP, l4.len()),
    );
    write16(&mut l4, 16, sum);
    build_ipv4(ends, PROTO_TCP, &l4)
}

/// Builds the ICMP echo reply to an echo request `packet` in `frame`, from `ends`.
pub fn build_echo_reply(frame: &[u8], packet: &Ipv4, ends: &Endpoints) -> alloc::vec::Vec<u8> {
    let l4 = &frame[packet.l4_offset()..ETH_LEN + packet.total_len];
    let mut reply = l4.to_vec();
    reply[0] = 0;
    write16(&mut reply, 2, 0);
    let sum = checksum(&reply, 0);
    write16(&mut reply, 2, sum);
    build_ipv4(ends, PROTO_ICMP, &reply)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    pub(crate) const A: Mac = [2, 0, 0, 0, 0, 1];
    pub(crate) const B: Mac = [2, 0, 0, 0, 0, 2];

    pub(crate) fn ends(src: [u8; 4], dst: [u8; 4]) -> Endpoints {
        Endpoints {
            src_mac: A,
            dst_mac: B,
            src: src.into(),
            dst: dst.into(),
        }
    }

    /// A TCP segment with `flags` and `payload`, checksummed.
    pub(crate) fn tcp(e: &Endpoints, sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
        build_tcp(e, sport, dport, flags, payload)
    }

    /// An ICMP echo request.
    pub(crate) fn ping(e: &Endpoints, ident: u16) -> Vec<u8> {
        let mut l4 = alloc::vec![8u8, 0, 0, 0, 0, 0, 0, 1, b'h', b'i'];
        write16(&mut l4, 4, ident);
        let sum = checksum(&l4, 0);
        write16(&mut l4, 2, sum);
        build_ipv4(e, PROTO_ICMP, &l4)
    }

    fn verify(frame: &[u8]) {
        // A frame is consistent when it parses (every checksum checked).
        parse(frame).expect("consistent after rewrite");
    }

    #[test]
    fn parses_what_it_builds() {
        let e = ends([10, 1, 0, 2], [8, 8, 8, 8]);
        let f = build_udp(&e, 1000, 53, b"query");
        let Packet::Ipv4(p) = parse(&f).unwrap() else {
            panic!()
        };
        assert_eq!(p.transport, Transport::Udp { src: 1000, dst: 53 });
        assert_eq!(&f[p.payload_range(&f)], b"query");
        let f = tcp(&e, 5, 80, TCP_SYN, b"");
        let Packet::Ipv4(p) = parse(&f).unwrap() else {
            panic!()
        };
        assert_eq!(
            p.transport,
            Transport::Tcp {
                src: 5,
                dst: 80,
                flags: TCP_SYN
            }
        );
        let f = ping(&e, 77);
        let Packet::Ipv4(p) = parse(&f).unwrap() else {
            panic!()
        };
        assert_eq!(p.transport, Transport::IcmpEcho { kind: 8, ident: 77 });
        let arp = Arp {
            op: 1,
            sender_mac: A,
            sender_ip: [10, 1, 0, 2].into(),
            target_mac: [0; 6],
            target_ip: [10, 1, 0, 1].into(),
        };
        assert_eq!(parse(&build_arp(&arp, BROADCAST_MAC)), Ok(Packet::Arp(arp)));
    }

    #[test]
    fn malformed_frames_are_named() {
        let e = ends([10, 1, 0, 2], [8, 8, 8, 8]);
        let good = build_udp(&e, 1000, 53, b"query");
        assert_eq!(parse(&good[..13]), Err(Malformed::FrameLength));
        assert_eq!(parse(&[0u8; 1515]), Err(Malformed::FrameLength));
        let mut v6 = good.clone();
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(parse(&v6), Err(Malformed::EtherType));
        let mut bad = good.clone();
        bad[14] = 0x44; // IHL 4
        assert_eq!(parse(&bad), Err(Malformed::Ipv4Header));
        let mut bad = good.clone();
        bad[17] = 0xff; // total length beyond the frame
        assert_eq!(parse(&bad), Err(Malformed::Ipv4Header));
        let mut bad = good.clone();
        bad[24] ^= 1;
        assert_eq!(parse(&bad), Err(Malformed::Ipv4Checksum));
        let mut bad = good.clone();
        bad[20] = 0x20; // more fragments, checksum made right again
        bad[24..26].copy_from_slice(&[0, 0]);
        let s = checksum(&bad[14..34], 0);
        write16(&mut bad, 24, s);
        assert_eq!(parse(&bad), Err(Malformed::Fragment));
        let mut bad = good.clone();
        bad[39] ^= 1; // UDP length
        assert_eq!(parse(&bad), Err(Malformed::TransportHeader));
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 1] ^= 1; // payload, checksum now wrong
        assert_eq!(parse(&bad), Err(Malformed::TransportChecksum));
        let mut nosum = good.clone();
        nosum[40..42].copy_from_slice(&[0, 0]);
        nosum[n - 1] ^= 1;
        assert!(parse(&nosum).is_ok(), "UDP checksum 0 means none");
        let t = tcp(&e, 5, 80, TCP_SYN, b"");
        let mut bad = t.clone();
        bad[46] = 0x40; // data offset 16 bytes
        assert_eq!(parse(&bad), Err(Malformed::TransportHeader));
        let arp = build_arp(
            &Arp {
                op: 3,
                sender_mac: A,
                sender_ip: [1, 1, 1, 1].into(),
                target_mac: A,
                target_ip: [1, 1, 1, 1].into(),
            },
            BROADCAST_MAC,
        );
        assert_eq!(parse(&arp), Err(Malformed::Arp));
        assert_eq!(parse(&arp[..30]), Err(Malformed::Arp));
    }

    #[test]
    fn padding_after_the_packet_is_ignored() {
        let e = ends([10, 1, 0, 2], [8, 8, 8, 8]);
        let mut f = tcp(&e, 5, 80, TCP_ACK, b"");
        f.extend_from_slice(&[0xaa; 6]); // minimum frame padding
        assert!(matches!(parse(&f), Ok(Packet::Ipv4(_))));
    }

    proptest! {
        #[test]
        fn rewrites_keep_checksums_right(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), new_ip in any::<[u8; 4]>(),
            sport in any::<u16>(), dport in any::<u16>(), new_port in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64), kind in 0u8..3,
            source in any::<bool>(),
        ) {
            let e = ends(src, dst);
            let f = match kind {
                0 => tcp(&e, sport, dport, TCP_ACK, &payload),
                1 => build_udp(&e, sport, dport, &payload),
                _ => ping(&e, sport),
            };
            let mut f = f;
            let Ok(Packet::Ipv4(mut p)) = parse(&f) else { panic!("built frame parses") };
            set_address(&mut f, &mut p, source, new_ip.into());
            set_port(&mut f, &mut p, source, new_port);
            prop_assert!(decrement_ttl(&mut f, &mut p));
            verify(&f);
            let Ok(Packet::Ipv4(q)) = parse(&f) else { panic!() };
            prop_assert_eq!(q, p);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn checksum_adjustment_matches_recomputation(
            data in proptest::collection::vec(any::<u8>(), 2..64).prop_map(|mut v| { if v.len() % 2 == 1 { v.pop(); } v }),
            word in 0usize..32, new in any::<u16>(),
        ) {
            let at = (word * 2) % data.len();
            let sum = checksum(&data, 0);
            let old = be16(&data, at);
            let mut changed = data.clone();
            write16(&mut changed, at, new);
            let a = adjust_checksum(sum, old, new);
            let b = checksum(&changed, 0);
            // One's complement has two zeros; both verify the same.
            prop_assert!(a == b || (a == 0xffff && b == 0) || (a == 0 && b == 0xffff));
        }
    }
}
