//! The admin CLI (`lichen-controller admin ...`), through [`AdminClient`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

pub use crate::admin_client::AdminClient;
use crate::client::ClientError;

/// How the CLI reaches the controller.
#[derive(Debug, Args)]
pub struct Connection {
    /// The controller's URL.
    #[arg(long, env = "LICHEN_URL", default_value = "https://127.0.0.1:8443")]
    pub url: String,
    /// The controller's state directory, where `ca.pem` and `admin.token` are read by default.
    #[arg(long, env = "LICHEN_STATE_DIR", default_value = "lichen-state")]
    pub state_dir: PathBuf,
    /// The controller's root certificate (default: `<state dir>/ca.pem`).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// The admin token (default: read from `<state dir>/admin.token`).
    #[arg(long, env = "LICHEN_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl Connection {
    /// A client as configured.
    pub fn client(&self) -> Result<AdminClient, String> {
        let ca_path = self
            .ca
            .clone()
            .unwrap_or_else(|| self.state_dir.join("ca.pem"));
        let ca_pem = read(&ca_path)?;
        let token = match &self.token {
            Some(token) => token.clone(),
            None => read(&self.state_dir.join("admin.token"))?,
        };
        AdminClient::new(&self.url, &ca_pem, &token).map_err(|error| error.to_string())
    }
}

fn read(path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))
}

/// Admin commands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Onboarding certificates and the serials they admit.
    #[command(subcommand)]
    Onboarding(OnboardingCommand),
    /// Registered devices.
    #[command(subcommand)]
    Devices(DevicesCommand),
    /// Device configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Apps on devices.
    #[command(subcommand)]
    App(AppCommand),
    /// Prints a device's reports as they arrive (JSON lines).
    Follow {
        /// The device's UUID.
        uuid: String,
        /// Kinds to show: info, metrics, logs, flowlog, newlogs (default: all).
        #[arg(long, value_delimiter = ',')]
        kinds: Vec<String>,
        /// Stop after the retained reports instead of waiting for new ones.
        #[arg(long)]
        no_wait: bool,
    },
    /// Prints a device's log lines, newest first (from its logs and newlogs reports).
    Logs {
        /// The device's UUID.
        uuid: String,
        /// Only these severities (e.g. `error,warning`).
        #[arg(long, value_delimiter = ',')]
        severity: Vec<String>,
        /// Only lines containing this text.
        #[arg(long)]
        text: Option<String>,
        /// Only lines logged in the last this many minutes.
        #[arg(long)]
        minutes: Option<u64>,
        /// At most this many lines.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// `admin onboarding ...`
#[derive(Debug, Subcommand)]
pub enum OnboardingCommand {
    /// Admits devices with an onboarding certificate (PEM file) and serials.
    Add {
        /// The onboarding certificate, PEM.
        cert: PathBuf,
        /// A serial pattern; `*` is a wildcard. Repeat for several.
        #[arg(long = "serial", required = true)]
        serials: Vec<String>,
    },
    /// Lists onboarding certificates.
    List,
    /// Removes an onboarding certificate (registered devices stay).
    Remove {
        /// Its id, as listed.
        id: String,
    },
    /// Lists register attempts refused because they are not admitted (the onboarding queue).
    Pending,
    /// Admits a queued register attempt: its onboarding certificate with its serial (or the
    /// serial patterns given), added to the serials that certificate already admits.
    Admit {
        /// The attempt's id, as listed by `pending`.
        id: String,
        /// A serial pattern to admit instead of the attempt's serial. Repeat for several.
        #[arg(long = "serial")]
        serials: Vec<String>,
    },
}

/// `admin devices ...`
#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Lists devices.
    List {
        /// Only devices heard from in the last this many minutes.
        #[arg(long)]
        seen_within: Option<u64>,
        /// Only devices not heard from for this many minutes (including never).
        #[arg(long)]
        silent_for: Option<u64>,
    },
    /// Shows one device.
    Show {
        /// The device's UUID.
        uuid: String,
    },
    /// Deletes a device with its configuration and reports.
    Delete {
        /// The device's UUID.
        uuid: String,
    },
}

/// `admin config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Prints the configuration a device is served (YAML, or JSON with --json).
    Get {
        /// The device's UUID.
        uuid: String,
        /// Print JSON instead of YAML.
        #[arg(long)]
        json: bool,
    },
    /// Replaces a device's configuration with a file (YAML or JSON; see docs/controller.md).
    Set {
        /// The device's UUID.
        uuid: String,
        /// The configuration file.
        file: PathBuf,
    },
}

/// `admin app ...`
#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Uploads an app image to the controller's datastore and configures a device to run it
    /// (a datastore, content tree, volume and app instance; an app of the same name is
    /// replaced by the new image).
    Deploy {
        /// The image (for example a PVH ELF such as lichen's `echo`, or a Linux VM's bundle
        /// made by `img/mklinuxapp`).
        file: PathBuf,
        /// The app's name.
        #[arg(long)]
        name: String,
        /// The device (UUID); may be left out when the controller has exactly one.
        #[arg(long)]
        device: Option<String>,
        /// Memory, MiB.
        #[arg(long, default_value_t = 64)]
        memory_mib: u32,
        /// Virtual CPUs.
        #[arg(long, default_value_t = 1)]
        vcpus: u32,
        /// Virtualization mode, as EVE's `VmMode` names it (PV, HVM, ...).
        #[arg(long, default_value = "PV")]
        mode: String,
        /// Serve the image over plain HTTP (the controller needs `--datastore-http`).
        #[arg(long)]
        http: bool,
        /// The network instance the app's interface attaches to, by name (made, local and
        /// NATed, if the device has none of that name).
        #[arg(long, default_value = "default")]
        network: String,
        /// No network interface.
        #[arg(long, conflicts_with = "network")]
        no_network: bool,
        /// Make the `--network` instance, if the device has none of that name, a switch
        /// instance (the app on the uplink's L2, addressed by its DHCP; no NAT, no ACLs
        /// enforced). An existing instance keeps its type; `--switch` refuses one that is not
        /// a switch.
        #[arg(long, conflicts_with = "no_network")]
        switch: bool,
        /// A file sent as the app's user data (EVE's `userData`): for a lichen app, its
        /// command line, `key=value` words, one or more a line, `#` comments (at most 1024
        /// bytes once joined).
        #[arg(long, value_name = "FILE")]
        user_data: Option<PathBuf>,
        /// A port map, `[udp:]UPLINK_PORT:APP_PORT` (TCP unless `udp:`): the node's uplink
        /// port leads to the app's port. Repeat for several.
        #[arg(long = "port-map")]
        port_maps: Vec<String>,
        /// An ACE, `MATCHES->ACTION` (e.g. `ip:10.77.0.1,protocol:tcp,fport:7007->accept`,
        /// `protocol:udp->limit:10/s/5`; docs/router.md). Repeat for several; with none and
        /// no port map, the node denies the app every connection (EVE's default).
        #[arg(long = "acl")]
        acls: Vec<String>,
        /// A disk image the app gets as a writable disk (`xvda`, `xvdb`, ... in order), served
        /// from the datastore like the image, on a volume of its own (a Linux VM's root disk,
        /// for instance). Repeat for several.
        #[arg(long = "disk", value_name = "FILE")]
        disks: Vec<PathBuf>,
    },
    /// Reboots an app on the same volumes (bumps its restart counter).
    Restart(AppTarget),
    /// Reboots an app on volumes made afresh from their content trees (bumps its purge
    /// counter and its volumes' generations).
    Purge(AppTarget),
    /// Halts an app, keeping its volumes (activate: false).
    Stop(AppTarget),
    /// Runs a stopped app again (activate: true).
    Start(AppTarget),
    /// Removes an app, and the volumes and content trees no other app uses.
    Delete(AppTarget),
}

/// The app an operation applies to.
#[derive(Debug, clap::Args)]
pub struct AppTarget {
    /// The app, by name or UUID.
    name: String,
    /// The device (UUID); may be left out when the controller has exactly one.
    #[arg(long)]
    device: Option<String>,
}

/// Runs an admin command, printing its result.
pub async fn run(connection: &Connection, command: AdminCommand) -> Result<(), String> {
    let admin = connection.client()?;
    let text = |error: ClientError| error.to_string();
    match command {
        AdminCommand::Onboarding(OnboardingCommand::Add { cert, serials }) => {
            let entry = admin
                .add_onboarding(&read(&cert)?, &serials)
                .await
                .map_err(text)?;
            println!(
                "onboarding {} ({}) admits {}",
                entry.id,
                entry.subject,
                entry.serials.join(", ")
            );
        }
        AdminCommand::Onboarding(OnboardingCommand::List) => {
            for entry in admin.onboarding().await.map_err(text)? {
                println!(
                    "{}  {}  serials: {}",
                    entry.id,
                    entry.subject,
                    entry.serials.join(", ")
                );
            }
        }
        AdminCommand::Onboarding(OnboardingCommand::Remove { id }) => {
            admin.remove_onboarding(&id).await.map_err(text)?
        }
        AdminCommand::Onboarding(OnboardingCommand::Pending) => {
            for entry in admin.pending().await.map_err(text)? {
                println!(
                    "{}  {}  serial {:?}  {} attempts",
                    entry.id, entry.subject, entry.serial, entry.attempts
                );
            }
        }
        AdminCommand::Onboarding(OnboardingCommand::Admit { id, serials }) => {
            let entry = admin.admit(&id, &serials).await.map_err(text)?;
            println!(
                "onboarding {} ({}) admits {}",
                entry.id,
                entry.subject,
                entry.serials.join(", ")
            );
        }
        AdminCommand::Devices(DevicesCommand::List {
            seen_within,
            silent_for,
        }) => {
            let minutes = |m: u64| Duration::from_secs(m * 60);
            let devices = admin
                .devices_by_contact(seen_within.map(minutes), silent_for.map(minutes))
                .await
                .map_err(text)?;
            println!("{:36}  {:20}  {:>7}  last seen", "uuid", "serial", "config");
            for device in devices {
                let seen = device.last_seen_ms.map_or("-".to_owned(), |ms| {
                    format!("{} ms ago", crate::server::now_ms().saturating_sub(ms))
                });
                println!(
                    "{:36}  {:20}  {:>7}  {seen}",
                    device.uuid, device.serial, device.config_version
                );
            }
        }
        AdminCommand::Devices(DevicesCommand::Show { uuid }) => {
            print_json(&admin.device(&uuid).await.map_err(text)?);
            let status = admin.status(&uuid).await.map_err(text)?;
            let objects = crate::admin_show::object_lines(&status);
            for line in objects
                .into_iter()
                .chain(crate::admin_show::network_lines(&status))
            {
                println!("{line}");
            }
            let flows = admin
                .reports(&uuid, &["flowlog".to_owned()], 0, Duration::ZERO)
                .await
                .map_err(text)?;
            for line in
                crate::admin_show::flow_lines(&flows.reports, crate::admin_show::RECENT_FLOWS)
            {
                println!("{line}");
            }
        }
        AdminCommand::Devices(DevicesCommand::Delete { uuid }) => {
            admin.delete_device(&uuid).await.map_err(text)?
        }
        AdminCommand::Config(ConfigCommand::Get { uuid, json }) => {
            let config = admin.config(&uuid).await.map_err(text)?;
            if json {
                print_json(&config);
            } else {
                print!(
                    "{}",
                    serde_yaml::to_string(&config).map_err(|error| error.to_string())?
                );
            }
        }
        AdminCommand::Config(ConfigCommand::Set { uuid, file }) => {
            let text = read(&file)?;
            // Check locally first, for errors with the file's name.
            crate::device_config::parse(&text)
                .map_err(|error| format!("{}: {error}", file.display()))?;
            let set = admin
                .set_config(&uuid, &text)
                .await
                .map_err(|error| error.to_string())?;
            println!(
                "device {uuid}: config version {} (hash {})",
                set.version, set.hash
            );
        }
        AdminCommand::App(AppCommand::Deploy {
            file,
            name,
            device,
            memory_mib,
            vcpus,
            mode,
            http,
            network,
            no_network,
            switch,
            user_data,
            port_maps,
            acls,
            disks,
        }) => {
            let user_data = match user_data {
                Some(path) => {
                    std::fs::read(&path).map_err(|error| format!("{}: {error}", path.display()))?
                }
                None => Vec::new(),
            };
            let mut aces = Vec::new();
            for text in &port_maps {
                aces.push(crate::deploy::port_map(aces.len() as i32 + 1, text)?);
            }
            for text in &acls {
                aces.push(crate::deploy::parse_acl(aces.len() as i32 + 1, text)?);
            }
            if no_network && !aces.is_empty() {
                return Err("--port-map and --acl need a network interface".into());
            }
            let mode = lichen_api::config::VmMode::from_str_name(&mode)
                .ok_or_else(|| format!("--mode {mode}: not one of EVE's VmMode names"))?;
            let spec = crate::deploy::AppSpec {
                name,
                memory_kib: memory_mib
                    .checked_mul(1024)
                    .ok_or("--memory-mib is too large")?,
                vcpus,
                mode,
                plain_http: http,
                network: (!no_network).then_some(network),
                switch,
                user_data,
                acls: aces,
            };
            deploy_app(&admin, &file, &disks, device, &spec).await?;
        }
        AdminCommand::App(AppCommand::Restart(target)) => {
            app_op(&admin, target, crate::lifecycle::AppOp::Restart).await?
        }
        AdminCommand::App(AppCommand::Purge(target)) => {
            app_op(&admin, target, crate::lifecycle::AppOp::Purge).await?
        }
        AdminCommand::App(AppCommand::Stop(target)) => {
            app_op(&admin, target, crate::lifecycle::AppOp::Stop).await?
        }
        AdminCommand::App(AppCommand::Start(target)) => {
            app_op(&admin, target, crate::lifecycle::AppOp::Start).await?
        }
        AdminCommand::App(AppCommand::Delete(target)) => {
            app_op(&admin, target, crate::lifecycle::AppOp::Delete).await?
        }
        AdminCommand::Follow {
            uuid,
            kinds,
            no_wait,
        } => {
            let mut after = 0;
            loop {
                let wait = if no_wait {
                    Duration::ZERO
                } else {
                    Duration::from_secs(25)
                };
                let page = admin
                    .reports(&uuid, &kinds, after, wait)
                    .await
                    .map_err(text)?;
                for report in &page.reports {
                    println!("{}", serde_json::to_string(report).expect("serializable"));
                    after = report.seq;
                }
                if no_wait && page.reports.is_empty() {
                    return Ok(());
                }
            }
        }
        AdminCommand::Logs {
            uuid,
            severity,
            text: needle,
            minutes,
            limit,
        } => {
            let within = minutes.map(|minutes| Duration::from_secs(minutes * 60));
            let lines = admin
                .logs(&uuid, &severity, needle.as_deref(), within, limit)
                .await
                .map_err(text)?;
            for line in lines {
                println!(
                    "{} {:<7} {:<12} {}",
                    line.at_ms, line.severity, line.source, line.text
                );
            }
        }
    }
    Ok(())
}

/// `admin app deploy`: uploads the file, then writes the objects into the device's
/// configuration.
async fn deploy_app(
    admin: &AdminClient,
    file: &std::path::Path,
    disks: &[PathBuf],
    device: Option<String>,
    spec: &crate::deploy::AppSpec,
) -> Result<(), String> {
    let text = |error: ClientError| error.to_string();
    let device = the_device(admin, device).await?;
    let mut uploads = Vec::new();
    for file in std::iter::once(file).chain(disks.iter().map(PathBuf::as_path)) {
        let bytes = std::fs::read(file).map_err(|error| format!("{}: {error}", file.display()))?;
        let upload = admin.upload(bytes).await.map_err(text)?;
        println!(
            "{}: sha256 {}, {} bytes, in datastore {}",
            file.display(),
            upload.stored.sha256,
            upload.stored.size,
            upload.location.id
        );
        uploads.push(upload);
    }
    let (upload, disk_uploads) = uploads.split_first().ok_or("nothing uploaded")?;
    let (deployed, version) = edit_config(admin, &device, |config| {
        crate::deploy::deploy(config, spec, upload, disk_uploads)
    })
    .await?;
    println!(
        "device {device}: app {} {} (version {}, volume {}, content tree {}); config version {version}",
        spec.name, deployed.app, deployed.version, deployed.volume, deployed.content_tree,
    );
    Ok(())
}

/// `admin app restart|purge|stop|start|delete`.
async fn app_op(
    admin: &AdminClient,
    target: AppTarget,
    op: crate::lifecycle::AppOp,
) -> Result<(), String> {
    let device = the_device(admin, target.device).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (applied, version) = edit_config(admin, &device, |config| {
        crate::lifecycle::apply(config, &target.name, op, now)
    })
    .await?;
    let what = match (op, applied.counter) {
        (_, Some(counter)) => format!("{op:?} {counter}").to_lowercase(),
        (crate::lifecycle::AppOp::Delete, _) => {
            format!("deleted with {} volume(s)", applied.volumes_removed)
        }
        _ => format!("{op:?}").to_lowercase(),
    };
    println!(
        "device {device}: app {} {}: {what}; config version {version}",
        target.name, applied.app
    );
    Ok(())
}

/// The device to act on: `device` if given, else the controller's only device.
async fn the_device(admin: &AdminClient, device: Option<String>) -> Result<String, String> {
    if let Some(device) = device {
        return Ok(device);
    }
    let devices = admin.devices().await.map_err(|error| error.to_string())?;
    match devices.as_slice() {
        [one] => Ok(one.uuid.clone()),
        [] => Err("no device is registered yet: give --device".into()),
        _ => {
            let all: Vec<&str> = devices.iter().map(|d| d.uuid.as_str()).collect();
            Err(format!(
                "several devices ({}): give --device",
                all.join(", ")
            ))
        }
    }
}

/// Reads `device`'s configuration, changes it with `change` and writes it back at the version
/// it was read from; a concurrent change (409) makes it read again, up to five times. Returns
/// what `change` returned and the new configuration version.
async fn edit_config<T>(
    admin: &AdminClient,
    device: &str,
    mut change: impl FnMut(&mut lichen_api::config::EdgeDevConfig) -> Result<T, String>,
) -> Result<(T, u64), String> {
    let text = |error: ClientError| error.to_string();
    for _attempt in 0..5 {
        let version = admin.device(device).await.map_err(text)?.config_version;
        let json = admin.config(device).await.map_err(text)?;
        let mut config: lichen_api::config::EdgeDevConfig =
            serde_json::from_value(json).map_err(|error| error.to_string())?;
        config.id = None;
        let result = change(&mut config)?;
        let yaml = crate::device_config::to_yaml(&config);
        match admin.set_config_at(device, &yaml, version).await {
            Ok(set) => return Ok((result, set.version)),
            Err(error) if error.0.starts_with("409") => continue,
            Err(error) => return Err(error.to_string()),
        }
    }
    Err("the device's configuration kept changing meanwhile: try again".into())
}

/// Prints a value as pretty JSON.
fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serializable")
    );
}
