//! The EVE node under Xen (xen/nodes/eve.toml: every pillar written so far) with the bundled
//! controller on the host, one boot:
//!
//! 1. onboarding: the controller lists the device; its first device report arrives;
//! 2. a configuration set with the controller's admin CLI arrives at the next poll (zedagent
//!    and diag print it) and is checkpointed; metrics arrive every `timer.metric.interval`;
//! 3. apps (docs/apps.md): `admin app deploy` of lichen's `echo` (a PVH kernel) reaches RUNNING:
//!    volumemgr places its volume on the app data disk, the downloader fills it from the
//!    controller's HTTPS datastore and verifies it, zedmanager and domainmgr boot it through the
//!    launcher; the `apps-kill` dom0 hook then destroys domainmgr, and the restarted one adopts
//!    the running app (same domain); an app asking for more memory than the node gives apps is
//!    ERROR with the launcher's reason, and echo runs on; echo's network card is on the local
//!    network instance deploy made, its address from zedrouter's DHCP; then the app's
//!    lifecycle from the controller's admin CLI ([`Lifecycle`]): `app delete big` and `app
//!    restart echo` (a new domain, restarts 1), `app purge echo` (its volume made again,
//!    restarts 2), `app stop` (HALTED) and `app start echo`, a new image deployed under the
//!    same name (EVE's app_replace: restarts 3); `bad`, whose file in the datastore does not
//!    match its SHA-256 (ERROR with both hashes, nothing boots), then deleted; `late`, whose
//!    file the datastore serves cut short (a wrong SHA-256 again, retried with backoff; the
//!    `apps-kill` hook destroys the downloader, and zedmanager, meanwhile) until the test puts
//!    the whole file back: RUNNING, downloaded by the restarted downloader, booted by the
//!    restarted zedmanager, which kept echo's domain as it was (its records in the vault);
//!    the hook destroyed zedrouter too, once domainmgr's adoption was done: the restarted
//!    zedrouter kept echo's address and port map ([`zedrouter_restart_kept_addresses`]);
//! 4. the controller is stopped; the `zedagent-kill` dom0 hook destroys zedagent (`xl destroy`)
//!    once a poll failed, and the restarted one once it queued its report in the vault; the
//!    launcher restarts it each time (same identity, the configuration from the checkpoint);
//! 5. the controller is started again (same state, same port): the third zedagent registers
//!    again (200, the same UUID) and delivers the queued reports: the controller holds three
//!    device reports, one per zedagent start, none lost;
//! 6. the node's log lines reached the controller as newlogs (the logs pillar): zedagent's
//!    onboarding line among them, from several pillars ([`newlogs_arrived`]);
//! 7. the metrics hold the node's services (the launcher's rows, read by zedagent from
//!    xenstore): each pillar's state and its domain's CPU time and memory
//!    ([`services_in_metrics`]);
//! 8. `admin devices show` lists the apps, volumes and content trees zedagent reported
//!    (zedmanager's, volumemgr's and the downloader's statuses): echo RUNNING, its volume
//!    made ([`objects_in_device_show`]);
//! 9. a second boot of the same disks: the same device again, its apps running from their
//!    volumes ([`the_node_comes_back_after_a_reboot`]).
//!
//! Issue 17's checks at the controller ride on the first boot: echo's port map and its flows
//! ([`port_map_reaches_echo`]); echo resolving a name through zedrouter's DNS forwarder and
//! trying a connection its ACL drops, both in the flow log at the controller, and the network
//! instance's info (state, echo's address) and drop counters in `admin devices show`
//! ([`dns_and_drops_at_the_controller`]).

use std::time::Duration;

use std::path::{Path, PathBuf};

use lichen_tests::controller::{config_partition, onboarding_cert, Controller, TempDir};
use lichen_xen_tests::boot_watching;
use sha2::{Digest, Sha256};

const MANIFEST: &str = include_str!("../../../xen/nodes/eve.toml");
const SERIAL: &str = "xen-node-1";

/// Where the lifecycle steps (in 3) stand: each waits for a line of the node's console.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Lifecycle {
    Restarted,
    Purged,
    Stopped,
    Started,
    Replaced,
    BadSha,
    CutShort,
    Late,
}

/// Where the test stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Onboarding,
    Configuring,
    Deploying,
    Adopting,
    OverLimit,
    Lifecycle(Lifecycle),
    Outage,
    Back,
    Done,
}

#[test]
fn the_node_onboards_takes_a_config_and_loses_no_report_across_crashes_and_an_outage() {
    let dir = TempDir::new("xen-node");
    let state = dir.0.join("state");
    let mut controller = Some(Controller::start(&state, &["10.0.2.2"]));
    let port = controller.as_ref().unwrap().port;
    onboarding_cert(&dir.0);
    controller.as_ref().unwrap().admin(&[
        "onboarding",
        "add",
        dir.0.join("onboard.pem").to_str().unwrap(),
        "--serial",
        SERIAL,
    ]);
    let config = config_partition(
        &dir.0,
        &state.join("ca.pem"),
        &format!("10.0.2.2:{port}"),
        SERIAL,
        true,
    );
    let config_file = dir.0.join("config.yaml");
    std::fs::write(
        &config_file,
        "configItems:\n  - { key: timer.config.interval, value: \"3\" }\n  - { key: timer.metric.interval, value: \"4\" }\n",
    )
    .unwrap();

    // Short timers, the kill hook.
    let short_timers = MANIFEST.replace(
        "cmdline = \"config_interval=10\"",
        "cmdline = \"config_interval=2 metric_interval=3\"",
    );
    let manifest = short_timers.clone()
        + "\n[test]\nhooks = [\"zedagent-kill\", \"apps-kill\", \"app-portmap\"]\n";
    let manifest = with_app_dns(&manifest);
    // The app's image (not one of the node's).
    let built = std::process::Command::new(lichen_xen_tests::repo().join("scripts/build"))
        .arg("echo")
        .status()
        .unwrap();
    assert!(built.success(), "scripts/build echo failed");
    let echo_path = lichen_xen_tests::repo().join("target/images/echo.elf");
    let images = Images::new(&echo_path, &dir.0, &state);
    let echo = echo_path.to_str().unwrap();
    let deploy = |c: &Controller, name: &str, memory_mib: &str| {
        let mut args = vec![
            "app",
            "deploy",
            echo,
            "--name",
            name,
            "--memory-mib",
            memory_mib,
        ];
        if name == "echo" {
            args.extend(PORT_MAP); // see port_map_reaches_echo
            args.extend(ECHO_PROBE); // see dns_and_drops_at_the_controller
        }
        c.admin(&args);
    };
    assert!(
        manifest.contains("config_interval=2"),
        "eve.toml's zedagent line changed"
    );

    let mut step = Step::Onboarding;
    let mut uuid = String::new();
    let mut kills = 0;
    let run = boot_watching(
        "node",
        &manifest,
        &[
            "--fresh-disks",
            "--disk",
            &format!("config={}", config.display()),
        ],
        Duration::from_secs(1200),
        |line| {
            match step {
                Step::Onboarding => {
                    if let Some(rest) = line.split("onboarded as device ").nth(1) {
                        uuid = rest.trim().to_string();
                        let c = controller.as_ref().unwrap();
                        c.admin(&["config", "set", &uuid, config_file.to_str().unwrap()]);
                        step = Step::Configuring;
                    }
                }
                Step::Configuring => {
                    // diag shows the configuration in force; the controller goes away.
                    if line.contains("config 1 from the controller") && line.contains("metrics") {
                        deploy(controller.as_ref().unwrap(), "echo", "32");
                        step = Step::Deploying;
                    }
                }
                Step::Deploying => {
                    if line.contains("apps-kill: destroyed domainmgr") {
                        step = Step::Adopting;
                    }
                }
                Step::Adopting => {
                    if line.contains("domain service: connected;")
                        && line.contains("1 app domains exist")
                    {
                        deploy(controller.as_ref().unwrap(), "big", "512");
                        step = Step::OverLimit;
                    }
                }
                Step::OverLimit => {
                    if line.contains("app big ERROR") {
                        let c = controller.as_ref().unwrap();
                        c.admin(&["app", "delete", "big"]);
                        c.admin(&["app", "restart", "echo"]);
                        step = Step::Lifecycle(Lifecycle::Restarted);
                    }
                }
                Step::Lifecycle(stage) => {
                    let c = controller.as_ref().unwrap();
                    if let Some(next) = lifecycle(stage, line, c, &images) {
                        step = next.map_or_else(
                            || {
                                controller = None;
                                Step::Outage
                            },
                            Step::Lifecycle,
                        );
                    }
                }
                Step::Outage => {
                    if line.contains("zedagent-kill: destroyed zedagent") {
                        kills += 1;
                    }
                    // The third zedagent has its predecessor's report and its own queued.
                    if kills == 2 && line.contains("device report queued (2 waiting") {
                        controller = Some(Controller::start_on(&state, &["10.0.2.2"], port));
                        step = Step::Back;
                    }
                }
                Step::Back => {
                    if line.contains("device report delivered (201), 0 waiting") {
                        step = Step::Done;
                        return true;
                    }
                }
                Step::Done => return true,
            }
            false
        },
    );
    assert_eq!(
        step,
        Step::Done,
        "the node stopped at {step:?}:\n{}",
        run.log
    );
    let controller = controller.expect("the controller is back");

    // 1. Onboarded, listed.
    run.assert_has("zedagent: register: 201 Created");
    let devices = controller.admin(&["devices", "list"]);
    assert!(
        devices.contains(&uuid) && devices.contains(SERIAL),
        "{devices}"
    );
    // 2. The configuration arrived, its timers taken; metrics reached the controller.
    run.assert_has("config version 1 from the controller");
    run.assert_has("polling every 3 s, metrics every 4 s");
    let metrics = controller.admin(&["follow", &uuid, "--kinds", "metrics", "--no-wait"]);
    assert!(metrics.contains("\"iName\":\"uplink\""), "{metrics}");
    // 3. The app: downloaded, verified, booted; adopted by the restarted domainmgr; the app
    // beyond the limits refused alone.
    run.assert_has("downloader: echo Verified");
    run.assert_has("volumemgr: volume echo Created");
    run.assert_has("app echo RUNNING");
    run.assert_has("echo: echo: listening");
    // On the network instance deploy made (`default`, 10.1.0.0/24), served by zedrouter.
    run.assert_has("echo: echo: ipv4 address 10.1.0.");
    // Apps' domains are named by the app's UUID (diag: `<uuid>: app echo RUNNING`).
    let echo_uuid = run
        .log
        .lines()
        .find_map(|l| {
            l.split(": app echo RUNNING")
                .next()
                .filter(|_| l.contains(": app echo RUNNING"))
        })
        .and_then(|head| head.rsplit(' ').next())
        .unwrap_or_default()
        .to_string();
    assert_eq!(echo_uuid.len(), 36, "echo's UUID from diag: {echo_uuid:?}");
    run.assert_has(&format!("app-{echo_uuid} | "));
    let adopted = run
        .log
        .lines()
        .filter(|l| l.contains("domain service: connected;"))
        .nth(1)
        .unwrap_or_default();
    assert!(adopted.contains("1 app domains exist"), "{adopted}");
    run.assert_has("OverLimit: memory MiB: 512 asked");
    assert_eq!(
        run.count(&format!("launcher: app {echo_uuid}: domain")),
        0,
        "echo's domain never ended:\n{}",
        run.log
    );
    lifecycle_seen(&run, &echo_uuid);
    // 4. Two crashes, two restarts; the restarted zedagents kept the identity and the
    // configuration.
    run.assert_has("launcher: zedagent: its domain");
    assert!(
        run.count("device identity restored from the vault") >= 2,
        "{}",
        run.log
    );
    assert!(
        // The version the apps steps left (each deploy is a new one).
        run.count(" from the checkpoint: ") >= 2,
        "{}",
        run.log
    );
    run.assert_has("info: 1 reports restored from the vault");
    // 5. Registered again as the same device, every report delivered.
    run.assert_has("register: 200 OK (known device)");
    assert_eq!(
        run.count(&format!("onboarded as device {uuid}")),
        run.count("onboarded as device ")
    );
    let info = controller.admin(&["follow", &uuid, "--kinds", "info", "--no-wait"]);
    // Device reports only: an app's report has a boot time too.
    let mut boot_times: Vec<&str> = info
        .lines()
        .filter(|l| l.contains("\"dinfo\""))
        .filter_map(|l| l.split("\"bootTime\":\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert_eq!(
        boot_times.len(),
        3,
        "three device reports, one per zedagent start:\n{info}"
    );
    boot_times.dedup();
    assert_eq!(boot_times.len(), 3, "{info}");
    newlogs_arrived(&run, &controller, &uuid);
    services_in_metrics(&run, &controller, &uuid);
    objects_in_device_show(&controller, &uuid);
    port_map_reaches_echo(&run, &controller, &uuid);
    zedrouter_restart_kept_addresses(&run);
    dns_and_drops_at_the_controller(&run, &controller, &uuid, &echo_uuid);
    let leases = leases_in(&run.log);
    assert!(!leases.is_empty(), "zedrouter leased nothing:\n{}", run.log);
    drop(run);
    the_node_comes_back_after_a_reboot(&short_timers, &config, &uuid, &leases);
}

/// The (address, MAC) pairs zedrouter logged as leased (`zedrouter: dhcp lease IP -> MAC`).
fn leases_in(log: &str) -> std::collections::BTreeSet<(String, String)> {
    log.lines()
        .filter_map(|l| l.split("zedrouter: dhcp lease ").nth(1))
        .filter_map(|rest| {
            let mut words = rest.split_whitespace();
            let ip = words.next()?;
            words.next().filter(|w| *w == "->")?;
            Some((ip.to_string(), words.next()?.to_string()))
        })
        .collect()
}

/// Step 9, a second boot of the same node (its disks kept, no hooks): the same device
/// registers again (200, the identity from the vault), and its apps run again from the
/// volumes on the app data disk. zedrouter takes its leases back from the vault, and every
/// app leases the address it had (`before`: the first boot's leases).
fn the_node_comes_back_after_a_reboot(
    manifest: &str,
    config: &Path,
    uuid: &str,
    before: &std::collections::BTreeSet<(String, String)>,
) {
    let mut onboarded = false;
    let mut apps = (false, false);
    let (mut restored, mut leased) = (false, false);
    let run = boot_watching(
        "node",
        manifest,
        &["--disk", &format!("config={}", config.display())],
        Duration::from_secs(600),
        |line| {
            onboarded |= line.contains(&format!("onboarded as device {uuid}"));
            apps.0 |= line.contains("app echo RUNNING");
            apps.1 |= line.contains("app late RUNNING");
            restored |= line.contains("leases from the vault");
            leased |= restored && line.contains("zedrouter: dhcp lease ");
            onboarded && apps.0 && apps.1 && leased
        },
    );
    assert!(
        onboarded && apps.0 && apps.1,
        "after the reboot: onboarded {onboarded}, echo and late running {apps:?}:\n{}",
        run.log
    );
    run.assert_has("register: 200 OK (known device)");
    run.assert_has("device identity restored from the vault");
    assert_eq!(run.count("register: 201"), 0, "{}", run.log);
    // zedrouter's leases came back from the vault, and no app got another address.
    let from_vault: usize = run
        .log
        .lines()
        .filter(|l| l.contains(" leases from the vault"))
        .filter_map(|l| {
            l.split(" leases from the vault")
                .next()?
                .rsplit(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum();
    assert!(
        from_vault >= 1 && leased,
        "no leases from the vault:\n{}",
        run.log
    );
    let after = leases_in(&run.log);
    assert!(
        after.is_subset(before),
        "leases after the reboot {after:?}, before {before:?}"
    );
}

/// The images of the lifecycle steps: echo with a tail that changes its SHA-256 (ELF loaders
/// ignore bytes past the segments), and where the controller's datastore keeps files.
struct Images {
    /// echo's second version.
    replacement: PathBuf,
    /// An app whose file the datastore will hold corrupted.
    bad: PathBuf,
    /// An app whose file the datastore will hold cut short, then whole.
    late: PathBuf,
    /// The controller's datastore directory.
    datastore: PathBuf,
}

impl Images {
    fn new(echo: &Path, dir: &Path, state: &Path) -> Images {
        let bytes = std::fs::read(echo).unwrap();
        let variant = |name: &str| {
            let path = dir.join(format!("{name}.elf"));
            let mut tail = bytes.clone();
            tail.extend_from_slice(format!("lichen node test: {name}\n").as_bytes());
            std::fs::write(&path, tail).unwrap();
            path
        };
        Images {
            replacement: variant("echo-2"),
            bad: variant("bad"),
            late: variant("late"),
            datastore: state.join("datastore"),
        }
    }

    /// Puts `contents` in the datastore under the SHA-256 of `image`'s bytes: the controller
    /// keeps a file it already has, so its upload of `image` then serves `contents`.
    fn plant(&self, image: &Path, contents: &[u8]) {
        let bytes = std::fs::read(image).unwrap();
        let name: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::create_dir_all(&self.datastore).unwrap();
        let temporary = self.datastore.join(".planted");
        std::fs::write(&temporary, contents).unwrap();
        std::fs::rename(&temporary, self.datastore.join(name)).unwrap();
    }
}

/// One lifecycle step (in 3): on the line that ends `stage`, starts the next one and returns it
/// (`Some(None)`: all done).
fn lifecycle(
    stage: Lifecycle,
    line: &str,
    c: &Controller,
    images: &Images,
) -> Option<Option<Lifecycle>> {
    let admin = |args: &[&str]| {
        c.admin(args);
    };
    let deploy = |image: &Path, name: &str| {
        let mut args = vec![
            "app",
            "deploy",
            image.to_str().unwrap(),
            "--name",
            name,
            "--memory-mib",
            "32",
        ];
        if name == "echo" {
            args.extend(PORT_MAP); // the new image keeps echo's port map
            args.extend(ECHO_PROBE); // and its probe
        }
        admin(&args)
    };
    let next = match stage {
        Lifecycle::Restarted if line.contains("app echo RUNNING restarts 1") => {
            admin(&["app", "purge", "echo"]);
            Lifecycle::Purged
        }
        Lifecycle::Purged if line.contains("app echo RUNNING restarts 2") => {
            admin(&["app", "stop", "echo"]);
            Lifecycle::Stopped
        }
        Lifecycle::Stopped if line.contains("app echo HALTED") => {
            admin(&["app", "start", "echo"]);
            Lifecycle::Started
        }
        Lifecycle::Started if line.contains("app echo RUNNING") => {
            deploy(&images.replacement, "echo");
            Lifecycle::Replaced
        }
        Lifecycle::Replaced if line.contains("app echo RUNNING restarts 3") => {
            // The same length, other bytes: only the hash tells.
            let mut corrupted = std::fs::read(&images.bad).unwrap();
            let middle = corrupted.len() / 2;
            corrupted[middle] ^= 0xff;
            images.plant(&images.bad, &corrupted);
            deploy(&images.bad, "bad");
            Lifecycle::BadSha
        }
        Lifecycle::BadSha if line.contains("app bad ERROR") => {
            admin(&["app", "delete", "bad"]);
            let whole = std::fs::read(&images.late).unwrap();
            images.plant(&images.late, &whole[..whole.len() / 2]);
            deploy(&images.late, "late");
            Lifecycle::CutShort
        }
        Lifecycle::CutShort if line.contains("apps-kill: destroyed downloader") => {
            images.plant(&images.late, &std::fs::read(&images.late).unwrap());
            Lifecycle::Late
        }
        Lifecycle::Late if line.contains("app late RUNNING") => return Some(None),
        _ => return None,
    };
    Some(Some(next))
}

/// The lifecycle steps' evidence in the log, beyond the lines the steps waited for.
fn lifecycle_seen(run: &lichen_xen_tests::Run, echo_uuid: &str) {
    // The purge made the volume again: echo downloaded three times (deploy, purge, new image).
    assert!(
        run.count("downloader: echo Verified") >= 3,
        "purge did not refill echo's volume:\n{}",
        run.log
    );
    run.assert_has("app echo HALTED");
    // The replacement kept the app's UUID.
    run.assert_has(&format!("{echo_uuid}: app echo RUNNING restarts 3"));
    // The corrupted file: ERROR naming both hashes; bad never booted.
    run.assert_has("sha256 mismatch: the content tree says");
    assert_eq!(run.count("app bad RUNNING"), 0, "{}", run.log);
    assert_eq!(run.count("bad: echo: listening"), 0, "{}", run.log);
    // The file cut short: retried until whole, by the restarted downloader.
    run.assert_has("apps-kill: destroyed downloader");
    run.assert_has("app late RUNNING");
    // zedmanager destroyed meanwhile: the new one took both apps up from its records in the
    // vault, so late booted and echo's domain was neither replaced nor counted restarted.
    let (_, after) = run
        .log
        .split_once("apps-kill: destroyed zedmanager")
        .expect("the hook destroyed zedmanager");
    assert!(
        after.contains("zedmanager: 2 apps restored from the vault"),
        "{}",
        run.log
    );
    assert!(
        !after.contains(&format!("asking the launcher: destroy {echo_uuid}"))
            && !after.contains("app echo RUNNING restarts 4"),
        "the restarted zedmanager had echo's domain replaced:\n{}",
        run.log
    );
}

/// echo's port map: the node's uplink port 8080 leads to echo's TCP echo (port 7).
const PORT_MAP: [&str; 2] = ["--port-map", "8080:7"];

/// Step 9 (issue 17): echo, deployed with [`PORT_MAP`], is reached from dom0 through
/// zedrouter (the `app-portmap` dom0 hook connects to port 8080 of the uplink address
/// zedrouter leased from QEMU's user network: eve.toml's `uplink=dhcp`),
/// and `admin devices show` lists its flows: inbound to port 7, by its ACE (id 1), accepted,
/// scoped to echo's app UUID (zedrouter knew the app by the MAC the launcher gave its vif).
fn port_map_reaches_echo(run: &lichen_xen_tests::Run, controller: &Controller, uuid: &str) {
    run.assert_has("zedrouter: network instance ");
    run.assert_has("1 app rules in force");
    run.assert_has("zedrouter: uplink lease 10.0.2.");
    run.assert_has("app-portmap: echo answered through 10.0.2.");
    run.assert_has("flowlog of ");
    let show = controller.admin(&["devices", "show", uuid]);
    let flows: Vec<&str> = show
        .lines()
        .filter(|l| l.starts_with("flow ") && l.contains(":7 in acl 1 accept"))
        .collect();
    assert!(!flows.is_empty(), "no flow to echo's port 7:\n{show}");
    let app = flows[0].split_whitespace().nth(1).unwrap_or("");
    assert_eq!(app.len(), 36, "a flow scoped to an app UUID: {}", flows[0]);
}

/// Step 3's second crash (issue 17's live changes): the `apps-kill` hook destroys zedrouter
/// once the restarted domainmgr adopted echo. The launcher restarts it; the new zedrouter
/// takes its DHCP leases back from the vault (at least echo's) and its port map from the bus,
/// so echo answers through the port map again (the `app-portmap` hook's replies go on after
/// the kill), and no address is ever leased to two MACs (the apps it leases to next, late
/// among them, do not get echo's).
fn zedrouter_restart_kept_addresses(run: &lichen_xen_tests::Run) {
    let (_, after) = run
        .log
        .split_once("apps-kill: destroyed zedrouter")
        .expect("the hook destroyed zedrouter");
    let restored: usize = after
        .lines()
        .filter_map(|l| l.split_once(" leases from the vault"))
        .filter_map(|(head, _)| head.rsplit(' ').next()?.parse::<usize>().ok())
        .sum();
    assert!(
        restored >= 1,
        "the restarted zedrouter restored no lease:\n{after}"
    );
    let answered = |l: &str| {
        l.split("app-portmap: ").nth(1).is_some_and(|said| {
            said.starts_with("echo answered again") || said.trim_end().ends_with(" replies")
        })
    };
    assert!(
        after.lines().any(answered),
        "echo did not answer through the restarted zedrouter:\n{}",
        run.log
    );
    let mut owner = std::collections::BTreeMap::new();
    for (ip, mac) in leases_in(&run.log) {
        if let Some(other) = owner.insert(ip.clone(), mac.clone()) {
            panic!("{ip} leased to {other} and {mac}:\n{}", run.log);
        }
    }
}

/// Step 8: the controller shows what zedagent reported of the node's objects: the echo app
/// RUNNING (reported before the outage) and its volume made. (Its content tree's download
/// status may come and go between two of zedagent's looks: a small image downloads in less
/// than a second, so it is not asserted.)
fn objects_in_device_show(controller: &Controller, uuid: &str) {
    let show = controller.admin(&["devices", "show", uuid]);
    let line = |prefix: &str, what: &str| {
        show.lines()
            .any(|l| l.starts_with(prefix) && l.contains(what))
    };
    assert!(line("app ", "\"echo\" RUNNING"), "{show}");
    assert!(line("volume ", "CREATED_VOLUME 100%"), "{show}");
}

/// Step 6: the metrics the controller stored hold every pillar of eve.toml as metric items
/// (`service.<name>.state`, `.cpu_ms`, `.memory_kib`, `.restarts`), some running, and the apps
/// as app metrics.
fn services_in_metrics(run: &lichen_xen_tests::Run, controller: &Controller, uuid: &str) {
    let metrics = controller.admin(&["follow", uuid, "--kinds", "metrics", "--no-wait"]);
    for service in ["vault", "zedagent", "diag", "logs"] {
        for what in ["state", "restarts", "cpu_ms", "memory_kib"] {
            let key = format!("\"key\":\"service.{service}.{what}\"");
            assert!(
                metrics.contains(&key),
                "no {key} in the metrics:\n{metrics}"
            );
        }
    }
    assert!(metrics.contains("\"stringValue\":\"running\""), "{metrics}");
    // The apps' metrics: the launcher's rows of app domains, named from the configuration.
    assert!(
        metrics.contains("\"AppName\":\"echo\""),
        "no app metrics for echo:\n{metrics}"
    );
    assert!(
        !run.log.contains("the node's services cannot be read"),
        "{}",
        run.log
    );
}

/// Step 5: the logs pillar delivered the node's log lines (batches of newlogs) to the
/// controller: zedagent's onboarding line is there, and lines from at least three pillars.
fn newlogs_arrived(run: &lichen_xen_tests::Run, controller: &Controller, uuid: &str) {
    run.assert_has("logs: first batch delivered to the controller");
    let logs = controller.admin(&["logs", uuid, "--limit", "5000"]);
    assert!(
        logs.contains(&format!("zedagent: onboarded as device {uuid}")),
        "zedagent's onboarding line is not among the controller's logs:\n{logs}"
    );
    // `admin logs` lines: time, severity, source, text.
    let mut sources: Vec<&str> = logs
        .lines()
        .filter_map(|line| line.split_whitespace().nth(2))
        .collect();
    sources.sort_unstable();
    sources.dedup();
    assert!(
        sources.contains(&"zedagent") && sources.len() >= 3,
        "lines from {sources:?} only:\n{logs}"
    );
}

/// echo's user data (its command line, services/echo/src/probe.rs): every 20 s it resolves
/// `app.lichen.test` through zedrouter's DNS forwarder and tries a TCP connection to dom0's
/// 10.0.2.199:9, which its ACL (the port map alone) does not allow: the default deny drops it.
const ECHO_PROBE: [&str; 2] = [
    "--user-data",
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/echo-probe.args"),
];

/// The node test's manifest with dom0 as the DNS server of zedrouter's uplink: the `app-dns`
/// hook (xen/dom0/hooks/app-dns: `app.lichen.test` is 10.0.2.42) answers on 10.0.2.199, the
/// address the `app-portmap` hook gives dom0 on the uplink bridge (QEMU's user network has no
/// name the test controls): `dns=` keeps it over the resolver of zedrouter's uplink lease.
fn with_app_dns(manifest: &str) -> String {
    let zedrouter = "cmdline = \"uplink=dhcp ";
    assert!(
        manifest.contains(zedrouter),
        "eve.toml's zedrouter line changed"
    );
    manifest
        .replace(zedrouter, &format!("{zedrouter}dns=10.0.2.199 "))
        .replace("\"app-portmap\"]", "\"app-portmap\", \"app-dns\"]")
}

/// Issue 17 at the controller: echo ([`ECHO_PROBE`]) resolved `app.lichen.test` through
/// zedrouter (dom0's server saw the query from zedrouter's uplink address) and its connection
/// to 10.0.2.199:9 was dropped. The controller holds both in echo's flow log (`dnsReqs`, and a
/// record with action drop); `admin devices show` lists the network instance online with
/// echo's address (from zedagent's `niinfo`) and its counters with ACL drops (from the
/// metrics).
fn dns_and_drops_at_the_controller(
    run: &lichen_xen_tests::Run,
    controller: &Controller,
    uuid: &str,
    echo_uuid: &str,
) {
    use serde_json::Value;
    // lichen-udp-peer: `udp-peer: dns NAME type 1 -> ANSWER from ADDR:PORT`.
    // From zedrouter's uplink address: the one it leased.
    let uplinks: Vec<String> = run
        .log
        .lines()
        .filter_map(|l| l.split("zedrouter: uplink lease ").nth(1))
        .filter_map(|rest| rest.split('/').next())
        .map(|ip| format!(" -> 10.0.2.42 from {ip}:"))
        .collect();
    assert!(
        run.log
            .lines()
            .any(|l| l.starts_with("udp-peer: dns app.lichen.test ")
                && uplinks.iter().any(|from| l.contains(from.as_str()))),
        "dom0's DNS server was not asked by zedrouter (uplink {uplinks:?}):\n{}",
        run.log
    );
    run.assert_has("echo: resolved app.lichen.test -> [10.0.2.42]");
    run.assert_has("echo: probe 10.0.2.199:9: ");
    assert_eq!(
        run.count("echo: probe 10.0.2.199:9: connected"),
        0,
        "{}",
        run.log
    );
    // The flow logs, whole (`devices show` has the newest 20 records only).
    let follow = controller.admin(&["follow", uuid, "--kinds", "flowlog", "--no-wait"]);
    let messages: Vec<Value> = follow
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|r| r.get("message").cloned())
        .filter(|m| m["scope"]["uuid"] == echo_uuid)
        .collect();
    let list = |m: &Value, name: &str| m[name].as_array().cloned().unwrap_or_default();
    let resolved = messages.iter().flat_map(|m| list(m, "dnsReqs")).any(|d| {
        d["hostName"] == "app.lichen.test" && list(&d, "addrs").contains(&"10.0.2.42".into())
    });
    assert!(
        resolved,
        "no dnsReqs for app.lichen.test in echo's flow logs:\n{follow}"
    );
    let dropped = messages.iter().flat_map(|m| list(m, "flows")).any(|f| {
        f["flow"]["dest"] == "10.0.2.199"
            && f["flow"]["destPort"] == 9
            && f["action"] == "ActionDrop"
            && f["inbound"] != true
    });
    assert!(
        dropped,
        "no dropped flow to 10.0.2.199:9 in echo's flow logs:\n{follow}"
    );
    // The network instance at the controller: online, echo's address, its ACL drops.
    let show = controller.admin(&["devices", "show", uuid]);
    let lines: Vec<&str> = show
        .lines()
        .filter(|l| l.starts_with("network-instance "))
        .collect();
    let online = lines.iter().find(|l| {
        l.contains("\"default\" ZNETINST_STATE_ONLINE local bridge lichenni")
            && l.contains("gateway 10.1.0.1")
    });
    let instance = online
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no online instance `default`:\n{show}"));
    let echo_app = format!("network-instance {instance} app {echo_uuid} ");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&echo_app) && l.contains(" 10.1.0.")),
        "no address of echo on {instance}:\n{show}"
    );
    let acl_drops: u64 = lines
        .iter()
        .find(|l| l.starts_with(&format!("network-instance {instance} counters ")))
        .and_then(|l| l.split(" acl-drops ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counters of {instance}:\n{show}"));
    assert!(
        acl_drops >= 1,
        "no ACL drops counted on {instance}:\n{show}"
    );
}
