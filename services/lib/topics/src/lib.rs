//! The node's bus contracts: every topic any service publishes, in one place.
//!
//! A [`Topic`] ties a table's name to its key type, its message type, its schema version and
//! its persistence. Services publish and subscribe by `Topic` value (`bus_io::Node::publish`,
//! `Node::subscribe`), never by string, so a typo or a type mismatch is a compile error; the
//! image declares the same values (`kernel::service!`), so the launcher wires the node from
//! them, and peers refuse each other at connection time when their schema versions differ.
//!
//! There is one module per publishing service, named after it (as Hubris keeps one `*-api`
//! crate per task): a topic's name is `<service>/<Table>`, and only that service may publish
//! it. To add a topic: define its message type and its `Topic` constant in its publisher's
//! module, and list it in [`status`] if it describes the node's state (diag shows those).
//! Change a message type incompatibly (a field added, removed, retyped or reordered: postcard
//! is not self-describing) only together with its schema version.
#![no_std]
#![warn(missing_docs)]

extern crate alloc;

use alloc::string::{String, ToString};
use core::marker::PhantomData;

pub use declare::{Persistence, TopicDecl};

pub mod core_data;
pub mod counter;
pub mod domainmgr;
pub mod downloader;
pub mod logs;
pub mod persistent;
pub mod ping;
pub mod pong;
pub mod status;
pub mod template;
pub mod vault;
pub mod vbench_a;
pub mod vbench_b;
pub mod volumemgr;
pub mod zedagent;
pub mod zedmanager;
pub mod zedrouter;

/// A table of `T` objects keyed by `K`, published by one service. A persistent one is listed
/// in [`persistent`] and kept by the vault ([`vault`]).
pub struct Topic<K, T> {
    decl: TopicDecl,
    types: PhantomData<fn() -> (K, T)>,
}

impl<K, T> Topic<K, T> {
    /// A table that starts empty whenever its publisher starts (EVE's `/run`).
    pub const fn volatile(name: &'static str, schema: u32) -> Self {
        Self::new(name, schema, Persistence::Volatile)
    }

    /// A table kept across restarts and reboots (EVE's `/persist`).
    pub const fn persistent(name: &'static str, schema: u32) -> Self {
        Self::new(name, schema, Persistence::Persistent)
    }

    const fn new(name: &'static str, schema: u32, persistence: Persistence) -> Self {
        if let Err(reason) = declare::check_topic_name(name) {
            panic!("{}", reason);
        }
        Topic {
            decl: TopicDecl {
                name,
                schema,
                persistence,
            },
            types: PhantomData,
        }
    }

    /// What an image declares about the topic.
    pub const fn decl(&self) -> TopicDecl {
        self.decl
    }

    /// The topic's name, `<publisher>/<Table>`.
    pub const fn name(&self) -> &'static str {
        self.decl.name
    }

    /// The schema version of its message type.
    pub const fn schema(&self) -> u32 {
        self.decl.schema
    }

    /// Its persistence.
    pub const fn persistence(&self) -> Persistence {
        self.decl.persistence
    }

    /// The service that publishes it (the name's first part).
    pub fn publisher(&self) -> &'static str {
        self.decl.name.split('/').next().unwrap_or_default()
    }
}

/// A table's key: written as the bus's string key and read back from it.
pub trait Key: Sized {
    /// The key as the bus carries it.
    fn to_key(&self) -> String;
    /// The key read back; `None` when `key` is not one of this type.
    fn from_key(key: &str) -> Option<Self>;
}

impl Key for String {
    fn to_key(&self) -> String {
        self.clone()
    }
    fn from_key(key: &str) -> Option<Self> {
        Some(key.to_string())
    }
}

/// The key of a table that holds one object (EVE's `global`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Global;

impl Key for Global {
    fn to_key(&self) -> String {
        "global".to_string()
    }
    fn from_key(key: &str) -> Option<Self> {
        (key == "global").then_some(Global)
    }
}
