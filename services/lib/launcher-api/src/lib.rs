//! The launcher's domain service: what a pillar (domainmgr) and dom0's launcher say to each
//! other over their channel to create, start, stop and destroy *app* domains (docs/apps.md).
//!
//! The pillar sends [`Request`]s; the launcher answers each with a [`Reply`] carrying the same
//! `id`, and sends an [`Event`] whenever an app domain changes state (running, halted, crashed,
//! destroyed), whoever caused it. The events a request causes come before its reply. The first request of a connection is [`Op::Hello`]; its answer
//! says what the node allows ([`Limits`]) and which app domains exist (a restarted domainmgr
//! finds its apps still running and adopts them).
//!
//! Both directions are frames ([`frame`]): a 4-byte header, then a postcard-encoded message.
//! The launcher trusts nothing it receives: a frame that does not decode, or a request that
//! breaks a rule ([`check`]) or the node's limits, gets a [`Refusal`] and changes nothing; a
//! broken frame header ends the connection (a byte stream has no resynchronisation point).
#![no_std]
#![warn(missing_docs)]

extern crate alloc;

pub mod check;
pub mod frame;
pub mod mac;
pub mod services;

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// The protocol's version: [`Op::Hello`] must carry it.
pub const VERSION: u32 = 2;

/// The name of the channel a manager service opens (`kernel::channel::open`).
pub const CHANNEL: &str = "domains";

/// A request from the manager, with the `id` its reply will carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the manager; echoed in the reply.
    pub id: u32,
    /// What to do.
    pub op: Op,
}

/// What the manager asks for. App names follow [`check::name`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// The first request of a connection: answered by [`Reply::Welcome`].
    Hello {
        /// [`VERSION`].
        version: u32,
    },
    /// Builds the app's domain, paused ([`AppState::Created`]); refused when the name is taken
    /// or the node's limits would be exceeded.
    Create {
        /// The app's name.
        name: String,
        /// Its domain.
        spec: AppSpec,
    },
    /// Lets a created domain run ([`AppState::Running`]).
    Start {
        /// The app's name.
        name: String,
    },
    /// Ends the app's domain (it keeps its name, as [`AppState::Halted`], and releases its
    /// resources): a clean poweroff is asked for, and the domain destroyed after `grace_ms`
    /// if it is still there.
    Stop {
        /// The app's name.
        name: String,
        /// How long the guest may take to power off, at most [`check::MAX_GRACE_MS`].
        grace_ms: u32,
    },
    /// Destroys the app's domain at once, if it has one, and forgets the app
    /// ([`AppState::Destroyed`]).
    Destroy {
        /// The app's name.
        name: String,
    },
    /// Lists the app domains: answered by [`Reply::Domains`].
    List,
}

/// An app volume: an extent of the node's app data disk, in whole MiB ([`Limits::data_mib`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Extent {
    /// Its first MiB.
    pub offset_mib: u64,
    /// How many MiB.
    pub size_mib: u64,
}

impl Extent {
    /// The MiB after its last.
    pub fn end_mib(&self) -> u64 {
        self.offset_mib.saturating_add(self.size_mib)
    }

    /// Whether the two share a MiB.
    pub fn overlaps(&self, other: &Extent) -> bool {
        self.offset_mib < other.end_mib() && other.offset_mib < self.end_mib()
    }
}

impl core::fmt::Display for Extent {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} MiB at {} MiB", self.size_mib, self.offset_mib)
    }
}

/// An app domain as the manager asks for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSpec {
    /// The volume that holds the app's PVH kernel, an ELF image at its offset 0.
    pub kernel: Extent,
    /// Memory, MiB.
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// The guest's command line.
    pub cmdline: String,
    /// Volumes the app gets as disks (`xvda`, `xvdb`, ... through blkback), in order.
    pub disks: Vec<DiskUse>,
    /// The dom0 bridge its network card joins, if it gets one: a network instance's bridge
    /// (`lichenni<i>`, behind zedrouter), `lichenbr0` (dom0's services bridge, dom0's DHCP) or
    /// `lichenup0` (the uplink's L2, a switch network instance). The launcher refuses a
    /// bridge its manifest does not declare (docs/router.md).
    pub network: Option<String>,
}

/// A volume an app gets as a disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskUse {
    /// The volume.
    pub extent: Extent,
    /// Whether the app may only read it.
    pub read_only: bool,
}

/// A message from the launcher.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromLauncher {
    /// The answer to request `id`.
    Reply {
        /// The request's id.
        id: u32,
        /// What came of it.
        result: Result<Reply, Refusal>,
    },
    /// An app domain changed state.
    Event(Event),
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The answer to [`Op::Hello`].
    Welcome {
        /// What the node allows.
        limits: Limits,
        /// The app domains that exist.
        domains: Vec<AppDomain>,
    },
    /// Done (create, start, stop, destroy); the state change follows as an [`Event`].
    Done,
    /// The answer to [`Op::List`].
    Domains(Vec<AppDomain>),
}

/// The resources the node manifest gives apps (`[apps]`), all apps together.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Memory of all app domains together, MiB.
    pub memory_mib: u32,
    /// vCPUs of all app domains together.
    pub vcpus: u32,
    /// App domains at once.
    pub count: u32,
    /// The size of the app data disk, where every app volume lives, MiB (0: the node has none).
    pub data_mib: u64,
}

/// An app domain as the launcher knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppDomain {
    /// The app's name.
    pub name: String,
    /// Its Xen domain, while it has one.
    pub domid: Option<u32>,
    /// Its state.
    pub state: AppState,
    /// What it was created with.
    pub spec: AppSpec,
}

/// Where an app domain is in its life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppState {
    /// Built, paused.
    Created,
    /// Unpaused.
    Running,
    /// Being stopped: asked to power off, destroyed at the end of its grace.
    Stopping,
    /// Powered off with status 0, or stopped: no domain any more.
    Halted,
    /// Crashed, rebooted (a triple fault) or exited with a non-zero status (the reason):
    /// no domain any more.
    Crashed(String),
    /// Destroyed and forgotten (only ever in an [`Event`]).
    Destroyed,
}

impl AppState {
    /// Whether the app holds a domain (and the node's resources) in this state.
    pub fn has_domain(&self) -> bool {
        matches!(
            self,
            AppState::Created | AppState::Running | AppState::Stopping
        )
    }
}

impl core::fmt::Display for AppState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AppState::Created => f.write_str("created"),
            AppState::Running => f.write_str("running"),
            AppState::Stopping => f.write_str("stopping"),
            AppState::Halted => f.write_str("halted"),
            AppState::Crashed(why) if why.starts_with("crashed") => f.write_str(why),
            AppState::Crashed(why) => write!(f, "crashed ({why})"),
            AppState::Destroyed => f.write_str("destroyed"),
        }
    }
}

/// A state change of an app domain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The app's name.
    pub name: String,
    /// Its domain (the one that ended, for halted and crashed).
    pub domid: Option<u32>,
    /// Its new state.
    pub state: AppState,
}

/// Why a request was refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The kind, for programs.
    pub kind: RefusalKind,
    /// What exactly, for people.
    pub message: String,
}

/// The kinds of [`Refusal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalKind {
    /// The frame's payload is not a request.
    Malformed,
    /// The first request was not a [`Op::Hello`] of this [`VERSION`].
    Version,
    /// A name, command line or size that breaks a rule of [`check`].
    Invalid,
    /// An app of that name exists already.
    Exists,
    /// No app of that name.
    Unknown,
    /// The node's limits would be exceeded.
    OverLimit,
    /// A volume outside the app data disk, or one another app uses.
    Volume,
    /// The app is not in a state that allows it.
    WrongState,
    /// Xen or dom0 failed to do it.
    Platform,
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl Refusal {
    /// A refusal of `kind`.
    pub fn new(kind: RefusalKind, message: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests;
