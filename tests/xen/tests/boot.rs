//! Boots nodes under Xen in QEMU (TCG) with `scripts/run-xen` and checks what the launcher saw.
//!
//! Each boot takes about a minute here, so boots run one at a time. The `probe` tests use the
//! assembly fixture in xen/fixtures (no lichen kernel needed); the `hello` tests boot the real
//! image (built by scripts/run-xen).

use lichen_xen_tests::{boot, repo};

#[test]
fn a_bad_manifest_is_refused_before_anything_boots() {
    let manifest = r#"
        [services.probe]
        image = "probe"
        memory = 1
        colour = "green"
    "#;
    let run = boot("bad-field", manifest, true, 60);
    assert_eq!(run.status, Some(2));
    run.assert_has("unknown field `colour`");
    assert!(!run.has("lichen-dom0:"), "nothing should have booted");

    let manifest = r#"
        [services.probe]
        image = "no-such-image"
        memory = 1
        [[channels]]
        name = "c"
        server = "probe"
        client = "ghost"
    "#;
    let run = boot("bad-values", manifest, true, 60);
    assert_eq!(run.status, Some(2));
    run.assert_has("image `no-such-image` not found");
    run.assert_has("channel `c`: no service named `ghost`");
    run.assert_has("memory = 1 MiB is outside");
}

/// One boot for both probe scenarios: a clean poweroff, and a crash restarted per policy.
#[test]
fn probe_poweroff_is_a_success_and_a_crash_is_restarted_then_failed() {
    let manifest = r#"
        name = "probe-node"

        [services.calm]
        image = "probe"
        memory = 4
        cmdline = 'motd="two words" path=a\b'
        restart = "never"

        [services.panicky]
        image = "probe"
        memory = 4
        cmdline = "please panic"
        max_restarts = 1
        backoff_ms = 200

        [[channels]]
        name = "chat"
        server = "calm"
        client = "panicky"
    "#;
    let run = boot("probe", manifest, true, 400);
    assert_eq!(run.status, Some(1), "a failed service fails the node");

    // The clean one: booted as a PVH domain, console prefixed, command line passed intact.
    run.assert_has(r#"calm | probe: up, cmdline: motd="two words" path=a\b"#);
    run.assert_has("calm | probe: powering off");
    run.assert_has("launcher: calm: exited successfully");
    assert!(run
        .log
        .lines()
        .any(|l| l.contains("launcher: calm: domain") && l.contains("powered off")));

    // The crashing one: restarted once after a backoff, then marked failed.
    run.assert_has("panicky | probe: panicking as asked");
    assert_eq!(
        run.count("launcher: panicky: create requested"),
        2,
        "{}",
        run.log
    );
    assert_eq!(run.count("crashed; restart 1 in 0.2 s"), 1, "{}", run.log);
    run.assert_has("launcher: panicky: failed: crashed; gave up after 1 restarts");
    run.assert_has("node `probe-node` finished: failed: panicky");

    // The status table's last word on both.
    let table: Vec<&str> = run
        .log
        .lines()
        .filter(|l| l.contains("  panicky  ") || l.contains("  calm  "))
        .collect();
    let last_panicky = table.iter().rev().find(|l| l.contains("panicky")).unwrap();
    let last_calm = table.iter().rev().find(|l| l.contains("calm")).unwrap();
    assert!(
        last_panicky.contains("failed") && last_panicky.contains(" 1 "),
        "{last_panicky}"
    );
    assert!(
        last_calm.contains("exited") && last_calm.contains("4 MiB"),
        "{last_calm}"
    );
}

#[test]
fn hello_boots_as_a_pvh_domain_and_exits_cleanly() {
    // One tick per task: hello checks its timers' order and lateness, which a loaded TCG host can
    // upset; that is the guest's own test, not this one's.
    let manifest = std::fs::read_to_string(repo().join("xen/nodes/hello.toml"))
        .unwrap()
        .replace("cmdline = \"\"", "cmdline = \"ticks=1\"");
    assert!(
        manifest.contains("ticks=1"),
        "xen/nodes/hello.toml changed shape"
    );
    let run = boot("hello", &manifest, false, 300);
    assert_eq!(run.status, Some(0));
    run.assert_has("hello | ");
    assert!(run
        .log
        .lines()
        .any(|l| l.contains("launcher: hello: domain") && l.contains("powered off")));
    run.assert_has("launcher: hello: exited successfully");
    run.assert_has("node `hello` finished: no service failed");
}

#[test]
fn a_panicking_hello_is_restarted_per_policy_then_failed() {
    let manifest = r#"
        name = "panic"
        [services.hello]
        image = "hello"
        memory = 16
        cmdline = "panic"
        max_restarts = 2
        backoff_ms = 200
        timeout_s = 60
    "#;
    let run = boot("hello-panic", manifest, false, 400);
    assert_eq!(run.status, Some(1));
    assert_eq!(
        run.count("launcher: hello: create requested"),
        3,
        "{}",
        run.log
    );
    run.assert_has("restart 1 in 0.2 s");
    run.assert_has("restart 2 in 0.4 s");
    run.assert_has("launcher: hello: failed:");
    run.assert_has("gave up after 2 restarts");
}

#[test]
fn kernel_xen_backend_passes_its_selftest_against_real_xen() {
    let manifest = std::fs::read_to_string(repo().join("xen/nodes/selftest.toml")).unwrap();
    let run = boot("selftest", &manifest, false, 300);
    for check in [
        "check xenstore read/write: ok",
        "check xenstore directory: ok",
        "check xenstore watch: ok",
        "check xenstore transaction: ok",
        "check xenstore permissions: ok",
        "check grant table: ok",
        "check wall clock: ok",
        "check console input: ok \"hello from dom0\"",
        "0 check(s) failed",
    ] {
        run.assert_has(check);
    }
    assert_eq!(run.status, Some(0), "{}", run.log);
    run.assert_has("launcher: selftest: exited successfully");
}
