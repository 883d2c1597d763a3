//! The controller benchmark: for each fleet size, start a fresh `lichen-controller` (or several
//! sharing one PostgreSQL database, devices spread over them as a load balancer would), onboard
//! the simulated devices, let them poll their configuration at a fixed interval, and measure
//! config poll latency, request rate, the controllers' CPU use and their memory per device.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::fleet::{self, Behaviour, Recorder, Target};
use crate::admin_cli::AdminClient;
use crate::pki::Identity;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The `lichen-controller` binary to start.
    pub controller: PathBuf,
    /// Fleet sizes, one run each per backend.
    pub sizes: Vec<usize>,
    /// Stores to measure: `sqlite`, `postgres`.
    pub backends: Vec<String>,
    /// The PostgreSQL server for the `postgres` backend; each run gets a new database on it.
    pub postgres: Option<String>,
    /// Time between one device's config polls.
    pub interval: Duration,
    /// How long to measure, after one interval of warm-up.
    pub measure: Duration,
    /// Devices onboarding at the same time.
    pub parallel: usize,
    /// The p99 latency target, in milliseconds.
    pub target_p99_ms: f64,
    /// How long to measure report ingestion before the polls (0: not at all).
    pub ingest: Duration,
    /// Controller processes sharing the store (more than 1 needs PostgreSQL).
    pub controllers: usize,
    /// Devices sharing one connection (1: each its own).
    pub devices_per_connection: usize,
}

/// The figures of one fleet size.
#[derive(Debug, Clone, Serialize)]
pub struct RunFigures {
    /// The controller's store: `sqlite` or `postgres`.
    pub backend: String,
    /// Controller processes sharing the store.
    pub controllers: usize,
    /// Simulated devices.
    pub devices: usize,
    /// Devices sharing one connection (1: each its own).
    pub devices_per_connection: usize,
    /// The p99 target of this run, milliseconds.
    pub target_p99_ms: f64,
    /// Seconds to onboard them all (certs, register, first config).
    pub onboarding_s: f64,
    /// Config polls answered during the measurement.
    pub requests: usize,
    /// Config polls that failed.
    pub failures: u64,
    /// Polls answered per second.
    pub requests_per_s: f64,
    /// The rate the devices ask for (devices / interval).
    pub offered_per_s: f64,
    /// Latency percentiles, milliseconds.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest poll.
    pub max_ms: f64,
    /// The controllers' CPU use during the measurement, in percent of one core (summed).
    pub controller_cpu_percent: f64,
    /// The controllers' resident memory after onboarding, MiB (summed).
    pub controller_rss_mib: f64,
    /// Resident memory added per onboarded device, KiB.
    pub memory_per_device_kib: f64,
    /// Files the simulator had open after onboarding (its connections, mostly).
    pub simulator_open_files: usize,
    /// The simulator's resident memory after onboarding, MiB.
    pub simulator_rss_mib: f64,
    /// The simulator's CPU use during the measurement, in percent of one core (it signs every
    /// request and checks every response: when it is short of CPU, latency grows here).
    pub simulator_cpu_percent: f64,
    /// The machine's 1-minute load average when the measurement ended (other work on the
    /// machine competes with the controller and the simulator).
    pub load_average: f64,
    /// Whether p99 met the target with no failures.
    pub meets_target: bool,
    /// Reports (info, metrics, newlogs in turn, from 64 devices at once) stored per second.
    pub ingest_reports_per_s: f64,
    /// The same per second of controller CPU time (i.e. per core).
    pub ingest_reports_per_cpu_s: f64,
    /// Reports refused or failed during ingestion.
    pub ingest_failures: u64,
}

/// Devices posting reports during the ingestion phase.
const INGEST_DEVICES: usize = 64;

/// Has the first [`INGEST_DEVICES`] of `devices` post info, metrics and newlogs reports in turn
/// for `duration`; returns reports stored per second, per controller CPU second, and failures.
async fn ingest(
    devices: &[super::SimDevice],
    duration: Duration,
    controllers: &[Controller],
) -> Result<(f64, f64, u64), String> {
    use super::reports;
    let cpu_start = Controller::total_cpu_ticks(controllers)?;
    let started = Instant::now();
    let deadline = started + duration;
    let posting = devices
        .iter()
        .take(INGEST_DEVICES)
        .map(|device| async move {
            let uuid = device.uuid().unwrap_or_default().to_owned();
            let info = reports::device_info(&uuid, &device.serial);
            let metrics = reports::metrics(&uuid, 60);
            let lines: Vec<String> = (0..20).map(|i| format!("simulated log line {i}")).collect();
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            let newlogs = reports::newlogs(&lines);
            let (mut stored, mut failed) = (0u64, 0u64);
            while Instant::now() < deadline {
                let newlogs = device.signer().seal_to_bytes_raw(newlogs.clone());
                let results = [
                    device.post_report("info", &info).await.is_ok(),
                    device.post_report("metrics", &metrics).await.is_ok(),
                    device
                        .post_raw("newlogs", newlogs)
                        .await
                        .is_ok_and(|reply| reply.status == http::StatusCode::CREATED),
                ];
                for ok in results {
                    if ok {
                        stored += 1;
                    } else {
                        failed += 1;
                    }
                }
            }
            (stored, failed)
        });
    let counts = futures_util::future::join_all(posting).await;
    let seconds = started.elapsed().as_secs_f64();
    let cpu_s = (Controller::total_cpu_ticks(controllers)? - cpu_start) as f64 / CLOCK_TICKS_PER_S;
    let stored: u64 = counts.iter().map(|(stored, _)| stored).sum();
    let failed: u64 = counts.iter().map(|(_, failed)| failed).sum();
    let per_cpu = if cpu_s > 0.0 {
        stored as f64 / cpu_s
    } else {
        0.0
    };
    Ok((stored as f64 / seconds, per_cpu, failed))
}

/// Runs the benchmark and returns one result per size.
pub async fn run(options: &BenchOptions) -> Result<Vec<RunFigures>, String> {
    // Every connection is a file descriptor here and in a controller (which inherits the limit).
    let files = raise_open_files_limit();
    for &size in &options.sizes {
        let connections = size.div_ceil(options.devices_per_connection.max(1));
        let per_controller = connections.div_ceil(options.controllers.max(1));
        let controller_cap = crate::server::Limits::default().effective_max_connections();
        if connections + 64 > files || per_controller > controller_cap {
            return Err(format!(
                "{size} devices at {} per connection are {connections} connections ({per_controller} \
                 per controller), but this process may open {files} files and a controller \
                 {controller_cap} connections (RLIMIT_NOFILE): raise the limit (ulimit -Hn), \
                 --controllers or --devices-per-connection",
                options.devices_per_connection
            ));
        }
    }
    let mut results = Vec::new();
    for backend in &options.backends {
        for &size in &options.sizes {
            eprintln!(
                "bench: {backend}, {size} devices, polling every {:?}, measuring {:?}",
                options.interval, options.measure
            );
            results.push(run_size(options, backend, size).await?);
        }
    }
    Ok(results)
}

/// A new database on the PostgreSQL server `server`; returns its connection settings.
async fn new_database(server: &str, name: &str) -> Result<String, String> {
    let text = |error: tokio_postgres::Error| format!("postgresql: {error}");
    let (client, connection) = tokio_postgres::connect(server, tokio_postgres::NoTls)
        .await
        .map_err(text)?;
    tokio::spawn(connection);
    for statement in ["DROP DATABASE IF EXISTS", "CREATE DATABASE"] {
        client
            .batch_execute(&format!("{statement} {name}"))
            .await
            .map_err(text)?;
    }
    Ok(format!("{server} dbname={name}"))
}

async fn run_size(
    options: &BenchOptions,
    backend: &str,
    devices: usize,
) -> Result<RunFigures, String> {
    let run = format!("lichen_bench_{}_{backend}_{devices}", std::process::id());
    let state_dir = std::env::temp_dir().join(&run);
    let _ = std::fs::remove_dir_all(&state_dir);
    let database = match backend {
        "sqlite" => None,
        "postgres" => {
            let server = options.postgres.as_deref().ok_or(
                "the postgres backend needs a server (--postgres or LICHEN_TEST_POSTGRES)",
            )?;
            Some(new_database(server, &run).await?)
        }
        other => return Err(format!("unknown backend {other:?} (sqlite, postgres)")),
    };
    if options.controllers > 1 && database.is_none() {
        return Err("several controllers need the postgres backend".into());
    }
    // The first creates the state directory (certificates, admin token); the others share it.
    let mut controllers = Vec::new();
    for _ in 0..options.controllers.max(1) {
        match Controller::start(&options.controller, &state_dir, database.as_deref()) {
            Ok(controller) => controllers.push(controller),
            Err(error) => {
                controllers.iter_mut().for_each(Controller::stop);
                return Err(error);
            }
        }
    }
    let result = measure(options, devices, &controllers)
        .await
        .map(|figures| RunFigures {
            backend: backend.to_owned(),
            ..figures
        });
    controllers.iter_mut().for_each(Controller::stop);
    let _ = std::fs::remove_dir_all(&state_dir);
    result
}

async fn measure(
    options: &BenchOptions,
    devices: usize,
    controllers: &[Controller],
) -> Result<RunFigures, String> {
    let controller = &controllers[0];
    let text = |error: &dyn std::fmt::Display| error.to_string();
    let ca_pem =
        std::fs::read_to_string(controller.state_dir.join("ca.pem")).map_err(|e| text(&e))?;
    let token =
        std::fs::read_to_string(controller.state_dir.join("admin.token")).map_err(|e| text(&e))?;
    let onboarding = Identity::self_signed("lichen bench onboarding").map_err(|e| text(&e))?;
    let admin = AdminClient::new(&controller.url, &ca_pem, &token).map_err(|e| text(&e))?;
    admin
        .add_onboarding(&onboarding.cert_pem, &["bench-*".to_owned()])
        .await
        .map_err(|e| text(&e))?;
    let mut first =
        Target::new(&controller.url, &ca_pem, onboarding, None).map_err(|e| text(&e))?;
    first.devices_per_connection = options.devices_per_connection.max(1);
    // Device i talks to controller i mod N, as a load balancer spreading connections would.
    let mut targets = vec![first.clone()];
    for other in &controllers[1..] {
        targets.push(first.at(&other.url, &ca_pem).map_err(|e| text(&e))?);
    }

    let rss_before = Controller::total_rss_kib(controllers)?;
    let started = Instant::now();
    let count = targets.len();
    let parallel = options.parallel.div_ceil(count);
    let onboarded =
        futures_util::future::join_all(targets.iter().enumerate().map(|(which, target)| {
            let serials = (0..devices)
                .filter(|i| i % count == which)
                .map(|i| format!("bench-{i}"))
                .collect();
            fleet::onboard(target, serials, parallel)
        }))
        .await;
    // Interleaved again (bench-0 on the first controller, bench-1 on the next, ...), so that
    // polls spread evenly over the interval alternate between the controllers.
    let mut parts = Vec::new();
    for part in onboarded {
        parts.push(part.map_err(|e| text(&e))?.into_iter());
    }
    let mut fleet = Vec::with_capacity(devices);
    for index in 0..devices {
        fleet.extend(parts[index % count].next());
    }
    let onboarding_s = started.elapsed().as_secs_f64();
    let rss_after = Controller::total_rss_kib(controllers)?;
    let simulator_open_files = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
    let simulator_rss_mib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .unwrap_or(0.0)
        / 1024.0;
    eprintln!("bench: onboarded {devices} devices in {onboarding_s:.1} s");
    let (ingest_reports_per_s, ingest_reports_per_cpu_s, ingest_failures) =
        if options.ingest.is_zero() {
            (0.0, 0.0, 0)
        } else {
            ingest(&fleet, options.ingest, controllers).await?
        };

    let recorder = Arc::new(Recorder::default());
    let behaviour = Behaviour {
        config_interval: options.interval,
        report_interval: None,
        verbose: false,
        log_text: String::new(),
    };
    let (interval, measure) = (options.interval, options.measure);
    let probe = Arc::clone(&recorder);
    let mut cpu = (0, 0.0);
    let mut simulator_ticks = 0;
    let schedule = async {
        tokio::time::sleep(interval).await;
        let cpu_start = Controller::total_cpu_ticks(controllers)?;
        let simulator_start = cpu_ticks_of("self")?;
        probe.record(true);
        let measured = Instant::now();
        tokio::time::sleep(measure).await;
        probe.record(false);
        simulator_ticks = cpu_ticks_of("self")? - simulator_start;
        cpu = (
            Controller::total_cpu_ticks(controllers)? - cpu_start,
            measured.elapsed().as_secs_f64(),
        );
        Ok::<(), String>(())
    };
    let mut outcome = Ok(());
    fleet::run(fleet, behaviour, Arc::clone(&recorder), async {
        outcome = schedule.await
    })
    .await;
    outcome?;

    let (mut latencies, failures) = recorder.take();
    latencies.sort_unstable();
    let percentile = |p: f64| -> f64 {
        let Some(last) = latencies.len().checked_sub(1) else {
            return 0.0;
        };
        f64::from(latencies[((last as f64) * p).round() as usize]) / 1000.0
    };
    let (ticks, seconds) = cpu;
    let (p50_ms, p99_ms) = (percentile(0.50), percentile(0.99));
    Ok(RunFigures {
        backend: String::new(),
        controllers: controllers.len(),
        devices,
        devices_per_connection: options.devices_per_connection.max(1),
        target_p99_ms: options.target_p99_ms,
        onboarding_s,
        requests: latencies.len(),
        failures,
        requests_per_s: latencies.len() as f64 / seconds,
        offered_per_s: devices as f64 / options.interval.as_secs_f64(),
        p50_ms,
        p90_ms: percentile(0.90),
        p99_ms,
        max_ms: percentile(1.0),
        controller_cpu_percent: ticks as f64 / CLOCK_TICKS_PER_S / seconds * 100.0,
        controller_rss_mib: rss_after as f64 / 1024.0,
        memory_per_device_kib: rss_after.saturating_sub(rss_before) as f64 / devices as f64,
        simulator_open_files,
        simulator_rss_mib,
        simulator_cpu_percent: simulator_ticks as f64 / CLOCK_TICKS_PER_S / seconds * 100.0,
        load_average: load_average(),
        meets_target: failures == 0 && p99_ms < options.target_p99_ms,
        ingest_reports_per_s,
        ingest_reports_per_cpu_s,
        ingest_failures,
    })
}

/// The 1-minute load average, or 0 if unknown.
fn load_average() -> f64 {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .next()
        .and_then(|load| load.parse().ok())
        .unwrap_or(0.0)
}

/// Raises this process's soft limit on open files to its hard limit (children inherit it);
/// returns the limit now in force.
fn raise_open_files_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a pointer to a valid, owned value.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one valid `rlimit`; raising the soft limit up to the hard
        // one is always allowed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
}

/// User plus system CPU time of process `pid` (or `self`), in clock ticks.
fn cpu_ticks_of(pid: &str) -> Result<u64, String> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|error| error.to_string())?;
    // Fields after the command name (which may contain spaces) start at field 3.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .ok_or("bad stat")?
        .1
        .split_whitespace()
        .collect();
    let field = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or("bad stat")
    };
    Ok(field(14)? + field(15)?)
}

/// `USER_HZ`, the unit of CPU times in `/proc/<pid>/stat` (100 on Linux).
const CLOCK_TICKS_PER_S: f64 = 100.0;

/// A controller process started for one run.
struct Controller {
    child: Child,
    url: String,
    state_dir: PathBuf,
}

impl Controller {
    fn start(binary: &Path, state_dir: &Path, database: Option<&str>) -> Result<Self, String> {
        let mut command = Command::new(binary);
        // Every simulated device connects from 127.0.0.1: lift the per-address cap, which
        // is meant for real fleets spread over many addresses.
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--max-connections-per-address", "1000000", "--state-dir"])
            .arg(state_dir);
        if let Some(database) = database {
            command.args(["--database-url", database]);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|error| format!("starting {}: {error}", binary.display()))?;
        let stdout = child.stdout.take().expect("piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|error| error.to_string())?;
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .ok_or_else(|| format!("unexpected controller output {line:?}"))?
            .to_owned();
        Ok(Self {
            child,
            url,
            state_dir: state_dir.to_owned(),
        })
    }

    fn proc_file(&self, name: &str) -> Result<String, String> {
        std::fs::read_to_string(format!("/proc/{}/{name}", self.child.id()))
            .map_err(|error| error.to_string())
    }

    /// Resident memory, KiB.
    fn rss_kib(&self) -> Result<u64, String> {
        let status = self.proc_file("status")?;
        let line = status
            .lines()
            .find(|line| line.starts_with("VmRSS:"))
            .ok_or("no VmRSS")?;
        line.split_whitespace()
            .nth(1)
            .and_then(|kib| kib.parse().ok())
            .ok_or_else(|| "bad VmRSS".to_owned())
    }

    /// User plus system CPU time, in clock ticks.
    fn cpu_ticks(&self) -> Result<u64, String> {
        cpu_ticks_of(&self.child.id().to_string())
    }

    /// CPU ticks of all `controllers`, summed.
    fn total_cpu_ticks(controllers: &[Self]) -> Result<u64, String> {
        controllers.iter().map(Self::cpu_ticks).sum()
    }

    /// Resident memory of all `controllers`, KiB, summed.
    fn total_rss_kib(controllers: &[Self]) -> Result<u64, String> {
        controllers.iter().map(Self::rss_kib).sum()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The result table, as printed.
pub fn table(results: &[RunFigures], options: &BenchOptions) -> String {
    let mut out = format!(
        "controller: config polls every {} s, measured {} s (target: p99 < {} ms)\n",
        options.interval.as_secs(),
        options.measure.as_secs(),
        options.target_p99_ms
    );
    out.push_str(&format!(
        "{:>8} {:>3} {:>8} {:>4} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7} {:>9} {:>10} {:>9} {:>6} {:>9} {:>11}  {}\n",
        "backend",
        "ctl",
        "devices",
        "d/c",
        "req/s",
        "offered",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "fails",
        "ctl cpu%",
        "KiB/device",
        "onboard s",
        "load",
        "ingest/s",
        "ingest/cpu-s",
        "target"
    ));
    for r in results {
        out.push_str(&format!(
            "{:>8} {:>3} {:>8} {:>4} {:>9.1} {:>9.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7} {:>9.1} {:>10.2} {:>9.1} {:>6.1} {:>9.0} {:>11.0}  {}\n",
            r.backend,
            r.controllers,
            r.devices,
            r.devices_per_connection,
            r.requests_per_s,
            r.offered_per_s,
            r.p50_ms,
            r.p90_ms,
            r.p99_ms,
            r.max_ms,
            r.failures,
            r.controller_cpu_percent,
            r.memory_per_device_kib,
            r.onboarding_s,
            r.load_average,
            r.ingest_reports_per_s,
            r.ingest_reports_per_cpu_s,
            if r.meets_target { "met" } else { "NOT met" }
        ));
    }
    out
}
