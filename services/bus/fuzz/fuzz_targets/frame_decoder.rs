//! Throws arbitrary bytes, in arbitrary chunks, at the frame decoder and at both protocol
//! engines: none of them may panic, and the decoder may only hand out payloads within its limit.
#![no_main]

use bus::{FrameDecoder, Publisher, Subscriber, Topic, Volatile};
use libfuzzer_sys::fuzz_target;

const MAX_PAYLOAD: usize = 4096;
const TOPIC: Topic = Topic::new("fuzz/values", 1);

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size, so that every split of the stream gets explored.
    let Some((&chunk, stream)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);

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
