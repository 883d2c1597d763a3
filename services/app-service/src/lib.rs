//! app-service's pure part, tested on the host: the pipeline ([`pipeline`]).

#![no_std]
#![warn(missing_docs)]

extern crate alloc;

pub mod pipeline;
