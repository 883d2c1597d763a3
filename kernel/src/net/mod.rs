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
//! Pure parts (command-line configuration, the resolver cache, the driver interface, netfront's
//! checks) build on the host too, where their unit tests run; so does the whole TCP/UDP/DNS
//! layer in test builds, over a [`loopback::Loopback`] card on a simulated clock (`tests.rs`).
//! See docs/networking.md for the design.

pub mod config;
pub mod device;
pub mod dns_cache;
pub mod netfront;

// The stack and its sockets run in guests and, over a loopback card on a simulated clock, in
// the host's unit tests.
#[cfg(any(target_os = "none", test))]
mod dns;
#[cfg(any(target_os = "none", test))]
pub mod loopback;
#[cfg(any(target_os = "none", test))]
mod stack;
#[cfg(any(target_os = "none", test))]
mod tcp;
#[cfg(any(target_os = "none", test))]
mod tcp_options;
#[cfg(all(test, not(target_os = "none")))]
mod tests;
#[cfg(any(target_os = "none", test))]
mod udp;

#[cfg(target_os = "none")]
pub use stack::start;
#[cfg(any(target_os = "none", test))]
pub use {
    dns::{resolve, DnsError},
    stack::{
        start_with_device, status, wait_for_ipv4, NetStatus, NotStarted, StackCounters, StartError,
    },
    tcp::{TcpError, TcpListener, TcpOptions, TcpStream},
    udp::{UdpError, UdpOptions, UdpSocket},
};
