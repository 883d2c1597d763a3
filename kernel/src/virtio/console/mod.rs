//! virtio-console (virtio 1.2, section 5.3) with the MULTIPORT feature: named byte-stream
//! ports (QEMU's `virtserialport`), each usable as a channel through [`open`].
//!
//! - [`control`]: the control-message codec, every device-written field checked (pure, host
//!   tested);
//! - [`ports`]: the port table and queue numbering (pure, host tested);
//! - `device` (guest only): the driver of one device, found on the virtio-mmio bus the first
//!   time a port is opened: bring-up, control queues, each port's queues;
//! - `port` (guest only): [`open`] and [`Port`], the API services use.
//!
//! Bring-up: negotiate MULTIPORT, read `max_nr_ports` from the configuration space, set up the
//! control queues and the queues of every port served (up to [`MAX_PORTS`]), post control
//! receive buffers, DRIVER_OK, then `DEVICE_READY`. The device answers with `PORT_ADD` for each
//! port; the driver posts that port's receive buffers and answers `PORT_READY`; the device then
//! sends `PORT_NAME` and, if a program is connected to the backend, `PORT_OPEN`. Opening a port
//! sends `PORT_OPEN 1` (before that QEMU delivers no data), closing it `PORT_OPEN 0`.
//!
//! One task serves the device's interrupt: it acknowledges it, applies control messages, moves
//! received buffers to their port's queue and takes back transmit buffers, then wakes the
//! tasks waiting on ports. Reads and writes never spin: they wait for that task. Transmit
//! interrupts are requested only while a writer waits for a buffer or a flush for the last
//! one. Everything the device writes is checked (used-ring entries by [`super::queue`], control
//! messages by [`control`] and [`ports`]); a lie is logged and counted, and a device that
//! breaks its rings is marked failed: its ports then return [`Error::Broken`].

pub mod control;
pub mod ports;

#[cfg(target_os = "none")]
mod device;
#[cfg(target_os = "none")]
mod port;
#[cfg(target_os = "none")]
pub use {
    device::{Error, DEVICE_ID, MAX_PORTS},
    port::{open, Port},
};
