//! What ping and pong publish, and over which manifest channels.

use bus::Topic;
use serde::{Deserialize, Serialize};

/// ping's table: one object, [`PING_KEY`], holding the current round.
pub const SEQ_TOPIC: Topic = Topic::new("ping-pong/Seq", 1);
/// pong's table: one object, [`PONG_KEY`], acknowledging the round it saw last.
pub const ACK_TOPIC: Topic = Topic::new("ping-pong/Ack", 1);

/// The key of ping's object.
pub const PING_KEY: &str = "ping";
/// The key of pong's object.
pub const PONG_KEY: &str = "pong";

/// The manifest channel carrying ping's table to pong.
pub const SEQ_CHANNEL: &str = "seq";
/// The manifest channel carrying pong's table to ping.
pub const ACK_CHANNEL: &str = "ack";

/// ping's object: the round under way, counted from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seq {
    /// The round.
    pub n: u64,
}

/// pong's object: the last round pong saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The round acknowledged.
    pub n: u64,
}
