//! Chunked bodies from a datastore: `download::http::Dechunker` on any bytes, fed whole and in
//! pieces whose sizes the input chooses. Checked: no panic; data ranges lie inside what was fed;
//! consumption never exceeds the input; the body decoded and where it ends do not depend on how
//! the bytes were split.
#![no_main]

use download::http::Dechunker;
use libfuzzer_sys::fuzz_target;

/// Decodes `data` in pieces of `step` bytes: the body, the bytes consumed, whether it ended, or
/// the error.
fn decode(data: &[u8], step: usize) -> Result<(Vec<u8>, usize, bool), download::http::ChunkError> {
    let mut d = Dechunker::new();
    let mut body = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let piece = &data[at..(at + step).min(data.len())];
        let mut off = 0;
        while off < piece.len() {
            let (used, range) = d.feed(&piece[off..])?;
            assert!(used <= piece.len() - off);
            assert!(range.end <= used && range.start <= range.end);
            body.extend_from_slice(&piece[off..][range]);
            if used == 0 {
                assert!(d.done());
                return Ok((body, at + off, true));
            }
            off += used;
        }
        at += piece.len();
    }
    Ok((body, at, d.done()))
}

fuzz_target!(|data: &[u8]| {
    let whole = decode(data, data.len().max(1));
    let step = 1 + data.last().map_or(0, |b| *b as usize % 7);
    let split = decode(data, step);
    assert_eq!(whole, split, "splitting changed the decoding");
});
