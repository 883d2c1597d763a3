use std::collections::HashMap;

use launcher_api::frame::encode;
use launcher_api::DiskUse;

use super::*;
use crate::platform::{Created, ShutdownReason};

/// A platform that records calls and whose domains change state when told.
#[derive(Default)]
struct Fake {
    next: u32,
    domains: HashMap<u32, (String, DomainState)>,
    exit_statuses: HashMap<u32, i64>,
    calls: Vec<String>,
    fail_create: bool,
    /// The heads of volumes by their byte offset on the data disk (others: an ELF's).
    heads: HashMap<u64, Vec<u8>>,
}

impl Platform for Fake {
    fn create_paused(
        &mut self,
        name: &str,
        service: &Service,
        files: &BootFiles,
        _: &dyn Fn(u32) -> Wiring,
    ) -> Result<Created, String> {
        self.calls.push(format!(
            "create {name} {} MiB {} vcpus cmdline {:?} from {} at {:?} disks {:?}",
            service.memory,
            service.vcpus,
            service.cmdline,
            files.kernel.display(),
            files.kernel_window,
            service
                .disks
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
        ));
        if service.toolstack == crate::manifest::Toolstack::Xl {
            let call = self.calls.last_mut().expect("pushed");
            call.push_str(&format!(" via xl, ramdisk {:?}", files.ramdisk));
        }
        if self.fail_create {
            return Err("out of memory".into());
        }
        // Pillars have domids 1 to 9 in these tests: apps start at 10.
        self.next = self.next.max(10) + 1;
        self.domains
            .insert(self.next, (name.into(), DomainState::Alive));
        Ok(Created {
            domid: self.next,
            wired: None,
        })
    }
    fn unpause(&mut self, domid: u32) -> Result<(), String> {
        self.calls.push(format!("unpause {domid}"));
        Ok(())
    }
    fn destroy(&mut self, domid: u32) -> Result<(), String> {
        self.calls.push(format!("destroy {domid}"));
        self.domains
            .remove(&domid)
            .map(drop)
            .ok_or("no such domain".into())
    }
    fn domains(&mut self) -> Result<HashMap<u32, DomainState>, String> {
        Ok(self.domains.iter().map(|(d, (_, s))| (*d, *s)).collect())
    }
    fn domains_changed(&mut self) -> bool {
        true
    }
    fn exit_status(&mut self, domid: u32) -> Option<i64> {
        self.exit_statuses.get(&domid).copied()
    }
    fn write_store(&mut self, wiring: &Wiring) -> Result<(), String> {
        for (path, value) in &wiring.writes {
            self.calls.push(format!("write {path} {value}"));
        }
        Ok(())
    }
    fn map_extent(
        &mut self,
        disk: &std::path::Path,
        offset: u64,
        size: u64,
        read_only: bool,
    ) -> Result<crate::loopdev::Mapped, String> {
        self.calls.push(format!(
            "map {} {offset} {size} {}",
            disk.display(),
            if read_only { "ro" } else { "rw" }
        ));
        Ok(crate::loopdev::Mapped::unheld(
            format!("/dev/loop{}", offset >> 20).into(),
        ))
    }
    fn read_volume_head(
        &mut self,
        _: &std::path::Path,
        offset: u64,
        _: u64,
    ) -> Result<Vec<u8>, String> {
        let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
        elf.resize(4096, 0);
        Ok(self.heads.get(&offset).cloned().unwrap_or(elf))
    }
    fn send_console_input(&mut self, _: &str, _: u32, _: &str) {}
    fn console_lines(&mut self, _: &str, _: bool) -> Vec<String> {
        Vec::new()
    }
}

/// A /sys/block with the app data disk `apps` (vdd, 64 MiB) and `persist` (vdb).
struct SysBlock(PathBuf);

impl SysBlock {
    fn new() -> SysBlock {
        let dir = std::env::temp_dir().join(format!(
            "lichen-apps-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        for (device, serial) in [("vdb", "persist"), ("vdd", "apps")] {
            std::fs::create_dir_all(dir.join(device)).unwrap();
            std::fs::write(dir.join(device).join("serial"), serial).unwrap();
            std::fs::write(dir.join(device).join("size"), "131072\n").unwrap();
        }
        SysBlock(dir)
    }
}

impl Drop for SysBlock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config() -> AppsConfig {
    AppsConfig {
        manager: "domainmgr".into(),
        memory_mib: 64,
        vcpus: 2,
        count: 2,
        data: "apps".into(),
        bridges: crate::network::app_bridges(1),
    }
}

fn extent(offset_mib: u64, size_mib: u64) -> Extent {
    Extent {
        offset_mib,
        size_mib,
    }
}

fn spec(memory_mib: u32) -> AppSpec {
    AppSpec {
        kernel: extent(0, 4),
        memory_mib,
        vcpus: 1,
        cmdline: "ip=10.77.0.5/24".into(),
        disks: vec![],
        network: Some("lichenbr0".into()),
    }
}

struct Harness {
    apps: Apps,
    fake: Fake,
    next_id: u32,
    _sys: SysBlock,
}

impl Harness {
    fn new() -> Harness {
        let sys = SysBlock::new();
        let mut harness = Harness {
            apps: Apps::new(config(), sys.0.clone()),
            fake: Fake::default(),
            next_id: 0,
            _sys: sys,
        };
        let welcome = harness.ask(Op::Hello { version: VERSION });
        assert!(matches!(
            welcome[0],
            FromLauncher::Reply {
                result: Ok(Reply::Welcome { .. }),
                ..
            }
        ));
        harness
    }

    /// Sends `op`; returns the reply and events.
    fn ask(&mut self, op: Op) -> Vec<FromLauncher> {
        self.next_id += 1;
        let frame = encode(&Request {
            id: self.next_id,
            op,
        })
        .unwrap();
        let out = self.apps.handle(&frame[4..], &mut self.fake);
        match out.last().unwrap() {
            FromLauncher::Reply { id, .. } => assert_eq!(*id, self.next_id),
            other => panic!("no reply last: {other:?}"),
        }
        out
    }

    fn result(&mut self, op: Op) -> Result<Reply, Refusal> {
        match self.ask(op).pop().unwrap() {
            FromLauncher::Reply { result, .. } => result,
            _ => unreachable!(),
        }
    }

    fn refusal(&mut self, op: Op) -> RefusalKind {
        let calls = self.fake.calls.len();
        let before = self.apps.list();
        let kind = self.result(op).unwrap_err().kind;
        assert_eq!(self.apps.list(), before, "a refusal changes nothing");
        assert_eq!(self.fake.calls.len(), calls, "a refusal touches no domain");
        kind
    }
}

fn events(out: &[FromLauncher]) -> Vec<(String, AppState)> {
    out.iter()
        .filter_map(|m| match m {
            FromLauncher::Event(e) => Some((e.name.clone(), e.state.clone())),
            _ => None,
        })
        .collect()
}

fn create(name: &str, spec: AppSpec) -> Op {
    Op::Create {
        name: name.into(),
        spec,
    }
}

#[test]
fn an_app_is_created_from_its_volume_started_stopped_and_destroyed() {
    let mut h = Harness::new();
    let out = h.ask(create("echo", spec(32)));
    assert_eq!(events(&out), [("echo".into(), AppState::Created)]);
    assert_eq!(
        h.fake.calls[0],
        "create app-echo 32 MiB 1 vcpus cmdline \"ip=10.77.0.5/24\" from /dev/vdd at Some((0, 4194304)) disks []"
    );
    let out = h.ask(Op::Start {
        name: "echo".into(),
    });
    assert_eq!(events(&out), [("echo".into(), AppState::Running)]);
    assert_eq!(h.fake.calls[1], "unpause 11");
    let rows = h.apps.rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (
            rows[0].service.as_str(),
            rows[0].domid,
            rows[0].state.as_str(),
            rows[0].memory
        ),
        ("app-echo", Some(11), "running", 32),
        "the app's row for zedagent's metrics"
    );
    let out = h.ask(Op::Stop {
        name: "echo".into(),
        grace_ms: 0,
    });
    assert_eq!(events(&out), [("echo".into(), AppState::Halted)]);
    assert_eq!(h.fake.calls[2], "destroy 11");
    assert_eq!(h.apps.list()[0].domid, None);
    // A halted app may be created again (a restart), then destroyed.
    h.result(create("echo", spec(32))).unwrap();
    let out = h.ask(Op::Destroy {
        name: "echo".into(),
    });
    assert_eq!(events(&out), [("echo".into(), AppState::Destroyed)]);
    assert!(h.apps.list().is_empty());
    assert!(h.fake.domains.is_empty(), "nothing left behind");
}

#[test]
fn a_stop_with_grace_asks_then_destroys_at_the_deadline() {
    let mut h = Harness::new();
    h.result(create("echo", spec(16))).unwrap();
    h.result(Op::Start {
        name: "echo".into(),
    })
    .unwrap();
    let out = h.ask(Op::Stop {
        name: "echo".into(),
        grace_ms: 50,
    });
    assert_eq!(events(&out), [("echo".into(), AppState::Stopping)]);
    assert!(h
        .fake
        .calls
        .contains(&"write /local/domain/11/control/shutdown poweroff".to_string()));
    assert!(
        h.apps.tick(Instant::now(), &mut h.fake).is_empty(),
        "not yet"
    );
    let later = Instant::now() + Duration::from_millis(60);
    assert_eq!(
        events(&h.apps.tick(later, &mut h.fake)),
        [("echo".into(), AppState::Halted)]
    );
    assert!(h.fake.domains.is_empty());
}

#[test]
fn the_nodes_limits_are_kept() {
    let mut h = Harness::new();
    assert_eq!(h.refusal(create("big", spec(65))), RefusalKind::OverLimit);
    h.result(create("a", spec(40))).unwrap();
    assert_eq!(
        h.refusal(create("b", spec(40))),
        RefusalKind::OverLimit,
        "memory"
    );
    let mut two = spec(8);
    two.vcpus = 2;
    assert_eq!(h.refusal(create("b", two)), RefusalKind::OverLimit, "vcpus");
    h.result(create("b", spec(8))).unwrap();
    assert_eq!(
        h.refusal(create("c", spec(8))),
        RefusalKind::OverLimit,
        "count"
    );
    // A halted app's resources are free again.
    h.result(Op::Stop {
        name: "a".into(),
        grace_ms: 0,
    })
    .unwrap();
    h.result(create("c", spec(40))).unwrap();
}

#[test]
fn volumes_lie_on_the_data_disk_and_disks_are_exclusive() {
    let mut h = Harness::new();
    let mut outside = spec(8);
    outside.kernel = extent(62, 4);
    assert_eq!(h.refusal(create("a", outside)), RefusalKind::Volume);
    let mut with_disk = spec(8);
    with_disk.disks.push(DiskUse {
        extent: extent(8, 2),
        read_only: false,
    });
    h.result(create("a", with_disk.clone())).unwrap();
    assert_eq!(
        h.fake.calls[..2],
        [
            "map /dev/vdd 8388608 2097152 rw".to_string(),
            "create app-a 8 MiB 1 vcpus cmdline \"ip=10.77.0.5/24\" from /dev/vdd at Some((0, 4194304)) disks [\"/dev/loop8\"]"
                .to_string()
        ]
    );
    assert_eq!(
        h.refusal(create("b", with_disk)),
        RefusalKind::Volume,
        "the disk at 8 MiB is a's"
    );
    let mut overlapping = spec(8);
    overlapping.kernel = extent(9, 4);
    assert_eq!(
        h.refusal(create("b", overlapping)),
        RefusalKind::Volume,
        "a's disk may not be another's kernel"
    );
    // Two apps may boot from one volume.
    h.result(create("b", spec(8))).unwrap();
}

#[test]
fn bad_requests_are_refused_and_change_nothing() {
    let mut h = Harness::new();
    h.result(create("echo", spec(8))).unwrap();
    assert_eq!(h.refusal(create("echo", spec(8))), RefusalKind::Exists);
    assert_eq!(h.refusal(create("Bad/Name", spec(8))), RefusalKind::Invalid);
    assert_eq!(h.refusal(create("zero", spec(0))), RefusalKind::Invalid);
    assert_eq!(
        h.refusal(Op::Start {
            name: "nobody".into()
        }),
        RefusalKind::Unknown
    );
    assert_eq!(
        h.refusal(Op::Destroy {
            name: "../x".into()
        }),
        RefusalKind::Invalid
    );
    assert_eq!(
        h.refusal(Op::Stop {
            name: "echo".into(),
            grace_ms: 3_600_000
        }),
        RefusalKind::Invalid
    );
    h.result(Op::Start {
        name: "echo".into(),
    })
    .unwrap();
    assert_eq!(
        h.refusal(Op::Start {
            name: "echo".into()
        }),
        RefusalKind::WrongState
    );
    assert_eq!(h.refusal(Op::Hello { version: 99 }), RefusalKind::Version);
    // Garbage: a reply with id 0, nothing else.
    let out = h
        .apps
        .handle(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff], &mut h.fake);
    assert!(matches!(
        &out[..],
        [FromLauncher::Reply {
            id: 0,
            result: Err(Refusal {
                kind: RefusalKind::Malformed,
                ..
            })
        }]
    ));
    // A failed creation leaves nothing.
    h.fake.fail_create = true;
    assert_eq!(
        h.result(create("other", spec(8))).unwrap_err().kind,
        RefusalKind::Platform
    );
    assert_eq!(h.apps.list().len(), 1);
}

#[test]
fn nothing_but_hello_before_hello() {
    let sys = SysBlock::new();
    let mut apps = Apps::new(config(), sys.0.clone());
    let mut fake = Fake::default();
    let frame = encode(&Request {
        id: 1,
        op: create("echo", spec(8)),
    })
    .unwrap();
    let out = apps.handle(&frame[4..], &mut fake);
    assert!(matches!(
        &out[..],
        [FromLauncher::Reply {
            id: 1,
            result: Err(Refusal {
                kind: RefusalKind::Version,
                ..
            })
        }]
    ));
    assert!(fake.calls.is_empty());
}

#[test]
fn shutdowns_and_vanished_domains_are_reported_and_cleaned_up() {
    let mut h = Harness::new();
    for name in ["ok", "crash"] {
        h.result(create(name, spec(8))).unwrap();
        h.result(Op::Start { name: name.into() }).unwrap();
    }
    h.fake.domains.get_mut(&11).unwrap().1 = DomainState::Shutdown(ShutdownReason::Poweroff);
    h.fake.domains.get_mut(&12).unwrap().1 = DomainState::Shutdown(ShutdownReason::Poweroff);
    h.fake.exit_statuses.insert(12, 101);
    // A pillar's domain (domid 3) that shut down is none of the service's business.
    let mut all = h.fake.domains().unwrap();
    all.insert(3, DomainState::Shutdown(ShutdownReason::Crash));
    let out = h.apps.check_domains(&all, &mut h.fake);
    assert_eq!(
        events(&out),
        [
            ("ok".into(), AppState::Halted),
            (
                "crash".into(),
                AppState::Crashed("exited with status 101".into())
            )
        ]
    );
    assert!(
        !h.fake.calls.iter().any(|c| c == "destroy 3"),
        "never a pillar"
    );
    assert!(h.fake.domains.is_empty());
    // One destroyed from outside.
    h.result(create("ok", spec(8))).unwrap();
    h.fake.domains.clear();
    let out = h.apps.check_domains(&HashMap::new(), &mut h.fake);
    assert_eq!(
        events(&out),
        [(
            "ok".into(),
            AppState::Crashed("its domain 13 disappeared".into())
        )]
    );
    assert!(!h.apps.has_domains());
}

#[test]
fn a_new_connection_sees_the_apps_that_run() {
    let mut h = Harness::new();
    h.result(create("echo", spec(8))).unwrap();
    h.apps.connected();
    assert_eq!(h.refusal(Op::List), RefusalKind::Version);
    let Ok(Reply::Welcome { limits, domains }) = h.result(Op::Hello { version: VERSION }) else {
        panic!("no welcome")
    };
    assert_eq!(limits.count, 2);
    assert_eq!(domains.len(), 1);
    assert_eq!(domains[0].domid, Some(11));
    assert_eq!(domains[0].state, AppState::Created);
}

#[test]
fn the_apps_table_is_checked_against_the_node() {
    let manifest = crate::manifest::Manifest::parse(
        "[services.domainmgr]\nimage = \"d\"\nmemory = 8\ndisks = [\"data\"]\n\
         [services.app-x]\nimage = \"x\"\nmemory = 8\n\
         [disks.data]\nsize_mib = 1\n\
         [apps]\nmanager = \"nobody\"\nmemory_mib = 1\nvcpus = 0\ncount = 0\ndata = \"missing\"\n",
    )
    .unwrap();
    let errors = manifest
        .apps
        .as_ref()
        .unwrap()
        .check(manifest.services.iter(), &manifest.disks);
    assert_eq!(
        errors,
        [
            "[apps]: service `app-x`: `app-` starts the names of app domains",
            "[apps]: manager `nobody` is not one of the node's services",
            "[apps]: count must be 1 to 64",
            "[apps]: memory_mib = 1 is outside 2..=1048576",
            "[apps]: vcpus must be 1 to 128",
            "[apps]: data disk `missing` is not one of the node's [disks]",
        ]
    );
}

#[test]
fn an_app_joins_only_a_bridge_the_node_declares() {
    let mut h = Harness::new();
    let on = |bridge: Option<&str>| AppSpec {
        network: bridge.map(String::from),
        ..spec(8)
    };
    h.result(create("local", on(Some("lichenni1")))).unwrap();
    h.result(create("none", on(None))).unwrap();
    for bad in ["lichenni2", "eth0", "lichenbr0;reboot"] {
        assert_eq!(
            h.refusal(create("bad", on(Some(bad)))),
            RefusalKind::Invalid
        );
    }
}

/// A bundle's header as img/mklinuxapp writes it, for a kernel of `kernel` bytes.
fn bundle_head(kernel: u64, initramfs: u64) -> Vec<u8> {
    let mut head = crate::bundle::MAGIC.to_vec();
    let cmdline = b"console=hvc0 quiet";
    head.extend_from_slice(&1u32.to_le_bytes());
    head.extend_from_slice(&(cmdline.len() as u32).to_le_bytes());
    let initrd_at = 4096 + kernel.div_ceil(4096) * 4096;
    for v in [4096, kernel, initrd_at, initramfs] {
        head.extend_from_slice(&v.to_le_bytes());
    }
    head.extend_from_slice(cmdline);
    head.resize(4096, 0);
    head
}

#[test]
fn a_linux_bundle_boots_through_xl_from_loop_devices_over_its_parts() {
    let mut h = Harness::new();
    h.fake.heads.insert(8 << 20, bundle_head(3_000_000, 8192));
    let mut linux = spec(48);
    linux.kernel = extent(8, 4);
    linux.cmdline = "linuxapp.report=10.0.2.2:8080".into();
    linux.disks = vec![DiskUse {
        extent: extent(16, 9),
        read_only: false,
    }];
    let out = h.ask(create("linux", linux));
    assert_eq!(events(&out), [("linux".into(), AppState::Created)]);
    let kernel_at = (8u64 << 20) + 4096;
    let initrd_at = kernel_at + 3_000_000u64.div_ceil(4096) * 4096;
    assert_eq!(
        h.fake.calls,
        [
            format!("map /dev/vdd {} {} rw", 16u64 << 20, 9u64 << 20),
            format!("map /dev/vdd {kernel_at} {} ro", 3_000_000u64.div_ceil(4096) * 4096),
            format!("map /dev/vdd {initrd_at} 8192 ro"),
            "create app-linux 48 MiB 1 vcpus cmdline \"console=hvc0 quiet linuxapp.report=10.0.2.2:8080\" \
             from /dev/loop8 at None disks [\"/dev/loop16\"] via xl, ramdisk Some(\"/dev/loop10\")"
                .to_string(),
        ]
    );
}

#[test]
fn a_malformed_bundle_is_refused_with_its_reason_and_changes_nothing() {
    let mut h = Harness::new();
    let mut truncated = spec(48);
    truncated.kernel = extent(8, 2);
    // The kernel runs past the volume's end (a bundle cut short onto a smaller volume).
    h.fake.heads.insert(8 << 20, bundle_head(3_000_000, 8192));
    assert_eq!(
        h.refusal(create("linux", truncated.clone())),
        RefusalKind::Volume
    );
    let refusal = h.result(create("linux", truncated.clone())).unwrap_err();
    assert!(
        refusal.message.contains("a malformed Linux bundle")
            && refusal.message.contains("does not fit"),
        "{refusal:?}"
    );
    // A header cut short, a bad version, a command line with a newline.
    let mut short = bundle_head(100, 0);
    short.truncate(200);
    let mut version = bundle_head(100, 0);
    version[8] = 9;
    let mut control = bundle_head(100, 0);
    control[50] = b'\n';
    for head in [short, version, control] {
        h.fake.heads.insert(8 << 20, head);
        assert_eq!(
            h.refusal(create("linux", truncated.clone())),
            RefusalKind::Volume
        );
    }
    assert!(h.apps.list().is_empty());
}

#[test]
fn a_long_platform_error_is_cut_to_fit_a_reply() {
    // `xl create`'s standard error can be many lines: the refusal must still fit a frame.
    let cut = bounded("é".repeat(5000));
    assert!(
        cut.len() <= MAX_ERROR + 4 && cut.ends_with(" ..."),
        "{}",
        cut.len()
    );
    let out = reply(1, Err(Refusal::new(RefusalKind::Platform, cut)));
    assert!(encode(&out).is_ok());
    assert_eq!(bounded("short".into()), "short");
}
