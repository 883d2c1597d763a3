//! `lichen-devsim`: simulated EVE devices for a lichen controller, and its benchmark.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use lichen_controller::devsim::bench::{self, BenchOptions};
use lichen_controller::devsim::fleet::{self, Behaviour, Recorder, Target};
use lichen_controller::pki::Identity;

/// Simulated EVE devices.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates an onboarding certificate and key (DIR/onboard.pem, DIR/onboard.key) to admit
    /// with `lichen-controller admin onboarding add`.
    OnboardingCert {
        /// Where to write them.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Runs N devices: onboard, poll config, post info on change and metrics and logs.
    Run {
        /// The controller's URL.
        #[arg(long, env = "LICHEN_URL", default_value = "https://127.0.0.1:8443")]
        url: String,
        /// The controller's root certificate.
        #[arg(long, default_value = "lichen-state/ca.pem")]
        ca: PathBuf,
        /// The directory holding onboard.pem and onboard.key.
        #[arg(long, default_value = ".")]
        onboarding: PathBuf,
        /// Where device certificates and keys are kept between runs.
        #[arg(long, default_value = "devsim-identities")]
        identities: PathBuf,
        /// How many devices.
        #[arg(long, default_value_t = 1)]
        devices: usize,
        /// Serials are this prefix followed by 0, 1, ...
        #[arg(long, default_value = "sim-")]
        serial_prefix: String,
        /// Seconds between config polls.
        #[arg(long, default_value_t = 10)]
        config_interval: u64,
        /// Seconds between metrics and log posts (0: none).
        #[arg(long, default_value_t = 60)]
        report_interval: u64,
        /// Stop after this many seconds (default: run until interrupted).
        #[arg(long)]
        duration: Option<u64>,
        /// The text of simulated log lines (each is followed by its message id).
        #[arg(long, default_value = "simulated log line")]
        log_text: String,
        /// Seconds between register attempts while the controller refuses them with 403 (not
        /// admitted yet); 0: give up at once.
        #[arg(long, default_value_t = 0)]
        register_retry: u64,
    },
    /// Measures a controller under simulated devices (used by `scripts/bench controller`).
    Bench {
        /// The lichen-controller binary to start for each run.
        #[arg(long)]
        controller: PathBuf,
        /// Fleet sizes.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
        sizes: Vec<usize>,
        /// Seconds between one device's config polls.
        #[arg(long, default_value_t = 10)]
        interval: u64,
        /// Seconds measured per size (after one interval of warm-up).
        #[arg(long, default_value_t = 30)]
        measure: u64,
        /// Write the figures as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Seconds of report ingestion (info, metrics, newlogs from 64 devices) measured before
        /// the polls of each run (0: none).
        #[arg(long, default_value_t = 10)]
        ingest: u64,
        /// Stores to measure, each at every size: `sqlite`, `postgres`.
        #[arg(long, value_delimiter = ',', default_value = "sqlite")]
        backends: Vec<String>,
        /// The PostgreSQL server for the `postgres` backend (`key=value` settings of a user
        /// that may create databases; each run gets a new one).
        #[arg(long, env = "LICHEN_TEST_POSTGRES")]
        postgres: Option<String>,
        /// Controller processes sharing one PostgreSQL database (devices spread over them).
        #[arg(long, default_value_t = 1)]
        controllers: usize,
        /// Devices sharing one connection (1: each its own, as real devices); raise it when
        /// the open files limit cannot hold one connection per device.
        #[arg(long, default_value_t = 1)]
        devices_per_connection: usize,
        /// The p99 latency target, milliseconds.
        #[arg(long, default_value_t = 50.0)]
        target_p99_ms: f64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::OnboardingCert { out } => onboarding_cert(&out),
        Command::Run {
            url,
            ca,
            onboarding,
            identities,
            devices,
            serial_prefix,
            config_interval,
            report_interval,
            duration,
            log_text,
            register_retry,
        } => {
            let behaviour = Behaviour {
                config_interval: Duration::from_secs(config_interval.max(1)),
                report_interval: (report_interval > 0)
                    .then(|| Duration::from_secs(report_interval)),
                verbose: true,
                log_text,
            };
            let fleet = FleetArgs {
                url,
                ca,
                onboarding,
                identities,
                devices,
                serial_prefix,
                register_retry,
            };
            run(fleet, behaviour, duration).await
        }
        Command::Bench {
            controller,
            sizes,
            interval,
            measure,
            json,
            backends,
            postgres,
            ingest,
            controllers,
            devices_per_connection,
            target_p99_ms,
        } => {
            let options = BenchOptions {
                controller,
                sizes,
                backends,
                postgres,
                interval: Duration::from_secs(interval),
                measure: Duration::from_secs(measure),
                parallel: 32,
                target_p99_ms,
                ingest: Duration::from_secs(ingest),
                controllers,
                devices_per_connection,
            };
            run_bench(&options, json).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lichen-devsim: {error}");
            ExitCode::FAILURE
        }
    }
}

fn onboarding_cert(out: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|error| error.to_string())?;
    let identity =
        Identity::self_signed("lichen devsim onboarding").map_err(|error| error.to_string())?;
    identity
        .save(out, "onboard")
        .map_err(|error| format!("{}: {error}", out.display()))?;
    println!("{}", out.join("onboard.pem").display());
    Ok(())
}

/// Which devices `run` simulates, against which controller.
struct FleetArgs {
    url: String,
    ca: PathBuf,
    onboarding: PathBuf,
    identities: PathBuf,
    devices: usize,
    serial_prefix: String,
    register_retry: u64,
}

async fn run(args: FleetArgs, behaviour: Behaviour, duration: Option<u64>) -> Result<(), String> {
    let ca_pem = std::fs::read_to_string(&args.ca)
        .map_err(|error| format!("{}: {error}", args.ca.display()))?;
    let identity = Identity::load(&args.onboarding, "onboard")
        .map_err(|error| format!("{}: {error}", args.onboarding.display()))?;
    let mut target = Target::new(&args.url, &ca_pem, identity, Some(args.identities))
        .map_err(|error| error.to_string())?;
    target.register_retry =
        (args.register_retry > 0).then(|| Duration::from_secs(args.register_retry));
    let serials = (0..args.devices)
        .map(|i| format!("{}{i}", args.serial_prefix))
        .collect();
    let fleet = fleet::onboard(&target, serials, 32)
        .await
        .map_err(|error| error.to_string())?;
    for device in &fleet {
        println!(
            "{}: onboarded as {}",
            device.serial,
            device.uuid().unwrap_or("?")
        );
    }
    let stop = async {
        match duration {
            Some(seconds) => tokio::time::sleep(Duration::from_secs(seconds)).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    fleet::run(fleet, behaviour, Arc::new(Recorder::default()), stop).await;
    Ok(())
}

async fn run_bench(options: &BenchOptions, json: Option<PathBuf>) -> Result<(), String> {
    let results = bench::run(options).await?;
    print!("{}", bench::table(&results, options));
    if let Some(path) = json {
        let document = serde_json::json!({
            "benchmark": "controller",
            "machine": { "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()) },
            "config_interval_s": options.interval.as_secs(),
            "measure_s": options.measure.as_secs(),
            "target": { "p99_ms": options.target_p99_ms },
            "runs": results,
        });
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&document).expect("serializable"),
        )
        .map_err(|error| format!("{}: {error}", path.display()))?;
    }
    Ok(())
}
