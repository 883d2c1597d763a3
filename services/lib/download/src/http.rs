//! HTTP/1.1 for downloads: the request, the response head (status, length, range, coding) and a
//! streaming decoder of chunked bodies, so that a body of any size passes through a small
//! buffer.
//!
//! **What the server may send, and what happens**: a head that is not HTTP/1.x, larger than
//! [`MAX_HEAD`] or with more than [`MAX_HEADERS`] headers, two different `Content-Length`s, a
//! transfer coding other than chunked, both a length and chunked, a `Content-Range` that is not
//! `bytes START-END/TOTAL` with START <= END < TOTAL (or that disagrees with the length): a
//! [`HeadError`]. A chunked body with a bad size line, missing CRLFs or trailers larger than
//! [`MAX_TRAILERS`]: a [`ChunkError`]. None of it panics or allocates beyond those bounds.

use alloc::string::String;
use core::fmt;

/// The most headers a response head may have.
pub const MAX_HEADERS: usize = 48;
/// The most bytes of a response head.
pub const MAX_HEAD: usize = 16 * 1024;
/// The most bytes of trailer fields after the last chunk.
pub const MAX_TRAILERS: usize = 4096;

/// The bytes of a GET of `path` from `host` (the `Host` header: `host` or `host:port`),
/// from byte `from` on (a `Range` request when not 0), with an `Authorization` header value if
/// given. One request per connection: it asks the server to close after answering.
pub fn request(host: &str, path: &str, from: u64, authorization: Option<&str>) -> String {
    let mut out = alloc::format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lichen-downloader\r\n\
         Accept-Encoding: identity\r\nConnection: close\r\n"
    );
    if from > 0 {
        out.push_str(&alloc::format!("Range: bytes={from}-\r\n"));
    }
    if let Some(value) = authorization {
        out.push_str(&alloc::format!("Authorization: {value}\r\n"));
    }
    out.push_str("\r\n");
    out
}

/// How a response's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the server closes the connection (HTTP/1.0 style).
    Close,
}

/// A `Content-Range: bytes START-END/TOTAL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentRange {
    /// The first byte sent.
    pub start: u64,
    /// The last byte sent (inclusive).
    pub end: u64,
    /// The size of the whole file.
    pub total: u64,
}

/// A response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// How the body is delimited.
    pub framing: Framing,
    /// The range sent, for 206.
    pub range: Option<ContentRange>,
}

/// Why a response head was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// Not a valid head (what is wrong).
    Malformed(&'static str),
    /// Larger than [`MAX_HEAD`] or with more than [`MAX_HEADERS`] headers.
    TooLarge,
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::Malformed(why) => write!(f, "bad HTTP response head: {why}"),
            HeadError::TooLarge => f.write_str("HTTP response head too large"),
        }
    }
}

/// Parses a response head from the start of `buf`: `Ok(None)` if more bytes are needed, else
/// the head and the bytes it used (the body starts after them).
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let used = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed("status line or headers")),
    };
    if used > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let status = response.code.ok_or(HeadError::Malformed("no status"))?;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut range = None;
    for header in response.headers.iter() {
        let value = core::str::from_utf8(header.value)
            .map_err(|_| HeadError::Malformed("header value not UTF-8"))?
            .trim();
        if header.name.eq_ignore_ascii_case("content-length") {
            let n = decimal(value).ok_or(HeadError::Malformed("Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::Malformed("two different Content-Lengths"));
            }
            length = Some(n);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            if !value.eq_ignore_ascii_case("chunked") {
                return Err(HeadError::Malformed("transfer coding other than chunked"));
            }
            chunked = true;
        } else if header.name.eq_ignore_ascii_case("content-range") {
            range = Some(content_range(value).ok_or(HeadError::Malformed("Content-Range"))?);
        }
    }
    let framing = match (chunked, length) {
        (true, Some(_)) => return Err(HeadError::Malformed("both Content-Length and chunked")),
        (true, None) => Framing::Chunked,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::Close,
    };
    if let (Some(r), Framing::Length(n)) = (range, framing) {
        if r.end - r.start + 1 != n {
            return Err(HeadError::Malformed(
                "Content-Range and Content-Length disagree",
            ));
        }
    }
    Ok(Some((
        Head {
            status,
            framing,
            range,
        },
        used,
    )))
}

/// A decimal number of at most 19 digits (no sign, no spaces).
fn decimal(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Reads `bytes START-END/TOTAL` (the only form a 206 of one range has).
fn content_range(value: &str) -> Option<ContentRange> {
    let rest = value.strip_prefix("bytes ")?.trim_start();
    let (span, total) = rest.split_once('/')?;
    let (start, end) = span.split_once('-')?;
    let range = ContentRange {
        start: decimal(start)?,
        end: decimal(end)?,
        total: decimal(total)?,
    };
    (range.start <= range.end && range.end < range.total).then_some(range)
}

/// Why a chunked body was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkError {
    /// A chunk size line that is not hex digits (with optional extensions), or too large.
    Size,
    /// A chunk's data not followed by CRLF.
    MissingCrlf,
    /// More than [`MAX_TRAILERS`] bytes of trailers.
    Trailers,
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkError::Size => f.write_str("bad chunk size"),
            ChunkError::MissingCrlf => f.write_str("chunk not followed by CRLF"),
            ChunkError::Trailers => f.write_str("trailers too large"),
        }
    }
}

/// Where a [`Dechunker`] is in the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    /// Reading a size line (this many bytes of it seen; extensions skipped).
    Size { digits: u8, value: u64, ext: bool },
    /// Expecting the LF of the size line.
    SizeLf { value: u64 },
    /// Inside a chunk: bytes of data left.
    Data(u64),
    /// After a chunk's data: expecting CR (false) or LF (true).
    DataCrlf(bool),
    /// After the last chunk: trailer bytes seen, and the last bytes (to find CRLF CRLF).
    Trailers {
        seen: usize,
        line_len: usize,
        cr: bool,
    },
    /// The body ended.
    Done,
}

/// A streaming decoder of a chunked body: feed it what arrives, get the data out.
#[derive(Clone, Debug)]
pub struct Dechunker {
    state: ChunkState,
}

impl Default for Dechunker {
    fn default() -> Self {
        Self::new()
    }
}

impl Dechunker {
    /// A decoder at the start of a body.
    pub fn new() -> Dechunker {
        Dechunker {
            state: ChunkState::Size {
                digits: 0,
                value: 0,
                ext: false,
            },
        }
    }

    /// Whether the last chunk and its trailers have been read.
    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes from `input`: returns `(consumed, data)`, where `data` is a range of `input`
    /// holding body bytes (possibly empty). Call again with the rest until `consumed` is 0 or
    /// the input is used up. Bytes after the end of the body are not consumed.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, core::ops::Range<usize>), ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let byte = input[i];
            match self.state {
                ChunkState::Size { digits, value, ext } => {
                    match byte {
                        b'\r' if digits > 0 => self.state = ChunkState::SizeLf { value },
                        _ if ext => {}
                        b';' if digits > 0 => {
                            self.state = ChunkState::Size {
                                digits,
                                value,
                                ext: true,
                            }
                        }
                        b' ' | b'\t' if digits > 0 => {
                            self.state = ChunkState::Size {
                                digits,
                                value,
                                ext: true,
                            }
                        }
                        _ => {
                            let digit = (byte as char).to_digit(16).ok_or(ChunkError::Size)?;
                            // 15 hex digits: far more than any download, and no overflow.
                            if digits >= 15 {
                                return Err(ChunkError::Size);
                            }
                            self.state = ChunkState::Size {
                                digits: digits + 1,
                                value: value * 16 + u64::from(digit),
                                ext: false,
                            };
                        }
                    }
                    i += 1;
                }
                ChunkState::SizeLf { value } => {
                    if byte != b'\n' {
                        return Err(ChunkError::Size);
                    }
                    i += 1;
                    self.state = if value == 0 {
                        ChunkState::Trailers {
                            seen: 0,
                            line_len: 0,
                            cr: false,
                        }
                    } else {
                        ChunkState::Data(value)
                    };
                }
                ChunkState::Data(left) => {
                    let n = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        ChunkState::DataCrlf(false)
                    } else {
                        ChunkState::Data(left)
                    };
                    return Ok((i + n, i..i + n));
                }
                ChunkState::DataCrlf(lf) => {
                    match (lf, byte) {
                        (false, b'\r') => self.state = ChunkState::DataCrlf(true),
                        (true, b'\n') => {
                            self.state = ChunkState::Size {
                                digits: 0,
                                value: 0,
                                ext: false,
                            }
                        }
                        _ => return Err(ChunkError::MissingCrlf),
                    }
                    i += 1;
                }
                ChunkState::Trailers { seen, line_len, cr } => {
                    if seen >= MAX_TRAILERS {
                        return Err(ChunkError::Trailers);
                    }
                    i += 1;
                    self.state = match (cr, byte) {
                        (_, b'\r') => ChunkState::Trailers {
                            seen: seen + 1,
                            line_len,
                            cr: true,
                        },
                        (true, b'\n') if line_len == 0 => ChunkState::Done,
                        (true, b'\n') => ChunkState::Trailers {
                            seen: seen + 1,
                            line_len: 0,
                            cr: false,
                        },
                        (false, b'\n') => return Err(ChunkError::MissingCrlf),
                        _ => ChunkState::Trailers {
                            seen: seen + 1,
                            line_len: line_len + 1,
                            cr: false,
                        },
                    };
                }
                ChunkState::Done => return Ok((i, 0..0)),
            }
        }
        Ok((i, 0..0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn head(text: &str) -> Result<Option<(Head, usize)>, HeadError> {
        parse_head(text.as_bytes())
    }

    #[test]
    fn requests_ask_for_the_rest_and_close() {
        let r = request("10.0.2.2:8443", "/datastore/ab", 4096, Some("Basic eDp5"));
        assert!(r.starts_with("GET /datastore/ab HTTP/1.1\r\nHost: 10.0.2.2:8443\r\n"));
        assert!(r.contains("Range: bytes=4096-\r\n"));
        assert!(r.contains("Authorization: Basic eDp5\r\n"));
        assert!(r.contains("Connection: close\r\n"));
        assert!(r.ends_with("\r\n\r\n"));
        assert!(!request("h", "/", 0, None).contains("Range"));
    }

    #[test]
    fn heads_give_status_framing_and_range() {
        let (h, used) = head("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nbody")
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.status, h.framing, h.range, used),
            (200, Framing::Length(10), None, 39)
        );
        let (h, _) = head("HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Close);
        let (h, _) = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        let (h, _) = head(
            "HTTP/1.1 206 Partial\r\nContent-Length: 6\r\nContent-Range: bytes 4-9/10\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            h.range,
            Some(ContentRange {
                start: 4,
                end: 9,
                total: 10
            })
        );
        assert_eq!(head("HTTP/1.1 200 OK\r\nContent-Len"), Ok(None));
        assert_eq!(head(""), Ok(None));
    }

    #[test]
    fn bad_heads_are_refused() {
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            "HTTP/1.1 206 P\r\nContent-Range: bytes 5-4/10\r\n\r\n",
            "HTTP/1.1 206 P\r\nContent-Range: bytes 0-10/10\r\n\r\n",
            "HTTP/1.1 206 P\r\nContent-Range: bytes */10\r\n\r\n",
            "HTTP/1.1 206 P\r\nContent-Range: bytes 0-4/10\r\nContent-Length: 4\r\n\r\n",
            "SSH-2.0-OpenSSH\r\n\r\n",
        ] {
            assert!(head(bad).is_err(), "{bad:?}");
        }
        let mut big = Vec::from(&b"HTTP/1.1 200 OK\r\n"[..]);
        big.resize(MAX_HEAD + 10, b'a');
        assert_eq!(parse_head(&big), Err(HeadError::TooLarge));
        let mut many = alloc::string::String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..MAX_HEADERS + 1 {
            many.push_str(&alloc::format!("X-{i}: y\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(head(&many), Err(HeadError::TooLarge));
    }

    /// Decodes `body` fed in pieces of `step` bytes.
    fn dechunk(body: &[u8], step: usize) -> Result<(Vec<u8>, usize, bool), ChunkError> {
        let mut d = Dechunker::new();
        let mut out = Vec::new();
        let mut at = 0;
        while at < body.len() {
            let piece = &body[at..(at + step).min(body.len())];
            let mut off = 0;
            while off < piece.len() {
                let (used, data) = d.feed(&piece[off..])?;
                out.extend_from_slice(&piece[off..][data]);
                if used == 0 {
                    return Ok((out, at + off, d.done()));
                }
                off += used;
            }
            at += piece.len();
        }
        Ok((out, at, d.done()))
    }

    #[test]
    fn chunked_bodies_decode_in_any_pieces() {
        let body = b"4\r\nWiki\r\n6;name=x\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-Sum: 1\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, 100] {
            let (data, used, done) = dechunk(body, step).unwrap();
            assert_eq!(data, b"Wikipedia in \r\n\r\nchunks.", "step {step}");
            assert!(done);
            assert_eq!(&body[used..], b"NEXT", "bytes after the body are left");
        }
        let (data, _, done) = dechunk(b"A\r\n0123456789\r\n0\r\n\r\n", 4).unwrap();
        assert_eq!((data.as_slice(), done), (&b"0123456789"[..], true));
        let (_, _, done) = dechunk(b"A\r\n01234", 4).unwrap();
        assert!(!done, "a cut body is not done");
    }

    #[test]
    fn bad_chunks_are_refused() {
        assert_eq!(dechunk(b"x\r\n", 1), Err(ChunkError::Size));
        assert_eq!(dechunk(b"\r\n", 1), Err(ChunkError::Size));
        assert_eq!(dechunk(b"4\rX", 1), Err(ChunkError::Size));
        assert_eq!(dechunk(b"1000000000000000\r\n", 1), Err(ChunkError::Size));
        assert_eq!(dechunk(b"2\r\nabXY", 1), Err(ChunkError::MissingCrlf));
        let mut trailers = Vec::from(&b"0\r\n"[..]);
        trailers.resize(MAX_TRAILERS + 10, b'a');
        assert_eq!(dechunk(&trailers, 64), Err(ChunkError::Trailers));
    }
}
