//! The store on a real virtio-blk disk, killed at random moments: `store-crash` (an encrypted
//! vault under QEMU microvm) commits in a loop; QEMU gets SIGKILL at a random time; the next
//! boot checks the whole store (tests/images/store-crash) and the host checks that the counter
//! it finds is at least the last commit the guest reported done (nothing committed lost) and
//! at most one more (the commit in flight).

use lichen_tests::{run_console, Accel, Run};
use std::path::PathBuf;
use std::time::Duration;

/// The vault key, as a boot module would hand it over.
const KEY: &str = "key=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

struct DiskFile(PathBuf);

impl Drop for DiskFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn guest(disk: &DiskFile, mode: &str) -> Run {
    Run::new("store-crash")
        .accel(Accel::Tcg)
        .script_option("--disk", Some(&format!("{},name=data", disk.0.display())))
        .arg(&format!("mode={mode}"))
        .arg(KEY)
}

/// A number from the console line `prefix N`.
fn number_after(text: &str, prefix: &str) -> Option<u64> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[test]
fn sigkill_at_random_moments_loses_nothing_committed() {
    let cycles: u64 = std::env::var("STORE_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let path = std::env::temp_dir().join(format!("lichen-store-crash-{}.img", std::process::id()));
    std::fs::File::create(&path)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    let disk = DiskFile(path);
    let formatted = guest(&disk, "format").boot();
    formatted.expect("store-crash: formatted");
    formatted.expect_status(0);

    let argv = guest(&disk, "run").command();
    let mut rng = 0x5eed_u64 ^ u64::from(std::process::id());
    let mut committed = 0u64; // the last commit the guest reported done
    let mut kills_mid_run = 0;
    let mut verified = 0;
    for cycle in 0..cycles {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let kill_after = Duration::from_millis(300 + rng % 1700);
        let boot = run_console(&argv, kill_after, None);
        let out = boot.output();
        assert!(
            !out.contains("MISMATCH")
                && !out.contains("store-crash: open:")
                && !out.contains("store-crash: commit "),
            "cycle {cycle}: the guest found a problem:\n{out}"
        );
        if let Some(line) = boot.line("store-crash: opened counter=") {
            let found = number_after(&line.text, "counter=").unwrap();
            assert!(
                found >= committed,
                "cycle {cycle}: counter {found} after commit {committed} was reported done"
            );
            assert!(found <= committed + 1, "cycle {cycle}: counter {found}, but only {committed} (+1 in flight) were committed");
            committed = found;
            // The kill may land while the guest is still checking the store.
            if boot.line("store-crash: verified").is_some() {
                verified += 1;
            }
        }
        let last = boot
            .lines
            .iter()
            .filter_map(|l| number_after(&l.text, "store-crash: committed "))
            .max();
        if let Some(n) = last {
            committed = committed.max(n);
            kills_mid_run += 1;
        }
        assert!(
            boot.timed_out,
            "cycle {cycle}: the guest stopped by itself:\n{out}"
        );
    }
    // Most kills must land while commits are running (not all during boot or checks).
    assert!(
        kills_mid_run >= cycles / 2,
        "only {kills_mid_run} of {cycles} kills hit running commits"
    );
    assert!(
        verified >= cycles / 2,
        "only {verified} of {cycles} boots got to check the store"
    );
    let check = guest(&disk, "check").boot();
    check.expect("store-crash: verified");
    check.expect_status(0);
    let line = check.expect("store-crash: opened counter=");
    let found = number_after(&line.text, "counter=").unwrap();
    assert!(
        found >= committed && found <= committed + 1,
        "final counter {found}, committed {committed}"
    );
    eprintln!(
        "store-crash: {cycles} SIGKILLs ({kills_mid_run} during commits, {verified} boots checked \
         the whole store), {committed} commits, none lost"
    );
    assert!(
        committed > 100,
        "only {committed} commits in {cycles} cycles"
    );
}
