//! device-mqtt's pure parts, tested on the host: turning what a device pushes into an EdgeX
//! event ([`ingest`]) and commands to devices over MQTT ([`command`]).

#![no_std]
#![warn(missing_docs)]

extern crate alloc;

pub mod command;
pub mod ingest;
