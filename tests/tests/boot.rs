//! Boot tests: hello under QEMU microvm, its clean path and every failure path.

use lichen_tests::{kvm_available, Accel, Run};
use std::time::Duration;

fn hello() -> Run {
    Run::new("hello").timeout(Duration::from_secs(60))
}

#[test]
fn boots_prints_banner_and_exits_zero() {
    let boot = hello().boot();
    boot.expect_status(0);
    let banner = boot.expect("lichen hello 0.1.0 up: entry tsc");
    assert!(banner.text.contains("entry->main"), "{}", banner.text);
    boot.expect("wall clock: ");
    boot.expect("bye (exit 0)");
}

#[test]
fn boots_under_tcg() {
    let boot = hello().accel(Accel::Tcg).boot();
    boot.expect_status(0);
    boot.expect("platform qemu-tcg");
}

#[test]
fn boots_under_kvm_when_available() {
    if !kvm_available() {
        eprintln!("no usable /dev/kvm: skipping the KVM boot (TCG is covered by boots_under_tcg)");
        return;
    }
    let boot = hello().accel(Accel::Kvm).boot();
    boot.expect_status(0);
    boot.expect("platform qemu-kvm");
}

#[test]
fn panic_reports_message_and_location_and_fails() {
    let boot = hello().arg("panic").boot();
    boot.expect_status(101);
    boot.expect("PANIC in hello: hello was asked to panic at services/hello/src/main.rs:");
    boot.expect("backtrace: ");
    assert!(boot.line("bye").is_none());
}

#[test]
fn page_fault_reports_vector_address_and_rip() {
    let boot = hello().arg("fault=page").boot();
    boot.expect_status(102);
    let line = boot.expect("FATAL: CPU exception: page fault (vector 14)");
    assert!(line.text.contains("cr2 0x7f00dead0000"), "{}", line.text);
    assert!(
        line.text.contains("rip 0x1"),
        "rip inside the image: {}",
        line.text
    );
    let trace = boot.expect("backtrace: 0x1");
    assert!(
        trace.text.split_whitespace().count() >= 3,
        "return addresses: {}",
        trace.text
    );
}

#[test]
fn divide_error_reports_vector() {
    let boot = hello().arg("fault=divide").boot();
    boot.expect_status(102);
    boot.expect("FATAL: CPU exception: divide error (vector 0), error code 0x0, rip 0x1");
}

#[test]
fn stack_overflow_hits_guard_page_and_double_faults_on_its_own_stack() {
    let boot = hello().arg("fault=stack").boot();
    boot.expect_status(102);
    boot.expect("FATAL: CPU exception: double fault (vector 8)");
    boot.expect("stack overflow");
}

#[test]
fn heap_exhaustion_is_a_clear_error_not_a_hang() {
    let boot = hello().arg("oom").timeout(Duration::from_secs(60)).boot();
    assert!(!boot.timed_out, "hung:\n{}", boot.output());
    boot.expect_status(101);
    boot.expect("memory allocation of 262144 bytes failed");
}

#[test]
fn timers_fire_in_deadline_order_and_on_time() {
    let boot = hello().arg("ticks=5").arg("period_ms=20").boot();
    boot.expect_status(0);
    boot.expect("10 ticks in deadline order: true");
    // Deadlines: a at 20, 40, 60, 80, 100 ms; b at 30, 60, 90, 120, 150 ms. Check the order of
    // ticks whose deadlines differ.
    let order: Vec<String> = boot
        .lines
        .iter()
        .filter_map(|l| {
            l.text
                .split_once("tick ")
                .map(|(_, rest)| rest.split(" at").next().unwrap_or("").to_string())
        })
        .collect();
    let pos = |t: &str| {
        order
            .iter()
            .position(|o| o == t)
            .unwrap_or_else(|| panic!("no tick {t}: {order:?}"))
    };
    for pair in [
        ("a 1", "b 1"),
        ("b 1", "a 2"),
        ("a 2", "b 2"),
        ("a 4", "b 3"),
        ("b 3", "a 5"),
        ("a 5", "b 4"),
        ("b 4", "b 5"),
    ] {
        assert!(
            pos(pair.0) < pos(pair.1),
            "{} before {}: {order:?}",
            pair.0,
            pair.1
        );
    }
    // Each tick reports its lateness; the guest fails itself beyond 250 ms, and the elapsed
    // time at the last tick must be close to its 150 ms deadline.
    let last = boot.expect("tick b 5 at +");
    let ms: u64 = last
        .text
        .split("at +")
        .nth(1)
        .and_then(|s| s.split(" ms").next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!((150..400).contains(&ms), "b 5 at {ms} ms: {}", last.text);
}

#[test]
fn command_line_reaches_the_service() {
    let boot = hello()
        .arg("ticks=1")
        .arg("motd=\"hello world\"")
        .arg("verbose")
        .arg("exit=7")
        .boot();
    boot.expect_status(7);
    boot.expect(r#"args: ticks="1" motd="hello world" verbose="" exit="7""#);
}

#[test]
fn malformed_command_line_stops_boot_with_a_clear_error() {
    let boot = hello().arg("=oops").boot();
    boot.expect_status(103);
    boot.expect("FATAL: boot failed: bad command line `=oops`: empty key at byte 0");
}

#[test]
fn bad_argument_value_is_reported() {
    let boot = hello().arg("ticks=many").boot();
    boot.expect_status(2);
    boot.expect("bad value for `ticks`: `many`");
}

#[test]
fn unknown_fault_kind_is_reported() {
    let boot = hello().arg("fault=cosmic-ray").boot();
    boot.expect_status(2);
    boot.expect("unknown fault kind `cosmic-ray`");
}
