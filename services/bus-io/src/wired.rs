//! The lichen kernel's channels as bus transports: a [`Vchan`] is a [`ByteStream`], and
//! [`Wired`] opens the channel the launcher wired from the manifest, again whenever a
//! connection ended.
//!
//! When the peer's domain dies, the launcher removes it from our entries as soon as it notices,
//! and writes the new domid into both sides' entries before unpausing its replacement. Attempts
//! fail meanwhile ("no peer"; or, before the launcher noticed, they wait on the dead domain for
//! up to [`Wired::wait`]), and the first one after the rewrite connects: `open_wired` picks the
//! new peer up within 50 ms. A server publishes its rings for the domid it reads each time.

use kernel::vchan::{open_wired, Error, Vchan};
use kernel::Duration;

use crate::stream::{ByteStream, Connector};

// To move to `kernel::channel` (vchans under Xen, virtio under microvm): implement ByteStream
// for its type here and open it in `Wired::connect`.
impl ByteStream for Vchan {
    type Error = Error;

    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        // Cancel-safe: `Vchan::read` consumes ring bytes only right before returning them.
        Vchan::read(self, buf).await
    }

    async fn write_all(&mut self, buf: &[u8]) -> Result<(), Error> {
        Vchan::write_all(self, buf).await
    }
}

/// Opens the manifest channel `name` (see `kernel::vchan::open_wired`), for as long as it takes.
#[derive(Clone, Debug)]
pub struct Wired {
    name: &'static str,
    wait: Duration,
    retry_after: Duration,
    failed: bool,
}

impl Wired {
    /// How long one attempt waits for the peer by default.
    pub const DEFAULT_WAIT: Duration = Duration::from_secs(2);
    /// How long to pause after a failed attempt by default.
    pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_millis(250);

    /// Opens channel `name`.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            wait: Self::DEFAULT_WAIT,
            retry_after: Self::DEFAULT_RETRY_AFTER,
            failed: false,
        }
    }

    /// Sets how long one attempt waits for the peer (to appear, publish, or connect).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Sets the pause after a failed attempt.
    pub fn retry_after(mut self, pause: Duration) -> Self {
        self.retry_after = pause;
        self
    }

    /// The channel's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl Connector for Wired {
    type Stream = Vchan;
    type Error = Error;

    async fn connect(&mut self) -> Result<Vchan, Error> {
        if self.failed {
            kernel::sleep(self.retry_after).await;
        }
        let opened = open_wired(self.name, self.wait).await;
        self.failed = opened.is_err();
        opened
    }
}
