//! HTTP export, the pure parts: the `http_export=` target (`http://` or `https://`) and the
//! status line of the receiver's answer.
//!
//! The receiver is a peer on the network: an answer that is not `HTTP/1.x NNN ...` within its
//! first line is an error (the message stays queued and is retried), never a panic.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// Where to POST: `HOST:PORT/PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path, starting with `/`.
    pub path: String,
    /// HTTPS: TLS verified against the pinned root.
    pub tls: bool,
}

impl Target {
    /// Parses `HOST:PORT/PATH`, `http://HOST:PORT/PATH` or `https://HOST:PORT/PATH`.
    pub fn parse(text: &str) -> Result<Target, String> {
        let (tls, bare) = match text.strip_prefix("https://") {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix("http://").unwrap_or(text)),
        };
        let bad = || format!("bad `http_export={text}`: expected HOST:PORT/PATH");
        let (authority, path) = bare.split_once('/').ok_or_else(bad)?;
        let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().ok().filter(|&p| p != 0).ok_or_else(bad)?;
        if host.is_empty() || path.contains([' ', '\r', '\n']) {
            return Err(bad());
        }
        Ok(Target {
            host: host.to_string(),
            port,
            path: format!("/{path}"),
            tls,
        })
    }

    /// The request bytes for a body of `content_type`.
    pub fn request(&self, content_type: &str, body: &[u8]) -> Vec<u8> {
        let mut out = format!(
            "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.path,
            self.host,
            self.port,
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        out
    }
}

/// The status code once the answer's first line has arrived: `Ok(None)` before that.
pub fn status(answer: &[u8]) -> Result<Option<u16>, &'static str> {
    let Some(end) = answer.windows(2).position(|w| w == b"\r\n") else {
        return if answer.len() > 1024 {
            Err("status line too long")
        } else {
            Ok(None)
        };
    };
    let line = core::str::from_utf8(&answer[..end]).map_err(|_| "status line is not UTF-8")?;
    let mut parts = line.splitn(3, ' ');
    match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") && code.len() == 3 => code
            .parse()
            .ok()
            .filter(|c| (100..600).contains(c))
            .map(Some)
            .ok_or("bad status code"),
        _ => Err("not an HTTP/1.x status line"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("http://10.0.2.2:8080/api/events").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str(), t.tls),
            ("10.0.2.2", 8080, "/api/events", false)
        );
        let t = Target::parse("https://sink.example:8443/in").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.tls),
            ("sink.example", 8443, true)
        );
        assert_eq!(Target::parse("h:1/").unwrap().path, "/");
        for bad in [
            "h:1",
            "h/p",
            ":1/p",
            "h:0/p",
            "h:x/p",
            "h:1/a b",
            "ftp://h:1/p",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
        let r = Target::parse("h:1/p")
            .unwrap()
            .request("application/json", b"{}");
        assert!(r.starts_with(b"POST /p HTTP/1.1\r\n"));
        assert!(r.ends_with(b"Content-Length: 2\r\nConnection: close\r\n\r\n{}"));
    }

    #[test]
    fn statuses() {
        assert_eq!(status(b"HTTP/1.0 200 OK\r\n"), Ok(Some(200)));
        assert_eq!(status(b"HTTP/1.1 204\r\n"), Ok(Some(204)));
        assert_eq!(status(b"HTTP/1.1 20"), Ok(None));
        for bad in [
            &b"SSH-2.0\r\n"[..],
            b"HTTP/1.1 abc x\r\n",
            b"HTTP/1.1 999 x\r\n",
            b"\xff\r\n",
            b"HTTP/2 200\r\n",
        ] {
            assert!(status(bad).is_err(), "{bad:?}");
        }
        assert!(status(&[b'a'; 2000]).is_err());
    }
}
