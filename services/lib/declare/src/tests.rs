//! Round trips through the note and the refusals of the parser.

use alloc::{vec, vec::Vec};

use crate::*;

const SEQ: TopicDecl = TopicDecl {
    name: "ping/Seq",
    schema: 1,
    persistence: Persistence::Volatile,
};
const CONFIG: TopicDecl = TopicDecl {
    name: "zedagent/EdgeDevConfig",
    schema: 12,
    persistence: Persistence::Persistent,
};
const ACK: TopicDecl = TopicDecl {
    name: "pong/Ack",
    schema: 4_000_000_000,
    persistence: Persistence::Volatile,
};
const DECL: Declaration = Declaration {
    memory_floor_mib: 8,
    needs: Needs {
        uplink: true,
        disk: false,
        modules: true,
    },
    publishes: &[SEQ, CONFIG],
    subscribes: &[ACK],
    watches: &[WATCHED],
};
const WATCHED: TopicDecl = TopicDecl {
    name: "nim/DeviceNetworkStatus",
    schema: 3,
    persistence: Persistence::Volatile,
};

/// Built at compile time, as `kernel::service!` does.
const NOTE: [u8; note_len(&DECL)] = note(&DECL);

/// A minimal ELF file whose one PT_NOTE segment holds `notes`.
fn elf_with_notes(notes: &[u8]) -> Vec<u8> {
    let mut elf = vec![0u8; 64 + 56];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2;
    elf[5] = 1;
    elf[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
    elf[54..56].copy_from_slice(&56u16.to_le_bytes()); // phentsize
    elf[56..58].copy_from_slice(&1u16.to_le_bytes()); // phnum
    elf[64..68].copy_from_slice(&4u32.to_le_bytes()); // PT_NOTE
    elf[64 + 8..64 + 16].copy_from_slice(&120u64.to_le_bytes()); // offset
    elf[64 + 32..64 + 40].copy_from_slice(&(notes.len() as u64).to_le_bytes()); // filesz
    elf.extend_from_slice(notes);
    elf
}

/// Another owner's note (Xen's), which must be skipped.
fn xen_note() -> Vec<u8> {
    let mut n = Vec::new();
    n.extend_from_slice(&4u32.to_le_bytes());
    n.extend_from_slice(&4u32.to_le_bytes());
    n.extend_from_slice(&18u32.to_le_bytes());
    n.extend_from_slice(b"Xen\0");
    n.extend_from_slice(&0x0010_0000u32.to_le_bytes());
    n
}

#[test]
fn a_declaration_survives_the_note() {
    let text = core::str::from_utf8(&NOTE[20..])
        .unwrap()
        .trim_end_matches('\0');
    assert_eq!(
        text,
        "lichen-declaration 1\nmemory-floor-mib 8\nneeds uplink modules\n\
         publishes ping/Seq 1 volatile\npublishes zedagent/EdgeDevConfig 12 persistent\n\
         subscribes pong/Ack 4000000000\nwatches nim/DeviceNetworkStatus 3\n"
    );
    let mut notes = xen_note();
    notes.extend_from_slice(&NOTE);
    let elf = elf_with_notes(&notes);
    let parsed = parse(find_note(&elf).unwrap()).unwrap();
    assert_eq!(parsed.memory_floor_mib, 8);
    assert_eq!(parsed.needs, DECL.needs);
    let names: Vec<_> = parsed
        .publishes
        .iter()
        .map(|t| (t.name.as_str(), t.schema, t.persistence))
        .collect();
    assert_eq!(
        names,
        [
            ("ping/Seq", 1, Persistence::Volatile),
            ("zedagent/EdgeDevConfig", 12, Persistence::Persistent)
        ]
    );
    assert_eq!(parsed.subscribes[0].name, "pong/Ack");
    assert_eq!(parsed.subscribes[0].schema, 4_000_000_000);
    assert_eq!(parsed.watches[0].name, "nim/DeviceNetworkStatus");
}

#[test]
fn a_minimal_declaration_has_no_needs_and_no_topics() {
    const MIN: Declaration = Declaration::minimal(2);
    let note: [u8; note_len(&MIN)] = note(&MIN);
    let parsed = parse(find_note(&elf_with_notes(&note)).unwrap()).unwrap();
    assert_eq!(
        parsed,
        Parsed {
            memory_floor_mib: 2,
            needs: Needs::NONE,
            publishes: vec![],
            subscribes: vec![],
            watches: vec![]
        }
    );
}

#[test]
fn images_without_a_note_or_with_two_are_refused() {
    assert_eq!(
        find_note(&elf_with_notes(&xen_note())),
        Err(DeclError::NoNote)
    );
    let mut two = NOTE.to_vec();
    two.extend_from_slice(&NOTE);
    assert_eq!(find_note(&elf_with_notes(&two)), Err(DeclError::TwoNotes));
}

#[test]
fn broken_elf_files_are_refused_not_read_out_of_bounds() {
    let good = elf_with_notes(&NOTE);
    for len in 0..good.len() {
        assert!(
            find_note(&good[..len]).is_err(),
            "accepted a file cut at {len}"
        );
    }
    let mut bad = good.clone();
    bad[64 + 32..64 + 40].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(find_note(&bad), Err(DeclError::Elf(_))));
    let mut bad = good.clone();
    bad[120..124].copy_from_slice(&u32::MAX.to_le_bytes()); // namesz
    assert!(matches!(find_note(&bad), Err(DeclError::Elf(_))));
    let mut bad = good;
    bad[32..40].copy_from_slice(&(u64::MAX - 8).to_le_bytes()); // phoff
    assert!(matches!(find_note(&bad), Err(DeclError::Elf(_))));
}

fn line_error(text: &str) -> (usize, alloc::string::String) {
    match parse(text.as_bytes()) {
        Err(DeclError::Line { line, reason }) => (line, reason),
        other => panic!("{text:?} gave {other:?}"),
    }
}

#[test]
fn bad_lines_are_named() {
    let h = "lichen-declaration 1\nmemory-floor-mib 4\n";
    for (text, line, says) in [
        ("lichen-declaration 2\n", 1, "expected"),
        (&*alloc::format!("{h}memory-floor-mib 5\n"), 3, "second"),
        ("lichen-declaration 1\nmemory-floor-mib -1\n", 2, "decimal"),
        ("lichen-declaration 1\nmemory-floor-mib 007\n", 2, "decimal"),
        (
            "lichen-declaration 1\nmemory-floor-mib 4294967296\n",
            2,
            "decimal",
        ),
        (&*alloc::format!("{h}needs uplink uplink\n"), 3, "twice"),
        (&*alloc::format!("{h}needs gpu\n"), 3, "unknown need"),
        (&*alloc::format!("{h}publishes a/B 1\n"), 3, "expected"),
        (
            &*alloc::format!("{h}publishes a/B 1 forever\n"),
            3,
            "persistence",
        ),
        (
            &*alloc::format!("{h}subscribes a/B 1 volatile\n"),
            3,
            "expected",
        ),
        (&*alloc::format!("{h}subscribes Nim/X 1\n"), 3, "lowercase"),
        (
            &*alloc::format!("{h}subscribes nim 1\n"),
            3,
            "<publisher>/<Table>",
        ),
        (&*alloc::format!("{h}subscribes nim/a b 1\n"), 3, "expected"),
        (
            &*alloc::format!("{h}subscribes nim/X 1\nsubscribes nim/X 2\n"),
            4,
            "twice",
        ),
        (&*alloc::format!("{h}frobnicate\n"), 3, "unknown item"),
        (
            &*alloc::format!("{h}watches a/B 1 volatile\n"),
            3,
            "expected `watches",
        ),
        (
            &*alloc::format!("{h}publishes a/B  1 volatile\n"),
            3,
            "expected",
        ),
    ] {
        let (at, reason) = line_error(text);
        assert_eq!(at, line, "{text:?}: {reason}");
        assert!(reason.contains(says), "{text:?}: {reason}");
    }
}

#[test]
fn missing_or_oversized_declarations_are_refused() {
    assert_eq!(parse(b""), Err(DeclError::Missing(HEADER)));
    assert_eq!(
        parse(b"lichen-declaration 1\n"),
        Err(DeclError::Missing("memory-floor-mib"))
    );
    assert_eq!(parse(&[0xff, 0xfe]), Err(DeclError::NotText));
    assert_eq!(
        parse(&[b'a'; MAX_TEXT + 1]),
        Err(DeclError::TooLong(MAX_TEXT + 1))
    );
}

#[test]
fn topic_names_follow_the_rule() {
    for good in ["nim/DeviceNetworkStatus", "zedagent/a.b-c_d", "x/Y"] {
        assert_eq!(check_topic_name(good), Ok(()), "{good}");
    }
    for bad in [
        "",
        "/X",
        "nim/",
        "nim/a/b",
        "Nim/X",
        "nim/x y",
        "1nim/X",
        &"a/".repeat(60),
    ] {
        assert!(check_topic_name(bad).is_err(), "{bad:?} accepted");
    }
}
