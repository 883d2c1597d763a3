//! The admin bearer token: 32 random bytes in hex, created on first start in
//! `<state dir>/admin.token` (owner-only).

use std::io;
use std::path::Path;

/// Reads the admin token from `dir/admin.token`, creating it if missing.
pub fn load_or_create(dir: &Path) -> io::Result<String> {
    let path = dir.join("admin.token");
    if !path.exists() {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|error| io::Error::other(error.to_string()))?;
        let token: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        crate::pki::write_private(&path, format!("{token}\n").as_bytes())?;
    }
    Ok(std::fs::read_to_string(path)?.trim().to_owned())
}

/// Compares tokens in time independent of where they differ.
pub fn matches(expected: &str, given: &str) -> bool {
    expected.len() == given.len()
        && expected
            .bytes()
            .zip(given.bytes())
            .fold(0, |diff, (a, b)| diff | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_and_compared_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let token = load_or_create(dir.path()).unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(load_or_create(dir.path()).unwrap(), token);
        assert!(matches(&token, &token));
        assert!(!matches(&token, &token[1..]));
        assert!(!matches(&token, &token.replace(&token[..1], "x")));
    }
}
