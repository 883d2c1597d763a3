//! A gzip member (RFC 1952) around raw DEFLATE from miniz_oxide: the 10-byte header (with
//! `FCOMMENT` when a comment is given), the compressed data, the CRC-32 and the length.

use alloc::vec::Vec;

/// The compression level (zlib's default).
pub const LEVEL: u8 = 6;

/// `data` as one gzip member, with `comment` (Latin-1 text without NUL; bytes that are NUL
/// are left out) in its header when not empty.
pub fn compress(data: &[u8], comment: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 4 + 64);
    let flags = if comment.is_empty() { 0 } else { 0x10 };
    // ID1 ID2 CM FLG MTIME(4) XFL OS (255: unknown).
    out.extend_from_slice(&[0x1f, 0x8b, 8, flags, 0, 0, 0, 0, 0, 255]);
    if !comment.is_empty() {
        out.extend(comment.bytes().filter(|&b| b != 0));
        out.push(0);
    }
    out.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(data, LEVEL));
    out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    fn gunzip_with_the_system_gzip(member: &[u8]) -> Option<Vec<u8>> {
        let mut child = Command::new("gzip")
            .arg("-dc")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .ok()?;
        child.stdin.take()?.write_all(member).ok()?;
        let output = child.wait_with_output().ok()?;
        assert!(output.status.success(), "gzip -dc refused the member");
        Some(output.stdout)
    }

    #[test]
    fn gzip_reads_it_back_with_and_without_a_comment() {
        let data: Vec<u8> = (0..20_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for comment in ["", "{\"devID\":\"x\"}"] {
            let member = compress(&data, comment);
            assert!(member.len() < data.len());
            match gunzip_with_the_system_gzip(&member) {
                Some(back) => assert_eq!(back, data),
                None => std::eprintln!("no gzip here: checked with miniz_oxide only"),
            }
            // The DEFLATE part decodes with miniz_oxide too.
            let start = 10
                + if comment.is_empty() {
                    0
                } else {
                    comment.len() + 1
                };
            let body = &member[start..member.len() - 8];
            assert_eq!(miniz_oxide::inflate::decompress_to_vec(body).unwrap(), data);
        }
    }
}
