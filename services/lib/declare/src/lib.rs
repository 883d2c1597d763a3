//! What a lichen image declares about itself, so that the launcher can wire a node from its
//! images before anything boots.
//!
//! An image's [`Declaration`] names the bus topics it publishes and subscribes to, the least
//! memory it runs in, and the devices it needs. The kernel's `service!` macro turns it, at compile
//! time, into an ELF note (name `lichen`, type [`NOTE_TYPE`]) in the image's `PT_NOTE` segment
//! (see [`note`]); the launcher reads the note back with [`parse`] and derives the channels
//! between services from what they declare (xen/README.md).
//!
//! The note's descriptor is text, one item per line, so that `readelf -n` shows it as it is:
//!
//! ```text
//! lichen-declaration 1
//! memory-floor-mib 8
//! needs uplink
//! publishes ping/Seq 1 volatile
//! subscribes pong/Ack 1
//! watches nim/DeviceNetworkStatus 3
//! ```
//!
//! A subscription (`subscribes`) needs a publisher in the node: the launcher refuses a node
//! where none publishes it. A watch (`watches`) is an optional subscription: wired when some
//! service publishes the topic, silently absent otherwise (diag watches every status topic).
//!
//! The note comes from an image file, which the launcher does not trust: [`parse`] refuses
//! anything but that grammar (unknown lines, bad numbers, duplicates, names outside the topic
//! alphabet, oversized notes) with an error naming the line.
#![no_std]
#![warn(missing_docs)]

extern crate alloc;

mod encode;
mod parse;

pub use encode::{note, note_len, Note};
pub use parse::{find_note, parse, DeclError, Parsed, ParsedTopic};

/// The ELF note's owner name.
pub const NOTE_NAME: &str = "lichen";

/// The ELF note's type: a declaration of this format.
pub const NOTE_TYPE: u32 = 0x4c44_0001;

/// The first line of every declaration: the format and its version.
pub const HEADER: &str = "lichen-declaration 1";

/// The longest declaration text accepted, in bytes.
pub const MAX_TEXT: usize = 64 * 1024;

/// The longest topic name, in bytes.
pub const MAX_TOPIC_NAME: usize = 96;

/// Whether a table outlives its publisher's restarts and the node's reboots (EVE's persistent
/// publications, kept under `/persist`) or lives only as long as its publisher (EVE's `/run`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Persistence {
    /// The table starts empty whenever its publisher starts.
    Volatile,
    /// The table is kept in the vault and comes back after a restart or a reboot.
    Persistent,
}

impl Persistence {
    /// The word used in a declaration.
    pub const fn word(self) -> &'static str {
        match self {
            Persistence::Volatile => "volatile",
            Persistence::Persistent => "persistent",
        }
    }
}

/// One topic as declared: its name, the schema version of its objects and its persistence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TopicDecl {
    /// The topic's name, `<publishing service>/<Table>`, e.g. `nim/DeviceNetworkStatus`.
    pub name: &'static str,
    /// The schema version of its object type.
    pub schema: u32,
    /// Whether the table is persistent.
    pub persistence: Persistence,
}

/// The devices and boot inputs an image needs from its node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// A network card on the node's uplink.
    pub uplink: bool,
    /// A block device.
    pub disk: bool,
    /// Boot modules (ramdisk) handed over by the launcher.
    pub modules: bool,
}

impl Needs {
    /// Nothing.
    pub const NONE: Needs = Needs {
        uplink: false,
        disk: false,
        modules: false,
    };

    /// The needs' words, in declaration order.
    pub(crate) const WORDS: [&'static str; 3] = ["uplink", "disk", "modules"];

    /// Whether the need called `WORDS[i]` is set.
    pub(crate) const fn get(&self, i: usize) -> bool {
        match i {
            0 => self.uplink,
            1 => self.disk,
            _ => self.modules,
        }
    }
}

/// What an image declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Declaration {
    /// The least memory, in MiB, the image runs in; the launcher refuses a service given less.
    pub memory_floor_mib: u32,
    /// The devices and boot inputs it needs.
    pub needs: Needs,
    /// The topics it publishes.
    pub publishes: &'static [TopicDecl],
    /// The topics it subscribes to.
    pub subscribes: &'static [TopicDecl],
    /// The topics it follows when some service publishes them (optional subscriptions).
    pub watches: &'static [TopicDecl],
}

impl Declaration {
    /// An image that publishes and subscribes nothing and needs nothing but `memory_floor_mib`.
    pub const fn minimal(memory_floor_mib: u32) -> Self {
        Declaration {
            memory_floor_mib,
            needs: Needs::NONE,
            publishes: &[],
            subscribes: &[],
            watches: &[],
        }
    }

    /// Whether the image declares that it publishes `name`.
    pub fn publishes(&self, name: &str) -> Option<&TopicDecl> {
        self.publishes.iter().find(|t| t.name == name)
    }

    /// Whether the image declares that it subscribes to `name`, or watches it.
    pub fn subscribes(&self, name: &str) -> Option<&TopicDecl> {
        self.subscribes
            .iter()
            .chain(self.watches)
            .find(|t| t.name == name)
    }
}

/// Checks a topic name: 1 to [`MAX_TOPIC_NAME`] bytes of `A-Za-z0-9`, `-`, `_`, `.` and `/`,
/// starting with a lowercase letter (the publishing service's name) and holding one `/`.
pub const fn check_topic_name(name: &str) -> Result<(), &'static str> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_TOPIC_NAME {
        return Err("a topic name has 1 to 96 bytes");
    }
    if !bytes[0].is_ascii_lowercase() {
        return Err("a topic name starts with its publisher's name (a lowercase letter first)");
    }
    let (mut i, mut slashes) = (0, 0);
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'/' {
            slashes += 1;
        } else if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
            return Err("a topic name holds only A-Z a-z 0-9 - _ . /");
        }
        i += 1;
    }
    if slashes != 1 || bytes[bytes.len() - 1] == b'/' {
        return Err("a topic name is <publisher>/<Table>");
    }
    Ok(())
}

#[cfg(test)]
extern crate std;
#[cfg(test)]
mod tests;
