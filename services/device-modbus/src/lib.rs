//! device-modbus's pure parts, tested on the host: EdgeX's Modbus attributes and register
//! mapping ([`mapping`]), and the command line ([`config`])
//! (command topics are `edgex::command`).

#![no_std]
#![warn(missing_docs)]

extern crate alloc;

pub mod config;
pub mod mapping;
