//! Where a content tree is downloaded from: EVE's `DatastoreConfig` (`fqdn`, `dpath`, `apiKey`,
//! `password`) and the content tree's relative `URL`, as one HTTP(S) location.
//!
//! As in EVE, `fqdn` may carry the scheme (`https://images.example.com:8443`); a bare host gets
//! the datastore kind's scheme. The path is `/dpath/URL`. Credentials, when the datastore has
//! an `apiKey`, are sent as HTTP Basic.
//!
//! **What the configuration may hold, and what happens**: a scheme that disagrees with the
//! kind, an empty or unparsable host or port, a path or host with control characters or spaces
//! (which would let a configuration smuggle headers into the request): an error, and nothing is
//! requested.

use alloc::format;
use alloc::string::{String, ToString};

use base64ct::{Base64, Encoding};

/// One HTTP(S) location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// TLS (HTTPS) or plain HTTP.
    pub tls: bool,
    /// The host: a DNS name or an IP address (IPv6 without brackets).
    pub host: String,
    /// The port.
    pub port: u16,
    /// The request target: an absolute path.
    pub path: String,
    /// The `Authorization` header value, if any.
    pub authorization: Option<String>,
}

impl Source {
    /// The location of `url` (relative) in the datastore `fqdn`/`dpath`; `https` is the
    /// datastore's kind (`DsHttps` rather than `DsHttp`).
    pub fn new(
        https: bool,
        fqdn: &str,
        dpath: &str,
        url: &str,
        api_key: &str,
        password: &str,
    ) -> Result<Source, String> {
        let (tls, rest) = if let Some(rest) = fqdn.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = fqdn.strip_prefix("http://") {
            (false, rest)
        } else {
            (https, fqdn)
        };
        if tls != https {
            return Err(format!(
                "datastore {fqdn:?}: the scheme disagrees with the datastore's kind"
            ));
        }
        // A path in fqdn joins dpath.
        let (authority, fqdn_path) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = split_port(authority)
            .ok_or_else(|| format!("datastore {fqdn:?}: not a host[:port]"))?;
        let port = port.unwrap_or(if tls { 443 } else { 80 });
        let mut path = String::new();
        for part in [fqdn_path, dpath, url] {
            for segment in part.split('/').filter(|s| !s.is_empty()) {
                path.push('/');
                path.push_str(segment);
            }
        }
        if url.trim_matches('/').is_empty() {
            return Err("the content tree has no URL".to_string());
        }
        if !path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("{path:?}: not a valid request path"));
        }
        let authorization = (!api_key.is_empty()).then(|| {
            format!(
                "Basic {}",
                Base64::encode_string(format!("{api_key}:{password}").as_bytes())
            )
        });
        if authorization
            .as_ref()
            .is_some_and(|a| a.bytes().any(|b| b.is_ascii_control()))
        {
            return Err("datastore credentials: control characters".to_string());
        }
        Ok(Source {
            tls,
            host: host.to_string(),
            port,
            path,
            authorization,
        })
    }

    /// The `Host` header: the host, with the port unless it is the scheme's default.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'))
    {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok().filter(|&p| p != 0)?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eve_datastores_become_locations() {
        let s = Source::new(
            true,
            "https://10.0.2.2:8443",
            "datastore",
            "abc",
            "lichen",
            "pw",
        )
        .unwrap();
        assert_eq!(
            (s.tls, s.host.as_str(), s.port, s.path.as_str()),
            (true, "10.0.2.2", 8443, "/datastore/abc")
        );
        // base64("lichen:pw")
        assert_eq!(s.authorization.as_deref(), Some("Basic bGljaGVuOnB3"));
        assert_eq!(s.host_header(), "10.0.2.2:8443");
        let s = Source::new(false, "images.example.com", "", "/a/b.img", "", "").unwrap();
        assert_eq!(
            (s.port, s.path.as_str(), &s.authorization),
            (80, "/a/b.img", &None)
        );
        assert_eq!(s.host_header(), "images.example.com");
        let s = Source::new(true, "https://[fd00::1]/base/", "/d/", "x", "", "").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.path.as_str()),
            ("fd00::1", 443, "/base/d/x")
        );
        assert_eq!(s.host_header(), "[fd00::1]");
    }

    #[test]
    fn bad_locations_are_refused() {
        for (https, fqdn, url) in [
            (true, "http://h", "x"),
            (false, "https://h", "x"),
            (true, "", "x"),
            (true, "h:0", "x"),
            (true, "h:99999", "x"),
            (true, "h:8a", "x"),
            (true, "h\r\nX-Evil: 1", "x"),
            (true, "h", "a b"),
            (true, "h", "a\r\nX-Evil: 1"),
            (true, "h", ""),
            (true, "[fd00::1", "x"),
        ] {
            assert!(
                Source::new(https, fqdn, "", url, "", "").is_err(),
                "{fqdn:?} {url:?}"
            );
        }
    }
}
