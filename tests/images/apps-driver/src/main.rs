//! `apps-driver`: stands in for zedagent in the apps Xen test (tests/xen/tests/apps.rs,
//! xen/nodes/apps.toml). It publishes `zedagent/AppInstance` and `zedagent/Volume` step by step,
//! as zedagent would from the controller's configuration, and checks what zedmanager reports
//! (`zedmanager/AppInstanceStatus`) and which domain domainmgr gave the app
//! (`domainmgr/DomainStatus`), printing `check <what>: ok ...` or `check <what>: FAILED (...)`
//! and, at the end, `apps-driver: N check(s) failed`:
//!
//! 1. the echo app (its kernel on the volume `app-echo`, a network interface) reaches RUNNING
//!    (`create-to-running MS`: from the configuration to the status);
//! 2. an app asking for more memory than the node's `[apps]` allows is ERROR with the launcher's
//!    reason, the echo app untouched;
//! 3. an app that crashes (echo without a network card exits 1) is restarted with backoff, its
//!    crashes counted;
//! 4. the restart counter restarts the echo app in a new domain, now with the volume `app-data`
//!    as its disk;
//! 5. `ready for the kill`: the dom0 hook `apps-kill` destroys domainmgr's domain; once the
//!    restarted domainmgr reports again, the echo app runs in the same domain;
//! 6. deactivated, the echo app is HALTED; deleted, its status goes.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use bus_io::{Link, Subscription, Update};
use kernel::{info, Args, Duration, Instant};
use topics::domainmgr::{DomainStatus, DOMAIN_STATUS};
use topics::zedagent::{
    AppInstance, AppInterface, Volume, VolumeOrigin, VolumeRef, APP_INSTANCE, VOLUME,
};
use topics::zedmanager::{AppInstanceStatus, SwState, APP_INSTANCE_STATUS};

kernel::service! {
    main: main,
    memory_floor_mib: 8,
    publishes: &[APP_INSTANCE.decl(), VOLUME.decl()],
    subscribes: &[APP_INSTANCE_STATUS.decl(), DOMAIN_STATUS.decl()],
}

const ECHO: &str = "0a0e0000-0000-4000-8000-0000000000e1";
const BIG: &str = "0a0e0000-0000-4000-8000-0000000000b1";
const CRASHY: &str = "0a0e0000-0000-4000-8000-0000000000c1";
const ECHO_VOLUME: &str = "0a0e0000-0000-4000-8000-0000000000f1";
const DATA_VOLUME: &str = "0a0e0000-0000-4000-8000-0000000000f2";

/// How long one step may take (domains boot in seconds under QEMU TCG; a domainmgr restart
/// waits for the launcher to notice and restart it).
const STEP: Duration = Duration::from_secs(180);

fn app(uuid: &str, network: bool, memory_mib: u64, volumes: &[&str]) -> AppInstance {
    AppInstance {
        uuid: String::from(uuid),
        version: String::from("1"),
        name: String::from("echo"),
        activate: true,
        memory_kib: memory_mib * 1024,
        vcpus: 1,
        volumes: volumes
            .iter()
            .map(|v| VolumeRef {
                uuid: String::from(*v),
                generation: 0,
            })
            .collect(),
        interfaces: if network {
            alloc::vec![AppInterface {
                name: String::from("eth0"),
                network_id: String::from("0a0e0000-0000-4000-8000-0000000000a1"),
                addr: String::new(),
                mac: String::new(),
            }]
        } else {
            Vec::new()
        },
        restart_counter: 0,
        purge_counter: 0,
        start_delay_s: 0,
    }
}

fn volume(uuid: &str, name: &str) -> Volume {
    Volume {
        uuid: String::from(uuid),
        name: String::from(name),
        origin: VolumeOrigin::Blank,
        max_size_bytes: 0,
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

/// Waits until `key`'s status satisfies `want` (`None`: it has none).
async fn wait_for<T: Clone + core::fmt::Debug + PartialEq + serde::de::DeserializeOwned>(
    table: &Subscription<T>,
    key: &str,
    want: impl Fn(Option<&T>) -> bool,
) -> Result<Option<T>, String> {
    let deadline = kernel::now().saturating_add(STEP);
    loop {
        let seen = table.with(|s| {
            let value = s.get(key);
            (s.is_synchronized() && want(value)).then(|| value.cloned())
        });
        if let Some(value) = seen {
            return Ok(value);
        }
        let left = deadline.saturating_duration_since(kernel::now());
        if left == Duration::ZERO {
            return Err(format!(
                "timed out; last {:?}",
                table.with(|s| s.get(key).cloned())
            ));
        }
        let _ = kernel::timeout(left, table.next()).await;
    }
}

fn state_is(state: SwState) -> impl Fn(Option<&AppInstanceStatus>) -> bool {
    move |s| s.is_some_and(|s| s.state == state)
}

async fn main(_args: Args) -> i32 {
    let node = bus_io::channel::node().await;
    let tables = (
        node.publish(&APP_INSTANCE),
        node.publish(&VOLUME),
        node.subscribe(&APP_INSTANCE_STATUS),
        node.subscribe(&DOMAIN_STATUS),
    );
    let (Ok(apps), Ok(volumes), Ok(statuses), Ok(domains)) = tables else {
        kernel::error!("apps-driver's topics are not all declared");
        return 1;
    };
    let mut checks = Checks { failed: 0 };
    let publish = |instance: &AppInstance| {
        if let Err(e) = apps.publish(&instance.uuid, instance) {
            kernel::error!("cannot publish {}: {e}", instance.uuid);
        }
    };
    let delete = |uuid: &str| {
        let _ = apps.unpublish(&String::from(uuid));
    };
    let domid_of = |uuid: &str| domains.with(|s| s.get(uuid).and_then(|d| d.domid));
    for (uuid, name) in [(ECHO_VOLUME, "app-echo"), (DATA_VOLUME, "app-data")] {
        if let Err(e) = volumes.publish(&String::from(uuid), &volume(uuid, name)) {
            kernel::error!("cannot publish volume {name}: {e}");
        }
    }
    let running = state_is(SwState::Running);

    // 1. The echo app boots.
    let mut echo = app(ECHO, true, 32, &[ECHO_VOLUME]);
    let asked = kernel::now();
    publish(&echo);
    let first = wait_for(&statuses, ECHO, &running).await;
    let ms = kernel::now().saturating_duration_since(asked).as_millis();
    let domid = domid_of(ECHO);
    checks.check(
        "app running",
        first.map(|_| format!("create-to-running {ms} ms domid {domid:?}")),
    );

    // 2. Beyond the node's limits.
    publish(&app(BIG, true, 128, &[ECHO_VOLUME]));
    let big = wait_for(&statuses, BIG, state_is(SwState::Error)).await;
    let untouched = domid_of(ECHO) == domid;
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
    delete(BIG);
    let gone = wait_for(&statuses, BIG, |s| s.is_none()).await;
    checks.check("refused app deleted", gone.map(|_| String::new()));

    // 3. A crashing app is restarted with backoff.
    publish(&app(CRASHY, false, 16, &[ECHO_VOLUME]));
    let crashed = wait_for(&statuses, CRASHY, |s| s.is_some_and(|s| s.crashes >= 2)).await;
    checks.check(
        "crash restarted with backoff",
        crashed.map(|s| {
            let s = s.unwrap_or_default();
            format!(
                "crashes {} restarts {} state {} error {:?}",
                s.crashes,
                s.restarts,
                s.state.name(),
                s.error
            )
        }),
    );
    delete(CRASHY);
    let gone = wait_for(&statuses, CRASHY, |s| s.is_none()).await;
    checks.check("crashing app deleted", gone.map(|_| String::new()));

    // 4. The restart counter: a new domain, now with a data volume.
    echo.restart_counter = 1;
    echo.volumes.push(VolumeRef {
        uuid: String::from(DATA_VOLUME),
        generation: 0,
    });
    publish(&echo);
    let restarted = wait_for(&statuses, ECHO, |s| {
        s.is_some_and(|s| s.state == SwState::Running && s.restarts == 1)
    })
    .await;
    let new_domid = domid_of(ECHO);
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
    let reconnected = wait_for_reconnection(&domains, kernel::now()).await;
    let survived = match reconnected {
        Ok(()) => match wait_for(&domains, ECHO, |d| d.is_some_and(|d| d.domid.is_some())).await {
            Ok(_) => wait_for(&statuses, ECHO, &running).await,
            Err(e) => Err(e),
        }
        .and_then(|_| {
            let now = domid_of(ECHO);
            let state = statuses.with(|s| s.get(ECHO).map(|s| s.state));
            if now == new_domid && state == Some(SwState::Running) {
                Ok(format!("domid {now:?}"))
            } else {
                Err(format!(
                    "domain {new_domid:?} became {now:?}, state {state:?}"
                ))
            }
        }),
        Err(e) => Err(e),
    };
    checks.check("app survived domainmgr", survived);

    // 6. Deactivated, then deleted.
    echo.activate = false;
    publish(&echo);
    let halted = wait_for(&statuses, ECHO, state_is(SwState::Halted)).await;
    checks.check("app stopped", halted.map(|_| String::new()));
    delete(ECHO);
    let gone = wait_for(&statuses, ECHO, |s| s.is_none()).await;
    checks.check("app deleted", gone.map(|_| String::new()));

    info!("apps-driver: {} check(s) failed", checks.failed);
    if checks.failed == 0 {
        0
    } else {
        1
    }
}

/// Waits for domainmgr's stream to end (domainmgr gone) and come back.
async fn wait_for_reconnection(
    domains: &Subscription<DomainStatus>,
    since: Instant,
) -> Result<(), String> {
    let mut ended = false;
    let deadline = since.saturating_add(STEP);
    loop {
        let left = deadline.saturating_duration_since(kernel::now());
        let Ok(update) = kernel::timeout(left, domains.next()).await else {
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
