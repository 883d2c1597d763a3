//! Sealing entries: a CRC-64 for a plain store, XChaCha20-Poly1305 for the vault; and where
//! the vault's key comes from.
//!
//! Every key and every value is sealed separately (so that a read touches one value only),
//! with its own tag: 8 bytes of CRC-64 (plain), 16 bytes of Poly1305 (encrypted). The
//! associated data binds each to the store's identity and to its entry header, and a value to
//! its key, so that a value moved to another key, another entry or another disk does not open.
//!
//! **Nonces never repeat under one key.** The 24-byte XChaCha20 nonce is
//! `store id (16 bytes) || epoch (u32) || counter (u32)`:
//! - the store id is random at `format` (the caller's job; documented on
//!   [`crate::FormatOptions`]): two stores sharing a key get different nonces, and so
//!   different per-store subkeys (XChaCha20's HChaCha20 step derives a subkey from the key and
//!   the first 16 bytes of the nonce);
//! - the epoch is written and flushed to the checkpoint every time the store is opened for
//!   writing, before anything is sealed: it survives crashes, so no two sessions share one;
//! - the counter grows by two per entry (key, value) within a session; when it would wrap, the
//!   store bumps the epoch again first.
//!
//! Entries moved by compaction are copied verbatim (same nonce, same ciphertext): a nonce is
//! only ever used for the one plaintext it was first used for.
//!
//! What a peer (whoever holds the disk) may corrupt: anything. A changed byte fails the tag
//! and is reported as corruption; a wrong key fails the superblock's key check before any
//! entry is read.

use crate::format::{CipherKind, CRC64};
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use core::fmt;
use zeroize::Zeroize;

/// Bytes of a vault key.
pub const KEY_LEN: usize = 32;

/// A 256-bit key for XChaCha20-Poly1305, wiped from memory when dropped.
#[derive(Clone)]
pub struct Key([u8; KEY_LEN]);

impl Key {
    /// A key from its bytes.
    pub fn new(bytes: [u8; KEY_LEN]) -> Key {
        Key(bytes)
    }

    /// Reads a key as a boot module or a config-partition file holds it: exactly 32 raw bytes,
    /// or 64 hexadecimal digits (surrounding whitespace allowed).
    pub fn parse(text: &[u8]) -> Result<Key, KeyError> {
        if text.len() == KEY_LEN {
            let mut k = [0u8; KEY_LEN];
            k.copy_from_slice(text);
            return Ok(Key(k));
        }
        let trimmed = text.trim_ascii();
        if trimmed.len() != 2 * KEY_LEN {
            return Err(KeyError::Malformed);
        }
        let mut k = [0u8; KEY_LEN];
        for (i, pair) in trimmed.chunks(2).enumerate() {
            let hi = hex_digit(pair[0]).ok_or(KeyError::Malformed)?;
            let lo = hex_digit(pair[1]).ok_or(KeyError::Malformed)?;
            k[i] = hi << 4 | lo;
        }
        Ok(Key(k))
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Why a key provider gave no key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// The provider has no key (no config partition, no boot module, TPM not provisioned).
    Missing,
    /// What the provider holds is not a key.
    Malformed,
    /// The provider failed (a TPM error code, a read error).
    Failed(i32),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Missing => f.write_str("no vault key is provisioned"),
            KeyError::Malformed => f.write_str("the vault key is not 32 bytes or 64 hex digits"),
            KeyError::Failed(code) => write!(f, "the key provider failed (code {code})"),
        }
    }
}

/// Where the vault's key comes from: software now (the node's config partition or a boot
/// module), a TPM later (unsealing against PCRs). Never the disk the store is on.
#[allow(async_fn_in_trait)]
pub trait KeyProvider {
    /// The key, or why there is none.
    async fn key(&mut self) -> Result<Key, KeyError>;
}

/// EVE's fallback without a TPM: a key handed over in software (read from the config
/// partition or a boot module by whoever builds this).
pub struct SoftwareKey(Option<Key>);

impl SoftwareKey {
    /// A provider of `key`.
    pub fn new(key: Key) -> SoftwareKey {
        SoftwareKey(Some(key))
    }

    /// A provider of the key in `text` (see [`Key::parse`]); `None` when there is no such file.
    pub fn from_file(text: Option<&[u8]>) -> SoftwareKey {
        SoftwareKey(text.and_then(|t| Key::parse(t).ok()))
    }
}

impl KeyProvider for SoftwareKey {
    async fn key(&mut self) -> Result<Key, KeyError> {
        self.0.clone().ok_or(KeyError::Missing)
    }
}

/// A seal or an open failed: the bytes are not what was sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadSeal;

/// How entries are sealed in one store.
pub enum Cipher {
    /// CRC-64 over associated data and bytes; bytes stored as they are.
    Plain,
    /// XChaCha20-Poly1305 under the store's key.
    Sealed(XChaCha20Poly1305),
}

/// Which nonce: see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NonceParts {
    /// The session's epoch.
    pub epoch: u32,
    /// The counter within the session.
    pub counter: u32,
}

impl Cipher {
    /// The cipher for a key (`None`: plain).
    pub fn new(key: Option<&Key>) -> Cipher {
        match key {
            None => Cipher::Plain,
            Some(k) => Cipher::Sealed(XChaCha20Poly1305::new(&k.0.into())),
        }
    }

    /// What the superblock records.
    pub fn kind(&self) -> CipherKind {
        match self {
            Cipher::Plain => CipherKind::Plain,
            Cipher::Sealed(_) => CipherKind::XChaCha20Poly1305,
        }
    }

    /// Bytes of a tag.
    pub fn tag_len(&self) -> usize {
        match self {
            Cipher::Plain => 8,
            Cipher::Sealed(_) => 16,
        }
    }

    /// Seals `buf` in place and writes its tag into `tag` (`tag_len()` bytes).
    pub fn seal(
        &self,
        id: &[u8; 16],
        nonce: NonceParts,
        aad: &[&[u8]],
        buf: &mut [u8],
        tag: &mut [u8],
    ) {
        match self {
            Cipher::Plain => tag.copy_from_slice(&plain_tag(aad, buf).to_le_bytes()),
            Cipher::Sealed(aead) => {
                let ad = Aad::new(aad);
                let t = aead
                    .encrypt_inout_detached(&xnonce(id, nonce), ad.bytes(), buf.into())
                    // Only fails for messages over 256 GiB, which the store never seals.
                    .expect("XChaCha20-Poly1305 takes any message under 256 GiB");
                tag.copy_from_slice(&t);
            }
        }
    }

    /// Checks `buf` against `tag` and opens it in place; on failure `buf` is unspecified and
    /// must not be used.
    pub fn open(
        &self,
        id: &[u8; 16],
        nonce: NonceParts,
        aad: &[&[u8]],
        buf: &mut [u8],
        tag: &[u8],
    ) -> Result<(), BadSeal> {
        match self {
            Cipher::Plain => {
                if tag.len() == 8 && tag == plain_tag(aad, buf).to_le_bytes() {
                    Ok(())
                } else {
                    Err(BadSeal)
                }
            }
            Cipher::Sealed(aead) => {
                let tag = chacha20poly1305::Tag::try_from(tag).map_err(|_| BadSeal)?;
                let ad = Aad::new(aad);
                aead.decrypt_inout_detached(&xnonce(id, nonce), ad.bytes(), buf.into(), &tag)
                    .map_err(|_| BadSeal)
            }
        }
    }
}

impl Cipher {
    /// Whether `buf` matches `tag` (as [`Cipher::open`] would find), leaving `buf` as it is.
    pub fn verify(
        &self,
        id: &[u8; 16],
        nonce: NonceParts,
        aad: &[&[u8]],
        buf: &[u8],
        tag: &[u8],
    ) -> bool {
        match self {
            Cipher::Plain => tag.len() == 8 && tag == plain_tag(aad, buf).to_le_bytes(),
            Cipher::Sealed(_) => {
                let mut scratch = alloc::vec::Vec::from(buf);
                self.open(id, nonce, aad, &mut scratch, tag).is_ok()
            }
        }
    }
}

fn plain_tag(aad: &[&[u8]], buf: &[u8]) -> u64 {
    let mut d = CRC64.digest();
    for part in aad {
        d.update(part);
    }
    d.update(buf);
    d.finalize()
}

fn xnonce(id: &[u8; 16], n: NonceParts) -> XNonce {
    let mut bytes = [0u8; 24];
    bytes[..16].copy_from_slice(id);
    bytes[16..20].copy_from_slice(&n.epoch.to_le_bytes());
    bytes[20..24].copy_from_slice(&n.counter.to_le_bytes());
    bytes.into()
}

/// Associated data gathered in one buffer: the store id, an entry header and a key at most.
struct Aad {
    bytes: [u8; Aad::MAX],
    len: usize,
}

impl Aad {
    const MAX: usize = 16 + crate::format::ENTRY_HEADER_LEN + 255 + crate::format::SUPER_LEN;

    fn new(parts: &[&[u8]]) -> Aad {
        let mut aad = Aad {
            bytes: [0; Aad::MAX],
            len: 0,
        };
        for part in parts {
            let end = aad.len + part.len();
            aad.bytes[aad.len..end].copy_from_slice(part);
            aad.len = end;
        }
        aad
    }

    fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: [u8; 16] = [3; 16];
    const N: NonceParts = NonceParts {
        epoch: 1,
        counter: 0,
    };

    fn round_trip(c: &Cipher) {
        let mut buf = *b"some value";
        let mut tag = [0u8; 16];
        let tag = &mut tag[..c.tag_len()];
        c.seal(&ID, N, &[b"ad"], &mut buf, tag);
        let mut opened = buf;
        assert_eq!(c.open(&ID, N, &[b"ad"], &mut opened, tag), Ok(()));
        assert_eq!(&opened, b"some value");
        // Any change to the bytes, the tag, the associated data, the nonce or the id fails.
        let mut rotten = buf;
        rotten[3] ^= 1;
        assert_eq!(c.open(&ID, N, &[b"ad"], &mut rotten, tag), Err(BadSeal));
        let mut b = buf;
        assert_eq!(c.open(&ID, N, &[b"ae"], &mut b, tag), Err(BadSeal));
        let mut b = buf;
        let other = NonceParts {
            epoch: 1,
            counter: 2,
        };
        assert_eq!(
            c.open(&ID, other, &[b"ad"], &mut b, tag).is_err(),
            matches!(c, Cipher::Sealed(_))
        );
        let mut b = buf;
        tag[0] ^= 1;
        assert_eq!(c.open(&ID, N, &[b"ad"], &mut b, tag), Err(BadSeal));
    }

    #[test]
    fn both_ciphers_refuse_anything_changed() {
        round_trip(&Cipher::Plain);
        round_trip(&Cipher::new(Some(&Key::new([9; 32]))));
    }

    #[test]
    fn a_wrong_key_does_not_open_and_ciphertext_differs_from_plaintext() {
        let right = Cipher::new(Some(&Key::new([1; 32])));
        let wrong = Cipher::new(Some(&Key::new([2; 32])));
        let mut buf = *b"secret secret secret";
        let mut tag = [0u8; 16];
        right.seal(&ID, N, &[], &mut buf, &mut tag);
        assert_ne!(&buf, b"secret secret secret");
        assert_eq!(
            wrong.open(&ID, N, &[], &mut buf.clone(), &tag),
            Err(BadSeal)
        );
        assert_eq!(right.open(&ID, N, &[], &mut buf, &tag), Ok(()));
    }

    #[test]
    fn keys_parse_from_raw_bytes_or_hex_only() {
        assert_eq!(Key::parse(&[5; 32]).unwrap().0, [5; 32]);
        let hex = b"  000102030405060708090a0b0c0d0e0f101112131415161718191A1B1C1D1E1F\n";
        let k = Key::parse(hex).unwrap();
        assert_eq!(k.0[31], 0x1f);
        assert_eq!(Key::parse(b"00").unwrap_err(), KeyError::Malformed);
        let mut bad = hex.to_vec();
        bad[5] = b'g';
        assert_eq!(Key::parse(&bad).unwrap_err(), KeyError::Malformed);
        assert!(
            std::format!("{k:?}").find("31").is_none(),
            "Debug must not print the key"
        );
        let mut missing = SoftwareKey::from_file(None);
        assert_eq!(
            crate::block_on(missing.key()).unwrap_err(),
            KeyError::Missing
        );
        let mut present = SoftwareKey::from_file(Some(hex));
        assert_eq!(crate::block_on(present.key()).unwrap().0[0], 0);
    }
}
