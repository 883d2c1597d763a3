//! HTTP/1.1 for the device API: requests written here, responses parsed (with httparse) and
//! bounded, over one kept-alive TLS stream.
//!
//! **What the server may send, and what happens**: a response must have a status line and at
//! most [`MAX_HEADERS`] headers within [`MAX_HEAD`] bytes, and a body delimited by
//! `Content-Length` (at most the caller's limit; no length means no body only for 1xx, 204 and
//! 304) or by chunked transfer coding. Anything else, or a stream that ends early, is an
//! [`HttpError`]; the connection is then not reused.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use tls::{TlsError, TlsStream, Transport};

/// The most headers a response may have.
pub const MAX_HEADERS: usize = 32;
/// The most bytes of a response's status line and headers.
pub const MAX_HEAD: usize = 16 * 1024;

/// Why an exchange failed.
#[derive(Clone, Debug, PartialEq)]
pub enum HttpError {
    /// The TLS stream failed.
    Tls(TlsError),
    /// The response is not valid HTTP/1.1 (what is wrong).
    Malformed(&'static str),
    /// The response's head or body is larger than allowed.
    TooLarge,
    /// The server closed the connection before the response ended.
    Truncated,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Tls(e) => write!(f, "{e}"),
            HttpError::Malformed(why) => write!(f, "bad HTTP response: {why}"),
            HttpError::TooLarge => f.write_str("HTTP response too large"),
            HttpError::Truncated => f.write_str("connection closed in the middle of a response"),
        }
    }
}

impl From<TlsError> for HttpError {
    fn from(e: TlsError) -> Self {
        HttpError::Tls(e)
    }
}

/// A response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The controller's `X-Lichen-Reason` header, if any (why a request was refused).
    pub reason: Option<String>,
    /// The server will close the connection (`Connection: close`).
    pub close: bool,
    /// The body.
    pub body: Vec<u8>,
}

/// The bytes of a request: `method path` to `host`, with a body of `content_type` if any.
pub fn request(method: &str, host: &str, path: &str, body: Option<(&str, &[u8])>) -> Vec<u8> {
    let mut out = alloc::format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lichen-zedagent\r\n"
    );
    if let Some((content_type, bytes)) = body {
        out.push_str(&alloc::format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            bytes.len()
        ));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if let Some((_, bytes)) = body {
        out.extend_from_slice(bytes);
    }
    out
}

/// The outcome of [`parse`] on the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed.
    Partial,
    /// A whole response, which used this many bytes.
    Complete(Response, usize),
}

/// Parses a response from `buf` (the bytes received so far), with a body of at most
/// `max_body` bytes. `ended`: the stream ended after `buf` (a partial response is then an
/// error).
pub fn parse(buf: &[u8], max_body: usize, ended: bool) -> Result<Parsed, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Response::new(&mut headers);
    let head_len = match head.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if ended => return Err(HttpError::Truncated),
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(HttpError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooLarge),
        Err(_) => return Err(HttpError::Malformed("status line or headers")),
    };
    if head_len > MAX_HEAD {
        return Err(HttpError::TooLarge);
    }
    let status = head.code.ok_or(HttpError::Malformed("no status"))?;
    if head.version != Some(1) {
        return Err(HttpError::Malformed("not HTTP/1.1"));
    }
    let mut response = Response {
        status,
        ..Response::default()
    };
    let mut length = None;
    let mut chunked = false;
    for header in head.headers.iter() {
        let value = core::str::from_utf8(header.value)
            .map_err(|_| HttpError::Malformed("header value not UTF-8"))?
            .trim();
        if header.name.eq_ignore_ascii_case("content-length") {
            if length.is_some() || value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HttpError::Malformed("Content-Length"));
            }
            length = Some(value.parse::<usize>().map_err(|_| HttpError::TooLarge)?);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            if !value.eq_ignore_ascii_case("chunked") {
                return Err(HttpError::Malformed("transfer coding other than chunked"));
            }
            chunked = true;
        } else if header.name.eq_ignore_ascii_case("connection") {
            response.close = value
                .split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("close"));
        } else if header.name.eq_ignore_ascii_case("x-lichen-reason") {
            response.reason = Some(value.to_string());
        }
    }
    let rest = &buf[head_len..];
    let no_body = status < 200 || status == 204 || status == 304;
    if no_body {
        return Ok(Parsed::Complete(response, head_len));
    }
    if chunked {
        if length.is_some() {
            return Err(HttpError::Malformed("both Content-Length and chunked"));
        }
        return match dechunk(rest, max_body)? {
            Some((body, used)) => {
                response.body = body;
                Ok(Parsed::Complete(response, head_len + used))
            }
            None if ended => Err(HttpError::Truncated),
            None => Ok(Parsed::Partial),
        };
    }
    let length = length.ok_or(HttpError::Malformed("no Content-Length"))?;
    if length > max_body {
        return Err(HttpError::TooLarge);
    }
    if rest.len() < length {
        return if ended {
            Err(HttpError::Truncated)
        } else {
            Ok(Parsed::Partial)
        };
    }
    response.body = rest[..length].to_vec();
    Ok(Parsed::Complete(response, head_len + length))
}

/// Decodes a chunked body from `buf`: the body and the bytes used, or `None` if incomplete.
fn dechunk(mut buf: &[u8], max_body: usize) -> Result<Option<(Vec<u8>, usize)>, HttpError> {
    let start = buf.len();
    let mut body = Vec::new();
    loop {
        let (used, size) = match httparse::parse_chunk_size(buf) {
            Ok(httparse::Status::Complete(found)) => found,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(HttpError::Malformed("chunk size")),
        };
        buf = &buf[used..];
        let size = usize::try_from(size).map_err(|_| HttpError::TooLarge)?;
        if size > max_body - body.len() {
            return Err(HttpError::TooLarge);
        }
        if size == 0 {
            // No trailers: the last chunk is followed by an empty line.
            return match buf {
                [b'\r', b'\n', ..] => Ok(Some((body, start - buf.len() + 2))),
                [] | [b'\r'] => Ok(None),
                _ => Err(HttpError::Malformed("trailers")),
            };
        }
        if buf.len() < size + 2 {
            return Ok(None);
        }
        if &buf[size..size + 2] != b"\r\n" {
            return Err(HttpError::Malformed("chunk not followed by CRLF"));
        }
        body.extend_from_slice(&buf[..size]);
        buf = &buf[size + 2..];
    }
}

/// Sends `request` and reads its response from `stream`.
pub async fn exchange<T: Transport>(
    stream: &mut TlsStream<T>,
    request: &[u8],
    max_body: usize,
) -> Result<Response, HttpError> {
    stream.write_all(request).await?;
    let mut buf = Vec::new();
    let mut chunk = alloc::vec![0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        buf.extend_from_slice(&chunk[..n]);
        match parse(&buf, max_body, n == 0)? {
            Parsed::Complete(response, used) => {
                if used != buf.len() {
                    // Bytes after the response we asked for: the stream is out of step.
                    return Err(HttpError::Malformed("bytes after the response"));
                }
                return Ok(response);
            }
            Parsed::Partial => {}
        }
    }
}

#[cfg(test)]
mod tests;
