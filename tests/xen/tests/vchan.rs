//! vchan under Xen (QEMU TCG): the kernel's vchan against Xen's own libxenvchan peer,
//! `vchan-socket-proxy`, run in dom0 by the `vchan-interop` hook (xen/dom0/hooks). One boot:
//! 64 MiB each way with the lichen side as server (ring orders 13 and 20), again as client
//! (libxenvchan's orders 10 and 11), sha256 compared on both sides; then a peer killed with
//! SIGKILL must be seen to die.

use lichen_xen_tests::{boot, field, Run};

/// Bytes sent each way.
const MIB: u64 = 64;

/// Boots `vchan-test` next to the dom0 hook.
fn interop(name: &str) -> Run {
    let manifest = format!(
        r#"
name = "{name}"

[test]
hooks = ["vchan-interop"]
settings = {{ vchan-interop-mib = "{MIB}" }}

[services.vchan-test]
image = "vchan-test"
memory = 32
cmdline = "mib={MIB} orders=13,20"
restart = "never"
timeout_s = 600
"#
    );
    boot(name, &manifest, false, 900)
}

/// Checks one phase: the proxy and lichen each saw all the bytes, with the same sha256.
fn assert_phase(log: &str, phase: &str, check: &str) {
    let size = (MIB << 20).to_string();
    let proxy = format!("vchan-interop: {phase} proxy-");
    let sent = field(log, &proxy, "sent").unwrap_or_else(|| panic!("no {phase} line"));
    assert_eq!(field(log, &proxy, "rc"), Some("0"), "{phase}: proxy failed");
    assert_eq!(
        field(log, &proxy, "got"),
        Some(sent),
        "{phase}: echo differs"
    );
    assert_eq!(field(log, &proxy, "bytes"), Some(size.as_str()));
    assert_eq!(
        field(log, check, "sha256"),
        Some(sent),
        "{phase}: lichen's hash"
    );
    assert_eq!(field(log, check, "received"), Some(size.as_str()));
}

/// Lichen as server, then as client, of Xen's vchan-socket-proxy, then a peer that dies.
#[test]
fn vchan_interoperates_with_libxenvchan_in_both_roles_and_sees_a_peer_die() {
    let run = interop("vchan-interop");
    assert_phase(
        &run.log,
        "phase a",
        "check vchan server with libxenvchan client: ok",
    );
    assert_phase(
        &run.log,
        "phase b",
        "check vchan client with libxenvchan server: ok",
    );
    assert!(
        run.log.contains("check vchan dead peer: ok"),
        "the dead peer went unnoticed"
    );
    assert!(run.log.contains("0 check(s) failed"));
    assert_eq!(run.status, Some(0));
}
