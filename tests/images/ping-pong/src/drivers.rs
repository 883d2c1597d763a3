//! Starting, logging and stopping the bus drivers of a ping-pong service.

use bus_io::{Link, Subscription, Update};
use kernel::{info, Duration, Instant};
use serde::de::DeserializeOwned;

/// How long a driver may take to close its channel once asked to.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// Logs what happens to one topic's stream: connections and their ends, and the first failed attempt
/// to reconnect (not every retry while the peer is away).
pub struct LinkLog {
    topic: &'static str,
    failed_attempts: u32,
}

impl LinkLog {
    /// A log for `topic`.
    pub fn new(topic: &'static str) -> Self {
        Self {
            topic,
            failed_attempts: 0,
        }
    }

    /// Logs `link` if it is worth a line.
    pub fn note(&mut self, link: &Link) {
        let channel = self.topic;
        match link {
            Link::Connected => {
                match self.failed_attempts {
                    0 => info!("{channel} channel: connected"),
                    n => info!("{channel} channel: connected again after {n} failed attempts"),
                }
                self.failed_attempts = 0;
            }
            Link::ConnectFailed(error) => {
                if self.failed_attempts == 0 {
                    info!("{channel} channel: waiting for the peer ({error})");
                }
                self.failed_attempts += 1;
            }
            Link::Ended(reason) => info!("{channel} channel: {reason}"),
        }
    }
}

/// Gives up on a peer that shows no progress: no change of its table for a while (connection
/// attempts that keep failing are no progress).
pub struct Patience {
    limit: Duration,
    deadline: Instant,
}

impl Patience {
    /// Waits at most `limit` between two events.
    pub fn new(limit: Duration) -> Self {
        Self {
            limit,
            deadline: kernel::now().saturating_add(limit),
        }
    }

    /// The next update of `subscription`, or `None` once no event came for the limit.
    pub async fn next<T>(&mut self, subscription: &Subscription<T>) -> Option<Update<T>>
    where
        T: DeserializeOwned + PartialEq + Clone,
    {
        let left = self.deadline.saturating_duration_since(kernel::now());
        let update = kernel::timeout(left, subscription.next()).await.ok()?;
        if let Update::Event(_) = update {
            self.deadline = kernel::now().saturating_add(self.limit);
        }
        Some(update)
    }
}

/// Waits (a little) for the node's channels to send what closed publications and
/// subscriptions left to say, so that peers see an orderly close rather than a vanished domain.
pub async fn stopped(node: &bus_io::Node) {
    let _ = kernel::timeout(STOP_WAIT, node.closed()).await;
}
