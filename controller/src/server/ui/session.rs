//! Web UI sessions: after a login with the admin token, the browser holds a session cookie
//! (HttpOnly, Secure, SameSite=Strict, expiring) and sends a CSRF token in a header with every
//! request that changes something.
//!
//! Sessions are stateless: the cookie is `EXPIRES.NONCE.MAC`, where MAC is an HMAC-SHA256 over
//! the expiry and nonce with a key derived from the admin token. So every controller sharing the
//! state directory (and its admin token) accepts it, and a new admin token ends every session.
//! The CSRF token is an HMAC of the cookie under the same key: a page of another site can
//! neither read it nor, with SameSite=Strict, make the browser send the cookie. Logging out
//! revokes the cookie on the controller that handled it (in memory, until it expires).
//!
//! What a peer controls: the cookie and header values. They are parsed strictly, compared in
//! constant time, and a revoked, expired or forged cookie is no session.

use std::collections::HashMap;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The cookie's name. `__Host-` makes browsers insist on Secure, Path=/ and no Domain.
pub const COOKIE: &str = "__Host-lichen_session";
/// The request header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts after login.
pub const LIFETIME_MS: u64 = 8 * 3600 * 1000;

type HmacSha256 = Hmac<Sha256>;

/// Issues and checks session cookies.
pub struct Sessions {
    key: [u8; 32],
    /// Nonces of logged-out sessions, with their expiry.
    revoked: Mutex<HashMap<String, u64>>,
}

impl Sessions {
    /// Sessions whose key derives from `admin_token`.
    pub fn new(admin_token: &str) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"lichen web ui session v1\0");
        hash.update(admin_token.as_bytes());
        Self {
            key: hash.finalize().into(),
            revoked: Mutex::default(),
        }
    }

    fn mac(&self, purpose: &str, value: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(value.as_bytes());
        mac
    }

    /// A new session cookie value, valid until `now_ms` + [`LIFETIME_MS`].
    pub fn issue(&self, now_ms: u64) -> String {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).expect("the system's random source works");
        let body = format!("{}.{}", now_ms + LIFETIME_MS, hex(&nonce));
        let mac = hex(&self.mac("session", &body).finalize().into_bytes());
        format!("{body}.{mac}")
    }

    /// Whether `cookie` is a session issued here (or by a controller with the same admin token),
    /// neither expired at `now_ms` nor logged out.
    pub fn valid(&self, cookie: &str, now_ms: u64) -> bool {
        let Some((body, mac)) = cookie.rsplit_once('.') else {
            return false;
        };
        let Some((expires, nonce)) = body.split_once('.') else {
            return false;
        };
        let (Ok(expires), Some(mac)) = (expires.parse::<u64>(), unhex(mac)) else {
            return false;
        };
        if self.mac("session", body).verify_slice(&mac).is_err() || expires <= now_ms {
            return false;
        }
        let revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        !revoked.contains_key(nonce)
    }

    /// The CSRF token of a session.
    pub fn csrf(&self, cookie: &str) -> String {
        hex(&self.mac("csrf", cookie).finalize().into_bytes())
    }

    /// Whether `token` is the CSRF token of `cookie` (compared in constant time).
    pub fn csrf_matches(&self, cookie: &str, token: &str) -> bool {
        unhex(token).is_some_and(|token| self.mac("csrf", cookie).verify_slice(&token).is_ok())
    }

    /// Ends the session `cookie` (if valid) on this controller.
    pub fn revoke(&self, cookie: &str, now_ms: u64) {
        if !self.valid(cookie, now_ms) {
            return;
        }
        let mut parts = cookie.split('.');
        let expires = parts.next().and_then(|e| e.parse().ok()).unwrap_or(0);
        let nonce = parts.next().unwrap_or_default().to_owned();
        let mut revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        revoked.retain(|_, until| *until > now_ms);
        revoked.insert(nonce, expires);
    }
}

/// The session cookie's value in a `Cookie` request header, if there is one.
pub fn cookie_of(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// The `Set-Cookie` value that gives the browser `value` for the session's lifetime.
pub fn set_cookie(value: &str) -> String {
    format!(
        "{COOKIE}={value}; Path=/; Max-Age={}; HttpOnly; Secure; SameSite=Strict",
        LIFETIME_MS / 1000
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_sessions_are_valid_until_they_expire_or_log_out() {
        let sessions = Sessions::new("token");
        let cookie = sessions.issue(1_000);
        assert!(sessions.valid(&cookie, 1_000));
        assert!(sessions.valid(&cookie, 1_000 + LIFETIME_MS - 1));
        assert!(!sessions.valid(&cookie, 1_000 + LIFETIME_MS));
        // Another controller with the same token accepts it; another token does not.
        assert!(Sessions::new("token").valid(&cookie, 2_000));
        assert!(!Sessions::new("other").valid(&cookie, 2_000));
        sessions.revoke(&cookie, 2_000);
        assert!(!sessions.valid(&cookie, 2_000));
    }

    #[test]
    fn forged_cookies_are_refused() {
        let sessions = Sessions::new("token");
        let cookie = sessions.issue(1_000);
        let (body, mac) = cookie.rsplit_once('.').unwrap();
        let (expires, nonce) = body.split_once('.').unwrap();
        // A later expiry with the old MAC.
        let later = format!("{}.{nonce}.{mac}", expires.parse::<u64>().unwrap() + 1);
        for forged in [
            later.as_str(),
            "",
            "1.2",
            "x.y.z",
            &format!("{body}.{}", "0".repeat(64)),
            &format!("{body}.{}", &mac[..62]),
            &format!("{body}.{mac}zz"),
        ] {
            assert!(!sessions.valid(forged, 2_000), "{forged:?} accepted");
        }
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let sessions = Sessions::new("token");
        let (one, two) = (sessions.issue(1), sessions.issue(1));
        assert!(sessions.csrf_matches(&one, &sessions.csrf(&one)));
        assert!(!sessions.csrf_matches(&one, &sessions.csrf(&two)));
        assert!(!sessions.csrf_matches(&one, ""));
        assert!(!sessions.csrf_matches(&one, "not hex"));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            format!("a=b; {COOKIE}=v.1.2; c=d").parse().unwrap(),
        );
        assert_eq!(cookie_of(&headers), Some("v.1.2"));
        assert!(set_cookie("x").contains("HttpOnly; Secure; SameSite=Strict"));
    }
}
