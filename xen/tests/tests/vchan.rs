//! vchan under Xen (QEMU TCG): the kernel's vchan against Xen's own libxenvchan peer,
//! `vchan-socket-proxy`, run in dom0 by the `vchan-interop` hook (xen/dom0/hooks). One boot:
//! 64 MiB each way with the lichen side as server (ring orders 13 and 20), again as client
//! (libxenvchan's orders 10 and 11), sha256 compared on both sides; then a peer killed with
//! SIGKILL must be seen to die.

use lichen_xen_tests::{boot, field};

/// Lichen as the server, Xen's vchan-socket-proxy as the client: 64 MiB each way.
#[test]
#[ignore = "intermittent triple fault of lichen guests under Xen in QEMU TCG during long event-heavy runs (docs/vchan.md)"]
fn vchan_server_interoperates_with_libxenvchan() {
    let manifest = r#"
# dom0-hook: vchan-interop
# vchan-interop-mib: 64
name = "vchan-server"

[services.vchan-test]
image = "vchan-test"
memory = 32
cmdline = "mib=64 orders=13,20 phases=a linger_s=10"
restart = "never"
timeout_s = 600
"#;
    let run = boot("vchan-server", manifest, false, 900);
    let size = (64u64 << 20).to_string();
    let proxy = "vchan-interop: phase a proxy-";
    let check = "check vchan server with libxenvchan client: ok";
    let sent = field(&run.log, proxy, "sent").expect("no phase a line");
    assert_eq!(field(&run.log, proxy, "rc"), Some("0"), "proxy failed");
    assert_eq!(field(&run.log, proxy, "got"), Some(sent), "echo differs");
    assert_eq!(field(&run.log, proxy, "bytes"), Some(size.as_str()));
    assert_eq!(
        field(&run.log, check, "sha256"),
        Some(sent),
        "lichen's hash"
    );
    assert_eq!(field(&run.log, check, "received"), Some(size.as_str()));
    assert!(run.log.contains("0 check(s) failed"));
    assert_eq!(run.status, Some(0));
}

#[test]
#[ignore = "lichen as the vchan client still triple-faults intermittently under Xen in QEMU TCG (docs/vchan.md)"]
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
    let run = boot("vchan-interop", manifest, false, 900);
    let (status, log) = (run.status, run.log);
    let size = (64u64 << 20).to_string();
    for (phase, check) in [
        ("phase a", "check vchan server with libxenvchan client: ok"),
        ("phase b", "check vchan client with libxenvchan server: ok"),
    ] {
        let proxy = format!("vchan-interop: {phase} proxy-");
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
