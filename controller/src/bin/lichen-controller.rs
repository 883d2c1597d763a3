//! `lichen-controller`: runs the controller (`serve`) or administers a running one (`admin`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use lichen_controller::admin_cli::{self, AdminCommand, Connection};
use lichen_controller::server;
use lichen_controller::store::legacy;
use lichen_controller::store::postgres::PostgresStore;
use lichen_controller::store::sqlite::{self, SqliteStore};
use lichen_controller::store::Store;

/// The lichen controller: manages nodes through the EVE device API v2.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the controller; creates its certificates, admin token and store on first start.
    Serve {
        /// Where certificates, the admin token and the store live.
        #[arg(long, env = "LICHEN_STATE_DIR", default_value = "lichen-state")]
        state_dir: PathBuf,
        /// The address to listen on.
        #[arg(long, default_value = "0.0.0.0:8443")]
        listen: SocketAddr,
        /// A DNS name or IP address devices use to reach the controller (for the server
        /// certificate created on first start). Repeat for several.
        #[arg(long = "server-name")]
        server_names: Vec<String>,
        /// The largest request body accepted, in bytes.
        #[arg(long, default_value_t = 1 << 20)]
        max_body_bytes: usize,
        /// A PostgreSQL database to keep the state in, shared by every controller given it
        /// (`postgresql://user@host/db` or `host=... dbname=...`); default: SQLite in the state
        /// directory.
        #[arg(long, env = "LICHEN_DATABASE_URL")]
        database_url: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
        /// What is kept of a kind of report: KIND=AGE,COUNT[,SIZE] (AGE like 7d, 12h or 30m, COUNT
        /// per device, SIZE in bytes per device like 64m; `-` for no limit). Repeat for several
        /// kinds; the others keep their defaults.
        #[arg(long = "retention")]
        retention: Vec<String>,
        #[command(flatten)]
        datastore: DatastoreArgs,
    },
    /// Moves the store of an earlier version (`store/lichen.log` in the state directory) into
    /// the SQLite database the controller now uses. The old log is kept, renamed
    /// `lichen.log.migrated`.
    Migrate {
        /// The state directory of the controller (stopped) to migrate.
        #[arg(long, env = "LICHEN_STATE_DIR", default_value = "lichen-state")]
        state_dir: PathBuf,
        /// Migrate into this (empty) PostgreSQL database instead of SQLite.
        #[arg(long, env = "LICHEN_DATABASE_URL")]
        database_url: Option<String>,
    },
    /// Administers a running controller.
    Admin {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: AdminCommand,
    },
}

/// The controller's datastore (app images for devices; docs/download.md).
#[derive(clap::Args)]
struct DatastoreArgs {
    /// How devices reach the datastore over HTTPS (`https://host:port`); default: the first
    /// --server-name (else the listen address) and the port listened on.
    #[arg(long)]
    datastore_url: Option<String>,
    /// Also serve the datastore in plain HTTP on this address (for `DsHttp` datastores).
    #[arg(long)]
    datastore_http: Option<SocketAddr>,
    /// The largest app image the admin may upload, in bytes.
    #[arg(long, default_value_t = 1 << 30)]
    max_upload_bytes: usize,
}

/// Timeouts and caps on connections (see `server::Limits`).
#[derive(clap::Args)]
struct LimitArgs {
    /// Seconds from accepting a connection to the end of its TLS handshake.
    #[arg(long, default_value_t = 10)]
    tls_handshake_timeout: u64,
    /// Seconds from the first byte of a request to the end of its headers.
    #[arg(long, default_value_t = 10)]
    header_timeout: u64,
    /// Seconds a kept-alive connection may wait for its next request.
    #[arg(long, default_value_t = 300)]
    idle_timeout: u64,
    /// Seconds a request body may take at any pace before --min-body-rate applies.
    #[arg(long, default_value_t = 10)]
    body_grace: u64,
    /// Bytes per second a request body must average after --body-grace.
    #[arg(long, default_value_t = 1024)]
    min_body_rate: u64,
    /// Open connections in total (0: derived from the file descriptor limit).
    #[arg(long, default_value_t = 0)]
    max_connections: usize,
    /// Open connections from one client address.
    #[arg(long, default_value_t = 1024)]
    max_connections_per_address: usize,
}

impl From<LimitArgs> for server::Limits {
    fn from(args: LimitArgs) -> Self {
        Self {
            tls_handshake: Duration::from_secs(args.tls_handshake_timeout),
            header: Duration::from_secs(args.header_timeout),
            idle: Duration::from_secs(args.idle_timeout),
            body_grace: Duration::from_secs(args.body_grace),
            min_body_rate: args.min_body_rate,
            max_connections: args.max_connections,
            max_connections_per_address: args.max_connections_per_address,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Serve {
            state_dir,
            listen,
            server_names,
            max_body_bytes,
            database_url,
            limits,
            retention,
            datastore,
        } => {
            let mut options = server::Options::new(state_dir.clone(), listen);
            options.server_names = server_names;
            options.max_body_bytes = max_body_bytes;
            options.limits = limits.into();
            options.database_url = database_url;
            options.datastore_url = datastore.datastore_url;
            options.datastore_http = datastore.datastore_http;
            options.max_upload_bytes = datastore.max_upload_bytes;
            match retention
                .iter()
                .try_for_each(|arg| options.retention.apply_arg(arg))
            {
                Ok(()) => serve(options).await,
                Err(error) => Err(format!("--retention {error}")),
            }
        }
        Command::Migrate {
            state_dir,
            database_url,
        } => migrate(&state_dir, database_url.as_deref()).await,
        Command::Admin {
            connection,
            command,
        } => admin_cli::run(&connection, command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lichen-controller: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(options: server::Options) -> Result<(), String> {
    let state_dir = options.state_dir.clone();
    let running = server::start(options)
        .await
        .map_err(|error| format!("starting: {error}"))?;
    // The first line is read by scripts and the benchmark: keep its form.
    println!("listening on https://{}", running.addr);
    if let Some(addr) = running.datastore_http_addr {
        eprintln!("lichen-controller: datastore in plain HTTP on http://{addr}");
    }
    eprintln!(
        "lichen-controller: devices trust {}; admin token in {}",
        state_dir.join("ca.pem").display(),
        state_dir.join("admin.token").display()
    );
    tokio::signal::ctrl_c()
        .await
        .map_err(|error| error.to_string())?;
    running.stop().await;
    Ok(())
}

async fn migrate(state_dir: &Path, database_url: Option<&str>) -> Result<(), String> {
    let log = legacy::log_path(state_dir);
    let database = state_dir.join(sqlite::FILE_NAME);
    if !log.exists() {
        return Err(format!("{}: no store of an earlier version", log.display()));
    }
    let (migrated, into) = match database_url {
        Some(url) => {
            let store = PostgresStore::open(url)
                .await
                .map_err(|error| error.to_string())?;
            if !store
                .devices()
                .await
                .map_err(|error| error.to_string())?
                .is_empty()
            {
                return Err("the PostgreSQL database has devices already: nothing done".into());
            }
            let migrated = legacy::migrate(&log, &store)
                .await
                .map_err(|error| format!("migrating {}: {error}", log.display()))?;
            (migrated, "PostgreSQL".to_owned())
        }
        None => (
            into_sqlite(state_dir, &log, &database).await?,
            database.display().to_string(),
        ),
    };
    let kept = log.with_extension("log.migrated");
    std::fs::rename(&log, &kept).map_err(|error| format!("renaming {}: {error}", log.display()))?;
    println!(
        "migrated {} onboarding certificates, {} devices, {} configurations and {} reports into {into}; the old log is {}",
        migrated.onboarding,
        migrated.devices,
        migrated.configs,
        migrated.reports,
        kept.display()
    );
    if migrated.dropped_bytes > 0 {
        println!(
            "dropped {} bytes of torn or corrupt log tail (never acknowledged, or damaged)",
            migrated.dropped_bytes
        );
    }
    Ok(())
}

async fn into_sqlite(
    state_dir: &Path,
    log: &Path,
    database: &Path,
) -> Result<legacy::Migrated, String> {
    if database.exists() {
        return Err(format!(
            "{} exists already: nothing done (remove it to migrate again)",
            database.display()
        ));
    }
    let result = async {
        let store = SqliteStore::open(state_dir).map_err(|error| error.to_string())?;
        legacy::migrate(log, &store)
            .await
            .map_err(|error| error.to_string())
    }
    .await;
    result.map_err(|error| {
        // Leave the state directory as it was, so that the migration can be run again.
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", database.display()));
        }
        format!("migrating {}: {error}", log.display())
    })
}
