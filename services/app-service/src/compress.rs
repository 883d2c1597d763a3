//! Compression of exported messages, as app-service-configurable's `Compress` function does
//! it (`Algorithm` `gzip` or `zlib`, EdgeX's `CompressWithGZIP` and `CompressWithZLIB`): the
//! message is compressed and the result Base64-encoded (standard alphabet, padded), so that it
//! stays text on every export.
//!
//! gzip is RFC 1952 (a 10-byte header, raw deflate, CRC-32 and length), zlib RFC 1950; the
//! deflate is miniz_oxide's. Nothing here reads peer input.

use alloc::string::String;
use alloc::vec::Vec;
use base64ct::{Base64, Encoding};

/// The compression applied before export.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// None: the JSON as it is.
    #[default]
    None,
    /// gzip (RFC 1952), then Base64.
    Gzip,
    /// zlib (RFC 1950), then Base64.
    Zlib,
}

/// miniz_oxide's level 6: zlib's default.
const LEVEL: u8 = 6;

impl Compression {
    /// `gzip`, `zlib` or `none` (case-insensitive, as EdgeX's `Algorithm`).
    pub fn parse(text: &str) -> Result<Compression, String> {
        match text.to_ascii_lowercase().as_str() {
            "gzip" => Ok(Compression::Gzip),
            "zlib" => Ok(Compression::Zlib),
            "none" | "" => Ok(Compression::None),
            _ => Err(alloc::format!(
                "bad `compress={text}`: expected gzip, zlib or none"
            )),
        }
    }

    /// The message to export: `data` itself, or compressed and Base64-encoded.
    pub fn apply(self, data: Vec<u8>) -> Vec<u8> {
        let compressed = match self {
            Compression::None => return data,
            Compression::Gzip => gzip(&data),
            Compression::Zlib => miniz_oxide::deflate::compress_to_vec_zlib(&data, LEVEL),
        };
        Base64::encode_string(&compressed).into_bytes()
    }
}

/// `data` as a gzip member: header (no name, no time, OS unknown), deflate, CRC-32, size.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 + 18);
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    out.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(data, LEVEL));
    let mut crc = crc32fast::Hasher::new();
    crc.update(data);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// Decodes `message` with Python's base64 and `module` (gzip or zlib): a peer not written
    /// here.
    fn python_decode(module: &str, message: &[u8]) -> Vec<u8> {
        let mut child = Command::new("python3")
            .args([
                "-c",
                &alloc::format!(
                    "import sys,base64,{module}; sys.stdout.buffer.write({module}.decompress(base64.b64decode(sys.stdin.buffer.read(), validate=True)))"
                ),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 (needed: it decodes what we compress)");
        child.stdin.take().unwrap().write_all(message).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "python could not decode {module}");
        out.stdout
    }

    #[test]
    fn python_decodes_gzip_and_zlib() {
        let mut json = Vec::new();
        for i in 0..500 {
            json.extend_from_slice(
                alloc::format!("{{\"reading\":{i},\"value\":\"21.5\"}},").as_bytes(),
            );
        }
        for (c, module) in [(Compression::Gzip, "gzip"), (Compression::Zlib, "zlib")] {
            let message = c.apply(json.clone());
            assert!(
                message.len() < json.len() / 4,
                "{module}: {}",
                message.len()
            );
            assert_eq!(python_decode(module, &message), json, "{module}");
            assert_eq!(
                python_decode(module, &c.apply(Vec::new())),
                b"",
                "{module}: empty"
            );
        }
        assert_eq!(Compression::None.apply(b"{}".to_vec()), b"{}");
    }

    #[test]
    fn names() {
        assert_eq!(Compression::parse("GZIP"), Ok(Compression::Gzip));
        assert_eq!(Compression::parse("zlib"), Ok(Compression::Zlib));
        assert_eq!(Compression::parse("none"), Ok(Compression::None));
        assert!(Compression::parse("lz4").is_err());
    }
}
