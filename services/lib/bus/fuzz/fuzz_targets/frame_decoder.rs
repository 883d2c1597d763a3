//! Throws arbitrary bytes, in arbitrary chunks, at the frame decoder and at both protocol
//! engines: none of them may panic, and the decoder may only hand out payloads within its limit.
#![no_main]

use bus::{frame::encode_frame, FrameDecoder, Publisher, Subscriber, Topic, Volatile};
use libfuzzer_sys::fuzz_target;
use serde::ser::{Serialize, SerializeTuple, Serializer};

const MAX_PAYLOAD: usize = 4096;
const TOPIC: Topic = Topic::new("fuzz/values", 1);

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size, so that every split of the stream gets explored, and
    // whether the rest is the raw stream or payloads to frame properly (so that the fuzzer gets
    // past the checksums to the messages).
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(selector & 0x7f).max(1);
    let stream = if selector & 0x80 == 0 { rest.to_vec() } else { framed(rest) };

    let mut decoder = FrameDecoder::with_max_payload(MAX_PAYLOAD);
    let mut subscriber = Subscriber::<(u32, String)>::new(TOPIC);
    subscriber.connect();
    let mut publisher = Publisher::<(u32, String)>::new(TOPIC, Volatile).unwrap();
    let session = publisher.connect();

    for mut piece in stream.chunks(chunk) {
        let _ = subscriber.receive(piece, |_| {});
        let _ = publisher.receive(session, piece);
        while let Ok(Some(payload)) = decoder.decode(&mut piece) {
            assert!(payload.len() <= MAX_PAYLOAD);
        }
    }
});

/// Frames each payload of `data`, read as a length byte followed by that many bytes.
fn framed(mut data: &[u8]) -> Vec<u8> {
    let mut stream = Vec::new();
    while let Some((&length, rest)) = data.split_first() {
        let (payload, rest) = rest.split_at(usize::from(length).min(rest.len()));
        encode_frame(&Raw(payload), &mut stream).unwrap();
        data = rest;
    }
    stream
}

/// Bytes that postcard writes as they are, without a length.
struct Raw<'a>(&'a [u8]);

impl Serialize for Raw<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(self.0.len())?;
        self.0.iter().try_for_each(|byte| tuple.serialize_element(byte))?;
        tuple.end()
    }
}
