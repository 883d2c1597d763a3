//! device-mqtt's pure part, tested on the host: turning what a device pushes into an EdgeX
//! event ([`ingest`]).

#![no_std]
#![warn(missing_docs)]

extern crate alloc;

pub mod ingest;
