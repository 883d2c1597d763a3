//! A hostile peer on a multiplexed bus channel: arbitrary bytes, in arbitrary chunks, after a
//! proper hello (so that the fuzzer reaches the streams) or raw. The multiplexer may refuse the
//! connection, never panic, and never hold more than its window per stream.
#![no_main]

use bus_io::mux::state::{Mux, Read, Slot, WINDOW};
use bus_io::mux::wire::{encode, encode_hello, Decoder, Frame, Hello};
use libfuzzer_sys::fuzz_target;

fn hello(publishes: &[&str], subscribes: &[&str]) -> Hello {
    Hello {
        service: "fuzz".into(),
        publishes: publishes.iter().map(|t| (t.to_string(), 1)).collect(),
        subscribes: subscribes.iter().map(|t| (t.to_string(), 1)).collect(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(selector & 0x3f).max(1);
    let mut mux = Mux::new(hello(&["me/A", "me/B"], &["peer/X"]));
    let mut stream = Vec::new();
    if selector & 0x80 != 0 {
        let peer = encode_hello(&hello(&["peer/X", "peer/Y"], &["me/A"]));
        encode(&Frame::Hello(&peer), &mut stream);
    }
    stream.extend_from_slice(rest);

    let mut decoder = Decoder::default();
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    for piece in stream.chunks(chunk) {
        if mux.receive_bytes(&mut decoder, piece).is_err() {
            return;
        }
        // The application side: open, accept, read, write, as a service would.
        if selector & 0x40 != 0 {
            if let Some(generation) = mux.open(0) {
                let _ = mux.write(Slot::Subscribed(0), generation, piece);
            }
        }
        for index in 0..2 {
            if let Some(generation) = mux.accept(index) {
                let _ = mux.write(Slot::Serving(index), generation, piece);
                while let Read::Data(n) = mux.read(Slot::Serving(index), generation, &mut buf) {
                    assert!(n <= buf.len());
                }
                mux.detach(Slot::Serving(index), generation);
            }
        }
        out.clear();
        mux.fill(&mut out);
        // At most the hello, each of the three streams' window of data with its headers, and
        // a few control frames.
        let window = WINDOW as usize;
        assert!(out.len() <= 32 * 1024 + 5 + 3 * (window + (window / 4096 + 1) * 5) + 4096);
    }
});
