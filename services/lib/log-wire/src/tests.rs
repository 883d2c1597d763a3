use super::*;
use alloc::borrow::Cow;
use alloc::vec;
use std::vec::Vec;

fn owned(message: Message<'_>) -> Message<'static> {
    match message {
        Message::Hello {
            boot,
            first,
            service,
        } => Message::Hello {
            boot,
            first,
            service: Cow::Owned(service.into_owned()),
        },
        Message::Line(line) => Message::Line(line.into_owned()),
        Message::Ack { boot, seq } => Message::Ack { boot, seq },
    }
}

fn samples() -> Vec<Message<'static>> {
    vec![
        Message::Hello {
            boot: 0x0123_4567_89ab_cdef,
            first: 5,
            service: Cow::Borrowed("zedagent"),
        },
        Message::Line(Line {
            seq: 7,
            at_ns: 1_500_000,
            wall_ms: 1_796_000_000_000,
            level: 3,
            text: Cow::Borrowed(b"zedagent: config unchanged (304)"),
        }),
        Message::Line(Line {
            seq: 8,
            at_ns: 2,
            wall_ms: 0,
            level: 1,
            text: Cow::Borrowed(b""),
        }),
        Message::Ack { boot: 9, seq: 8 },
    ]
}

fn decode_all(bytes: &[u8], chunk: usize) -> Result<Vec<Message<'static>>, Error> {
    let mut decoder = Decoder::new();
    let mut out = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        decoder.push(piece, |m| out.push(owned(m)))?;
    }
    Ok(out)
}

#[test]
fn frames_round_trip_in_chunks_of_any_size() {
    let mut bytes = Vec::new();
    for message in samples() {
        encode(&message, &mut bytes);
    }
    for chunk in 1..=bytes.len() {
        assert_eq!(
            decode_all(&bytes, chunk).unwrap(),
            samples(),
            "chunk {chunk}"
        );
    }
}

#[test]
fn the_layout_is_as_documented() {
    let mut bytes = Vec::new();
    encode(&Message::Ack { boot: 1, seq: 2 }, &mut bytes);
    assert_eq!(
        bytes,
        [3, 16, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]
    );
}

#[test]
fn long_names_and_texts_are_cut() {
    let mut bytes = Vec::new();
    let name = "é".repeat(MAX_NAME);
    encode(
        &Message::Hello {
            boot: 1,
            first: 0,
            service: Cow::Borrowed(&name),
        },
        &mut bytes,
    );
    let text = vec![b'x'; 2 * MAX_TEXT];
    encode(
        &Message::Line(Line {
            seq: 0,
            at_ns: 0,
            wall_ms: 0,
            level: 2,
            text: Cow::Borrowed(&text),
        }),
        &mut bytes,
    );
    let decoded = decode_all(&bytes, 100).unwrap();
    match &decoded[0] {
        Message::Hello { service, .. } => assert_eq!(service.len(), MAX_NAME),
        other => panic!("{other:?}"),
    }
    match &decoded[1] {
        Message::Line(line) => assert_eq!(line.text.len(), MAX_TEXT),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_frames_are_refused_and_the_error_sticks() {
    let cases: [(&[u8], Error); 6] = [
        (&[9, 0, 0], Error::UnknownKind(9)),
        (&[2, 0xff, 0xff], Error::Oversized(0xffff)),
        (&[3, 1, 0, 0], Error::BadLength { kind: 3, len: 1 }),
        (&[1, 2, 0, 0, 0], Error::BadLength { kind: 1, len: 2 }),
        (
            &[
                1, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff,
            ],
            Error::BadName,
        ),
        (
            &[
                2, 25, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9,
            ],
            Error::BadLevel(9),
        ),
    ];
    for (bytes, error) in cases {
        let mut decoder = Decoder::new();
        let mut seen = 0;
        assert_eq!(decoder.push(bytes, |_| seen += 1), Err(error), "{bytes:?}");
        assert_eq!(seen, 0);
        // Nothing more is taken, even a good frame.
        let mut good = Vec::new();
        encode(&Message::Ack { boot: 1, seq: 1 }, &mut good);
        assert_eq!(decoder.push(&good, |_| seen += 1), Err(error));
        assert_eq!(seen, 0);
    }
}

#[test]
fn a_cut_utf8_text_is_read_lossily() {
    let line = Line {
        seq: 0,
        at_ns: 0,
        wall_ms: 0,
        level: 3,
        text: Cow::Borrowed(&[b'a', 0xc3]),
    };
    assert_eq!(line.text_lossy(), "a\u{fffd}");
}
