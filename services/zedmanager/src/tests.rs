extern crate std;

use alloc::string::{String, ToString};
use alloc::vec;

use topics::volumemgr::Extent;
use topics::zedagent::{AppInterface, VolumeRef};

use super::*;

fn config() -> AppInstance {
    AppInstance {
        uuid: "a1".into(),
        version: "1".into(),
        name: "echo".into(),
        activate: true,
        memory_kib: 32 * 1024 + 1,
        vcpus: 1,
        volumes: vec![VolumeRef {
            uuid: "v1".into(),
            generation: 0,
        }],
        interfaces: vec![AppInterface {
            name: "eth0".into(),
            network_id: "n1".into(),
            addr: String::new(),
            mac: String::new(),
            acls: Vec::new(),
        }],
        restart_counter: 0,
        purge_counter: 0,
        start_delay_s: 0,
        cmdline: "broker=10.0.2.2:1883".into(),
    }
}

fn domain(state: DomainState, generation: u32) -> DomainStatus {
    DomainStatus {
        name: "echo".into(),
        state,
        domid: Some(5),
        generation,
        boots: 1,
        error: String::new(),
    }
}

fn extent(offset_mib: u64, size_mib: u64) -> Extent {
    Extent {
        offset_mib,
        size_mib,
    }
}

/// The app's volumes, made: its kernel's, then a data volume's.
fn ready() -> Volumes {
    Volumes::Ready(vec![extent(0, 4), extent(4, 2)])
}

/// Its volumes, not made yet.
fn waiting() -> Volumes {
    Volumes::Waiting(SwState::CreatingVolume)
}

#[test]
fn an_app_waits_for_its_volume_then_boots_and_runs() {
    let mut app = App::default();
    let step = app.step(&config(), None, &waiting(), Some("lichenbr0"), 0);
    assert_eq!(step.domain, None, "nothing boots without its volume");
    assert_eq!(step.status.state, SwState::CreatingVolume);
    let step = app.step(&config(), None, &ready(), Some("lichenbr0"), 10);
    let domain_config = step.domain.unwrap();
    assert!(domain_config.activate);
    assert_eq!(domain_config.kernel, extent(0, 4));
    assert_eq!(domain_config.disks.len(), 1);
    assert_eq!(domain_config.disks[0].extent, extent(4, 2));
    assert_eq!(domain_config.memory_mib, 33, "KiB rounded up");
    assert_eq!(domain_config.network.as_deref(), Some("lichenbr0"));
    assert_eq!(
        domain_config.cmdline, "broker=10.0.2.2:1883",
        "the user data's command line"
    );
    assert_eq!(domain_config.generation, 0);
    assert_eq!(step.status.state, SwState::Booting);
    let step = app.step(
        &config(),
        Some(&domain(DomainState::Booting, 0)),
        &ready(),
        Some("lichenbr0"),
        20,
    );
    assert_eq!(step.status.state, SwState::Booting);
    let step = app.step(
        &config(),
        Some(&domain(DomainState::Running, 0)),
        &ready(),
        Some("lichenbr0"),
        30,
    );
    assert_eq!(step.status.state, SwState::Running);
    assert_eq!(step.status.state.eve_number(), 7);
    assert_eq!((step.status.restarts, step.status.crashes), (0, 0));
    assert_eq!(step.wake_at, None);
}

#[test]
fn deactivate_halts_and_activate_runs_again() {
    let mut app = App::default();
    app.step(
        &config(),
        Some(&domain(DomainState::Running, 0)),
        &ready(),
        Some("lichenbr0"),
        0,
    );
    let mut off = config();
    off.activate = false;
    let step = app.step(
        &off,
        Some(&domain(DomainState::Running, 0)),
        &ready(),
        Some("lichenbr0"),
        10,
    );
    assert!(!step.domain.unwrap().activate);
    assert_eq!(step.status.state, SwState::Halting);
    let step = app.step(
        &off,
        Some(&domain(DomainState::Halted, 0)),
        &ready(),
        Some("lichenbr0"),
        20,
    );
    assert_eq!(step.status.state, SwState::Halted);
    assert!(!step.status.activated);
    let step = app.step(
        &config(),
        Some(&domain(DomainState::Halted, 0)),
        &ready(),
        Some("lichenbr0"),
        30,
    );
    assert!(step.domain.unwrap().activate);
    assert_eq!(
        step.status.state,
        SwState::Halted,
        "until domainmgr boots it"
    );
    let step = app.step(
        &config(),
        Some(&domain(DomainState::Running, 0)),
        &ready(),
        Some("lichenbr0"),
        40,
    );
    assert_eq!(step.status.state, SwState::Running);
    assert_eq!(step.status.restarts, 0, "not a restart");
}

#[test]
fn the_restart_counter_makes_a_new_generation() {
    let mut app = App::default();
    app.step(
        &config(),
        Some(&domain(DomainState::Running, 0)),
        &ready(),
        Some("lichenbr0"),
        0,
    );
    let mut again = config();
    again.restart_counter = 1;
    let step = app.step(
        &again,
        Some(&domain(DomainState::Running, 0)),
        &ready(),
        Some("lichenbr0"),
        10,
    );
    assert_eq!(step.domain.unwrap().generation, 1);
    assert_eq!(
        step.status.state,
        SwState::Restarting,
        "the old domain is not it"
    );
    assert_eq!(step.status.restarts, 1);
    let step = app.step(
        &again,
        Some(&domain(DomainState::Running, 1)),
        &ready(),
        Some("lichenbr0"),
        20,
    );
    assert_eq!(step.status.state, SwState::Running);
    // The same counter again is no restart; a purge is one.
    let step = app.step(
        &again,
        Some(&domain(DomainState::Running, 1)),
        &ready(),
        Some("lichenbr0"),
        30,
    );
    assert_eq!(step.status.restarts, 1);
    again.purge_counter = 1;
    let step = app.step(
        &again,
        Some(&domain(DomainState::Running, 1)),
        &ready(),
        Some("lichenbr0"),
        40,
    );
    assert_eq!(
        (step.domain.unwrap().generation, step.status.restarts),
        (2, 2)
    );
}

#[test]
fn the_first_configuration_seen_is_no_restart_whatever_its_counters() {
    let mut app = App::default();
    let mut c = config();
    c.restart_counter = 7;
    c.purge_counter = 3;
    let step = app.step(&c, None, &ready(), Some("lichenbr0"), 0);
    assert_eq!(
        (step.domain.unwrap().generation, step.status.restarts),
        (0, 0)
    );
}

#[test]
fn crashes_restart_with_a_growing_backoff_that_a_stable_run_resets() {
    let mut app = App::default();
    let crashed = |g| {
        let mut d = domain(DomainState::Crashed, g);
        d.error = "exited with status 101".into();
        d
    };
    app.step(
        &config(),
        Some(&domain(DomainState::Running, 0)),
        &ready(),
        Some("lichenbr0"),
        0,
    );
    // First crash at t=1000: restart due at 2000.
    let step = app.step(
        &config(),
        Some(&crashed(0)),
        &ready(),
        Some("lichenbr0"),
        1000,
    );
    assert_eq!(step.status.state, SwState::Restarting);
    assert_eq!(step.status.error, "crashed: exited with status 101");
    assert_eq!(step.status.error_at_ms, 1000);
    assert_eq!(step.wake_at, Some(2000));
    assert_eq!(step.domain.as_ref().unwrap().generation, 0, "not yet");
    let step = app.step(
        &config(),
        Some(&crashed(0)),
        &ready(),
        Some("lichenbr0"),
        1500,
    );
    assert_eq!(
        step.wake_at,
        Some(2000),
        "the same crash is not counted twice"
    );
    let step = app.step(
        &config(),
        Some(&crashed(0)),
        &ready(),
        Some("lichenbr0"),
        2000,
    );
    assert_eq!(step.domain.unwrap().generation, 1);
    assert_eq!((step.status.restarts, step.status.crashes), (1, 1));
    assert_eq!(step.status.state, SwState::Restarting);
    // Crashes again at once: 2 s, then 4 s.
    let step = app.step(
        &config(),
        Some(&crashed(1)),
        &ready(),
        Some("lichenbr0"),
        2100,
    );
    assert_eq!(step.wake_at, Some(4100));
    app.step(
        &config(),
        Some(&crashed(1)),
        &ready(),
        Some("lichenbr0"),
        4100,
    );
    let step = app.step(
        &config(),
        Some(&crashed(2)),
        &ready(),
        Some("lichenbr0"),
        4200,
    );
    assert_eq!(step.wake_at, Some(8200));
    let step = app.step(
        &config(),
        Some(&crashed(2)),
        &ready(),
        Some("lichenbr0"),
        8200,
    );
    assert_eq!((step.status.restarts, step.status.crashes), (3, 3));
    // It runs, long enough: the next crash waits 1 s again.
    let step = app.step(
        &config(),
        Some(&domain(DomainState::Running, 3)),
        &ready(),
        Some("lichenbr0"),
        9000,
    );
    assert_eq!(step.status.state, SwState::Running);
    assert_eq!(step.status.error, "", "a running app shows no error");
    assert_eq!(step.wake_at, Some(9000 + STABLE_MS));
    app.step(
        &config(),
        Some(&domain(DomainState::Running, 3)),
        &ready(),
        Some("lichenbr0"),
        9000 + STABLE_MS,
    );
    let step = app.step(
        &config(),
        Some(&crashed(3)),
        &ready(),
        Some("lichenbr0"),
        50_000,
    );
    assert_eq!(step.wake_at, Some(51_000));
}

#[test]
fn a_crash_reason_is_not_said_twice() {
    let mut app = App::default();
    let mut d = domain(DomainState::Crashed, 0);
    d.error = "crashed (exit status 1)".into();
    let step = app.step(&config(), Some(&d), &ready(), Some("lichenbr0"), 0);
    assert_eq!(step.status.error, "crashed (exit status 1)");
}

#[test]
fn the_backoff_is_capped() {
    let mut app = App::default();
    let mut now = 0;
    let mut last_delay = 0;
    for generation in 0..12 {
        let step = app.step(
            &config(),
            Some(&domain(DomainState::Crashed, generation)),
            &ready(),
            Some("lichenbr0"),
            now,
        );
        last_delay = step.wake_at.unwrap() - now;
        now = step.wake_at.unwrap();
        app.step(
            &config(),
            Some(&domain(DomainState::Crashed, generation)),
            &ready(),
            Some("lichenbr0"),
            now,
        );
    }
    assert_eq!(last_delay, MAX_BACKOFF_MS);
}

#[test]
fn a_crash_while_deactivated_is_not_restarted() {
    let mut app = App::default();
    let mut off = config();
    off.activate = false;
    let step = app.step(
        &off,
        Some(&domain(DomainState::Crashed, 0)),
        &ready(),
        Some("lichenbr0"),
        0,
    );
    assert_eq!(step.wake_at, None);
    assert_eq!(step.status.state, SwState::Halted);
    assert_eq!(step.status.crashes, 0);
}

#[test]
fn the_start_delay_holds_the_first_boot_back() {
    let mut app = App::default();
    let mut delayed = config();
    delayed.start_delay_s = 5;
    let step = app.step(&delayed, None, &ready(), Some("lichenbr0"), 1000);
    assert!(!step.domain.unwrap().activate);
    assert_eq!(step.status.state, SwState::StartDelayed);
    assert_eq!(step.wake_at, Some(5000));
    let step = app.step(&delayed, None, &ready(), Some("lichenbr0"), 5000);
    assert!(step.domain.unwrap().activate);
    assert_eq!(step.status.state, SwState::Booting);
}

#[test]
fn domainmgrs_error_is_the_apps_error_with_its_time() {
    let mut app = App::default();
    let mut refused = domain(DomainState::Error, 0);
    refused.error = "memory MiB: 128 asked, 0 in use by other apps, the node allows 64".into();
    let step = app.step(&config(), Some(&refused), &ready(), Some("lichenbr0"), 700);
    assert_eq!(step.status.state, SwState::Error);
    assert_eq!(step.status.state.eve_number(), 21);
    assert!(step.status.error.contains("the node allows 64"));
    assert_eq!(step.status.error_at_ms, 700);
    let step = app.step(&config(), Some(&refused), &ready(), Some("lichenbr0"), 900);
    assert_eq!(step.status.error_at_ms, 700, "the time it was first seen");
}

#[test]
fn a_running_app_stays_running_while_domainmgr_has_not_reported_again() {
    let mut app = App::default();
    let step = app.step(
        &config(),
        Some(&domain(DomainState::Running, 0)),
        &ready(),
        Some("lichenbr0"),
        0,
    );
    assert_eq!(step.status.state, SwState::Running);
    // domainmgr restarted: its table is empty until it reports again.
    let step = app.step(&config(), None, &ready(), Some("lichenbr0"), 10);
    assert_eq!(step.status.state, SwState::Running);
    assert_eq!(step.domain.unwrap().generation, 0, "nothing restarted");
    // A new generation forgets it.
    let mut again = config();
    again.restart_counter = 1;
    let step = app.step(&again, None, &ready(), Some("lichenbr0"), 20);
    assert_eq!(step.status.state, SwState::Restarting);
}

#[test]
fn an_app_reports_its_volumes_progress_and_failure() {
    let mut app = App::default();
    let step = app.step(
        &config(),
        None,
        &Volumes::Waiting(SwState::Downloading),
        Some("lichenbr0"),
        0,
    );
    assert_eq!(step.domain, None);
    assert_eq!(step.status.state, SwState::Downloading);
    let why = "volume echo: sha256 mismatch".to_string();
    let step = app.step(&config(), None, &Volumes::Failed(why.clone()), None, 5);
    assert_eq!(step.domain, None, "nothing boots from a volume that failed");
    assert_eq!(step.status.state, SwState::Error);
    assert_eq!(
        (step.status.error, step.status.error_at_ms),
        (why.clone(), 5)
    );
    // The same failure keeps the time it was first seen.
    let step = app.step(&config(), None, &Volumes::Failed(why.clone()), None, 9);
    assert_eq!(step.status.error_at_ms, 5);
}

#[test]
fn a_new_version_replaces_the_domain_once_its_volumes_are_made() {
    let mut app = App::default();
    let step = app.step(
        &config(),
        Some(&domain(DomainState::Running, 0)),
        &ready(),
        Some("lichenbr0"),
        0,
    );
    assert_eq!(step.status.state, SwState::Running);
    let mut replaced = config();
    replaced.version = "2".into();
    // The new image's volume is being filled: the old domain's configuration stays as it was.
    let step = app.step(
        &replaced,
        Some(&domain(DomainState::Running, 0)),
        &Volumes::Waiting(SwState::Downloading),
        Some("lichenbr0"),
        10,
    );
    assert_eq!(step.domain, None);
    assert_eq!(step.status.state, SwState::Downloading);
    let new_volumes = Volumes::Ready(vec![extent(8, 4)]);
    let step = app.step(
        &replaced,
        Some(&domain(DomainState::Running, 0)),
        &new_volumes,
        Some("lichenbr0"),
        20,
    );
    let domain_config = step.domain.unwrap();
    assert_eq!(domain_config.generation, 1, "a new domain");
    assert_eq!(domain_config.kernel, extent(8, 4));
    assert_eq!(step.status.restarts, 1);
}

#[test]
fn a_purged_volume_is_ready_only_when_made_again_and_the_domain_goes_first() {
    let mut purged = config();
    purged.purge_counter = 1;
    purged.volumes[0].generation = 1;
    let made = Extent {
        offset_mib: 0,
        size_mib: 1,
    };
    let status = |state: VolumeState, generation: i64, extent: Option<Extent>| VolumeStatus {
        name: "echo".into(),
        generation,
        state,
        extent,
        ..Default::default()
    };
    // volumemgr has not seen the purge yet: the old generation is not ready for the new one.
    let old = status(VolumeState::Created, 0, Some(made));
    assert_eq!(
        where_volumes_stand(&purged, |_| Some(&old)),
        Volumes::Waiting(SwState::CreatingVolume)
    );
    assert_eq!(
        where_volumes_stand(&config(), |_| Some(&old)),
        Volumes::Ready(vec![made]),
        "the generation the app asks for is ready"
    );
    // volumemgr waits for the app's domain to go: the domain is withdrawn.
    let held = status(VolumeState::Pending, 1, Some(made));
    assert_eq!(
        where_volumes_stand(&purged, |_| Some(&held)),
        Volumes::Remaking
    );
    let mut app = App::default();
    let step = app.step(
        &purged,
        Some(&domain(DomainState::Running, 0)),
        &Volumes::Remaking,
        Some("lichenbr0"),
        10,
    );
    assert_eq!(
        step.domain, None,
        "no domain while the volume is made again"
    );
    assert_eq!(step.status.state, SwState::CreatingVolume);
    // Filling, then made at the new generation: ready.
    let filling = status(VolumeState::Filling, 1, Some(made));
    assert_eq!(
        where_volumes_stand(&purged, |_| Some(&filling)),
        Volumes::Waiting(SwState::Downloading)
    );
    let again = status(VolumeState::Created, 1, Some(made));
    assert_eq!(
        where_volumes_stand(&purged, |_| Some(&again)),
        Volumes::Ready(vec![made])
    );
    // A new volume waiting for its place (no extent yet) is no purge.
    let fresh = status(VolumeState::Pending, 0, None);
    assert_eq!(
        where_volumes_stand(&config(), |_| Some(&fresh)),
        Volumes::Waiting(SwState::CreatingVolume)
    );
    assert!(matches!(
        where_volumes_stand(
            &AppInstance {
                volumes: vec![],
                ..config()
            },
            |_| None
        ),
        Volumes::Failed(_)
    ));
}

#[test]
fn a_restarted_zedmanager_keeps_the_running_domain_and_the_counts() {
    let mut app = App::default();
    let mut c = config();
    app.step(
        &c,
        Some(&domain(DomainState::Running, 0)),
        &ready(),
        None,
        0,
    );
    c.restart_counter = 1;
    app.step(
        &c,
        Some(&domain(DomainState::Running, 0)),
        &ready(),
        None,
        10,
    );
    let record = app.record().unwrap();
    assert_eq!((record.generation, record.restarts), (1, 1));

    // Restored from its record: the same generation (domainmgr keeps the domain), the same
    // counts, and the counters already acted on are no new restart.
    let mut restored = App::restore(&record);
    let running = domain(DomainState::Running, 1);
    let step = restored.step(&c, Some(&running), &ready(), None, 0);
    assert_eq!(step.domain.unwrap().generation, 1);
    assert_eq!(step.status.state, SwState::Running);
    assert_eq!(step.status.restarts, 1);
    assert_eq!(restored.record(), Some(record));
}

#[test]
fn a_restarted_zedmanager_does_not_hold_a_running_app_back_for_its_start_delay() {
    let mut delayed = config();
    delayed.start_delay_s = 5;
    let mut app = App::default();
    let step = app.step(
        &delayed,
        Some(&domain(DomainState::Running, 0)),
        &ready(),
        None,
        1000,
    );
    assert!(step.domain.unwrap().activate, "the domain runs on");
    assert_eq!(step.status.state, SwState::Running);
}

#[test]
fn no_record_before_the_first_step() {
    assert_eq!(App::default().record(), None);
}
