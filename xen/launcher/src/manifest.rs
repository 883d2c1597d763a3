//! The node manifest: the services a node runs, their resources and restart policies, and the
//! channels between them. It is TOML, in the spirit of Hubris' `app.toml`:
//!
//! ```toml
//! name = "demo"                  # optional, default "node"
//! logs = "logs"                  # the service that collects every other's log lines (optional):
//!                                # each gets a channel `log` to it (crate::logs, docs/logs.md)
//! network_instances = 2          # dom0 bridges lichenni1..2 for local network instances
//!                                # (crate::network, docs/router.md); default 0
//!
//! [services.bus]
//! image = "bus"                  # target/images/bus.elf (or a file named exactly "bus")
//! memory = 16                    # MiB
//! vcpus = 1                      # default 1
//! cmdline = "verbose"            # default ""
//! restart = "on-failure"         # "never" | "on-failure" (default) | "always"
//! max_restarts = 3               # default 3
//! network = "bridge"             # "none" (default) | "bridge": a vif on dom0's lichenbr0 |
//!                                # "uplink": a vif on lichenup0, bridged to dom0's NIC
//! router = true                  # zedrouter: also vif i on lichenni<i> for each network instance
//! disks = ["persist"]            # node disks it gets, "NAME" or "NAME:ro" (see crate::disks)
//! daemon = true                  # serves the others: stopped once they are all done
//! toolstack = "xl"               # "lichen" (default): the launcher's builder | "xl"
//! standby = true                 # keep a built, paused domain to restart into (default false);
//!                                # costs the service's `memory` again, plus ~1.1 MiB of Xen's
//!                                # (paging pool: 1 MiB per vCPU + 8 KiB per MiB of RAM)
//!
//! [disks.persist]
//! size_mib = 64
//!
//! [[channels]]
//! name = "events"
//! server = "bus"
//! client = "api"
//! ring_order = 11                # default 11
//! ```
//!
//! Parsing refuses unknown fields; [`Manifest::validate`] then checks everything else (images,
//! peers, sizes, the dependency order) so that a bad manifest is refused before anything starts.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;

use crate::backoff::{RestartMode, RestartPolicy};
use crate::bus;
use crate::disks;
use crate::order;

/// The smallest memory, in MiB, a service may be given: below it Xen cannot build a PVH domain
/// with room for the guest's page tables, console and xenstore rings.
pub const MIN_MEMORY_MIB: u32 = 2;

/// The largest memory, in MiB, a service may ask for (a sanity bound, not a Xen limit).
pub const MAX_MEMORY_MIB: u32 = 1 << 20;

/// The most vCPUs a service may ask for.
pub const MAX_VCPUS: u32 = 128;

/// The ring orders a channel may use (libxenvchan's limits: 2^10 to 2^20 bytes per direction).
pub const RING_ORDERS: std::ops::RangeInclusive<u8> = 10..=20;

/// A whole node: every service it runs and the channels between them.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The node's name, for logs.
    #[serde(default = "default_node_name")]
    pub name: String,
    /// Start services one at a time, each once the one before it has finished (for benchmarks
    /// and tests that must not overlap); by default all start together, in dependency order.
    #[serde(default)]
    pub sequential: bool,
    /// The service that collects every other service's log lines (EVE's newlogd): each other
    /// service gets a log channel to it ([`crate::logs`]).
    #[serde(default)]
    pub logs: Option<String>,
    /// The services, by name, in manifest order.
    pub services: IndexMap<String, Service>,
    /// The channels between services.
    #[serde(default)]
    pub channels: Vec<Channel>,
    /// Test hooks: dom0 programs run beside the node (a test's peer, a fault injector).
    #[serde(default)]
    pub test: Test,
    /// The node's disks, by name (see [`crate::disks`]).
    #[serde(default)]
    pub disks: IndexMap<String, disks::NodeDisk>,
    /// The domain service for app domains, if the node runs apps (see [`crate::apps`]).
    #[serde(default)]
    pub apps: Option<crate::apps::AppsConfig>,
    /// How many network-instance bridges (`lichenni1`..) the launcher makes for the router's
    /// ports and apps (see [`crate::network`]).
    #[serde(default)]
    pub network_instances: u8,
}

/// A manifest's `[test]` table: dom0 programs from the hooks directory (`xen/dom0/hooks`, in
/// dom0 `/etc/lichen/hooks`) that the launcher starts once Xen's daemons run, before the
/// services, each with every setting in its environment as `LICHEN_TEST_<KEY>` (upper case,
/// `-` as `_`).
///
/// ```toml
/// [test]
/// hooks = ["pingpong-kill"]
/// settings = { pingpong-kill-after = "20" }
/// ```
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Test {
    /// The hooks to run, by file name.
    #[serde(default)]
    pub hooks: Vec<String>,
    /// Settings passed to every hook.
    #[serde(default)]
    pub settings: IndexMap<String, String>,
}

impl Test {
    /// The environment a hook gets: `(LICHEN_TEST_<KEY>, value)`.
    pub fn environment(&self) -> Vec<(String, String)> {
        self.settings
            .iter()
            .map(|(key, value)| {
                let key = key.to_ascii_uppercase().replace('-', "_");
                (format!("LICHEN_TEST_{key}"), value.clone())
            })
            .collect()
    }

    fn check(&self, hooks_dir: Option<&Path>) -> Vec<ManifestError> {
        let mut errors = Vec::new();
        for hook in &self.hooks {
            if !is_good_name(hook) {
                errors.push(ManifestError::BadName(hook.clone()));
            } else if let Some(dir) = hooks_dir.filter(|d| d.is_dir()) {
                if !dir.join(hook).is_file() {
                    errors.push(ManifestError::UnknownHook {
                        hook: hook.clone(),
                        dir: dir.to_path_buf(),
                    });
                }
            }
        }
        for (key, value) in &self.settings {
            if !is_good_name(key) {
                errors.push(ManifestError::BadName(key.clone()));
            }
            if value.chars().any(char::is_control) {
                errors.push(ManifestError::BadText {
                    service: "[test]".into(),
                    field: "a setting",
                });
            }
        }
        errors
    }
}

/// One service: a unikernel image run as a PVH domain.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// The image's file name in an image directory; `.elf` is appended when no file has the
    /// name as given.
    pub image: String,
    /// An initial ramdisk, looked up like `image` (for Linux guests).
    #[serde(default)]
    pub ramdisk: Option<String>,
    /// Memory in MiB.
    pub memory: u32,
    /// Virtual CPUs.
    #[serde(default = "default_vcpus")]
    pub vcpus: u32,
    /// The guest's command line, passed as is.
    #[serde(default)]
    pub cmdline: String,
    /// When the service is restarted.
    #[serde(default)]
    pub restart: RestartMode,
    /// How many restarts after failures in a row are allowed before the service is marked failed.
    #[serde(default = "default_max_restarts")]
    pub max_restarts: u32,
    /// The delay before the first restart, in milliseconds; it doubles with each failure in a row.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// The longest delay between restarts, in milliseconds.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// When set, a run that lasts longer than this many seconds is stopped and counts as a failure.
    #[serde(default)]
    pub timeout_s: Option<u64>,
    /// Text written to the service's console input once it runs (after each start).
    #[serde(default)]
    pub console_input: Option<String>,
    /// The service's network card.
    #[serde(default)]
    pub network: Network,
    /// The router (zedrouter): besides its `network` card (vif 0), a vif on each of the
    /// node's network-instance bridges (see [`crate::network`]).
    #[serde(default)]
    pub router: bool,
    /// The network-instance bridges the router's ports join (set from the manifest's
    /// `network_instances` for the router, never written in a manifest; 0 for others).
    #[serde(skip)]
    pub ports: u8,
    /// The node disks the service gets, in order (`xvda`, `xvdb`, ...).
    #[serde(default)]
    pub disks: Vec<disks::DiskUse>,
    /// Runs for the others (the vault, a router): the node is done once every service that
    /// is not a daemon is, and its daemons are then stopped.
    #[serde(default)]
    pub daemon: bool,
    /// What builds the service's domain.
    #[serde(default)]
    pub toolstack: Toolstack,
    /// Keep a second domain built and paused while the service runs: a failure unpauses it
    /// (at once for the first failure in a row) instead of building a new one. It holds the
    /// service's `memory` again (plus Xen's paging pool for it, about 1.1 MiB) for as long as
    /// the service runs.
    #[serde(default)]
    pub standby: bool,
    /// An app domain ([`Service::app`], never from a manifest): built by the launcher's
    /// builder even with disks, whose vbd backends the builder writes (a pillar with disks
    /// still goes through `xl`).
    #[serde(skip)]
    pub app: bool,
}

/// What builds a service's domain.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Toolstack {
    /// The launcher's own domain builder (xen/launcher/src/builder): milliseconds. Services
    /// with disks (the builder writes no vbd backends yet), and any service when privcmd is
    /// missing, still go through `xl`.
    #[default]
    Lichen,
    /// `xl create -p`: the fallback, and the reference of `scripts/bench xen-boot`.
    Xl,
}

/// What network card a service gets: `network = "none" | "bridge" | "uplink" | "lichenni<i>"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Network {
    /// A vif on network-instance bridge `lichenni<i>`, behind the router (an app, from
    /// launcher-api's `AppSpec::network`, or a service standing in for one; see
    /// [`crate::network`]).
    Local(u8),
    /// None.
    #[default]
    None,
    /// A vif (netfront/netback) on dom0's bridge [`BRIDGE`], where dom0 is 10.77.0.1/24 and
    /// serves DHCP.
    Bridge,
    /// A vif on [`UPLINK_BRIDGE`], which dom0 bridges to its own NIC: the node's management
    /// uplink (under QEMU: its user network, with DHCP, and the host at 10.0.2.2).
    Uplink,
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Network, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "none" => Ok(Network::None),
            "bridge" => Ok(Network::Bridge),
            "uplink" => Ok(Network::Uplink),
            other => other
                .strip_prefix(crate::network::PREFIX)
                .filter(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|i| i.parse::<u8>().ok())
                .filter(|i| *i >= 1)
                .map(Network::Local)
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "unknown network `{other}`: expected none, bridge, uplink or lichenni<N>"
                    ))
                }),
        }
    }
}

impl Network {
    /// The dom0 bridge the service's vif joins, if it has one.
    pub fn bridge(self) -> Option<String> {
        match self {
            Network::None => None,
            Network::Bridge => Some(BRIDGE.into()),
            Network::Uplink => Some(UPLINK_BRIDGE.into()),
            Network::Local(i) => Some(crate::network::bridge(i)),
        }
    }
}

/// The dom0 bridge services with `network = "bridge"` are attached to (xen/dom0/init makes it).
pub const BRIDGE: &str = "lichenbr0";

/// The dom0 bridge, holding dom0's NIC, that services with `network = "uplink"` join.
pub const UPLINK_BRIDGE: &str = "lichenup0";

/// A channel between two services: a server that offers it and a client that connects to it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    /// The channel's name, unique in the node.
    pub name: String,
    /// The service that offers the channel (it starts first).
    pub server: String,
    /// The service that connects to it.
    pub client: String,
    /// log2 of each direction's ring size in bytes.
    #[serde(default = "default_ring_order")]
    pub ring_order: u8,
    /// A bus channel derived from the images' declarations (never written in a manifest): the
    /// topics it carries, each with its publisher. Empty for a raw channel.
    #[serde(skip)]
    pub topics: Vec<(String, String)>,
    /// A log channel derived from the manifest's `logs` (never written in a manifest): the
    /// collector calls it by its name, `log-<service>`, the other end calls it `log`.
    #[serde(skip)]
    pub log: bool,
}

impl Channel {
    /// Whether the launcher derived this channel for the bus.
    pub fn is_bus(&self) -> bool {
        !self.topics.is_empty()
    }

    /// What `service` (one of its ends) calls the channel: a bus channel is named after the
    /// peer on each side, a raw channel by its manifest name on both.
    pub fn name_for(&self, service: &str) -> &str {
        if self.log {
            return crate::logs::name_for(self, service);
        }
        match (self.is_bus(), self.server == service) {
            (false, _) => &self.name,
            (true, true) => &self.client,
            (true, false) => &self.server,
        }
    }
}

fn default_node_name() -> String {
    "node".into()
}
fn default_vcpus() -> u32 {
    1
}
fn default_max_restarts() -> u32 {
    3
}
fn default_backoff_ms() -> u64 {
    1000
}
fn default_backoff_max_ms() -> u64 {
    30_000
}
fn default_ring_order() -> u8 {
    11
}

impl Service {
    /// An app domain as [`crate::apps`] creates it: the spec's memory, vCPUs, command line and
    /// disks (`devices`: the dom0 devices of its disk volumes, in order); the launcher's
    /// builder; never restarted (the manager decides).
    pub fn app(spec: &launcher_api::AppSpec, devices: &[std::path::PathBuf]) -> Service {
        Service {
            image: spec.kernel.to_string(),
            ramdisk: None,
            memory: spec.memory_mib,
            vcpus: spec.vcpus,
            cmdline: spec.cmdline.clone(),
            restart: RestartMode::Never,
            max_restarts: 0,
            backoff_ms: default_backoff_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            timeout_s: None,
            console_input: None,
            // `crate::apps` checked the name against the node's bridges.
            network: crate::network::app_network(spec.network.as_deref(), u8::MAX)
                .unwrap_or_default(),
            router: false,
            ports: 0,
            disks: spec
                .disks
                .iter()
                .zip(devices)
                .map(|(d, device)| disks::DiskUse {
                    name: device.display().to_string(),
                    read_only: d.read_only,
                })
                .collect(),
            daemon: false,
            toolstack: Toolstack::Lichen,
            standby: false,
            app: true,
        }
    }

    /// The dom0 bridges of the service's vifs, in vif order: its `network` card, then a
    /// router's ports.
    pub fn vifs(&self) -> Vec<String> {
        let mut vifs: Vec<String> = self.network.bridge().into_iter().collect();
        if vifs.len() == 1 {
            vifs.extend((1..=self.ports).map(crate::network::bridge));
        }
        vifs
    }

    /// This service's restart policy.
    pub fn restart_policy(&self) -> RestartPolicy {
        RestartPolicy {
            mode: self.restart,
            max_restarts: self.max_restarts,
            initial_delay: Duration::from_millis(self.backoff_ms),
            max_delay: Duration::from_millis(self.backoff_max_ms),
        }
    }
}

/// The image files a manifest's services use, resolved in the image directories.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvedImages {
    /// For each service (in manifest order): its kernel image and optional ramdisk.
    pub services: IndexMap<String, (PathBuf, Option<PathBuf>)>,
    /// What each service's image declares, once read (see [`Manifest::wire_bus`]).
    pub declarations: bus::Declarations,
}

impl ResolvedImages {
    /// Every distinct file, in manifest order.
    pub fn files(&self) -> Vec<&Path> {
        let mut seen = HashSet::new();
        self.services
            .values()
            .flat_map(|(kernel, ramdisk)| {
                std::iter::once(kernel.as_path()).chain(ramdisk.as_deref())
            })
            .filter(|path| seen.insert(*path))
            .collect()
    }
}

/// Why a manifest was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestError {
    /// The file could not be read.
    Read(String),
    /// The TOML is malformed or has an unknown field or a wrong type.
    Parse(String),
    /// The manifest names no service.
    NoServices,
    /// A service or channel name that cannot be a Xen domain name or xenstore key.
    BadName(String),
    /// A service asks for less memory than [`MIN_MEMORY_MIB`] or more than [`MAX_MEMORY_MIB`].
    Memory {
        /// The service.
        service: String,
        /// What it asked for.
        memory: u32,
    },
    /// A service asks for no vCPU or too many.
    Vcpus {
        /// The service.
        service: String,
        /// What it asked for.
        vcpus: u32,
    },
    /// A command line or console input with a character that cannot be passed on.
    BadText {
        /// The service.
        service: String,
        /// The field.
        field: &'static str,
    },
    /// The largest backoff delay is smaller than the first.
    Backoff(String),
    /// A disk declaration or use that cannot work (the reason).
    Disk(String),
    /// An `[apps]` table that cannot work (the reason).
    Apps(String),
    /// Network instances or a router that cannot work (the reason).
    Network(String),
    /// A standby domain for a service that is never restarted.
    StandbyWithoutRestart(String),
    /// An image or ramdisk is in none of the image directories.
    MissingImage {
        /// The service.
        service: String,
        /// The image as named in the manifest.
        image: String,
        /// Where it was looked for.
        searched: Vec<PathBuf>,
    },
    /// A channel names a service that does not exist.
    UnknownPeer {
        /// The channel.
        channel: String,
        /// The missing service.
        peer: String,
    },
    /// A channel's server and client are the same service.
    SelfChannel(String),
    /// Two channels have the same name.
    DuplicateChannel(String),
    /// A channel's ring order is outside [`RING_ORDERS`].
    RingOrder {
        /// The channel.
        channel: String,
        /// Its ring order.
        order: u8,
    },
    /// The channels' server-before-client order has a cycle through these services.
    Cycle(Vec<String>),
    /// The images' declarations do not fit together or the manifest.
    Bus(bus::BusError),
    /// The log channels cannot be derived (see [`crate::logs`]).
    Logs(String),
    /// A test hook that the hooks directory does not have.
    UnknownHook {
        /// The hook.
        hook: String,
        /// The hooks directory.
        dir: PathBuf,
    },
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestError::Read(e) => write!(f, "cannot read the manifest: {e}"),
            ManifestError::Parse(e) => write!(f, "{}", e.trim_end()),
            ManifestError::NoServices => write!(f, "the manifest has no [services.<name>] table"),
            ManifestError::BadName(name) => write!(
                f,
                "bad name `{name}`: use 1 to 32 of a-z, 0-9 and '-', starting with a letter"
            ),
            ManifestError::Memory { service, memory } => write!(
                f,
                "service `{service}`: memory = {memory} MiB is outside {MIN_MEMORY_MIB}..={MAX_MEMORY_MIB} MiB"
            ),
            ManifestError::Vcpus { service, vcpus } => {
                write!(f, "service `{service}`: vcpus = {vcpus} is outside 1..={MAX_VCPUS}")
            }
            ManifestError::BadText { service, field } => write!(
                f,
                "service `{service}`: {field} has a control character (only tab and, in console_input, newline are allowed)"
            ),
            ManifestError::Backoff(service) => {
                write!(f, "service `{service}`: backoff_max_ms is smaller than backoff_ms")
            }
            ManifestError::Disk(reason)
            | ManifestError::Apps(reason)
            | ManifestError::Network(reason) => f.write_str(reason),
            ManifestError::StandbyWithoutRestart(service) => write!(
                f,
                "service `{service}`: standby = true needs restart = \"on-failure\" or \"always\""
            ),
            ManifestError::MissingImage { service, image, searched } => {
                let dirs: Vec<String> = searched.iter().map(|d| d.display().to_string()).collect();
                write!(
                    f,
                    "service `{service}`: image `{image}` not found (looked for `{image}` and `{image}.elf` in {})",
                    dirs.join(", ")
                )
            }
            ManifestError::UnknownPeer { channel, peer } => {
                write!(f, "channel `{channel}`: no service named `{peer}`")
            }
            ManifestError::SelfChannel(channel) => {
                write!(f, "channel `{channel}`: server and client are the same service")
            }
            ManifestError::DuplicateChannel(channel) => {
                write!(f, "channel `{channel}` is defined more than once")
            }
            ManifestError::RingOrder { channel, order } => write!(
                f,
                "channel `{channel}`: ring_order = {order} is outside {}..={}",
                RING_ORDERS.start(),
                RING_ORDERS.end()
            ),
            ManifestError::Bus(e) => write!(f, "{e}"),
            ManifestError::Logs(e) => write!(f, "logs: {e}"),
            ManifestError::UnknownHook { hook, dir } => {
                write!(f, "[test]: no hook named `{hook}` in {}", dir.display())
            }
            ManifestError::Cycle(services) => write!(
                f,
                "the channels' server-before-client order has a cycle through {}",
                services.join(", ")
            ),
        }
    }
}

/// All the problems found in a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestErrors(pub Vec<ManifestError>);

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ManifestErrors {}

impl Manifest {
    /// Parses a manifest; unknown fields and wrong types are refused.
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let mut manifest: Manifest =
            toml::from_str(text).map_err(|e| ManifestError::Parse(e.to_string()))?;
        let ports = manifest
            .network_instances
            .min(crate::network::MAX_INSTANCES);
        for service in manifest.services.values_mut().filter(|s| s.router) {
            service.ports = ports;
        }
        if let Some(apps) = manifest.apps.as_mut() {
            apps.bridges = crate::network::app_bridges(ports);
        }
        Ok(manifest)
    }

    /// Reads, parses and validates the manifest at `path`, resolving images in `image_dirs` and
    /// test hooks in `hooks_dir` (when it exists), and derives its bus channels.
    pub fn load(
        path: &Path,
        image_dirs: &[PathBuf],
        hooks_dir: Option<&Path>,
    ) -> Result<(Manifest, ResolvedImages), ManifestErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ManifestErrors(vec![ManifestError::Read(format!(
                "{}: {e}",
                path.display()
            ))])
        })?;
        let mut manifest = Manifest::parse(&text).map_err(|e| ManifestErrors(vec![e]))?;
        let mut images = manifest.validate(image_dirs)?;
        let hook_errors = manifest.test.check(hooks_dir);
        if !hook_errors.is_empty() {
            return Err(ManifestErrors(hook_errors));
        }
        manifest.wire_bus(&mut images)?;
        Ok((manifest, images))
    }

    /// Reads the images' declarations, checks them and adds the bus channels they need
    /// (see [`crate::bus`]); keeps the declarations in `images`.
    pub fn wire_bus(&mut self, images: &mut ResolvedImages) -> Result<(), ManifestErrors> {
        let to_errors =
            |e: Vec<bus::BusError>| ManifestErrors(e.into_iter().map(ManifestError::Bus).collect());
        let declarations = bus::read_declarations(self, images).map_err(to_errors)?;
        let channels = bus::derive(self, &declarations).map_err(to_errors)?;
        self.channels.extend(channels);
        let logs = crate::logs::derive(self)
            .map_err(|e| ManifestErrors(e.into_iter().map(ManifestError::Logs).collect()))?;
        self.channels.extend(logs);
        if let Err(cycle) = order::start_order(self) {
            return Err(ManifestErrors(vec![ManifestError::Cycle(cycle.services)]));
        }
        images.declarations = declarations;
        Ok(())
    }

    /// Checks everything parsing does not: names, sizes, texts, images, channels and their order.
    pub fn validate(&self, image_dirs: &[PathBuf]) -> Result<ResolvedImages, ManifestErrors> {
        let mut errors = Vec::new();
        if self.services.is_empty() {
            errors.push(ManifestError::NoServices);
        }
        let mut images = ResolvedImages::default();
        for (name, service) in &self.services {
            errors.extend(check_service(name, service));
            let kernel = resolve_image(name, &service.image, image_dirs);
            let ramdisk = service
                .ramdisk
                .as_ref()
                .map(|r| resolve_image(name, r, image_dirs));
            match (kernel, ramdisk.transpose()) {
                (Ok(kernel), Ok(ramdisk)) => {
                    images.services.insert(name.clone(), (kernel, ramdisk));
                }
                (kernel, ramdisk) => errors.extend(kernel.err().into_iter().chain(ramdisk.err())),
            }
        }
        errors.extend(self.check_channels());
        let uses = self.services.iter().map(|(n, s)| (n, s.disks.as_slice()));
        errors.extend(
            disks::check(&self.disks, uses, is_good_name)
                .into_iter()
                .map(ManifestError::Disk),
        );
        if let Some(apps) = &self.apps {
            errors.extend(
                apps.check(self.services.iter(), &self.disks)
                    .into_iter()
                    .map(ManifestError::Apps),
            );
        }
        errors.extend(
            crate::network::check(self)
                .into_iter()
                .map(ManifestError::Network),
        );
        if errors.is_empty() {
            if let Err(cycle) = order::start_order(self) {
                errors.push(ManifestError::Cycle(cycle.services));
            }
        }
        if errors.is_empty() {
            Ok(images)
        } else {
            Err(ManifestErrors(errors))
        }
    }

    /// The channels a service takes part in, as server or client.
    pub fn channels_of<'a>(&'a self, service: &'a str) -> impl Iterator<Item = &'a Channel> + 'a {
        self.channels
            .iter()
            .filter(move |c| c.server == service || c.client == service)
    }

    fn check_channels(&self) -> Vec<ManifestError> {
        let mut errors = Vec::new();
        let mut names = HashSet::new();
        for channel in &self.channels {
            if !is_good_name(&channel.name) {
                errors.push(ManifestError::BadName(channel.name.clone()));
            }
            if !names.insert(channel.name.as_str()) {
                errors.push(ManifestError::DuplicateChannel(channel.name.clone()));
            }
            for peer in [&channel.server, &channel.client] {
                if !self.services.contains_key(peer) {
                    errors.push(ManifestError::UnknownPeer {
                        channel: channel.name.clone(),
                        peer: peer.clone(),
                    });
                }
            }
            if channel.server == channel.client {
                errors.push(ManifestError::SelfChannel(channel.name.clone()));
            }
            if !RING_ORDERS.contains(&channel.ring_order) {
                errors.push(ManifestError::RingOrder {
                    channel: channel.name.clone(),
                    order: channel.ring_order,
                });
            }
        }
        errors
    }
}

fn check_service(name: &str, service: &Service) -> Vec<ManifestError> {
    let mut errors = Vec::new();
    if !is_good_name(name) {
        errors.push(ManifestError::BadName(name.to_string()));
    }
    if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&service.memory) {
        errors.push(ManifestError::Memory {
            service: name.to_string(),
            memory: service.memory,
        });
    }
    if !(1..=MAX_VCPUS).contains(&service.vcpus) {
        errors.push(ManifestError::Vcpus {
            service: name.to_string(),
            vcpus: service.vcpus,
        });
    }
    if service.cmdline.chars().any(|c| c.is_control() && c != '\t') {
        errors.push(ManifestError::BadText {
            service: name.to_string(),
            field: "cmdline",
        });
    }
    let input = service.console_input.as_deref().unwrap_or("");
    if input
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        errors.push(ManifestError::BadText {
            service: name.to_string(),
            field: "console_input",
        });
    }
    if service.backoff_max_ms < service.backoff_ms {
        errors.push(ManifestError::Backoff(name.to_string()));
    }
    if service.standby && service.restart == RestartMode::Never {
        errors.push(ManifestError::StandbyWithoutRestart(name.to_string()));
    }
    errors
}

/// Finds `image` (a plain file name) in the first directory that has it, as is or with `.elf`
/// (`service`: who uses it, for the error).
pub fn resolve_image(
    service: &str,
    image: &str,
    image_dirs: &[PathBuf],
) -> Result<PathBuf, ManifestError> {
    let plain = !image.is_empty() && !image.contains('/') && image != "." && image != "..";
    let candidates = [image.to_string(), format!("{image}.elf")];
    image_dirs
        .iter()
        .filter(|_| plain)
        .flat_map(|dir| candidates.iter().map(move |c| dir.join(c)))
        .find(|path| path.is_file())
        .ok_or_else(|| ManifestError::MissingImage {
            service: service.to_string(),
            image: image.to_string(),
            searched: image_dirs.to_vec(),
        })
}

/// A name usable as a Xen domain name, a log file name and a xenstore path element.
pub(crate) fn is_good_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory holding the given image files, removed on drop.
    struct ImageDir(PathBuf);

    impl ImageDir {
        fn with(files: &[&str]) -> ImageDir {
            static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("lichen-manifest-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            for file in files {
                std::fs::write(dir.join(file), b"a kernel").unwrap();
            }
            ImageDir(dir)
        }
        fn dirs(&self) -> Vec<PathBuf> {
            vec![self.0.clone()]
        }
    }

    impl Drop for ImageDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const TWO_SERVICES: &str = r#"
        name = "demo"
        [services.bus]
        image = "bus"
        memory = 16
        [services.api]
        image = "api.elf"
        memory = 32
        vcpus = 2
        cmdline = 'motd="hello world"'
        restart = "always"
        max_restarts = 5
        console_input = "ping\n"
        [[channels]]
        name = "events"
        server = "bus"
        client = "api"
    "#;

    fn errors_of(text: &str, dir: &ImageDir) -> Vec<ManifestError> {
        Manifest::parse(text)
            .unwrap()
            .validate(&dir.dirs())
            .unwrap_err()
            .0
    }

    #[test]
    fn parses_a_full_manifest_with_defaults() {
        let manifest = Manifest::parse(TWO_SERVICES).unwrap();
        assert_eq!(manifest.name, "demo");
        assert!(!manifest.sequential);
        let names: Vec<&str> = manifest.services.keys().map(String::as_str).collect();
        assert_eq!(names, ["bus", "api"], "manifest order is kept");
        let bus = &manifest.services["bus"];
        assert_eq!((bus.memory, bus.vcpus, bus.cmdline.as_str()), (16, 1, ""));
        assert_eq!((bus.restart, bus.max_restarts), (RestartMode::OnFailure, 3));
        let api = &manifest.services["api"];
        assert_eq!(api.cmdline, "motd=\"hello world\"");
        assert_eq!(
            (api.restart, api.max_restarts, api.vcpus),
            (RestartMode::Always, 5, 2)
        );
        assert_eq!(api.console_input.as_deref(), Some("ping\n"));
        assert_eq!(
            manifest.channels,
            [Channel {
                name: "events".into(),
                server: "bus".into(),
                client: "api".into(),
                ring_order: 11,
                topics: vec![],
                log: false,
            }]
        );
    }

    #[test]
    fn resolves_images_with_and_without_the_elf_suffix() {
        let dir = ImageDir::with(&["bus.elf", "api.elf"]);
        let images = Manifest::parse(TWO_SERVICES)
            .unwrap()
            .validate(&dir.dirs())
            .unwrap();
        assert_eq!(images.services["bus"].0, dir.0.join("bus.elf"));
        assert_eq!(images.services["api"].0, dir.0.join("api.elf"));
        assert_eq!(
            images.files(),
            [dir.0.join("bus.elf"), dir.0.join("api.elf")]
        );
    }

    #[test]
    fn toolstack_and_standby_default_to_the_builder_without_standby() {
        let manifest = Manifest::parse(TWO_SERVICES).unwrap();
        assert_eq!(manifest.services["bus"].toolstack, Toolstack::Lichen);
        assert!(!manifest.services["bus"].standby);
        let text = "[services.a]\nimage = \"a\"\nmemory = 8\ntoolstack = \"xl\"\nstandby = true\n";
        let a = &Manifest::parse(text).unwrap().services["a"];
        assert_eq!((a.toolstack, a.standby), (Toolstack::Xl, true));
        let bad = "[services.a]\nimage = \"a\"\nmemory = 8\ntoolstack = \"libxl\"\n";
        assert!(Manifest::parse(bad).is_err());
        let dir = ImageDir::with(&["a.elf"]);
        let never =
            "[services.a]\nimage = \"a\"\nmemory = 8\nrestart = \"never\"\nstandby = true\n";
        let errors = Manifest::parse(never)
            .unwrap()
            .validate(&dir.dirs())
            .unwrap_err()
            .to_string();
        assert!(errors.contains("standby = true needs restart"), "{errors}");
    }

    #[test]
    fn refuses_unknown_fields() {
        let error =
            Manifest::parse("[services.a]\nimage = \"a\"\nmemory = 8\nmemroy = 9\n").unwrap_err();
        let ManifestError::Parse(message) = error else {
            panic!("not a parse error: {error:?}")
        };
        assert!(message.contains("unknown field `memroy`"), "{message}");
        assert!(Manifest::parse("colour = 1\n[services.a]\nimage = \"a\"\nmemory = 8\n").is_err());
    }

    #[test]
    fn refuses_missing_images_and_ramdisks() {
        let dir = ImageDir::with(&["bus.elf"]);
        let errors = errors_of(TWO_SERVICES, &dir);
        assert_eq!(errors.len(), 1);
        assert!(
            matches!(&errors[0], ManifestError::MissingImage { service, image, .. } if service == "api" && image == "api.elf")
        );
        assert!(errors[0].to_string().contains("not found"));

        let text = "[services.linux]\nimage = \"bus\"\nramdisk = \"initrd\"\nmemory = 64\n";
        let errors = errors_of(text, &dir);
        assert!(
            matches!(&errors[..], [ManifestError::MissingImage { image, .. }] if image == "initrd")
        );
    }

    #[test]
    fn refuses_image_paths() {
        let dir = ImageDir::with(&["bus.elf"]);
        let text = format!(
            "[services.bus]\nimage = \"{}\"\nmemory = 8\n",
            dir.0.join("bus.elf").display()
        );
        assert!(matches!(
            &errors_of(&text, &dir)[..],
            [ManifestError::MissingImage { .. }]
        ));
    }

    #[test]
    fn refuses_unknown_and_self_peers_and_bad_rings() {
        let dir = ImageDir::with(&["bus.elf"]);
        let text = r#"
            [services.bus]
            image = "bus"
            memory = 8
            [[channels]]
            name = "a"
            server = "bus"
            client = "nobody"
            [[channels]]
            name = "b"
            server = "bus"
            client = "bus"
            ring_order = 9
            [[channels]]
            name = "b"
            server = "bus"
            client = "bus"
        "#;
        let errors = errors_of(text, &dir);
        assert!(errors.contains(&ManifestError::UnknownPeer {
            channel: "a".into(),
            peer: "nobody".into()
        }));
        assert!(errors.contains(&ManifestError::SelfChannel("b".into())));
        assert!(errors.contains(&ManifestError::RingOrder {
            channel: "b".into(),
            order: 9
        }));
        assert!(errors.contains(&ManifestError::DuplicateChannel("b".into())));
    }

    #[test]
    fn refuses_too_little_memory_and_no_vcpus() {
        let dir = ImageDir::with(&["a.elf"]);
        let text = format!(
            "[services.a]\nimage = \"a\"\nmemory = {}\nvcpus = 0\n",
            MIN_MEMORY_MIB - 1
        );
        let errors = errors_of(&text, &dir);
        assert!(errors.contains(&ManifestError::Memory {
            service: "a".into(),
            memory: MIN_MEMORY_MIB - 1
        }));
        assert!(errors.contains(&ManifestError::Vcpus {
            service: "a".into(),
            vcpus: 0
        }));
        assert!(errors[0].to_string().contains("MiB"));
    }

    #[test]
    fn refuses_bad_names_and_texts_and_empty_manifests() {
        let dir = ImageDir::with(&["a.elf"]);
        let text = "[services.Bad_Name]\nimage = \"a\"\nmemory = 8\ncmdline = \"a\\nb\"\n";
        let errors = errors_of(text, &dir);
        assert!(errors.contains(&ManifestError::BadName("Bad_Name".into())));
        assert!(errors.contains(&ManifestError::BadText {
            service: "Bad_Name".into(),
            field: "cmdline"
        }));
        assert_eq!(errors_of("[services]\n", &dir), [ManifestError::NoServices]);
    }

    #[test]
    fn refuses_channel_cycles() {
        let dir = ImageDir::with(&["a.elf"]);
        let text = r#"
            [services.a]
            image = "a"
            memory = 8
            [services.b]
            image = "a"
            memory = 8
            [[channels]]
            name = "ab"
            server = "a"
            client = "b"
            [[channels]]
            name = "ba"
            server = "b"
            client = "a"
        "#;
        assert_eq!(
            errors_of(text, &dir),
            [ManifestError::Cycle(vec!["a".into(), "b".into()])]
        );
    }

    #[test]
    fn reports_all_problems_at_once() {
        let dir = ImageDir::with(&[]);
        let text =
            "[services.a]\nimage = \"a\"\nmemory = 1\n[services.b]\nimage = \"b\"\nmemory = 1\n";
        let errors = ManifestErrors(errors_of(text, &dir));
        assert_eq!(errors.0.len(), 4, "{errors}");
        assert_eq!(errors.to_string().lines().count(), 4);
    }
}
