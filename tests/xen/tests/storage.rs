//! Storage under Xen (xen/nodes/vault.toml): disks through blkback, the vault keeping a
//! persistent table across a vault crash (`xl destroy`) and across a node reboot.
//!
//! Two boots on the same disks: the first formats the blank persist disk, counts to 16 with the
//! vault destroyed half-way, and checks the block path (disk-test, and the host's view of the
//! disk's file); the second finds everything where it was.
//!
//! In both boots core-data (EdgeX, services/core-data) with `persist=vault` keeps its events in
//! the vault: the `edgex-persist` hook POSTs 5 events over dom0's bridge and waits until they
//! are durable. The second boot's core-data starts with the first's events; it stays within
//! `max_events=8`, and the hook destroys its domain and counts what the restarted core-data
//! serves (only in the second boot, where counter's delay leaves the time for it).

use lichen_xen_tests::{boot, repo};

const MANIFEST: &str = include_str!("../../../xen/nodes/vault.toml");

/// The vault's node with core-data added (not a daemon: the `edgex-persist` hook stops the
/// node once counter is done and its own checks ran).
fn manifest() -> String {
    let hooks = r#"hooks = ["vault-kill"]
settings = { vault-kill-after = "3" }"#;
    assert!(MANIFEST.contains(hooks));
    MANIFEST.replace(
        hooks,
        r#"hooks = ["vault-kill", "edgex-persist"]
settings = { vault-kill-after = "3", edgex-persist-events = "5", edgex-persist-restart = "no" }"#,
    ) + r#"
[services.core-data]
image = "core-data"
memory = 16
network = "bridge"
cmdline = "persist=vault max_events=8 broker=10.77.0.1:1883 stats=60s"
restart = "always"
max_restarts = 3
backoff_ms = 200
"#
}

/// Byte `i` of disk-test's pattern of `seed`.
fn pattern_byte(seed: u64, i: u64) -> u8 {
    let word = (i / 8 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
    word.to_le_bytes()[(i % 8) as usize]
}

#[test]
fn the_vault_keeps_a_table_across_its_crash_and_a_node_reboot() {
    let disks = repo().join("target/node/disks/storage");
    let _ = std::fs::remove_dir_all(&disks);

    let manifest = manifest();
    let first = boot("storage", &manifest, false, 900);
    first.assert_has("vault: formatting the blank persist disk");
    first.assert_has("counter: start 1 at 0");
    first.assert_has("vault-kill: destroyed the vault");
    // The count, and core-data's events if it had posted them when the vault was destroyed.
    let restored: u32 = first
        .log
        .lines()
        .rfind(|l| l.contains("objects restored from the persist disk"))
        .and_then(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "objects")?;
            words.get(at.checked_sub(1)?)?.parse().ok()
        })
        .expect("the restarted vault restored nothing");
    assert!(
        (1..=6).contains(&restored),
        "the vault restored {restored} objects"
    );
    first.assert_has("counter: done at 16 after 1 starts");
    first.assert_has("disk-test: check ok");
    first.assert_has("disk-test: verify ok");
    first.assert_has("core-data: 0 events restored from the vault");
    first.assert_has("edgex-persist: count before 0 posted 5 after 5 durable");
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
    assert!(
        !persist.windows(7).any(|w| w == b"Meter-9"),
        "the persist disk holds an event in clear"
    );

    // Counter starts late, so that the reader meets the vault's copy first.
    let later = manifest.replace("delay_ms=4000", "delay_ms=45000").replace(
        r#"edgex-persist-restart = "no""#,
        r#"edgex-persist-restart = "yes""#,
    );
    assert_ne!(later, manifest);
    let second = boot("storage", &later, false, 900);
    assert!(
        !second.has("formatting"),
        "the second boot formatted the disk"
    );
    second.assert_has("reader: count 16 after 1 starts (stored)");
    second.assert_has("counter: start 2 at 16");
    second.assert_has("counter: done at 32 after 2 starts");
    // core-data starts with the first boot's events and keeps the newest 8 of 10.
    second.assert_has("core-data: 5 events restored from the vault");
    second.assert_has("edgex-persist: count before 5 posted 5 after 8 restored 8");
    second.assert_has("core-data: 8 events restored from the vault");
    assert_eq!(second.status, Some(0), "the second boot failed");
}
