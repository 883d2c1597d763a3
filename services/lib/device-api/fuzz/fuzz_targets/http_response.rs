//! HTTP responses from the controller (or whoever answers): `device_api::http::parse` on any
//! bytes, fed in growing prefixes as a stream arrives. Checked: no panic; a complete response
//! uses no more than it was given and has a body within the limit; once complete on a prefix,
//! the same response on every longer input; a prefix never errs where the whole input parses
//! (partial means "wait", not "refuse").
#![no_main]

use device_api::http::{parse, Parsed};
use libfuzzer_sys::fuzz_target;

const MAX_BODY: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let whole = parse(data, MAX_BODY, false);
    if let Ok(Parsed::Complete(response, used)) = &whole {
        assert!(*used <= data.len());
        assert!(response.body.len() <= MAX_BODY);
    }
    let step = 1 + data.first().map_or(0, |b| *b as usize % 17);
    let mut first_complete = None;
    for end in (0..=data.len()).step_by(step) {
        match parse(&data[..end], MAX_BODY, false) {
            Ok(Parsed::Complete(response, used)) => {
                assert!(used <= end);
                if first_complete.is_none() {
                    first_complete = Some((response, used));
                }
            }
            Ok(Parsed::Partial) => assert!(first_complete.is_none(), "complete, then partial"),
            Err(_) => {}
        }
    }
    if let (Some(first), Ok(Parsed::Complete(response, used))) = (first_complete, whole) {
        assert_eq!(
            first,
            (response, used),
            "a longer input changed a complete response"
        );
    }
    let _ = parse(data, MAX_BODY, true);
});
