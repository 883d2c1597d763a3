//! HTTP/1.1 requests, sans-IO, several per connection: HTTP/1.1 keeps the connection open
//! unless the client sends `Connection: close`, HTTP/1.0 closes it unless the client sends
//! `Connection: keep-alive` ([`Request::keep_alive`]); requests may follow one another in the
//! same read (pipelining: [`Request::length`] says where the next starts).
//!
//! The client is anyone on the network: a request line without three parts, a header block
//! past 8 KiB, a `Content-Length` that is not a number or is past the body limit, a chunked
//! body, a path that is not UTF-8 or has bad percent escapes are errors with the status code
//! to answer; nothing panics.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// Largest header block.
pub const MAX_HEAD: usize = 8 * 1024;
/// Largest body.
pub const MAX_BODY: usize = 256 * 1024;

/// A request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, percent-decoded, without the query.
    pub path: String,
    /// Query parameters, percent-decoded.
    pub query: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Whether the client keeps the connection open for another request.
    pub keep_alive: bool,
    /// Bytes of the buffer the request took (head and body).
    pub length: usize,
}

impl Request {
    /// The query parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A request that cannot be served: the status code and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpError {
    /// 400, 411, 413, 431, 501, 505.
    pub status: u16,
    /// Why.
    pub message: &'static str,
}

fn bad(status: u16, message: &'static str) -> HttpError {
    HttpError { status, message }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Percent-decodes (`+` stays `+`: paths and EdgeX's query values do not use it for spaces).
fn decode(text: &str) -> Result<String, HttpError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| core::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(bad(400, "bad percent escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad(400, "path is not UTF-8"))
}

/// Parses the request at the start of `buffer`: `Ok(None)` until all of it has arrived.
pub fn parse(buffer: &[u8]) -> Result<Option<Request>, HttpError> {
    let Some(end) = find(buffer, b"\r\n\r\n") else {
        if buffer.len() > MAX_HEAD {
            return Err(bad(431, "header block too large"));
        }
        return Ok(None);
    };
    if end > MAX_HEAD {
        return Err(bad(431, "header block too large"));
    }
    let head = core::str::from_utf8(&buffer[..end]).map_err(|_| bad(400, "header is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(400, "bad request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad(505, "HTTP/1.x only"));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(bad(400, "bad method"));
    }
    if !target.starts_with('/') {
        return Err(bad(400, "target must be a path"));
    }
    let mut length = 0usize;
    let mut keep_alive = version == "HTTP/1.1";
    for header in lines {
        let (name, value) = header.split_once(':').ok_or(bad(400, "bad header line"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().map_err(|_| bad(400, "bad Content-Length"))?;
            if length > MAX_BODY {
                return Err(bad(413, "body too large"));
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for option in value.split(',').map(str::trim) {
                if option.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if option.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(bad(
                501,
                "chunked bodies are not supported; send Content-Length",
            ));
        }
    }
    let body_start = end + 4;
    if buffer.len() < body_start + length {
        return Ok(None);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut params = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        params.push((decode(k)?, decode(v)?));
    }
    Ok(Some(Request {
        method: method.to_string(),
        path: decode(path)?,
        query: params,
        body: buffer[body_start..body_start + length].to_vec(),
        keep_alive,
        length: body_start + length,
    }))
}

/// A response with a JSON body that closes the connection.
pub fn response(status: u16, json: &[u8]) -> Vec<u8> {
    response_keeping(status, json, false)
}

/// A response with a JSON body; `keep_alive`: the connection stays open for another request.
pub fn response_keeping(status: u16, json: &[u8], keep_alive: bool) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        423 => "Locked",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    };
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let mut out = alloc::format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
        json.len()
    )
    .into_bytes();
    out.extend_from_slice(json);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        let r = parse(b"GET /api/v3/event/all?offset=2&limit=5 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("GET", "/api/v3/event/all")
        );
        assert_eq!(r.param("limit"), Some("5"));
        let raw = b"PUT /api/v3/device/name/A%20B/Set HTTP/1.1\r\ncontent-length: 4\r\n\r\n{\"a\"";
        assert_eq!(parse(&raw[..raw.len() - 1]).unwrap(), None);
        let r = parse(raw).unwrap().unwrap();
        assert_eq!(r.path, "/api/v3/device/name/A B/Set");
        assert_eq!(r.body, b"{\"a\"");
        assert_eq!(parse(b"GET / HTTP/1.1\r\n").unwrap(), None);
    }

    #[test]
    fn connections_kept_and_pipelined() {
        let two = b"GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}";
        let first = parse(two).unwrap().unwrap();
        assert!(first.keep_alive);
        assert_eq!(first.path, "/a");
        let second = parse(&two[first.length..]).unwrap().unwrap();
        assert_eq!((second.path.as_str(), second.keep_alive), ("/b", false));
        assert_eq!(first.length + second.length, two.len());
        let old = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!old.keep_alive);
        let old = parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(old.keep_alive);
        assert!(response_keeping(200, b"{}", true).ends_with(b"Connection: keep-alive\r\n\r\n{}"));
    }

    #[test]
    fn bad_requests() {
        let cases: &[(&[u8], u16)] = &[
            (b"GET /\r\n\r\n", 400),
            (b"GET / HTTP/2\r\n\r\n", 505),
            (b"get / HTTP/1.1\r\n\r\n", 400),
            (b"GET x HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nnocolon\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n", 413),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                501,
            ),
            (b"GET /%zz HTTP/1.1\r\n\r\n", 400),
            (b"GET /%ff HTTP/1.1\r\n\r\n", 400),
            (b"GET /\xff HTTP/1.1\r\n\r\n", 400),
        ];
        for (raw, status) in cases {
            assert_eq!(parse(raw).unwrap_err().status, *status, "{raw:?}");
        }
        let big = alloc::vec![b'a'; MAX_HEAD + 1];
        assert_eq!(parse(&big).unwrap_err().status, 431);
    }

    #[test]
    fn response_has_length() {
        let r = response(404, b"{}");
        assert!(r.starts_with(b"HTTP/1.1 404 Not Found\r\n"));
        assert!(r.ends_with(b"Content-Length: 2\r\nConnection: close\r\n\r\n{}"));
    }
}
