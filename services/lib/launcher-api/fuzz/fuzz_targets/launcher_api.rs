//! The launcher's side of the domain service facing a hostile manager: arbitrary bytes, in
//! arbitrary chunks, through the frame decoder, each payload decoded as a request and checked.
//! Nothing may panic; an error is final for the stream.
#![no_main]

use launcher_api::frame::{decode, encode, Decoder};
use launcher_api::{check, Op, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(split).max(1);
    let mut decoder = Decoder::new();
    for piece in bytes.chunks(chunk) {
        let Ok(payloads) = decoder.feed(piece) else {
            assert!(decoder.feed(&[]).is_err(), "a stream error is final");
            return;
        };
        for payload in payloads {
            let Some(request) = decode::<Request>(&payload) else {
                continue;
            };
            if let Op::Create { name, spec } = &request.op {
                let _ = check::name(name);
                let _ = check::spec(spec);
            }
            // What decodes encodes again (canonically, so never longer) into one frame.
            let again = encode(&request).expect("a decoded request fits a frame");
            assert!(again.len() - 4 <= payload.len());
        }
    }
});
