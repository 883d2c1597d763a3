//! Just enough HTTP/1.1 for a status page: GET requests without bodies, keep-alive, and a
//! clear 4xx for anything else.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use kernel::net::{TcpError, TcpStream};

/// Longest request head accepted.
const MAX_HEAD: usize = 8 * 1024;

/// A parsed request head.
struct Request<'a> {
    method: &'a str,
    target: &'a str,
    /// Whether the client wants the connection kept open afterwards.
    keep_alive: bool,
}

/// Parses a request head (request line and headers, up to the blank line).
fn parse(head: &[u8]) -> Result<Request<'_>, &'static str> {
    let head = core::str::from_utf8(head).map_err(|_| "request head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().ok_or("empty request")?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed request line (expected METHOD TARGET VERSION)");
    };
    let mut keep_alive = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err("unsupported HTTP version"),
    };
    if method.is_empty() || !target.starts_with('/') {
        return Err("malformed request line (expected METHOD TARGET VERSION)");
    }
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or("malformed header line")?;
        if name.eq_ignore_ascii_case("connection") {
            let value = value.trim();
            if value.eq_ignore_ascii_case("close") {
                keep_alive = false;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                keep_alive = true;
            }
        }
    }
    Ok(Request {
        method,
        target,
        keep_alive,
    })
}

/// Serves requests on `stream` until the client closes, asks to close, or errs.
pub async fn serve(stream: &mut TcpStream, status: fn() -> String) -> Result<(), TcpError> {
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let head_len = loop {
            if let Some(at) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if pending.len() > MAX_HEAD {
                return respond(stream, 431, "request head too large\n", false).await;
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            pending.extend_from_slice(&chunk[..n]);
        };
        let keep_alive = match parse(&pending[..head_len]) {
            Err(reason) => return respond(stream, 400, &format!("{reason}\n"), false).await,
            Ok(r) if r.method != "GET" => {
                return respond(stream, 405, "only GET is supported\n", false).await
            }
            Ok(r) if r.target == "/status" => {
                respond(stream, 200, &status(), r.keep_alive).await?;
                r.keep_alive
            }
            Ok(r) => {
                respond(stream, 404, "not found (try /status)\n", r.keep_alive).await?;
                r.keep_alive
            }
        };
        if !keep_alive {
            return Ok(());
        }
        pending.drain(..head_len);
    }
}

async fn respond(
    stream: &mut TcpStream,
    code: u16,
    body: &str,
    keep_alive: bool,
) -> Result<(), TcpError> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Request Header Fields Too Large",
    };
    let content_type = if code == 200 {
        "application/json"
    } else {
        "text/plain"
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await
}
