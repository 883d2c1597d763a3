//! The controller's own datastore (EVE's `DatastoreConfig` of type `DsHttps` or `DsHttp`): app
//! images uploaded by the admin (`admin app deploy`), kept in `<state dir>/datastore/` under the
//! SHA-256 of their bytes and served to devices, with byte ranges so that a device resumes an
//! interrupted download.
//!
//! Devices authenticate with the datastore's credentials (`apiKey` and `password` of its
//! `DatastoreConfig`, sent as HTTP Basic), which the controller makes once per state directory.
//!
//! **What a client may send, and what happens**: a file name that is not 64 lowercase hex
//! digits is 404 (no path ever reaches the file system from the client); a `Range` header that
//! is not one `bytes=` range is ignored (the whole file is sent, as RFC 9110 allows); a range
//! past the end is 416; wrong or missing credentials are 401.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64ct::{Base64, Encoding};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The directory under the state directory, and the `dpath` of the datastore's URLs.
pub const DIR: &str = "datastore";
/// The user name of the datastore's credentials (its `apiKey`).
pub const API_KEY: &str = "lichen";

/// Who the datastore is: its `DatastoreConfig` id and its password, kept in
/// `<state dir>/datastore/identity.json` (readable by its owner only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The `DatastoreConfig.id` (a UUID).
    pub id: String,
    /// The `DatastoreConfig.password`.
    pub password: String,
}

/// A file in the datastore.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// The SHA-256 of its bytes, lowercase hex: also its name.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The datastore on disk.
#[derive(Clone, Debug)]
pub struct Datastore {
    dir: PathBuf,
    identity: Identity,
}

impl Datastore {
    /// Opens (creating on first use) the datastore under `state_dir`.
    pub fn open(state_dir: &Path) -> io::Result<Datastore> {
        let dir = state_dir.join(DIR);
        std::fs::create_dir_all(&dir)?;
        let identity_path = dir.join("identity.json");
        let identity = match std::fs::read(&identity_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| {
                io::Error::other(format!("{}: {error}", identity_path.display()))
            })?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                let mut secret = [0u8; 24];
                getrandom::fill(&mut secret)
                    .map_err(|error| io::Error::other(error.to_string()))?;
                let identity = Identity {
                    id: uuid::Uuid::new_v4().to_string(),
                    password: hex(&secret),
                };
                write_private(
                    &identity_path,
                    &serde_json::to_vec_pretty(&identity).expect("serializable"),
                )?;
                identity
            }
            Err(error) => return Err(error),
        };
        Ok(Datastore { dir, identity })
    }

    /// Its id and credentials.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Whether an `Authorization` header value carries the datastore's credentials.
    pub fn authorized(&self, authorization: Option<&str>) -> bool {
        let Some(encoded) = authorization.and_then(|value| value.strip_prefix("Basic ")) else {
            return false;
        };
        let Ok(decoded) = Base64::decode_vec(encoded.trim()) else {
            return false;
        };
        let expected = format!("{API_KEY}:{}", self.identity.password);
        // Compared in constant time: the password is a secret.
        decoded.len() == expected.len()
            && decoded
                .iter()
                .zip(expected.as_bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// Stores `bytes` under their SHA-256 (written to a temporary file, synced, then renamed,
    /// so that a file under its name is always whole).
    pub fn put(&self, bytes: &[u8]) -> io::Result<Stored> {
        let sha256 = hex(&Sha256::digest(bytes));
        let path = self.dir.join(&sha256);
        if !path.exists() {
            let temporary = self
                .dir
                .join(format!(".upload-{}", uuid::Uuid::new_v4().simple()));
            let result = (|| {
                let mut file = std::fs::File::create(&temporary)?;
                file.write_all(bytes)?;
                file.sync_all()?;
                std::fs::rename(&temporary, &path)?;
                std::fs::File::open(&self.dir)?.sync_all()
            })();
            if result.is_err() {
                let _ = std::fs::remove_file(&temporary);
            }
            result?;
        }
        Ok(Stored {
            sha256,
            size: bytes.len() as u64,
        })
    }

    /// The path and size of the file named `name`, if `name` is a SHA-256 (64 lowercase hex
    /// digits) and the datastore holds it.
    pub fn find(&self, name: &str) -> Option<(PathBuf, u64)> {
        if name.len() != 64 || !name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let path = self.dir.join(name);
        let size = std::fs::metadata(&path).ok()?.len();
        Some((path, size))
    }
}

/// What a `Range` request header asks of a file of `size` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Range {
    /// The whole file (no header, or one that is ignored).
    Whole,
    /// Bytes `start..=end`.
    Part {
        /// The first byte.
        start: u64,
        /// The last byte (inclusive, as in `Content-Range`).
        end: u64,
    },
    /// A range that starts past the end: 416.
    Unsatisfiable,
}

/// Reads a `Range` header (`bytes=START-`, `bytes=START-END` or `bytes=-SUFFIX`) against a file
/// of `size` bytes. Several ranges, other units and malformed values are ignored (the whole
/// file is served, which RFC 9110 allows).
pub fn range(header: Option<&str>, size: u64) -> Range {
    let Some(spec) = header.and_then(|value| value.trim().strip_prefix("bytes=")) else {
        return Range::Whole;
    };
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Range::Whole;
    };
    let number = |text: &str| -> Option<u64> {
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse().ok())
            .flatten()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            Some(0) => Range::Unsatisfiable,
            Some(_) if size == 0 => Range::Unsatisfiable,
            Some(n) => Range::Part {
                start: size.saturating_sub(n),
                end: size - 1,
            },
            None => Range::Whole,
        },
        (start, "") => match number(start) {
            Some(start) if start >= size => Range::Unsatisfiable,
            Some(start) => Range::Part {
                start,
                end: size - 1,
            },
            None => Range::Whole,
        },
        (start, end) => match (number(start), number(end)) {
            (Some(start), Some(end)) if start > end => Range::Whole,
            (Some(start), Some(_)) if start >= size => Range::Unsatisfiable,
            (Some(start), Some(end)) => Range::Part {
                start,
                end: end.min(size - 1),
            },
            _ => Range::Whole,
        },
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        let part = |start, end| Range::Part { start, end };
        assert_eq!(range(None, 100), Range::Whole);
        assert_eq!(range(Some("bytes=0-"), 100), part(0, 99));
        assert_eq!(range(Some("bytes=10-19"), 100), part(10, 19));
        assert_eq!(range(Some("bytes=90-200"), 100), part(90, 99));
        assert_eq!(range(Some("bytes=-10"), 100), part(90, 99));
        assert_eq!(range(Some("bytes=-1000"), 100), part(0, 99));
        assert_eq!(range(Some("bytes=100-"), 100), Range::Unsatisfiable);
        assert_eq!(range(Some("bytes=100-200"), 100), Range::Unsatisfiable);
        assert_eq!(range(Some("bytes=-0"), 100), Range::Unsatisfiable);
        assert_eq!(range(Some("bytes=0-"), 0), Range::Unsatisfiable);
        // Ignored: the whole file is sent.
        for ignored in [
            "items=0-1",
            "bytes=0-1,5-6",
            "bytes=5-1",
            "bytes=a-",
            "bytes=-",
            "bytes=+1-2",
            "bytes=99999999999999999999999-",
            "bytes",
        ] {
            assert_eq!(range(Some(ignored), 100), Range::Whole, "{ignored}");
        }
    }

    #[test]
    fn files_are_kept_under_their_sha256_and_names_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Datastore::open(dir.path()).unwrap();
        let stored = store.put(b"hello").unwrap();
        assert_eq!(
            stored.sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(stored.size, 5);
        let (path, size) = store.find(&stored.sha256).unwrap();
        assert_eq!((std::fs::read(path).unwrap(), size), (b"hello".to_vec(), 5));
        assert_eq!(
            store.put(b"hello").unwrap(),
            stored,
            "storing again is harmless"
        );
        for bad in [
            "identity.json",
            "../datastore/identity.json",
            &stored.sha256.to_uppercase(),
            &stored.sha256[1..],
        ] {
            assert_eq!(store.find(bad), None, "{bad}");
        }
        // The identity is made once and kept, private.
        let again = Datastore::open(dir.path()).unwrap();
        assert_eq!(again.identity(), store.identity());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("datastore/identity.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0);
    }

    #[test]
    fn only_the_datastore_credentials_are_let_in() {
        let dir = tempfile::tempdir().unwrap();
        let store = Datastore::open(dir.path()).unwrap();
        let basic = |text: &str| format!("Basic {}", Base64::encode_string(text.as_bytes()));
        let good = basic(&format!("lichen:{}", store.identity().password));
        assert!(store.authorized(Some(&good)));
        assert!(!store.authorized(None));
        assert!(!store.authorized(Some(&basic("lichen:wrong"))));
        assert!(!store.authorized(Some(&basic(&format!(
            "other:{}",
            store.identity().password
        )))));
        assert!(!store.authorized(Some("Bearer x")));
        assert!(!store.authorized(Some("Basic !!!")));
    }
}
