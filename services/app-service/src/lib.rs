//! app-service's pure parts, tested on the host: the pipeline ([`pipeline`]), compression
//! ([`compress`]) and HTTP export ([`http`]).

#![no_std]
#![warn(missing_docs)]

extern crate alloc;

pub mod compress;
pub mod http;
pub mod pipeline;
