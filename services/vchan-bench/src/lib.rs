//! The host-testable half of the `vchan-bench` image (lichen's side of `scripts/bench vchan`):
//! the protocol it speaks with libxenvchan's side (`xen/dom0/bench/vchan-bench.c`) and the
//! sessions its command line lists. The image itself is `main.rs`.

#![no_std]

extern crate alloc;

pub mod protocol;
pub mod session;
