//! Arbitrary app volume heads as a Linux VM's bundle header (the volume is filled from a
//! datastore: untrusted input to dom0): parsing may refuse, never panic; a header that parses
//! names ranges that lie, page-rounded, after the header and inside the volume, and that do not
//! overlap.
#![no_main]

use lichen_launcher::bundle::{parse, PAGE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes choose the volume's size; the rest is its head.
    let (size, head) = match data.split_first_chunk::<8>() {
        Some((size, head)) => (u64::from_le_bytes(*size), head),
        None => return,
    };
    let Ok(bundle) = parse(head, size) else {
        return;
    };
    let (offset, len) = bundle.kernel_pages();
    assert!(offset >= PAGE && offset % PAGE == 0 && len > 0);
    assert!(offset.checked_add(len).is_some_and(|end| end <= size));
    if let Some((at, n)) = bundle.initramfs {
        assert!(at >= PAGE && at % PAGE == 0 && n % PAGE == 0);
        let end = at.checked_add(n).expect("checked by parse");
        assert!(end <= size);
        assert!(end <= offset || at >= offset + len, "overlap");
    }
    assert!(!bundle.cmdline.chars().any(char::is_control));
});
