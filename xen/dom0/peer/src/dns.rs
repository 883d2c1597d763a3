//! Just enough of a DNS server (RFC 1035) for a test: one IN question, A answers from a table.
//!
//! What the peer may corrupt: the whole query. Lengths are checked before every read; a name
//! that runs past the end, uses compression (never in a question we accept), or exceeds 255
//! bytes is FORMERR, and so is a query with other than one question.

use std::net::Ipv4Addr;

/// DNS header length.
const HEADER: usize = 12;
/// Response codes.
const FORMERR: u8 = 1;
const NXDOMAIN: u8 = 3;
const NOTIMP: u8 = 4;
/// Query types and class.
const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
/// TTL of the answers, in seconds.
const TTL: u32 = 60;

/// The question of a query: the name (lowercase, dotted) and where the question ends.
fn question(query: &[u8]) -> Option<(String, u16, u16, usize)> {
    let mut at = HEADER;
    let mut name = String::new();
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // a pointer or a reserved label type
        }
        let label = query.get(at..at + len)?;
        if !name.is_empty() {
            name.push('.');
        }
        name.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
        if name.len() > 255 {
            return None;
        }
        at += len;
    }
    let fixed = query.get(at..at + 4)?;
    let qtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    let qclass = u16::from_be_bytes([fixed[2], fixed[3]]);
    Some((name, qtype, qclass, at + 4))
}

/// The reply to `query` (with what it said, for the log), or `None` for a datagram too short
/// to be a query or one that is itself a response. `lookup` gives a name's address.
pub fn answer(
    query: &[u8],
    lookup: impl Fn(&str) -> Option<Ipv4Addr>,
) -> Option<(Vec<u8>, String)> {
    let header = query.get(..HEADER)?;
    if header[2] & 0x80 != 0 {
        return None; // a response: never answer one
    }
    let qdcount = u16::from_be_bytes([header[4], header[5]]);
    let opcode = (header[2] >> 3) & 0x0f;
    // The reply: the query's id, QR set, opcode and RD copied, RA set.
    let mut reply = vec![header[0], header[1], 0x80 | (header[2] & 0x79), 0x80];
    let parsed = if qdcount == 1 { question(query) } else { None };
    let Some((name, qtype, qclass, end)) = parsed else {
        reply[3] |= FORMERR;
        reply.extend_from_slice(&[0; 8]);
        return Some((reply, "malformed query: FORMERR".into()));
    };
    // One question, echoed back.
    reply.extend_from_slice(&[0, 1]);
    let found = if opcode != 0 || qclass != CLASS_IN {
        reply[3] |= NOTIMP;
        None
    } else {
        let found = lookup(&name);
        if found.is_none() {
            reply[3] |= NXDOMAIN;
        }
        found.filter(|_| qtype == TYPE_A)
    };
    reply.extend_from_slice(&[0, u8::from(found.is_some()), 0, 0, 0, 0]);
    reply.extend_from_slice(&query[HEADER..end]);
    let what = match found {
        Some(addr) => {
            reply.extend_from_slice(&[0xc0, HEADER as u8]); // the question's name
            reply.extend_from_slice(&TYPE_A.to_be_bytes());
            reply.extend_from_slice(&CLASS_IN.to_be_bytes());
            reply.extend_from_slice(&TTL.to_be_bytes());
            reply.extend_from_slice(&4u16.to_be_bytes());
            reply.extend_from_slice(&addr.octets());
            format!("{name} type {qtype} -> {addr}")
        }
        None => format!("{name} type {qtype} -> rcode {}", reply[3] & 0x0f),
    };
    Some((reply, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `name`, type `qtype`, id 0x1234 with RD.
    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&CLASS_IN.to_be_bytes());
        q
    }

    fn table(name: &str) -> Option<Ipv4Addr> {
        (name == "peer.lichen.test").then_some(Ipv4Addr::new(10, 77, 0, 42))
    }

    #[test]
    fn answers_a_known_name() {
        let q = query("Peer.Lichen.Test", TYPE_A);
        let (r, what) = answer(&q, table).unwrap();
        assert_eq!(what, "peer.lichen.test type 1 -> 10.77.0.42");
        assert_eq!(&r[..4], &[0x12, 0x34, 0x81, 0x80]);
        assert_eq!(&r[4..12], &[0, 1, 0, 1, 0, 0, 0, 0]);
        assert_eq!(&r[12..q.len()], &q[12..]);
        assert_eq!(
            &r[q.len()..],
            &[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 77, 0, 42]
        );
    }

    #[test]
    fn unknown_names_and_other_types() {
        let (r, _) = answer(&query("other.test", TYPE_A), table).unwrap();
        assert_eq!(r[3] & 0x0f, NXDOMAIN);
        assert_eq!(&r[6..8], &[0, 0]);
        // AAAA for a known name: no error, no answer.
        let (r, _) = answer(&query("peer.lichen.test", 28), table).unwrap();
        assert_eq!(r[3] & 0x0f, 0);
        assert_eq!(&r[6..8], &[0, 0]);
    }

    #[test]
    fn malformed_queries_never_panic() {
        let q = query("peer.lichen.test", TYPE_A);
        for cut in 0..q.len() {
            let got = answer(&q[..cut], table);
            if cut < HEADER {
                assert!(got.is_none());
            } else {
                assert_eq!(got.unwrap().0[3] & 0x0f, FORMERR, "cut at {cut}");
            }
        }
        // A pointer in the question, two questions, a response.
        let mut pointer = q.clone();
        pointer[12] = 0xc0;
        assert_eq!(answer(&pointer, table).unwrap().0[3] & 0x0f, FORMERR);
        let mut two = q.clone();
        two[5] = 2;
        assert_eq!(answer(&two, table).unwrap().0[3] & 0x0f, FORMERR);
        let mut response = q.clone();
        response[2] |= 0x80;
        assert!(answer(&response, table).is_none());
        // Every byte flipped to every value in a short query: no panic.
        for at in 0..q.len() {
            for v in 0..=255u8 {
                let mut m = q.clone();
                m[at] = v;
                let _ = answer(&m, table);
            }
        }
    }
}
