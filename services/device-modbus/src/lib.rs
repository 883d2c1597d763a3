//! device-modbus's pure parts, tested on the host: EdgeX's Modbus attributes and register
//! mapping ([`mapping`]), the command line ([`config`]) and command topics ([`command`]).

#![no_std]
#![warn(missing_docs)]

extern crate alloc;

pub mod command;
pub mod config;
pub mod mapping;
