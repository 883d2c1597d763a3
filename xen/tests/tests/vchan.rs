//! vchan under Xen (QEMU TCG): the kernel's vchan against Xen's own libxenvchan peer,
//! `vchan-socket-proxy`, run in dom0 by the `vchan-interop` hook (xen/dom0/hooks). One boot:
//! 64 MiB each way with the lichen side as server (ring orders 13 and 20), again as client
//! (libxenvchan's orders 10 and 11), sha256 compared on both sides; then a peer killed with
//! SIGKILL must be seen to die.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn boot(name: &str, manifest: &str, timeout_s: u32) -> (Option<i32>, String) {
    let dir = repo().join("target/xen/test-manifests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, manifest).unwrap();
    let output = Command::new(repo().join("scripts/run-xen"))
        .arg(&path)
        .args(["--timeout", &timeout_s.to_string()])
        .output()
        .expect("cannot run scripts/run-xen");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{log}");
    (output.status.code(), log)
}

/// The word after `key` on the first line holding `marker`.
fn field<'a>(log: &'a str, marker: &str, key: &str) -> Option<&'a str> {
    let line = log.lines().find(|l| l.contains(marker))?;
    let mut words = line.split_whitespace();
    words.find(|w| *w == key)?;
    words.next()
}

#[test]
fn vchan_interoperates_with_libxenvchan_in_both_roles_and_sees_a_peer_die() {
    let manifest = r#"
# dom0-hook: vchan-interop
# vchan-interop-mib: 64
name = "vchan-interop"

[services.vchan-test]
image = "vchan-test"
memory = 32
cmdline = "mib=64 orders=13,20"
restart = "never"
timeout_s = 600
"#;
    let (status, log) = boot("vchan-interop", manifest, 900);
    let size = (64u64 << 20).to_string();
    for (phase, check) in [
        ("phase a", "check vchan server with libxenvchan client: ok"),
        ("phase b", "check vchan client with libxenvchan server: ok"),
    ] {
        let proxy = format!("vchan-interop: {phase} ");
        let sent = field(&log, &proxy, "sent").unwrap_or_else(|| panic!("no {phase} line"));
        assert_eq!(
            field(&log, &proxy, "rc"),
            Some("0"),
            "{phase}: proxy failed"
        );
        assert_eq!(
            field(&log, &proxy, "got"),
            Some(sent),
            "{phase}: echo differs"
        );
        assert_eq!(field(&log, &proxy, "bytes"), Some(size.as_str()));
        assert_eq!(
            field(&log, check, "sha256"),
            Some(sent),
            "{phase}: lichen's hash"
        );
        assert_eq!(field(&log, check, "received"), Some(size.as_str()));
    }
    assert!(
        log.contains("check vchan dead peer: ok"),
        "the dead peer went unnoticed"
    );
    assert!(log.contains("0 check(s) failed"));
    assert_eq!(status, Some(0));
}
