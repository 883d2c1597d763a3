//! Networking for services: a TCP/IP stack (smoltcp) on a virtio-net card (Xen: netfront), with DHCPv4 or
//! static addressing, IPv6 link-local, a caching resolver and async TCP and UDP sockets.
//!
//! ```ignore
//! kernel::net::start(&args)?;                       // find the card, configure, run
//! let listener = TcpListener::bind(7, 64, TcpOptions::default())?;
//! loop {
//!     let mut stream = listener.accept().await?;
//!     kernel::spawn(async move { /* stream.read(..).await, stream.write_all(..).await */ });
//! }
//! ```
//!
//! Pure parts (command-line configuration, the resolver cache, the driver interface) build on
//! the host too, where their unit tests run. See docs/networking.md for the design.

pub mod config;
pub mod device;
pub mod dns_cache;
pub mod netfront;

#[cfg(target_os = "none")]
mod dns;
#[cfg(target_os = "none")]
mod stack;
#[cfg(target_os = "none")]
mod tcp;
#[cfg(target_os = "none")]
mod tcp_options;
#[cfg(target_os = "none")]
mod udp;

#[cfg(target_os = "none")]
pub use {
    dns::{resolve, DnsError},
    stack::{
        start, start_with_device, status, wait_for_ipv4, NetStatus, NotStarted, StackCounters,
        StartError,
    },
    tcp::{TcpError, TcpListener, TcpOptions, TcpStream},
    udp::{UdpError, UdpOptions, UdpSocket},
};
