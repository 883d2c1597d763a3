//! Response heads from a datastore: `download::http::parse_head` on any bytes, in growing
//! prefixes as a stream arrives. Checked: no panic; a head uses no more than it was given; a
//! 206's range is ordered and inside the file, and agrees with its length; once complete on a
//! prefix, the same head on every longer input (more bytes never change a head).
#![no_main]

use download::http::{parse_head, Framing};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = parse_head(data);
    let step = 1 + data.first().map_or(0, |b| *b as usize % 13);
    let mut first = None;
    for end in (0..=data.len()).step_by(step) {
        match parse_head(&data[..end]) {
            Ok(Some((head, used))) => {
                assert!(used <= end);
                if let Some(r) = head.range {
                    assert!(r.start <= r.end && r.end < r.total);
                    if let Framing::Length(n) = head.framing {
                        assert_eq!(n, r.end - r.start + 1);
                    }
                }
                if first.is_none() {
                    first = Some((head, used));
                }
            }
            Ok(None) => assert!(first.is_none(), "complete, then partial"),
            Err(_) => {}
        }
    }
    if let (Some(first), Ok(Some(found))) = (first, whole) {
        assert_eq!(first, found, "a longer input changed a complete head");
    }
});
