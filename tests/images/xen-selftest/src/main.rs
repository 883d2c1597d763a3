//! `xen-selftest`: exercises the kernel's Xen backend against a real Xen, xenstored and
//! xenconsoled, and reports every check on the console (`check <name>: ok` or `FAILED`).
//!
//! Checks: xenstore read, write, mkdir, directory, watch (initial and change events),
//! transaction (commit), permissions (get, set, and a denied write); a grant to dom0 given and
//! ended; the wall clock from shared info; and, with `console_line`, one line of console input
//! (the launcher types it through `console_input` in the manifest). Exits 0 if every check passed.
//! Under QEMU microvm (no Xen) it says so and exits 2.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use kernel::platform::xen::{grant, store};
use kernel::{info, Args};

kernel::service!(main);

async fn main(args: Args) -> i32 {
    if kernel::platform::kind() != kernel::platform::Kind::Xen {
        kernel::error!(
            "xen-selftest needs Xen (platform {})",
            kernel::platform::current().name()
        );
        return 2;
    }
    let mut failures = 0;
    let mut report = |name: &str, result: Result<String, String>| match result {
        Ok(detail) => info!("check {name}: ok {detail}"),
        Err(e) => {
            failures += 1;
            kernel::error!("check {name}: FAILED: {e}");
        }
    };
    report("xenstore read/write", read_write().await);
    report("xenstore directory", directory().await);
    report("xenstore watch", watch().await);
    report("xenstore transaction", transaction().await);
    report("xenstore permissions", permissions().await);
    report("grant table", grants());
    report(
        "wall clock",
        match kernel::wall_clock() {
            Some(t) if t.as_secs() > 1_600_000_000 => {
                Ok(format!("{} s since the epoch", t.as_secs()))
            }
            other => Err(format!("implausible: {other:?}")),
        },
    );
    if args.flag("console_line") {
        report("console input", console_line().await);
    }
    info!("{failures} check(s) failed");
    i32::from(failures != 0)
}

fn describe(e: impl core::fmt::Display) -> String {
    format!("{e}")
}

async fn read_write() -> Result<String, String> {
    let domid = store::read("domid").await.map_err(describe)?;
    store::write("data/selftest/a", "alpha")
        .await
        .map_err(describe)?;
    let back = store::read("data/selftest/a").await.map_err(describe)?;
    if back != "alpha" {
        return Err(format!("read back {back:?}"));
    }
    match store::read("data/selftest/missing").await {
        Err(kernel::platform::xen::xenstore::Error::Xenstore(e)) if e == "ENOENT" => {}
        other => return Err(format!("missing key: {other:?}")),
    }
    Ok(format!("(domid {domid})"))
}

async fn directory() -> Result<String, String> {
    store::mkdir("data/selftest/dir").await.map_err(describe)?;
    store::write("data/selftest/dir/x", "1")
        .await
        .map_err(describe)?;
    store::write("data/selftest/dir/y", "2")
        .await
        .map_err(describe)?;
    let mut entries = store::directory("data/selftest/dir")
        .await
        .map_err(describe)?;
    entries.sort();
    if entries != ["x", "y"] {
        return Err(format!("entries {entries:?}"));
    }
    store::rm("data/selftest/dir").await.map_err(describe)?;
    if store::read("data/selftest/dir/x").await.is_ok() {
        return Err("rm left a child".into());
    }
    Ok(String::new())
}

async fn watch() -> Result<String, String> {
    let w = store::watch("data/selftest/watched", "selftest")
        .await
        .map_err(describe)?;
    let first = kernel::timeout(kernel::Duration::from_secs(20), w.next())
        .await
        .map_err(describe)?
        .map_err(describe)?;
    store::write("data/selftest/watched", "changed")
        .await
        .map_err(describe)?;
    let changed = kernel::timeout(kernel::Duration::from_secs(20), w.next())
        .await
        .map_err(describe)?
        .map_err(describe)?;
    w.cancel().await.map_err(describe)?;
    if !changed.ends_with("data/selftest/watched") {
        return Err(format!("event for {changed}"));
    }
    Ok(format!("(initial {first}, then {changed})"))
}

async fn transaction() -> Result<String, String> {
    store::write("data/selftest/counter", "41")
        .await
        .map_err(describe)?;
    let value = store::transaction(|tx| async move {
        let n: u32 = tx
            .read("data/selftest/counter")
            .await?
            .parse()
            .map_err(|_| {
                kernel::platform::xen::xenstore::Error::Protocol("counter is not a number")
            })?;
        tx.write("data/selftest/counter", &format!("{}", n + 1))
            .await?;
        Ok(n + 1)
    })
    .await
    .map_err(describe)?;
    let stored = store::read("data/selftest/counter")
        .await
        .map_err(describe)?;
    if value != 42 || stored != "42" {
        return Err(format!("committed {value}, stored {stored}"));
    }
    Ok(String::new())
}

async fn permissions() -> Result<String, String> {
    let domid = store::read("domid").await.map_err(describe)?;
    store::write("data/selftest/private", "p")
        .await
        .map_err(describe)?;
    let owner_only = format!("n{domid}");
    store::set_perms("data/selftest/private", &[&owner_only, "r0"])
        .await
        .map_err(describe)?;
    let perms = store::get_perms("data/selftest/private")
        .await
        .map_err(describe)?;
    if perms != [owner_only.as_str(), "r0"] {
        return Err(format!("perms {perms:?}"));
    }
    match store::write("/local/domain/0/lichen-selftest-forbidden", "x").await {
        Err(kernel::platform::xen::xenstore::Error::Xenstore(e)) if e == "EACCES" => {}
        other => return Err(format!("write into dom0's tree: {other:?}")),
    }
    Ok(format!("({perms:?}; dom0's tree refused)"))
}

fn grants() -> Result<String, String> {
    let frame = kernel::mem::alloc_frames(1).ok_or("no frame")?;
    let r = grant::grant_access(0, frame, true).map_err(describe)?;
    grant::end_access(r).map_err(describe)?;
    if grant::end_access(r) != Err(grant::GrantError::BadRef) {
        return Err("ending a grant twice was accepted".into());
    }
    // SAFETY: the frame came from alloc_frames above and its grant has ended.
    unsafe { kernel::mem::free_frames(frame, 1) };
    Ok(format!("(ref {r})"))
}

async fn console_line() -> Result<String, String> {
    let mut line = String::new();
    let mut buf = [0u8; 64];
    let deadline = kernel::now() + kernel::Duration::from_secs(60);
    while !line.contains('\n') && !line.contains('\r') {
        let left = deadline.saturating_duration_since(kernel::now());
        let n = kernel::timeout(left, kernel::console::read(&mut buf))
            .await
            .map_err(|_| format!("no line; got {line:?}"))?;
        line.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    Ok(format!("{:?}", line.trim_end()))
}
