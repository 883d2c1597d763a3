//! EdgeX Foundry's data model for lichen's edge data services (`no_std` + `alloc`).
//!
//! - [`yaml`]: the YAML subset EdgeX's files use, with errors naming the line;
//! - [`profile`]: device profiles (`deviceResources`, `deviceCommands`);
//! - [`device`]: devices (`protocols`, `autoEvents`);
//! - [`value`]: reading values, EdgeX's transformations and write checks;
//! - [`event`]: events, readings, the message bus envelope and topics (JSON).
//!
//! Existing EdgeX v2/v3 profile and device files load unchanged, within the YAML subset.

#![no_std]
#![warn(missing_docs)]

extern crate alloc;

pub mod command;
pub mod device;
pub mod event;
pub mod profile;
mod schema;
pub mod value;
pub mod yaml;

pub use device::{AutoEvent, Device};
pub use event::{AddEventRequest, Envelope, Event, Ids, Reading};
pub use profile::{DeviceCommand, DeviceProfile, DeviceResource, ReadWrite, ValueType};
pub use value::Value;
pub use yaml::Error as ParseError;
