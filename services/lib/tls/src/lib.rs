//! TLS 1.3 for lichen's unikernels: a client that verifies its server against one pinned root.
//!
//! - [`provider`]: the cryptography rustls runs on (RustCrypto, P-256 and ChaCha20-Poly1305);
//! - [`client`]: a connection over any byte stream ([`client::Transport`]; `kernel::net`'s TCP
//!   stream in a guest), driven through rustls's unbuffered API, which works without `std`;
//! - [`random`]: where the randomness comes from.
//!
//! **What the peer may do, and what happens**: the server's certificate chain must lead to the
//! pinned root ([`client::Trust`]), name the host that was dialled, and be valid at the wall
//! clock's time; a clock that is not set fails the handshake. There is no way to turn any of
//! this off. Records that do not authenticate, a handshake that breaks the protocol or a stream
//! that ends early are errors ([`client::TlsError`]); nothing read before the error is lost to
//! the caller, and nothing unverified is returned.

#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

extern crate alloc;

pub mod client;
pub mod provider;
pub mod random;

pub use client::{TlsError, TlsStream, Transport, Trust};
