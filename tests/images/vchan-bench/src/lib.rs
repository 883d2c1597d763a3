//! The host-testable half of the `vchan-bench` image (lichen's side of `scripts/bench vchan`):
//! the protocol it speaks with libxenvchan's side (`xen/dom0/bench/vchan-bench.c`), the
//! sessions its command line lists and the lichen-bus runs between two lichen domains. The image
//! itself is `main.rs`.

#![no_std]

extern crate alloc;

pub mod bus;
pub mod protocol;
pub mod session;
