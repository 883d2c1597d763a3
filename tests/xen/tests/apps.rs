//! Apps under Xen (QEMU TCG): xen/nodes/apps.toml as it is, one boot (docs/apps.md). zedmanager
//! runs the app state machine, domainmgr drives the launcher's domain service; `apps-driver`
//! (standing in for zedagent) publishes AppInstance and Volume objects and checks zedmanager's
//! AppInstanceStatus: lichen's `echo`, booted from its app volume, reaches RUNNING (its console
//! in the launcher's log), an app beyond the node's limits is ERROR with nothing built for it, a
//! crashing app is restarted with backoff, the restart counter restarts the app (now with a
//! data volume as its disk, through blkback), domainmgr destroyed with `xl destroy` leaves the
//! app running in the same domain, and the app is stopped and deleted.

use lichen_xen_tests::{boot, field, repo};

#[test]
fn an_app_boots_restarts_survives_domainmgr_and_stops_within_the_nodes_limits() {
    let manifest = std::fs::read_to_string(repo().join("xen/nodes/apps.toml")).unwrap();
    let run = boot("apps", &manifest, false, 1200);

    // Every check of the driver passed.
    for check in [
        "app running",
        "over the limit refused",
        "refused app deleted",
        "crash restarted with backoff",
        "crashing app deleted",
        "app restarted",
        "app survived domainmgr",
        "app stopped",
        "app deleted",
    ] {
        run.assert_has(&format!("check {check}: ok"));
    }
    run.assert_has("apps-driver: 0 check(s) failed");

    // The launcher built the app from its volume and the app ran: echo's own console lines.
    let echo = "app-0a0e0000-0000-4000-8000-0000000000e1";
    run.assert_has(&format!("launcher: {echo}: built domain"));
    run.assert_has(&format!("{echo} | "));
    run.assert_has("echo: listening: tcp 7, udp 7, http 80");
    run.assert_has("app 0a0e0000-0000-4000-8000-0000000000e1: running");
    // The request beyond the limits was refused by the launcher, which created nothing for it.
    run.assert_has("refused: OverLimit: memory MiB: 128 asked");
    assert!(!run.has("app-0a0e0000-0000-4000-8000-0000000000b1: built domain"));
    // The restarted app got its data volume through blkback.
    run.assert_has("disk app-data attached (blkback, /local/domain/0/backend/vbd/");
    // The crashing app's end was seen by the launcher, and zedmanager had it built again.
    run.assert_has("app 0a0e0000-0000-4000-8000-0000000000c1: crashed (exit status 1)");
    assert!(run.count("app-0a0e0000-0000-4000-8000-0000000000c1: built domain") >= 2);
    // domainmgr was destroyed and restarted by the launcher; the app was not touched.
    let killed = field(
        &run.log,
        "apps-kill: destroyed domainmgr (domain",
        "(domain",
    )
    .expect("the hook destroyed domainmgr")
    .trim_end_matches(')');
    run.assert_has(&format!(
        "launcher: domainmgr: its domain {killed} disappeared; restart 1"
    ));
    // Each domainmgr connected (a hello that dom0's proxy missed makes one more connection).
    assert!(run.count("domain service: the manager connected") >= 2);
    // Stopped: the launcher ended the app's domain.
    run.assert_has("app 0a0e0000-0000-4000-8000-0000000000e1: halted");
    run.assert_has("app 0a0e0000-0000-4000-8000-0000000000e1: destroyed");
    assert_eq!(run.status, Some(0), "the node finished cleanly");
}
