//! A xenstore client over the shared ring (xen/include/public/io/xs_wire.h).
//!
//! Each message is a 16-byte header (type, request id, transaction id, payload length, u32
//! little-endian each) and up to 4096 payload bytes. The ring page holds `req[1024]`,
//! `rsp[1024]` and the u32 indices `req_cons`, `req_prod`, `rsp_cons`, `rsp_prod` at 2048..2064.
//! Everything xenstored writes (indices, header fields, lengths) is checked before use.
//!
//! [`XenStore`] is the ring itself, in non-blocking steps; `store.rs` builds the async client
//! that services use on it, and the exit path uses its blocking request.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Message types used here (`enum xsd_sockmsg_type`).
#[allow(missing_docs)]
pub mod kind {
    pub const DIRECTORY: u32 = 1;
    pub const READ: u32 = 2;
    pub const GET_PERMS: u32 = 3;
    pub const WATCH: u32 = 4;
    pub const UNWATCH: u32 = 5;
    pub const TRANSACTION_START: u32 = 6;
    pub const TRANSACTION_END: u32 = 7;
    pub const WRITE: u32 = 11;
    pub const MKDIR: u32 = 12;
    pub const RM: u32 = 13;
    pub const SET_PERMS: u32 = 14;
    pub const WATCH_EVENT: u32 = 15;
    pub const ERROR: u32 = 16;
}

/// Largest payload of one message.
pub const PAYLOAD_MAX: u32 = 4096;
/// Size of the message header.
pub const HEADER_SIZE: usize = 16;

/// A message header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Message type.
    pub kind: u32,
    /// Request id, echoed in the answer.
    pub req_id: u32,
    /// Transaction id (0: none).
    pub tx_id: u32,
    /// Payload length.
    pub len: u32,
}

impl Header {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0; HEADER_SIZE];
        for (i, v) in [self.kind, self.req_id, self.tx_id, self.len]
            .into_iter()
            .enumerate()
        {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Decodes and checks a header received from xenstored.
    pub fn decode(b: &[u8; HEADER_SIZE]) -> Result<Header, Error> {
        let word =
            |i: usize| u32::from_le_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]]);
        let header = Header {
            kind: word(0),
            req_id: word(1),
            tx_id: word(2),
            len: word(3),
        };
        if header.len > PAYLOAD_MAX {
            return Err(Error::Protocol("payload longer than 4096 bytes"));
        }
        Ok(header)
    }
}

/// What can go wrong talking to xenstored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// xenstored answered with an error (`ENOENT`, `EACCES`, `EAGAIN`, ...).
    Xenstore(String),
    /// xenstored broke the protocol (bad indices, lengths or answers).
    Protocol(&'static str),
    /// The request does not fit in one message.
    TooLong,
    /// No answer came in time.
    Timeout,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Xenstore(e) => write!(f, "xenstore error {e}"),
            Error::Protocol(e) => write!(f, "xenstore protocol error: {e}"),
            Error::TooLong => f.write_str("xenstore request longer than 4096 bytes"),
            Error::Timeout => f.write_str("xenstore did not answer"),
        }
    }
}

/// Builds a request payload from NUL-terminated strings and a raw tail.
pub fn payload(strings: &[&str], tail: &[u8]) -> Result<Vec<u8>, Error> {
    let mut p = Vec::new();
    for s in strings {
        if s.as_bytes().contains(&0) {
            return Err(Error::Protocol("NUL inside a path or token"));
        }
        p.extend_from_slice(s.as_bytes());
        p.push(0);
    }
    p.extend_from_slice(tail);
    if p.len() > PAYLOAD_MAX as usize {
        return Err(Error::TooLong);
    }
    Ok(p)
}

/// Interprets an answer: an error message becomes [`Error::Xenstore`].
pub fn check_answer(header: &Header, request_kind: u32, body: Vec<u8>) -> Result<Vec<u8>, Error> {
    if header.kind == kind::ERROR {
        let name = body.split(|&b| b == 0).next().unwrap_or(&[]);
        return Err(Error::Xenstore(String::from_utf8_lossy(name).into_owned()));
    }
    if header.kind != request_kind {
        return Err(Error::Protocol("answer of another type"));
    }
    Ok(body)
}

/// Splits a NUL-separated list (a directory listing), dropping the empty last element.
pub fn split_list(body: &[u8]) -> Vec<String> {
    body.split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// A watch firing: the path that changed and the watch's token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// Path that changed.
    pub path: String,
    /// The token given to `watch`.
    pub token: String,
}

impl WatchEvent {
    /// Reads the body of a `WATCH_EVENT` message (`path\0token\0`); `None` if a part is missing.
    pub fn parse(body: &[u8]) -> Option<WatchEvent> {
        let mut parts = split_list(body).into_iter();
        Some(WatchEvent {
            path: parts.next()?,
            token: parts.next()?,
        })
    }
}

/// Reassembles the messages xenstored writes into the response ring, whatever pieces they
/// arrive in. xenstored may corrupt anything here: a header announcing more than
/// [`PAYLOAD_MAX`] bytes is an [`Error::Protocol`], and no read goes past the end of the
/// current message (so a message never swallows the start of the next).
#[derive(Debug, Default)]
pub struct MessageReader {
    /// Bytes of a message being received.
    partial: Vec<u8>,
}

impl MessageReader {
    /// Reads with `read` (which copies up to `buf.len()` waiting bytes into `buf` and returns
    /// how many, 0 when none wait) until one whole message has arrived; keeps a partial one for
    /// the next call.
    pub fn poll(
        &mut self,
        mut read: impl FnMut(&mut [u8]) -> Result<usize, Error>,
    ) -> Result<Option<(Header, Vec<u8>)>, Error> {
        loop {
            // The header first, then the body its length announces (checked by `decode`).
            let wanted = if self.partial.len() < HEADER_SIZE {
                HEADER_SIZE - self.partial.len()
            } else {
                HEADER_SIZE + self.header()?.len as usize - self.partial.len()
            };
            if wanted == 0 {
                let header = self.header()?;
                let body = self.partial.split_off(HEADER_SIZE);
                self.partial.clear();
                return Ok(Some((header, body)));
            }
            let start = self.partial.len();
            self.partial.resize(start + wanted, 0);
            let n = read(&mut self.partial[start..]);
            let n = match n {
                Ok(n) => n.min(wanted),
                Err(e) => {
                    self.partial.truncate(start);
                    return Err(e);
                }
            };
            self.partial.truncate(start + n);
            if n == 0 {
                return Ok(None);
            }
        }
    }

    fn header(&self) -> Result<Header, Error> {
        let mut raw = [0u8; HEADER_SIZE];
        raw.copy_from_slice(&self.partial[..HEADER_SIZE]);
        Header::decode(&raw)
    }
}

#[cfg(target_os = "none")]
pub use client::XenStore;

#[cfg(target_os = "none")]
mod client {
    use super::super::hypercall;
    use super::super::ring::ByteRing;
    use super::*;

    /// Yields to wait for xenstored before the blocking client gives up.
    const MAX_WAIT_YIELDS: u32 = 2_000_000;

    /// The xenstore ring: non-blocking steps (send some bytes, take a whole message when one has
    /// arrived) that a blocking driver ([`XenStore::request_blocking`]) and the async client
    /// ([`crate::platform::xen::store`]) build on.
    ///
    /// Page layout: `req[1024]` at 0, `rsp[1024]` at 1024, u32 `req_cons`, `req_prod`,
    /// `rsp_cons`, `rsp_prod` at 2048, 2052, 2056, 2060.
    pub struct XenStore {
        requests: ByteRing,
        responses: ByteRing,
        port: u32,
        next_req_id: u32,
        reader: MessageReader,
    }

    impl XenStore {
        /// The connection from this domain's HVM parameters, if it has one.
        pub fn from_hvm_params() -> Option<XenStore> {
            let pfn = hypercall::hvm_param(hypercall::PARAM_STORE_PFN)
                .ok()
                .filter(|&p| p != 0)?;
            let port = hypercall::hvm_param(hypercall::PARAM_STORE_EVTCHN).ok()?;
            let page = (pfn << 12) as *mut u8;
            // SAFETY: Xen maps the xenstore page at this frame for the life of the domain, laid
            // out as above; this domain owns `req_prod` and `rsp_cons`.
            let (requests, responses) = unsafe {
                (
                    ByteRing::new(page, 0, 1024, 2048, 2052),
                    ByteRing::new(page, 1024, 1024, 2056, 2060),
                )
            };
            Some(XenStore {
                requests,
                responses,
                port: port as u32,
                next_req_id: 1,
                reader: MessageReader::default(),
            })
        }

        /// The ring's event channel.
        pub fn port(&self) -> u32 {
            self.port
        }

        /// Encodes a request; returns its id and bytes.
        pub fn encode(
            &mut self,
            kind: u32,
            tx_id: u32,
            body: &[u8],
        ) -> Result<(u32, Vec<u8>), Error> {
            if body.len() > PAYLOAD_MAX as usize {
                return Err(Error::TooLong);
            }
            let req_id = self.next_req_id;
            self.next_req_id = self.next_req_id.wrapping_add(1);
            let mut bytes = Header {
                kind,
                req_id,
                tx_id,
                len: body.len() as u32,
            }
            .encode()
            .to_vec();
            bytes.extend_from_slice(body);
            Ok((req_id, bytes))
        }

        /// Copies as much of `bytes` as fits into the request ring; returns how much.
        pub fn send_some(&mut self, bytes: &[u8]) -> Result<usize, Error> {
            let n = self
                .requests
                .write(bytes)
                .map_err(|_| Error::Protocol("corrupt request ring indices"))?;
            if n > 0 {
                hypercall::notify(self.port);
            }
            Ok(n)
        }

        /// Takes one whole message if it has arrived (keeping a partial one for later).
        pub fn try_receive(&mut self) -> Result<Option<(Header, Vec<u8>)>, Error> {
            let (responses, port) = (&self.responses, self.port);
            self.reader.poll(|buf| {
                let n = responses
                    .read(buf)
                    .map_err(|_| Error::Protocol("corrupt response ring indices"))?;
                if n > 0 {
                    hypercall::notify(port);
                }
                Ok(n)
            })
        }

        /// Sends a request and waits for its answer by yielding the CPU: for boot and exit
        /// paths, where no task runs. Other messages that arrive meanwhile (watch events,
        /// answers to other requests) are dropped.
        pub fn request_blocking(
            &mut self,
            kind: u32,
            tx_id: u32,
            body: &[u8],
        ) -> Result<Vec<u8>, Error> {
            self.request_blocking_filing(kind, tx_id, body, &mut |_, _| {})
        }

        /// [`request_blocking`](Self::request_blocking), handing every other message that
        /// arrives meanwhile (watch events, answers to other requests) to `other` instead of
        /// dropping it, so that tasks' requests in flight keep their answers
        /// (`store::request_blocking`).
        pub fn request_blocking_filing(
            &mut self,
            kind: u32,
            tx_id: u32,
            body: &[u8],
            other: &mut dyn FnMut(Header, Vec<u8>),
        ) -> Result<Vec<u8>, Error> {
            let (req_id, bytes) = self.encode(kind, tx_id, body)?;
            let mut sent = 0;
            let mut waits = 0;
            let mut wait = || {
                waits += 1;
                hypercall::yield_cpu();
                if waits > MAX_WAIT_YIELDS {
                    Err(Error::Timeout)
                } else {
                    Ok(())
                }
            };
            while sent < bytes.len() {
                match self.send_some(&bytes[sent..])? {
                    0 => wait()?,
                    n => sent += n,
                }
            }
            loop {
                match self.try_receive()? {
                    None => wait()?,
                    Some((header, payload))
                        if header.kind == kind::WATCH_EVENT || header.req_id != req_id =>
                    {
                        other(header, payload)
                    }
                    Some((header, payload)) => return check_answer(&header, kind, payload),
                }
            }
        }

        /// Writes a key, blocking (see [`request_blocking`](Self::request_blocking)).
        pub fn write(&mut self, path: &str, value: &str) -> Result<(), Error> {
            self.request_blocking(kind::WRITE, 0, &payload(&[path], value.as_bytes())?)
                .map(drop)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn header_round_trip_and_limits() {
        let h = Header {
            kind: kind::WRITE,
            req_id: 7,
            tx_id: 0,
            len: 12,
        };
        assert_eq!(Header::decode(&h.encode()), Ok(h));
        let mut bad = h.encode();
        bad[12..16].copy_from_slice(&4097u32.to_le_bytes());
        assert!(matches!(Header::decode(&bad), Err(Error::Protocol(_))));
    }

    #[test]
    fn payloads() {
        assert_eq!(payload(&["data/x"], b"5").unwrap(), b"data/x\x005");
        assert_eq!(payload(&["a", "tok"], &[]).unwrap(), b"a\0tok\0");
        assert!(payload(&["a\0b"], &[]).is_err());
        assert_eq!(payload(&["p"], &vec![b'v'; 5000]), Err(Error::TooLong));
    }

    #[test]
    fn answers() {
        let h = |kind| Header {
            kind,
            req_id: 1,
            tx_id: 0,
            len: 0,
        };
        assert_eq!(
            check_answer(&h(kind::READ), kind::READ, b"v".to_vec()),
            Ok(b"v".to_vec())
        );
        assert_eq!(
            check_answer(&h(kind::ERROR), kind::READ, b"ENOENT\0".to_vec()),
            Err(Error::Xenstore("ENOENT".into()))
        );
        assert!(matches!(
            check_answer(&h(kind::WRITE), kind::READ, vec![]),
            Err(Error::Protocol(_))
        ));
        assert_eq!(split_list(b"a\0bc\0"), ["a", "bc"]);
        let event = WatchEvent::parse(b"device/vif/0/state\0tok\0").unwrap();
        assert_eq!((&*event.path, &*event.token), ("device/vif/0/state", "tok"));
        assert_eq!(WatchEvent::parse(b"only-a-path\0"), None);
    }

    /// A reader fed from `stream`, at most `chunk` bytes per read.
    fn feed(stream: &[u8], chunk: usize) -> impl FnMut(&mut [u8]) -> Result<usize, Error> + '_ {
        let mut at = 0;
        move |buf: &mut [u8]| {
            let n = buf.len().min(chunk).min(stream.len() - at);
            buf[..n].copy_from_slice(&stream[at..at + n]);
            at += n;
            Ok(n)
        }
    }

    #[test]
    fn messages_are_reassembled_from_any_pieces() {
        let header = |len| Header {
            kind: kind::READ,
            req_id: 7,
            tx_id: 0,
            len,
        };
        let mut stream = header(3).encode().to_vec();
        stream.extend_from_slice(b"abc");
        stream.extend_from_slice(&header(0).encode());
        for chunk in [1, 5, 16, 100] {
            let mut reader = MessageReader::default();
            let mut read = feed(&stream, chunk);
            assert_eq!(
                reader.poll(&mut read),
                Ok(Some((header(3), b"abc".to_vec())))
            );
            assert_eq!(reader.poll(&mut read), Ok(Some((header(0), vec![]))));
            assert_eq!(reader.poll(&mut read), Ok(None));
        }
    }

    #[test]
    fn an_oversized_header_is_refused() {
        let mut stream = Header {
            kind: kind::READ,
            req_id: 1,
            tx_id: 0,
            len: PAYLOAD_MAX + 1,
        }
        .encode()
        .to_vec();
        stream.extend_from_slice(&[0; 64]);
        let mut reader = MessageReader::default();
        let mut read = feed(&stream, 64);
        assert!(matches!(reader.poll(&mut read), Err(Error::Protocol(_))));
        assert!(
            reader.poll(&mut read).is_err(),
            "the stream stays broken after a bad header"
        );
    }
}
