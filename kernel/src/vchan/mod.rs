//! vchan: byte channels between two domains, wire-compatible with Xen's libxenvchan (and so
//! with `vchan-socket-proxy` and any libxenvchan program in dom0 or another domain).
//!
//! The server grants a control page and its rings to the client, allocates an unbound event
//! channel, and publishes `<path>/ring-ref` and `<path>/event-channel` in xenstore; the client
//! maps them, binds the port, marks itself live and notifies. See [`wire`] for the layout and
//! the checks on everything the peer writes, and docs/vchan.md for the design.
//!
//! ```ignore
//! let mut ch = vchan::Vchan::server(peer_domid, "data/demo", 12, 12).await?;
//! ch.write_all(b"hello").await?;
//! let n = ch.read(&mut buf).await?; // 0: the peer closed
//! ch.close();
//! ```

pub mod wire;

#[cfg(target_os = "none")]
mod xen;
#[cfg(target_os = "none")]
pub use xen::*;

pub use wire::Error;
