//! The lichen kernel's channels as bus transports: a [`kernel::channel::Channel`] is a
//! [`ByteStream`], and [`NamedChannel`] opens channel `name` (under Xen the vchan the launcher
//! wired from the manifest, under microvm the virtio-console port of that name), again whenever
//! a connection ended.
//!
//! Under Xen, when the peer's domain dies, the launcher removes it from our entries as soon as
//! it notices, and writes the new domid into both sides' entries before unpausing its
//! replacement. Attempts fail meanwhile ("no peer"; or, before the launcher noticed, they wait
//! on the dead domain for up to [`NamedChannel::wait`]), and the one under way when the new
//! entries appear connects: `open` picks the new peer up within 50 ms. A vchan server publishes
//! its rings for the domid it reads each time.

use alloc::string::String;

use kernel::channel::{open, Channel, Error};
use kernel::Duration;

use crate::stream::{ByteStream, Connector, Duplex, Transferred};
use crate::Node;

impl ByteStream for Channel {
    type Error = Error;

    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        // Cancel-safe: a vchan and a console port both consume bytes only in the poll that
        // returns them.
        Channel::read(self, buf).await
    }

    async fn write_all(&mut self, buf: &[u8]) -> Result<(), Error> {
        Channel::write_all(self, buf).await
    }
}

impl Duplex for Channel {
    async fn transfer(&mut self, out: &[u8], inp: &mut [u8]) -> Result<Transferred, Error> {
        Ok(match Channel::transfer(self, out, inp).await? {
            kernel::channel::Transferred::Wrote(n) => Transferred::Wrote(n),
            kernel::channel::Transferred::Read(n) => Transferred::Read(n),
        })
    }
}

/// This service's bus: its name in the node, what its image declares, and a channel to each
/// peer the launcher wired (`kernel::channel::bus_channels`), each kept connected by a task.
pub async fn node() -> Node {
    let node = Node::new(
        kernel::channel::service_name().await,
        kernel::service().declaration,
        |task| drop(kernel::spawn(task)),
        |args| kernel::info!("{args}"),
    );
    for name in kernel::channel::bus_channels().await {
        node.add_channel(name.clone(), NamedChannel::new(name));
    }
    node
}

/// Opens channel `name` (see `kernel::channel::open`), for as long as it takes.
#[derive(Clone, Debug)]
pub struct NamedChannel {
    name: String,
    wait: Duration,
    retry_after: Duration,
    failed: bool,
}

impl NamedChannel {
    /// How long one attempt waits for the peer by default.
    pub const DEFAULT_WAIT: Duration = Duration::from_secs(2);
    /// How long to pause after a failed attempt by default.
    pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_millis(250);

    /// Opens channel `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
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
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Connector for NamedChannel {
    type Stream = Channel;
    type Error = Error;

    async fn connect(&mut self) -> Result<Channel, Error> {
        if self.failed {
            kernel::sleep(self.retry_after).await;
        }
        let opened = open(&self.name, self.wait).await;
        self.failed = opened.is_err();
        opened
    }
}
