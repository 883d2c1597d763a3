//! Storage under Xen (xen/nodes/vault.toml): disks through blkback, the vault keeping a
//! persistent table across a vault crash (`xl destroy`) and across a node reboot.
//!
//! Two boots on the same disks: the first formats the blank persist disk, counts to 16 with the
//! vault destroyed half-way, and checks the block path (disk-test, and the host's view of the
//! disk's file); the second finds everything where it was.

use lichen_xen_tests::{boot, repo};

const MANIFEST: &str = include_str!("../../../xen/nodes/vault.toml");

/// Byte `i` of disk-test's pattern of `seed`.
fn pattern_byte(seed: u64, i: u64) -> u8 {
    let word = (i / 8 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
    word.to_le_bytes()[(i % 8) as usize]
}

#[test]
fn the_vault_keeps_a_table_across_its_crash_and_a_node_reboot() {
    let disks = repo().join("target/node/disks/storage");
    let _ = std::fs::remove_dir_all(&disks);

    let first = boot("storage", MANIFEST, false, 900);
    first.assert_has("vault: formatting the blank persist disk");
    first.assert_has("counter: start 1 at 0");
    first.assert_has("vault-kill: destroyed the vault");
    first.assert_has("vault: 1 objects restored from the persist disk");
    first.assert_has("counter: done at 16 after 1 starts");
    first.assert_has("disk-test: check ok");
    first.assert_has("disk-test: verify ok");
    assert_eq!(first.status, Some(0), "the first boot failed");
    let data = std::fs::read(disks.join("data.img")).unwrap();
    let differs = (0..4u64 << 20).find(|&i| data[i as usize] != pattern_byte(99, i));
    assert_eq!(
        differs, None,
        "disk-test's pattern is not in the host's file"
    );
    let persist = std::fs::read(disks.join("persist.img")).unwrap();
    assert!(
        !persist.windows(13).any(|w| w == b"counter/Count"),
        "the persist disk holds a table name in clear: the vault is not encrypted"
    );

    // Counter starts late, so that the reader meets the vault's copy first.
    let later = MANIFEST.replace("delay_ms=4000", "delay_ms=45000");
    assert_ne!(later, MANIFEST);
    let second = boot("storage", &later, false, 900);
    assert!(
        !second.has("formatting"),
        "the second boot formatted the disk"
    );
    second.assert_has("reader: count 16 after 1 starts (stored)");
    second.assert_has("counter: start 2 at 16");
    second.assert_has("counter: done at 32 after 2 starts");
    assert_eq!(second.status, Some(0), "the second boot failed");
}
