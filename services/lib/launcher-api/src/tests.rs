extern crate std;

use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use crate::frame::{decode, encode, Decoder, FrameError, MAX_PAYLOAD};
use crate::*;

fn spec() -> AppSpec {
    AppSpec {
        kernel: Extent {
            offset_mib: 0,
            size_mib: 4,
        },
        memory_mib: 32,
        vcpus: 1,
        cmdline: "ip=10.77.0.5/24".into(),
        disks: vec![DiskUse {
            extent: Extent {
                offset_mib: 4,
                size_mib: 2,
            },
            read_only: false,
        }],
        network: Some("lichenbr0".into()),
    }
}

fn messages() -> Vec<Request> {
    vec![
        Request {
            id: 1,
            op: Op::Hello { version: VERSION },
        },
        Request {
            id: 2,
            op: Op::Create {
                name: "echo".into(),
                spec: spec(),
            },
        },
        Request {
            id: 3,
            op: Op::Stop {
                name: "echo".into(),
                grace_ms: 500,
            },
        },
        Request {
            id: 4,
            op: Op::List,
        },
    ]
}

#[test]
fn requests_and_replies_survive_any_chunking() {
    let stream: Vec<u8> = messages().iter().flat_map(|m| encode(m).unwrap()).collect();
    for chunk in 1..stream.len() {
        let mut decoder = Decoder::new();
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            got.extend(decoder.feed(piece).unwrap());
        }
        let got: Vec<Request> = got.iter().map(|p| decode(p).unwrap()).collect();
        assert_eq!(got, messages(), "chunks of {chunk}");
    }
    let reply = FromLauncher::Reply {
        id: 9,
        result: Err(Refusal::new(
            RefusalKind::OverLimit,
            "64 MiB asked, 32 left",
        )),
    };
    let frame = encode(&reply).unwrap();
    let payloads = Decoder::new().feed(&frame).unwrap();
    assert_eq!(decode::<FromLauncher>(&payloads[0]), Some(reply));
}

#[test]
fn the_frame_layout_is_fixed() {
    let frame = encode(&Request {
        id: 5,
        op: Op::List,
    })
    .unwrap();
    // magic, length 2, then id 5 and variant 5 (List).
    assert_eq!(frame, [0x4c, 0x44, 2, 0, 5, 5]);
}

#[test]
fn a_broken_header_ends_the_stream_for_good() {
    let mut decoder = Decoder::new();
    assert_eq!(decoder.feed(b"X"), Err(FrameError::BadMagic));
    assert_eq!(
        decoder.feed(
            &encode(&Request {
                id: 1,
                op: Op::List
            })
            .unwrap()
        ),
        Err(FrameError::BadMagic)
    );
    let mut decoder = Decoder::new();
    let n = (MAX_PAYLOAD as u16 + 1).to_le_bytes();
    assert_eq!(
        decoder.feed(&[0x4c, 0x44, n[0], n[1]]),
        Err(FrameError::Oversized(MAX_PAYLOAD + 1))
    );
}

#[test]
fn a_payload_that_does_not_decode_is_only_that_messages_error() {
    let mut stream = vec![0x4c, 0x44, 3, 0, 0xff, 0xff, 0xff];
    stream.extend(
        encode(&Request {
            id: 7,
            op: Op::List,
        })
        .unwrap(),
    );
    // Trailing bytes after a valid request are refused too.
    stream.extend([0x4c, 0x44, 3, 0, 7, 5, 0]);
    let payloads = Decoder::new().feed(&stream).unwrap();
    assert_eq!(payloads.len(), 3);
    assert_eq!(decode::<Request>(&payloads[0]), None);
    assert_eq!(
        decode::<Request>(&payloads[1]),
        Some(Request {
            id: 7,
            op: Op::List
        })
    );
    assert_eq!(decode::<Request>(&payloads[2]), None);
}

#[test]
fn an_oversized_message_is_not_written() {
    let mut big = spec();
    big.cmdline = "x".repeat(MAX_PAYLOAD);
    let request = Request {
        id: 1,
        op: Op::Create {
            name: "a".into(),
            spec: big,
        },
    };
    assert_eq!(encode(&request), Err(frame::EncodeError::TooLarge));
}

#[test]
fn names_and_specs_follow_the_rules() {
    for good in ["echo", "0a1b2c3d-0000-4000-8000-000000000000", "a"] {
        assert!(check::name(good).is_ok(), "{good}");
    }
    let long = "a".repeat(check::MAX_NAME + 1);
    for bad in ["", "Echo", "-x", "a/b", "a b", "é", long.as_str()] {
        let refusal = check::name(bad).unwrap_err();
        assert_eq!(refusal.kind, RefusalKind::Invalid, "{bad}");
    }
    assert!(check::spec(&spec()).is_ok());
    let mut zero = spec();
    zero.memory_mib = 0;
    assert_eq!(check::spec(&zero).unwrap_err().kind, RefusalKind::Invalid);
    let mut control = spec();
    control.cmdline = "a\nb".into();
    assert_eq!(
        check::spec(&control).unwrap_err().kind,
        RefusalKind::Invalid
    );
    let mut twice = spec();
    twice.disks.push(twice.disks[0].clone());
    assert_eq!(check::spec(&twice).unwrap_err().kind, RefusalKind::Volume);
    let mut kernel_as_disk = spec();
    kernel_as_disk.disks[0].extent.offset_mib = 3;
    assert_eq!(
        check::spec(&kernel_as_disk).unwrap_err().kind,
        RefusalKind::Volume
    );
    let mut empty = spec();
    empty.disks[0].extent.size_mib = 0;
    assert_eq!(check::spec(&empty).unwrap_err().kind, RefusalKind::Invalid);
    assert!(check::grace(check::MAX_GRACE_MS).is_ok());
    assert!(check::grace(check::MAX_GRACE_MS + 1).is_err());
}

#[test]
fn states_say_whether_they_hold_a_domain() {
    assert!(AppState::Running.has_domain());
    assert!(!AppState::Crashed("exit 3".into()).has_domain());
    assert_eq!(
        AppState::Crashed("exit 3".into()).to_string(),
        "crashed (exit 3)"
    );
}

#[test]
fn user_data_becomes_a_command_line_of_its_lines_without_comments() {
    let text = b"# device-modbus on the node\nbroker=10.0.2.2:1883   \n\n  modbus=10.0.2.2:5020 interval=1s\r\n#qos=1\nmotd=\"a b\"\n";
    let cmdline = check::cmdline_from_user_data(text).unwrap();
    assert_eq!(
        cmdline,
        "broker=10.0.2.2:1883 modbus=10.0.2.2:5020 interval=1s motd=\"a b\""
    );
    let mut good = spec();
    good.cmdline = cmdline;
    assert!(check::spec(&good).is_ok());
    assert_eq!(check::cmdline_from_user_data(b"").unwrap(), "");
    assert_eq!(check::cmdline_from_user_data(b"# only\n\n").unwrap(), "");

    // What the controller may send that is no command line: refused, with the reason.
    let not_utf8 = check::cmdline_from_user_data(b"a=1 \xff").unwrap_err();
    assert!(
        not_utf8.contains("not UTF-8") && not_utf8.contains("byte 4"),
        "{not_utf8}"
    );
    let control = check::cmdline_from_user_data(b"a=1\x1bb=2").unwrap_err();
    assert!(control.contains("control character"), "{control}");
    let fits = "a".repeat(check::MAX_CMDLINE);
    assert_eq!(
        check::cmdline_from_user_data(fits.as_bytes()).unwrap(),
        fits
    );
    let long = ["a".repeat(600), "b".repeat(600)].join("\n");
    let too_long = check::cmdline_from_user_data(long.as_bytes()).unwrap_err();
    assert!(too_long.contains("more than 1024 bytes"), "{too_long}");
}
