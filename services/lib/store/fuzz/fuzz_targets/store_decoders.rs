//! Throws arbitrary bytes at every decoder of the store's on-disk format: superblock,
//! checkpoint, record header and trailer, entry header, record body. None may panic; whatever
//! one accepts must encode back to the very bytes it came from (nothing is guessed or lost),
//! and a body's entries must lie inside it, in order, tiling it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use store::format::{
    parse_body, trailer_ok, Checkpoint, EntryHeader, RecordHeader, Superblock, CHECKPOINT_LEN,
    ENTRY_HEADER_LEN, HEADER_LEN, SUPER_LEN,
};

const ID: [u8; 16] = *b"fuzz-store-id-00";

fuzz_target!(|data: &[u8]| {
    if let Ok(sb) = Superblock::decode(data) {
        assert_eq!(&sb.encode()[..], &data[..SUPER_LEN]);
    }
    if let Some(cp) = Checkpoint::decode(data, &ID) {
        assert_eq!(&cp.encode(&ID)[..], &data[..CHECKPOINT_LEN]);
    }
    if let Some(h) = RecordHeader::decode(data, &ID) {
        assert_eq!(&h.encode(&ID)[..], &data[..HEADER_LEN]);
        // A record: its body parsed with either tag length, then its trailer checked.
        for tag in [8, 16] {
            let body = data.get(HEADER_LEN..HEADER_LEN.saturating_add(h.body_len as usize));
            if let Some(entries) = body.and_then(|b| parse_body(b, h.count, tag)) {
                let _ = trailer_ok(&h, data, &entries, tag, &ID);
            }
        }
    }
    if let Some(e) = EntryHeader::decode(data) {
        assert_eq!(&e.encode()[..], &data[..ENTRY_HEADER_LEN]);
    }
    // A body: the first byte gives the entry count and the tag length (8 or 16).
    if let Some((&selector, body)) = data.split_first() {
        let tag = if selector & 0x80 == 0 { 8 } else { 16 };
        let count = u32::from(selector & 0x7f);
        if let Some(entries) = parse_body(body, count, tag) {
            assert_eq!(entries.len(), count as usize);
            let mut at = 0;
            for e in &entries {
                assert_eq!(e.offset, at);
                assert!(e.key.start == at + ENTRY_HEADER_LEN && e.key.end <= e.value.start.max(e.key.end));
                assert!(e.value.end <= body.len());
                at = e.value.end.max(e.key.end);
            }
            assert_eq!(at, body.len());
        }
    }
});
