//! What `core-data` publishes (services/core-data, docs/edgex.md): the events it keeps, as a
//! persistent table when persistence is asked (`persist=` on its command line), so that the
//! vault keeps them across restarts of core-data and reboots of the node.

use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::Topic;

/// One EdgeX event as core-data keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// The event in EdgeX's JSON (`dtos.Event`, as core-data's REST API answers it).
    pub json: Vec<u8>,
}

/// The events kept, keyed by their arrival number (20 decimal digits, so that key order is
/// arrival order), persistent: the newest within core-data's bounds (its `max_events` and
/// `persist_kib`), the oldest deleted as new ones come.
pub const EVENTS: Topic<alloc::string::String, StoredEvent> =
    Topic::persistent("core-data/Event", 1);
