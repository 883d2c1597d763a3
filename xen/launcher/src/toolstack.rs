//! The real [`Platform`]: the launcher's own domain builder ([`crate::builder`]) or Xen's `xl` to
//! create domains, privcmd to unpause, list and destroy them (`xl` where privcmd is missing),
//! xenstored's socket for xenstore, xenconsoled's per-guest log files for consoles and its ptys
//! for console input.
//!
//! A service with `toolstack = "lichen"` (the default) and no vif is built by the launcher: a few
//! dozen hypercalls, then the xenstore entries libxl would write and an introduction to
//! xenstored. Xen keeps a domain that shut down until it is destroyed, so the launcher reads its
//! exit status and console first. The others are created with `xl create -p -e` (paused, and
//! without xl's background process) from generated configs that keep a domain after it shuts
//! down (`on_poweroff = "preserve"`, ...).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::builder;
use crate::console::ConsoleTail;
use crate::manifest::{Service, Toolstack as Builder};
use crate::platform::{BootFiles, Created, DomainState, Platform, ShutdownReason, Usage};
use crate::privcmd::Privcmd;
use crate::say;
use crate::wiring::Wiring;
use crate::xenstore::{Op, XenStore};

/// Drives Xen: xl for domains, privcmd for unpausing, xenstored's socket, xenconsoled's logs.
pub struct Toolstack {
    state_dir: PathBuf,
    log_dir: PathBuf,
    consoles: HashMap<String, ConsoleTail>,
    domains_changed: Arc<AtomicBool>,
    store: XenStore,
    privcmd: Option<Privcmd>,
    /// Domains the launcher built, with their handles (for the xenstore cleanup).
    built: HashMap<u32, [u8; 16]>,
    /// Built domains whose console xenconsoled may not have connected yet.
    console_pending: std::collections::HashSet<u32>,
    /// What makes this node's pillar MACs its own ([`node_identity`]).
    node: String,
}

/// The node's identity for its pillars' vif MACs ([`vif_mac`]): the MAC of the uplink bridge
/// (which carries the uplink NIC's), else of dom0's services bridge, else none (a node without
/// networks has no vifs either).
fn node_identity() -> String {
    ["lichenup0", "lichenbr0"]
        .iter()
        .find_map(|bridge| {
            std::fs::read_to_string(format!("/sys/class/net/{bridge}/address"))
                .ok()
                .map(|mac| mac.trim().to_string())
                .filter(|mac| !mac.is_empty())
        })
        .unwrap_or_default()
}

/// The MAC of vif `devid` of domain `name`: an app's from its name, so zedrouter knows whose
/// frames it sees; a pillar's from the node and its service name, so a restart keeps it (and
/// its uplink lease). Both in launcher_api::mac.
pub fn vif_mac(node: &str, name: &str, service: &Service, devid: usize) -> String {
    let mac = match name.strip_prefix("app-").filter(|_| service.app) {
        Some(app) => launcher_api::mac::app_mac(app, devid as u32),
        None => launcher_api::mac::service_mac(node, name, devid as u32),
    };
    launcher_api::mac::mac_text(mac)
}

/// The operations that apply `wiring` to the tree of a domain that has not run yet, outside
/// any transaction: its removals, its writes, then its permissions node by node
/// ([`Wiring::perms_of_written`]; the tree holds nothing else, so no listing is needed).
fn fresh_ops(wiring: &Wiring) -> Vec<Op> {
    let mut ops: Vec<Op> = wiring.removes.iter().cloned().map(Op::Rm).collect();
    for (path, value) in &wiring.writes {
        ops.push(Op::Write(path.clone(), value.clone()));
    }
    let perms = wiring.perms_of_written();
    ops.extend(perms.into_iter().map(|(path, p)| Op::SetPerms(path, p)));
    ops
}

impl Toolstack {
    /// A toolstack that writes domain configs to `state_dir` and reads console logs (xenconsoled's
    /// `guest-<name>.log`) from `log_dir`. It watches `@releaseDomain` to learn of shutdowns.
    pub fn new(state_dir: &Path, log_dir: &Path) -> Result<Toolstack, String> {
        std::fs::create_dir_all(state_dir)
            .map_err(|e| format!("cannot create {}: {e}", state_dir.display()))?;
        let store = XenStore::connect().map_err(|e| format!("cannot reach xenstored: {e}"))?;
        let domains_changed = Arc::new(AtomicBool::new(true));
        watch_domain_releases(domains_changed.clone())?;
        let privcmd = Privcmd::open()
            .map_err(|e| say!("no privcmd ({e}): domains will be unpaused with xl"))
            .ok();
        Ok(Toolstack {
            state_dir: state_dir.to_path_buf(),
            log_dir: log_dir.to_path_buf(),
            consoles: HashMap::new(),
            domains_changed,
            store,
            privcmd,
            built: HashMap::new(),
            console_pending: Default::default(),
            node: node_identity(),
        })
    }
}

impl Toolstack {
    /// Looks once (no waiting) whether xenconsoled connected the consoles of the built domains
    /// still paused, so that a standby's unpause, later, need not ask xenstored on the way of
    /// a restart (that one read took 0.2 s under load).
    fn confirm_consoles(&mut self) {
        let pending: Vec<u32> = self.console_pending.iter().copied().collect();
        for domid in pending {
            let path = format!("/local/domain/{domid}/console/tty");
            if let Ok(Some(tty)) = self.store.read(0, &path) {
                if !tty.trim().is_empty() {
                    self.console_pending.remove(&domid);
                }
            }
        }
    }
}

/// Watches `@releaseDomain` on a connection of its own and raises `flag` on each event (a domain
/// shut down or died). The watcher lives as long as the launcher.
fn watch_domain_releases(flag: Arc<AtomicBool>) -> Result<(), String> {
    let mut store = XenStore::connect().map_err(|e| format!("cannot reach xenstored: {e}"))?;
    store
        .watch("@releaseDomain", "lichen")
        .map_err(|e| format!("cannot watch @releaseDomain: {e}"))?;
    std::thread::spawn(move || {
        while store.next_event().is_ok() {
            flag.store(true, Ordering::SeqCst);
        }
        say!("lost the @releaseDomain watch: falling back to polling");
    });
    Ok(())
}

/// Runs a tool and returns its standard output, or an error with its standard error.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let detail: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.starts_with("Parsing config"))
            .collect();
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            detail.join(" / ")
        ))
    }
}

/// Quotes a string for an xl config file.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The vif hotplug script dom0 carries (xen/dom0/vif-lichen).
pub const VIF_SCRIPT: &str = "/etc/lichen/vif-lichen";

/// The xl config of a service: a PVH domain kept after it shuts down. `disk_targets` are the
/// dom0 devices behind the service's disks, in order.
pub fn domain_config(
    node: &str,
    name: &str,
    service: &Service,
    files: &BootFiles,
    disk_targets: &[PathBuf],
) -> String {
    let mut config = String::new();
    let mut line = |key: &str, value: String| config.push_str(&format!("{key} = {value}\n"));
    line("name", quoted(name));
    line("type", quoted("pvh"));
    line("kernel", quoted(&files.kernel.display().to_string()));
    if let Some(ramdisk) = &files.ramdisk {
        line("ramdisk", quoted(&ramdisk.display().to_string()));
    }
    line("memory", service.memory.to_string());
    line("vcpus", service.vcpus.to_string());
    line("cmdline", quoted(&service.cmdline));
    // Lichen reads the TSC for every clock reading. Where the TSC is not invariant (Xen under
    // QEMU TCG) Xen's default mode emulates RDTSC, one VM exit per read, and with an event
    // upcall pending on the way back in, the guest was seen to triple-fault (netfront, vchan
    // client). Native mode reads the hardware TSC; Xen's pvclock still gives its scale.
    line("tsc_mode", quoted("native"));
    let vifs = service.vifs();
    if !vifs.is_empty() {
        // Our own hotplug script (busybox sh): xl's vif-bridge needs bash. A router has one
        // vif per bridge, in order (crate::network). The MAC: [`vif_mac`], as the builder's.
        let entries: Vec<String> = vifs
            .iter()
            .enumerate()
            .map(|(devid, bridge)| {
                let mac = vif_mac(node, name, service, devid);
                quoted(&format!("bridge={bridge},script={VIF_SCRIPT},mac={mac}"))
            })
            .collect();
        line("vif", format!("[{}]", entries.join(", ")));
    }
    if !service.disks.is_empty() {
        let entries: Vec<String> = service
            .disks
            .iter()
            .zip(disk_targets)
            .enumerate()
            .map(|(i, (disk, target))| quoted(&crate::disks::xl_disk(i, disk, target)))
            .collect();
        line("disk", format!("[{}]", entries.join(", ")));
    }
    for event in [
        "on_poweroff",
        "on_reboot",
        "on_crash",
        "on_watchdog",
        "on_soft_reset",
    ] {
        line(event, quoted("preserve"));
    }
    config
}

/// Parses `xl list -v`: `Name ID Mem VCPUs State Time(s) UUID Reason-Code Security-Label`.
/// The state is six flags (`r b p s c d`); the reason code is Xen's shutdown code or `-`.
pub fn parse_domain_list(text: &str) -> HashMap<u32, DomainState> {
    let mut domains = HashMap::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(id), Some(flags)) = (
            fields.get(1).and_then(|f| f.parse::<u32>().ok()),
            fields.get(4),
        ) else {
            continue;
        };
        if id == 0 {
            continue;
        }
        let flags = flags.as_bytes();
        let state = if flags.get(5) == Some(&b'd') {
            DomainState::Dying
        } else if flags.get(3) == Some(&b's') || flags.get(4) == Some(&b'c') {
            let code = fields.get(7).and_then(|c| c.parse::<u32>().ok());
            let crashed = flags.get(4) == Some(&b'c');
            DomainState::Shutdown(match code {
                Some(code) => ShutdownReason::from_code(code),
                None if crashed => ShutdownReason::Crash,
                None => ShutdownReason::Other(u32::MAX),
            })
        } else {
            DomainState::Alive
        };
        domains.insert(id, state);
    }
    domains
}

/// Domain states from `XEN_DOMCTL_getdomaininfo` flags (as `xl list` derives its flags).
pub fn domain_states(list: &[crate::privcmd::DomainInfo]) -> HashMap<u32, DomainState> {
    use crate::privcmd::DomainInfo;
    list.iter()
        .filter(|d| d.domid != 0)
        .map(|d| {
            let state = if d.flags & DomainInfo::DYING != 0 {
                DomainState::Dying
            } else if d.flags & DomainInfo::SHUTDOWN != 0 {
                DomainState::Shutdown(ShutdownReason::from_code(d.shutdown_code()))
            } else {
                DomainState::Alive
            };
            (d.domid, state)
        })
        .collect()
}

impl Toolstack {
    /// Builds `name`'s domain with the launcher's builder and registers it in xenstore, with
    /// the service's own entries (`entries`) in the same pipelined batch when they lie in the
    /// new domain's tree.
    fn build(
        &mut self,
        xc_name: &str,
        service: &Service,
        files: &BootFiles,
        entries: &dyn Fn(u32) -> Wiring,
    ) -> Result<Created, String> {
        let Some(xc) = &self.privcmd else {
            return Err("no privcmd".into());
        };
        let started = Instant::now();
        let disk_targets = service
            .disks
            .iter()
            .map(|d| crate::disks::resolve(Path::new("/sys/block"), &d.name))
            .collect::<Result<Vec<_>, _>>()?;
        let kernel = read_kernel(&files.kernel, files.kernel_window)
            .map_err(|e| format!("cannot read {}: {e}", files.kernel.display()))?;
        let ramdisk = match &files.ramdisk {
            Some(path) => Some(
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            ),
            None => None,
        };
        let uuid = builder::new_uuid();
        let spec = builder::Spec {
            kernel: &kernel,
            ramdisk: ramdisk.as_deref(),
            memory_mib: service.memory,
            vcpus: service.vcpus,
            cmdline: &service.cmdline,
            uuid,
        };
        let read = started.elapsed();
        let built = builder::build(xc, &spec)?;
        let domid = built.domid;
        let hypercalls = started.elapsed();
        // One pipelined batch, no transaction: nothing reads these entries before the
        // introduction that ends the batch. The service's own entries (its channels) are not
        // in it: the supervisor writes them at the start. (fastdom4 put them here; taken out
        // while bisecting the node test's zedagent hang, whose cause was the kernel's
        // executor: they may come back after a node run with them.)
        let mut ops = Vec::new();
        for e in builder::entries::entries(xc_name, &built, &uuid) {
            ops.push(Op::Write(e.path.clone(), e.value));
            if let Some(perms) = e.perms {
                ops.push(Op::SetPerms(e.path, perms));
            }
        }
        let _ = entries;
        ops.push(Op::Introduce(domid, built.store_gfn, built.store_port));
        let registered = self.store.batch(0, &ops);
        let entries_done = started.elapsed();
        let registered = registered
            .and_then(|()| {
                for (devid, bridge) in service.vifs().iter().enumerate() {
                    let mac = vif_mac(&self.node, xc_name, service, devid);
                    add_vif(&mut self.store, domid, devid as u32, &mac, bridge)?;
                }
                Ok(())
            })
            .and_then(|()| {
                for (i, (disk, target)) in service.disks.iter().zip(&disk_targets).enumerate() {
                    add_vbd(&mut self.store, domid, i, disk, target)?;
                }
                Ok(())
            });
        if let Err(e) = registered {
            let _ = xc.destroy(domid);
            self.remove_entries(domid, &uuid);
            return Err(format!("registering domain {domid} in xenstore: {e}"));
        }
        self.built.insert(domid, uuid);
        // xenconsoled connects the console meanwhile; `unpause` waits for it.
        self.console_pending.insert(domid);
        let steps: Vec<String> = built
            .steps
            .iter()
            .map(|(step, ms)| format!("{step} {ms:.1}"))
            .collect();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        say!(
            "{xc_name}: built domain {domid} in {:.1} ms (read {:.1}, {} ms), xenstore entries and introduce {:.1} ms",
            ms(hypercalls),
            ms(read),
            steps.join(", "),
            ms(entries_done - hypercalls),
        );
        Ok(Created { domid, wired: None })
    }

    fn remove_entries(&mut self, domid: u32, uuid: &[u8; 16]) {
        let paths = builder::entries::cleanup_paths(domid, uuid);
        let _ = self.store.transaction(|store, tx| {
            for path in &paths {
                store.rm(tx, path)?;
            }
            Ok(())
        });
    }

    /// Creates a domain with `xl create -p`.
    fn xl_create(
        &mut self,
        name: &str,
        service: &Service,
        files: &BootFiles,
    ) -> Result<u32, String> {
        let config_path = self.state_dir.join(format!("{name}.cfg"));
        // An app's disks are named by their dom0 devices already (loop devices over its
        // volumes: crate::apps); a service's by the node disk's name.
        let targets = service
            .disks
            .iter()
            .map(|d| match service.app {
                true => Ok(PathBuf::from(&d.name)),
                false => crate::disks::resolve(Path::new("/sys/block"), &d.name),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{name}: {e}"))?;
        std::fs::write(
            &config_path,
            domain_config(&self.node, name, service, files, &targets),
        )
        .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
        let config = config_path.display().to_string();
        let started = Instant::now();
        run("xl", &["create", "-p", "-e", &config])?;
        let created = started.elapsed();
        let domid = run("xl", &["domid", name])?;
        say!(
            "{name}: xl create -p took {:.3} s, xl domid {:.3} s",
            created.as_secs_f64(),
            (started.elapsed() - created).as_secs_f64()
        );
        domid
            .trim()
            .parse()
            .map_err(|_| format!("xl domid {name} printed `{}`", domid.trim()))
    }
}

impl Platform for Toolstack {
    fn create_paused(
        &mut self,
        name: &str,
        service: &Service,
        files: &BootFiles,
        entries: &dyn Fn(u32) -> Wiring,
    ) -> Result<Created, String> {
        if service.toolstack == Builder::Lichen && self.privcmd.is_some() {
            return self.build(name, service, files, entries);
        }
        let domid = self.xl_create(name, service, files)?;
        Ok(Created { domid, wired: None })
    }

    fn unpause(&mut self, domid: u32) -> Result<(), String> {
        if self.console_pending.remove(&domid) {
            let waited = Instant::now();
            match wait_for_console(&mut self.store, domid) {
                Ok(()) => say!(
                    "domain {domid}: console connected (waited {:.1} ms)",
                    waited.elapsed().as_secs_f64() * 1000.0
                ),
                Err(e) => say!("domain {domid}: {e}: unpausing anyway"),
            }
        }
        if let Some(privcmd) = &self.privcmd {
            match privcmd.unpause(domid) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    say!("privcmd unpause failed ({e}): using xl unpause from now on");
                    self.privcmd = None;
                }
            }
        }
        run("xl", &["unpause", &domid.to_string()]).map(drop)
    }

    fn destroy(&mut self, domid: u32) -> Result<(), String> {
        self.console_pending.remove(&domid);
        if let Some(uuid) = self.built.remove(&domid) {
            if let Some(xc) = &self.privcmd {
                let result = xc
                    .destroy(domid)
                    .map_err(|e| format!("XEN_DOMCTL_destroydomain {domid}: {e}"));
                self.remove_entries(domid, &uuid);
                return result;
            }
        }
        run("xl", &["destroy", &domid.to_string()]).map(drop)
    }

    fn domains(&mut self) -> Result<HashMap<u32, DomainState>, String> {
        self.confirm_consoles();
        if let Some(xc) = &self.privcmd {
            match xc.domains() {
                Ok(list) => return Ok(domain_states(&list)),
                Err(e) => {
                    say!("cannot list domains through privcmd ({e}): using xl list from now on");
                    self.privcmd = None;
                }
            }
        }
        run("xl", &["list", "-v"]).map(|text| parse_domain_list(&text))
    }

    fn domains_changed(&mut self) -> bool {
        self.domains_changed.swap(false, Ordering::SeqCst)
    }

    fn usage(&mut self) -> HashMap<u32, Usage> {
        // Through privcmd only: `xl list` rounds CPU time to 0.1 s and memory to MiB.
        let Some(xc) = &self.privcmd else {
            return HashMap::new();
        };
        xc.domains()
            .map(|list| {
                list.iter()
                    .map(|d| {
                        let usage = Usage {
                            cpu_ns: d.cpu_ns,
                            pages: d.pages,
                        };
                        (d.domid, usage)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn vcpu_report(&mut self, domid: u32) -> Option<String> {
        let xc = self.privcmd.as_ref()?;
        Some(builder::crash::report(xc, domid).unwrap_or_else(|e| format!("unknown ({e})")))
    }

    fn exit_status(&mut self, domid: u32) -> Option<i64> {
        let path = format!("/local/domain/{domid}/data/exit-status");
        self.store.read(0, &path).ok()??.trim().parse().ok()
    }

    fn write_store(&mut self, wiring: &Wiring) -> Result<(), String> {
        // One transaction in three pipelined steps ([`XenStore::batch`]): the removals and
        // writes; the listing of the trees whose permissions change recursively (a level at a
        // time); every permission change, in order. A few round trips, not one per node.
        let fresh = |path: &str| {
            let domid = path
                .strip_prefix("/local/domain/")
                .and_then(|rest| rest.split('/').next())
                .and_then(|d| d.parse::<u32>().ok());
            domid.is_some_and(|d| self.console_pending.contains(&d))
        };
        if wiring.paths().all(fresh) {
            // Only the entries of domains built here that never ran (a new service, a
            // standby): nothing else writes there, so no transaction is needed, and their
            // trees hold only what this wiring writes, so no listing either. One round trip.
            return self
                .store
                .batch(0, &fresh_ops(wiring))
                .map_err(|e| e.to_string());
        }
        let mut ops: Vec<Op> = wiring.removes.iter().cloned().map(Op::Rm).collect();
        for (path, value) in &wiring.writes {
            ops.push(Op::Write(path.clone(), value.clone()));
        }
        if wiring.removes.is_empty() && wiring.perms.is_empty() {
            // Writes alone (a peer following a restart): one pipelined batch outside any
            // transaction, applied by xenstored in order. A transaction would cost two round
            // trips more, and under load its retries.
            return self.store.batch(0, &ops).map_err(|e| e.to_string());
        }
        let roots: Vec<String> = wiring
            .perms
            .iter()
            .filter(|c| c.recursive)
            .map(|c| c.path.clone())
            .collect();
        self.store
            .transaction(|store, tx| {
                store.batch(tx, &ops)?;
                let mut trees = store.subtrees(tx, &roots)?.into_iter();
                let mut perms = Vec::new();
                for change in &wiring.perms {
                    let nodes = if change.recursive {
                        trees.next().unwrap_or_default()
                    } else {
                        vec![change.path.clone()]
                    };
                    for node in nodes {
                        perms.push(Op::SetPerms(node, change.perms.clone()));
                    }
                }
                store.batch(tx, &perms)
            })
            .map_err(|e| e.to_string())
    }

    fn send_console_input(&mut self, name: &str, domid: u32, input: &str) {
        let (name, input) = (name.to_string(), input.to_string());
        std::thread::spawn(move || {
            if let Err(e) = write_console_input(domid, &input) {
                say!("{name}: cannot send console input: {e}");
            } else {
                say!("{name}: sent {} bytes of console input", input.len());
            }
        });
    }

    fn console_lines(&mut self, name: &str, flush: bool) -> Vec<String> {
        let log_dir = &self.log_dir;
        let tail = self
            .consoles
            .entry(name.to_string())
            .or_insert_with(|| ConsoleTail::new(log_dir.join(format!("guest-{name}.log"))));
        let mut lines = tail.read_lines();
        if flush {
            lines.extend(tail.take_partial());
        }
        lines
    }
}

/// The largest kernel image read from a volume.
pub const MAX_VOLUME_KERNEL: usize = 64 << 20;

/// The kernel image at `path`. A file is read whole. A block device (the app data disk, whose
/// app volume at `window` (byte offset, length) holds the image at its offset 0 followed by
/// whatever the volume's tail holds) is read in three steps, header, program headers, then up
/// to the end of the last segment ([`builder::elf::extent`]), and no further, never past the
/// window: one copy through dom0's memory, of the image's bytes only. dom0's cached pages of
/// the window are dropped first: the downloader wrote it through blkback, which bypasses them.
pub fn read_kernel(path: &Path, window: Option<(u64, u64)>) -> Result<Vec<u8>, String> {
    use std::io::{Read, Seek};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.file_type().is_block_device() {
        return std::fs::read(path).map_err(|e| e.to_string());
    }
    let (offset, length) = window.unwrap_or((0, u64::MAX));
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    if let Some((offset, length)) = window {
        // SAFETY: posix_fadvise only reads its integer arguments; the descriptor is open.
        let advice = unsafe {
            libc::posix_fadvise(
                file.as_raw_fd(),
                offset as libc::off_t,
                length as libc::off_t,
                libc::POSIX_FADV_DONTNEED,
            )
        };
        if advice != 0 {
            return Err(format!("cannot drop cached pages: error {advice}"));
        }
    }
    let mut file = file;
    file.seek(std::io::SeekFrom::Start(offset))
        .map_err(|e| format!("seeking to {offset}: {e}"))?;
    let mut file = file.take(length);
    let mut image = vec![0u8; 64];
    file.read_exact(&mut image)
        .map_err(|e| format!("reading the ELF header: {e}"))?;
    let head = builder::elf::extent_head(&image)?;
    grow(&mut file, &mut image, head)?;
    let end = builder::elf::extent(&image)?;
    grow(&mut file, &mut image, end)?;
    image.truncate(end.max(64));
    Ok(image)
}

/// Reads `image` on from `file` up to `to` bytes (at most [`MAX_VOLUME_KERNEL`]).
fn grow(file: &mut impl std::io::Read, image: &mut Vec<u8>, to: usize) -> Result<(), String> {
    if to > MAX_VOLUME_KERNEL {
        return Err(format!(
            "the image would be {to} bytes, above {MAX_VOLUME_KERNEL}"
        ));
    }
    if to > image.len() {
        let at = image.len();
        image.resize(to, 0);
        file.read_exact(&mut image[at..])
            .map_err(|e| format!("reading {to} bytes: {e}"))?;
    }
    Ok(())
}

/// Gives `domid` vif `devid` on the bridge, as xl does: the backend and frontend entries (one
/// transaction, so netback probes a complete device), then, once netback has created
/// `vif<domid>.<devid>` (backend state 2, InitWait), the hotplug script, which bridges it and
/// reports `hotplug-status`. That last part runs on a thread: the guest's netfront waits for
/// the backend anyway, so the domain can be unpaused meanwhile.
fn add_vif(
    store: &mut XenStore,
    domid: u32,
    devid: u32,
    mac: &str,
    bridge: &str,
) -> std::io::Result<()> {
    let entries = builder::entries::vif_entries(domid, devid, mac, bridge, VIF_SCRIPT);
    let mut ops = Vec::new();
    for e in entries {
        ops.push(Op::Write(e.path.clone(), e.value));
        if let Some(perms) = e.perms {
            ops.push(Op::SetPerms(e.path, perms));
        }
    }
    store.transaction(|store, tx| store.batch(tx, &ops))?;
    let backend = builder::entries::vif_backend(domid, devid);
    std::thread::spawn(move || {
        if let Err(e) = run_vif_hotplug(domid, devid, &backend) {
            say!("domain {domid}: vif hotplug failed: {e}");
        }
    });
    Ok(())
}

/// Gives `domid` disk number `index` (`xvda`, ...) backed by dom0's block device `target`, as xl
/// does: the backend and frontend entries in one transaction, then the hotplug script
/// ([`crate::disks::BLOCK_SCRIPT`]) on a thread, which writes `physical-device` for blkback.
/// The guest's blkfront waits for the backend anyway, so the domain can be unpaused meanwhile.
fn add_vbd(
    store: &mut XenStore,
    domid: u32,
    index: usize,
    disk: &crate::disks::DiskUse,
    target: &Path,
) -> std::io::Result<()> {
    let devid = crate::disks::vbd_id(index);
    let entries = builder::entries::vbd_entries(
        domid,
        devid,
        &crate::disks::vdev(index),
        &target.display().to_string(),
        disk.read_only,
        crate::disks::BLOCK_SCRIPT,
    );
    let mut ops = Vec::new();
    for e in entries {
        ops.push(Op::Write(e.path.clone(), e.value));
        if let Some(perms) = e.perms {
            ops.push(Op::SetPerms(e.path, perms));
        }
    }
    store.transaction(|store, tx| store.batch(tx, &ops))?;
    let backend = builder::entries::vbd_backend(domid, devid);
    let name = disk.name.clone();
    std::thread::spawn(move || {
        let output = Command::new(crate::disks::BLOCK_SCRIPT)
            .arg("add")
            .env("XENBUS_PATH", &backend)
            .stdin(Stdio::null())
            .output();
        match output {
            Ok(out) if out.status.success() => {
                say!("domain {domid}: disk {name} attached (blkback, {backend})")
            }
            Ok(out) => say!(
                "domain {domid}: disk {name}: {} add: {}: {}",
                crate::disks::BLOCK_SCRIPT,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => say!(
                "domain {domid}: disk {name}: cannot run {}: {e}",
                crate::disks::BLOCK_SCRIPT
            ),
        }
    });
    Ok(())
}

/// Waits (up to 3 s) until xenconsoled has connected `domid`'s console: it writes the pty's
/// name in `console/tty` once it has. Unpausing before that loses what a short-lived guest
/// prints (xenconsoled does not connect a domain that already shut down), and xenconsoled's
/// connection work would compete with the guest's boot for dom0's CPUs.
fn wait_for_console(store: &mut XenStore, domid: u32) -> Result<(), String> {
    let path = format!("/local/domain/{domid}/console/tty");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match store.read(0, &path) {
            Ok(Some(tty)) if !tty.trim().is_empty() => return Ok(()),
            Err(e) => return Err(format!("cannot read {path}: {e}")),
            _ if Instant::now() > deadline => {
                return Err("xenconsoled did not connect the console within 3 s".into())
            }
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Waits for netback to take vif `backend` (state 2 or later), then runs the hotplug script
/// with the environment xl gives it.
fn run_vif_hotplug(domid: u32, devid: u32, backend: &str) -> Result<(), String> {
    let mut store = XenStore::connect().map_err(|e| format!("cannot reach xenstored: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let state_path = format!("{backend}/state");
    loop {
        let state = store
            .read(0, &state_path)
            .map_err(|e| format!("reading {state_path}: {e}"))?;
        match state.as_deref().map(str::trim).map(str::parse::<u32>) {
            Some(Ok(state)) if state >= 2 => break,
            None => return Err(format!("{backend} disappeared")),
            _ if Instant::now() > deadline => {
                return Err(format!("netback did not take {backend} within 30 s"))
            }
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    let output = Command::new(VIF_SCRIPT)
        .arg("online")
        .env("XENBUS_PATH", backend)
        .env("vif", format!("vif{domid}.{devid}"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {VIF_SCRIPT}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{VIF_SCRIPT} online: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Writes `input` to the pty xenconsoled gives the domain's console (waiting for it to appear).
fn write_console_input(domid: u32, input: &str) -> Result<(), String> {
    let key = format!("/local/domain/{domid}/console/tty");
    let mut store = XenStore::connect().map_err(|e| format!("cannot reach xenstored: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let tty = loop {
        match store.read(0, &key) {
            Ok(Some(tty)) if !tty.trim().is_empty() => break tty.trim().to_string(),
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => return Err(format!("{key} did not appear")),
        }
    };
    let mut pty = std::fs::OpenOptions::new()
        .write(true)
        .open(&tty)
        .map_err(|e| format!("cannot open {tty}: {e}"))?;
    pty.write_all(input.as_bytes())
        .map_err(|e| format!("cannot write to {tty}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;

    #[test]
    fn configs_describe_a_preserved_pvh_domain() {
        let manifest = Manifest::parse(
            "[services.api]\nimage = \"api\"\nmemory = 24\nvcpus = 2\ncmdline = 'motd=\"hi there\" path=C:\\x'\n",
        )
        .unwrap();
        let files = BootFiles {
            kernel: "/lichen/images/api.elf".into(),
            ramdisk: Some("/lichen/images/rd".into()),
            kernel_window: None,
        };
        let config = domain_config(NODE, "api", &manifest.services["api"], &files, &[]);
        for expected in [
            "name = \"api\"\n",
            "type = \"pvh\"\n",
            "kernel = \"/lichen/images/api.elf\"\n",
            "ramdisk = \"/lichen/images/rd\"\n",
            "memory = 24\n",
            "vcpus = 2\n",
            "cmdline = \"motd=\\\"hi there\\\" path=C:\\\\x\"\n",
            "on_poweroff = \"preserve\"\n",
            "on_crash = \"preserve\"\n",
            "tsc_mode = \"native\"\n",
        ] {
            assert!(
                config.contains(expected),
                "missing {expected:?} in\n{config}"
            );
        }
    }

    #[test]
    fn an_app_through_xl_gets_its_mac_and_its_volumes_loop_devices() {
        let spec = launcher_api::AppSpec {
            kernel: launcher_api::Extent {
                offset_mib: 0,
                size_mib: 10,
            },
            memory_mib: 160,
            vcpus: 1,
            cmdline: String::new(),
            disks: vec![launcher_api::DiskUse {
                extent: launcher_api::Extent {
                    offset_mib: 10,
                    size_mib: 9,
                },
                read_only: false,
            }],
            network: Some("lichenni1".into()),
        };
        let service = Service::app(&spec, &["/dev/loop3".into()]);
        let files = BootFiles {
            kernel: "/dev/loop1".into(),
            ramdisk: Some("/dev/loop2".into()),
            kernel_window: None,
        };
        let config = domain_config(NODE, "app-linux", &service, &files, &["/dev/loop3".into()]);
        let mac = launcher_api::mac::mac_text(launcher_api::mac::app_mac("linux", 0));
        for expected in [
            "kernel = \"/dev/loop1\"\n".to_string(),
            "ramdisk = \"/dev/loop2\"\n".to_string(),
            format!("vif = [\"bridge=lichenni1,script={VIF_SCRIPT},mac={mac}\"]\n"),
            "target=/dev/loop3\"]\n".to_string(),
        ] {
            assert!(
                config.contains(&expected),
                "missing {expected:?} in\n{config}"
            );
        }
    }

    /// A node identity (its uplink NIC's MAC).
    const NODE: &str = "52:54:00:12:34:56";

    #[test]
    fn a_bridged_service_gets_a_vif_with_lichens_hotplug_script() {
        let text = "[services.echo]\nimage = \"echo\"\nmemory = 32\nnetwork = \"bridge\"\n";
        let manifest = Manifest::parse(text).unwrap();
        let files = BootFiles {
            kernel: "/lichen/images/echo.elf".into(),
            ramdisk: None,
            kernel_window: None,
        };
        let config = domain_config(NODE, "echo", &manifest.services["echo"], &files, &[]);
        let mac = |name: &str, devid| {
            launcher_api::mac::mac_text(launcher_api::mac::service_mac(NODE, name, devid))
        };
        assert!(
            config.contains(&format!(
                "vif = [\"bridge=lichenbr0,script=/etc/lichen/vif-lichen,mac={}\"]\n",
                mac("echo", 0)
            )),
            "{config}"
        );
        let plain = Manifest::parse("[services.a]\nimage = \"a\"\nmemory = 8\n").unwrap();
        assert!(!domain_config(NODE, "a", &plain.services["a"], &files, &[]).contains("vif"));
        let bad = "[services.a]\nimage = \"a\"\nmemory = 8\nnetwork = \"nat\"\n";
        let error = Manifest::parse(bad).unwrap_err().to_string();
        assert!(error.contains("unknown network `nat`"), "{error}");
        let router = "network_instances = 2\n[services.zedrouter]\nimage = \"z\"\nmemory = 32\n\
                      network = \"bridge\"\nrouter = true\n";
        let manifest = Manifest::parse(router).unwrap();
        let config = domain_config(
            NODE,
            "zedrouter",
            &manifest.services["zedrouter"],
            &files,
            &[],
        );
        assert!(
            config.contains(&format!(
                "vif = [\"bridge=lichenbr0,script=/etc/lichen/vif-lichen,mac={}\", \
                 \"bridge=lichenni1,script=/etc/lichen/vif-lichen,mac={}\", \
                 \"bridge=lichenni2,script=/etc/lichen/vif-lichen,mac={}\"]\n",
                mac("zedrouter", 0),
                mac("zedrouter", 1),
                mac("zedrouter", 2)
            )),
            "{config}"
        );
    }

    #[test]
    fn a_service_with_disks_gets_them_through_lichens_block_script() {
        let text = "[disks.persist]\nsize_mib = 8\n[disks.config]\nsize_mib = 1\n\
                    [services.vault]\nimage = \"v\"\nmemory = 8\ndisks = [\"persist\", \"config:ro\"]\n";
        let manifest = Manifest::parse(text).unwrap();
        let files = BootFiles {
            kernel: "/lichen/images/v.elf".into(),
            ramdisk: None,
            kernel_window: None,
        };
        let targets = [PathBuf::from("/dev/vdb"), PathBuf::from("/dev/vda")];
        let config = domain_config(NODE, "vault", &manifest.services["vault"], &files, &targets);
        assert!(
            config.contains(
                "disk = [\"format=raw,vdev=xvda,access=rw,script=/etc/lichen/block-lichen,target=/dev/vdb\", \
                 \"format=raw,vdev=xvdb,access=ro,script=/etc/lichen/block-lichen,target=/dev/vda\"]\n"
            ),
            "{config}"
        );
    }

    #[test]
    fn parses_xl_list_states_and_shutdown_reasons() {
        let text = "\
Name                                        ID   Mem VCPUs\tState\tTime(s)   UUID                            Reason-Code\tSecurity Label
Domain-0                                     0   768     2     r-----       8.4 00000000-0000-0000-0000-000000000000        -                -
probe                                        1     4     1     ---s--       0.0 f1ed993e-e6b9-11f1-8eb7-4b65102919b7        0                -
probe2                                       2     2     1     ---sc-       0.0 f5e49402-e6b9-11f1-be76-c7e6e2c809aa        3                -
hello                                        3    32     1     -b----       0.1 f5e49402-e6b9-11f1-be76-c7e6e2c809ab        -                -
paused                                       4    32     1     --p---       0.0 f5e49402-e6b9-11f1-be76-c7e6e2c809ac        -                -
gone                                         5    32     1     -----d       0.0 f5e49402-e6b9-11f1-be76-c7e6e2c809ad        -                -
";
        let domains = parse_domain_list(text);
        assert_eq!(domains.len(), 5, "dom0 is left out");
        assert_eq!(domains[&1], DomainState::Shutdown(ShutdownReason::Poweroff));
        assert_eq!(domains[&2], DomainState::Shutdown(ShutdownReason::Crash));
        assert_eq!(domains[&3], DomainState::Alive);
        assert_eq!(domains[&4], DomainState::Alive);
        assert_eq!(domains[&5], DomainState::Dying);
    }
}
