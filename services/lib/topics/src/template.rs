//! What `template` publishes (services/template: copy both when starting a service).

use serde::{Deserialize, Serialize};

use crate::{Global, Topic};

/// The template's heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Heartbeats since it started.
    pub beats: u64,
    /// ping's round when it last looked, if a ping runs.
    pub round: Option<u64>,
}

impl core::fmt::Display for Status {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} heartbeats", self.beats)?;
        match self.round {
            Some(round) => write!(f, ", ping at round {round}"),
            None => f.write_str(", no ping seen"),
        }
    }
}

/// The template's status (one object).
pub const STATUS: Topic<Global, Status> = Topic::volatile("template/Status", 1);
