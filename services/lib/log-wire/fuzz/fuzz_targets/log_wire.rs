//! A hostile service on the logs pillar's end of a log channel: arbitrary bytes, in arbitrary
//! chunks. The decoder may refuse the stream, never panic; every message it returns encodes
//! back to a frame that decodes to the same message; and the pillar's per-source accounting
//! (`newlog::Source`) takes whatever sequence numbers arrive without panicking or counting more
//! lines lost than the numbers allow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use log_wire::{encode, Decoder, Message};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(selector & 0x3f).max(1);
    let mut decoder = Decoder::new();
    let mut source = newlog::Source::new("fuzz");
    for piece in rest.chunks(chunk) {
        let result = decoder.push(piece, |message| {
            let mut again = Vec::new();
            encode(&message, &mut again);
            let mut check = Decoder::new();
            let mut seen = 0;
            check
                .push(&again, |decoded| {
                    assert_eq!(decoded, message);
                    seen += 1;
                })
                .expect("an encoded message decodes");
            assert_eq!(seen, 1);
            match message {
                Message::Hello { boot, first, .. } => source.hello(boot, first),
                Message::Line(line) => {
                    let before = source.lost();
                    let _ = source.accept(line.seq);
                    assert!(source.lost() >= before);
                }
                Message::Ack { .. } => {}
            }
        });
        if result.is_err() {
            break;
        }
    }
});
