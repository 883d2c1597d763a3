//! `apps-driver`: stands in for zedmanager in the apps Xen test (tests/xen/tests/apps.rs,
//! xen/nodes/apps.toml). It publishes `zedmanager/DomainConfig` step by step and checks what
//! domainmgr reports in `domainmgr/DomainStatus`, printing `check <what>: ok` or
//! `check <what>: FAILED (...)` and, at the end, `apps-driver: N check(s) failed`:
//!
//! 1. the echo app (its kernel on the app volume `app-echo`, a vif) boots and runs
//!    (`create-to-running MS` is the time from the configuration to the running status);
//! 2. an app asking for more memory than the node's `[apps]` allows is an error, the echo app
//!    untouched;
//! 3. an app that crashes (echo without a network card exits 1) is reported crashed;
//! 4. a new generation restarts the echo app in a new domain, with the volume `app-data` as its
//!    disk;
//! 5. `ready for the kill`: the dom0 hook `apps-kill` destroys domainmgr's domain; once the
//!    restarted domainmgr reports again, the echo app runs in the same domain;
//! 6. deactivated, the echo app halts; deleted, its status goes.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;

use bus_io::{Link, Subscription, Update};
use kernel::{info, Args, Duration, Instant};
use topics::domainmgr::{DomainState, DomainStatus, DOMAIN_STATUS};
use topics::zedmanager::{DomainConfig, DOMAIN_CONFIG};

kernel::service! {
    main: main,
    memory_floor_mib: 8,
    publishes: &[DOMAIN_CONFIG.decl()],
    subscribes: &[DOMAIN_STATUS.decl()],
}

const ECHO: &str = "0a0e0000-0000-4000-8000-0000000000e1";
const BIG: &str = "0a0e0000-0000-4000-8000-0000000000b1";
const CRASHY: &str = "0a0e0000-0000-4000-8000-0000000000c1";

/// How long one step may take (domains boot in seconds under QEMU TCG; a domainmgr restart
/// waits for the launcher to notice and restart it).
const STEP: Duration = Duration::from_secs(180);

fn echo(network: bool, memory_mib: u32) -> DomainConfig {
    DomainConfig {
        name: String::from("echo"),
        activate: true,
        kernel_volume: String::from("app-echo"),
        memory_mib,
        vcpus: 1,
        cmdline: String::new(),
        disks: alloc::vec![],
        network,
        generation: 0,
    }
}

/// Counts failed checks.
struct Checks {
    failed: u32,
}

impl Checks {
    fn check(&mut self, what: &str, result: Result<String, String>) {
        match result {
            Ok(note) => info!("check {what}: ok {note}"),
            Err(why) => {
                self.failed += 1;
                info!("check {what}: FAILED ({why})");
            }
        }
    }
}

/// Waits until `key`'s status satisfies `want` (or, with `gone`, until it has none).
async fn wait_for(
    statuses: &Subscription<DomainStatus>,
    key: &str,
    want: impl Fn(Option<&DomainStatus>) -> bool,
) -> Result<Option<DomainStatus>, String> {
    let deadline = kernel::now().saturating_add(STEP);
    loop {
        let seen = statuses.with(|s| {
            let status = s.get(key);
            (s.is_synchronized() && want(status)).then(|| status.cloned())
        });
        if let Some(status) = seen {
            return Ok(status);
        }
        let left = deadline.saturating_duration_since(kernel::now());
        if left == Duration::ZERO {
            return Err(format!(
                "timed out; last status {:?}",
                statuses.with(|s| s.get(key).cloned())
            ));
        }
        let _ = kernel::timeout(left, statuses.next()).await;
    }
}

fn state_is(state: DomainState) -> impl Fn(Option<&DomainStatus>) -> bool {
    move |s| s.is_some_and(|s| s.state == state)
}

async fn main(_args: Args) -> i32 {
    let node = bus_io::channel::node().await;
    let (configs, statuses) = match (node.publish(&DOMAIN_CONFIG), node.subscribe(&DOMAIN_STATUS)) {
        (Ok(c), Ok(s)) => (c, s),
        (Err(e), _) | (_, Err(e)) => {
            kernel::error!("{e}");
            return 1;
        }
    };
    let mut checks = Checks { failed: 0 };
    let publish = |key: &str, config: &DomainConfig| {
        if let Err(e) = configs.publish(&String::from(key), config) {
            kernel::error!("cannot publish {key}: {e}");
        }
    };
    let running = state_is(DomainState::Running);

    // 1. The echo app boots.
    let mut app = echo(true, 32);
    let asked = kernel::now();
    publish(ECHO, &app);
    let first = wait_for(&statuses, ECHO, &running).await;
    let ms = kernel::now().saturating_duration_since(asked).as_millis();
    let domid = first.as_ref().ok().and_then(|s| s.as_ref()?.domid);
    checks.check(
        "app running",
        first.map(|_| format!("create-to-running {ms} ms domid {domid:?}")),
    );

    // 2. Beyond the node's limits.
    publish(BIG, &echo(true, 128));
    let big = wait_for(&statuses, BIG, state_is(DomainState::Error)).await;
    let untouched = statuses.with(|s| s.get(ECHO).and_then(|s| s.domid)) == domid;
    checks.check(
        "over the limit refused",
        big.and_then(|s| {
            let error = s.map(|s| s.error).unwrap_or_default();
            if untouched && error.contains("allows") {
                Ok(format!("error {error:?}"))
            } else {
                Err(format!("error {error:?}, echo untouched: {untouched}"))
            }
        }),
    );
    let _ = configs.unpublish(&String::from(BIG));

    // 3. A crash is reported.
    publish(CRASHY, &echo(false, 16));
    let crashed = wait_for(&statuses, CRASHY, state_is(DomainState::Crashed)).await;
    checks.check(
        "crash reported",
        crashed.map(|s| format!("error {:?}", s.map(|s| s.error).unwrap_or_default())),
    );
    let _ = configs.unpublish(&String::from(CRASHY));
    let gone = wait_for(&statuses, CRASHY, |s| s.is_none()).await;
    checks.check("crashed app deleted", gone.map(|_| String::new()));

    // 4. A restart: a new generation, a new domain, now with a data disk (blkback).
    app.generation = 1;
    app.disks = alloc::vec![topics::zedmanager::DiskConfig {
        volume: String::from("app-data"),
        read_only: false,
    }];
    publish(ECHO, &app);
    let restarted = wait_for(&statuses, ECHO, |s| {
        s.is_some_and(|s| s.state == DomainState::Running && s.generation == 1)
    })
    .await;
    let new_domid = restarted.as_ref().ok().and_then(|s| s.as_ref()?.domid);
    checks.check(
        "app restarted",
        restarted.and_then(|_| {
            if new_domid != domid {
                Ok(format!("domid {new_domid:?}"))
            } else {
                Err(format!("still domain {domid:?}"))
            }
        }),
    );

    // 5. domainmgr destroyed by the dom0 hook: the app runs on in the same domain.
    info!("apps-driver: ready for the kill");
    let killed_at = kernel::now();
    let reconnected = wait_for_reconnection(&statuses, killed_at).await;
    let survived = match reconnected {
        Ok(()) => wait_for(&statuses, ECHO, &running).await.and_then(|s| {
            let now = s.and_then(|s| s.domid);
            if now == new_domid {
                Ok(format!("domid {now:?}"))
            } else {
                Err(format!("domain {new_domid:?} became {now:?}"))
            }
        }),
        Err(e) => Err(e),
    };
    checks.check("app survived domainmgr", survived);

    // 6. Deactivated, then deleted.
    app.activate = false;
    publish(ECHO, &app);
    let halted = wait_for(&statuses, ECHO, state_is(DomainState::Halted)).await;
    checks.check("app stopped", halted.map(|_| String::new()));
    let _ = configs.unpublish(&String::from(ECHO));
    let gone = wait_for(&statuses, ECHO, |s| s.is_none()).await;
    checks.check("app deleted", gone.map(|_| String::new()));

    info!("apps-driver: {} check(s) failed", checks.failed);
    if checks.failed == 0 {
        0
    } else {
        1
    }
}

/// Waits for the status stream to end (domainmgr gone) and come back.
async fn wait_for_reconnection(
    statuses: &Subscription<DomainStatus>,
    since: Instant,
) -> Result<(), String> {
    let mut ended = false;
    let deadline = since.saturating_add(STEP);
    loop {
        let left = deadline.saturating_duration_since(kernel::now());
        let Ok(update) = kernel::timeout(left, statuses.next()).await else {
            return Err(format!(
                "domainmgr never went and came back (ended: {ended})"
            ));
        };
        match update {
            Update::Link(Link::Ended(reason)) => {
                info!("apps-driver: domainmgr's stream ended: {reason}");
                ended = true;
            }
            Update::Link(Link::Connected) if ended => {
                info!("apps-driver: domainmgr is back");
                return Ok(());
            }
            _ => {}
        }
    }
}
