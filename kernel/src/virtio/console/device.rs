//! The console device: bring-up, the control queues and the port table, and each port's
//! receive and transmit queues; [`super::port`] builds the port API on it.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::task::{Context, Waker};

use super::control::{self, DriverMessage, HEADER_LEN, MAX_NAME_LEN};
use super::ports::{queue_indices, Change, PortTable};
use crate::arch::ioapic::RouteError;
use crate::virtio::mmio::{Transport, TransportError};
use crate::virtio::queue::{UsedError, Virtqueue};
use crate::virtio::Found;

/// The virtio device type of a console.
pub const DEVICE_ID: u32 = 3;
/// Most ports served (QEMU offers 31 by default); ports beyond are refused.
pub const MAX_PORTS: u32 = 32;
/// Feature: several ports and the control queues.
const F_MULTIPORT: u64 = 1 << 1;
/// Offset of `max_nr_ports` (u32) in the configuration space, after `cols` and `rows`.
const CONFIG_MAX_NR_PORTS: usize = 4;
const CONTROL_RX: u16 = 2;
const CONTROL_TX: u16 = 3;
/// Control queue entries (QEMU's control queues have 32).
const CONTROL_QUEUE_SIZE: u16 = 32;
/// A control buffer holds a header and the longest name accepted with its NUL.
const CONTROL_BUFFER_SIZE: usize = HEADER_LEN + MAX_NAME_LEN + 1;
/// Port queue entries (QEMU's port queues have 128).
const PORT_QUEUE_SIZE: u16 = 128;
/// Receive buffers per port, and their size (QEMU hands over at most 4 KiB per socket
/// read, and each read fills whole buffers).
const RX_BUFFERS: u16 = 32;
const RX_BUFFER_SIZE: usize = 4096;
/// Transmit buffers per port, and their size.
const TX_BUFFERS: u16 = 32;
const TX_BUFFER_SIZE: usize = 4096;
/// Device errors logged one by one before the driver only counts them.
const LOGGED_ERRORS: u64 = 8;

/// Why a port could not be opened or used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// This machine has no virtio console.
    NoDevice,
    /// The transport failed.
    Transport(TransportError),
    /// The interrupt line could not be routed.
    Interrupt(RouteError),
    /// The device does not offer MULTIPORT, so it has no named ports.
    NoMultiport,
    /// The device says it has no ports at all.
    NoPorts,
    /// No port of that name appeared in time.
    NotFound {
        /// The name asked for.
        name: String,
        /// The names of the ports that do exist.
        known: Vec<String>,
    },
    /// The port is already open.
    Busy(String),
    /// Nothing connected to the port's host end in time.
    NoPeer(String),
    /// The host end closed (or the port was removed).
    Closed,
    /// The device broke its rings and was given up.
    Broken,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoDevice => f.write_str("no virtio-console device"),
            Error::Transport(e) => write!(f, "virtio-console transport: {e}"),
            Error::Interrupt(e) => write!(f, "virtio-console interrupt routing: {e}"),
            Error::NoMultiport => f.write_str("the virtio console has no MULTIPORT feature"),
            Error::NoPorts => f.write_str("the virtio console says it has no ports"),
            Error::NotFound { name, known } if known.is_empty() => {
                write!(
                    f,
                    "no virtio-console port named {name:?} (the device has none)"
                )
            }
            Error::NotFound { name, known } => write!(
                f,
                "no virtio-console port named {name:?} (ports: {})",
                known.join(", ")
            ),
            Error::Busy(name) => write!(f, "virtio-console port {name:?} is already open"),
            Error::NoPeer(name) => {
                write!(f, "nothing connected to virtio-console port {name:?}")
            }
            Error::Closed => f.write_str("the host closed the virtio-console port"),
            Error::Broken => f.write_str("the virtio console broke its rings"),
        }
    }
}

impl From<TransportError> for Error {
    fn from(e: TransportError) -> Self {
        Error::Transport(e)
    }
}

/// Bytes the device wrote into a receive buffer and the port has not read yet.
pub(super) struct Filled {
    pub(super) id: u16,
    pub(super) start: usize,
    pub(super) end: usize,
}

/// The queues and buffers of one port.
pub(super) struct PortQueues {
    pub(super) receive_index: u16,
    pub(super) transmit_index: u16,
    pub(super) rx: Virtqueue,
    pub(super) tx: Virtqueue,
    /// Receive buffers by descriptor id (allocated when the port is first added); each is
    /// with the device unless listed in `received`.
    pub(super) rx_buffers: Vec<Box<[u8]>>,
    pub(super) received: VecDeque<Filled>,
    /// Transmit buffers by descriptor id; those in `tx_free` are home.
    pub(super) tx_buffers: Vec<Box<[u8]>>,
    pub(super) tx_free: Vec<u16>,
    pub(super) tx_interrupts: bool,
    pub(super) rx_unnotified: bool,
    pub(super) reader: Option<Waker>,
    pub(super) writer: Option<Waker>,
}

impl PortQueues {
    pub(super) fn set_tx_interrupts(&mut self, enabled: bool) {
        if self.tx_interrupts != enabled {
            self.tx_interrupts = enabled;
            self.tx.set_interrupts(enabled);
        }
    }

    pub(super) fn wake(&mut self) {
        self.reader.take().into_iter().for_each(Waker::wake);
        self.writer.take().into_iter().for_each(Waker::wake);
    }
}

/// The console device.
pub(super) struct Device {
    pub(super) transport: Transport,
    pub(super) vector: u8,
    pub(super) table: PortTable,
    pub(super) control_rx: Virtqueue,
    pub(super) control_rx_buffers: Vec<Box<[u8]>>,
    pub(super) control_tx: Virtqueue,
    pub(super) control_tx_buffers: Box<[[u8; HEADER_LEN]]>,
    pub(super) control_tx_free: Vec<u16>,
    /// Control messages waiting for a transmit buffer.
    pub(super) control_backlog: VecDeque<DriverMessage>,
    /// Queues of ports `0..ports.len()` (the ports served).
    pub(super) ports: Vec<PortQueues>,
    /// Tasks waiting for the port table to change.
    pub(super) table_waiters: Vec<Waker>,
    pub(super) device_errors: u64,
    pub(super) broken: bool,
}

impl Device {
    pub(super) fn new(found: Found) -> Result<Device, Error> {
        let Found {
            slot,
            mut transport,
            gsis,
            vector,
        } = found;
        let features = transport.negotiate(F_MULTIPORT)?;
        if features & F_MULTIPORT == 0 {
            transport.fail();
            return Err(Error::NoMultiport);
        }
        let max_ports = u32::from_le_bytes(core::array::from_fn(|i| {
            transport.config_byte(CONFIG_MAX_NR_PORTS + i)
        }));
        if max_ports == 0 {
            transport.fail();
            return Err(Error::NoPorts);
        }
        let control_rx = transport.setup_queue(CONTROL_RX, CONTROL_QUEUE_SIZE)?;
        let control_tx = transport.setup_queue(CONTROL_TX, CONTROL_QUEUE_SIZE)?;
        let mut ports = Vec::new();
        for port in 0..max_ports.min(MAX_PORTS) {
            let Some(queues) = Self::setup_port(&mut transport, port) else {
                break;
            };
            ports.push(queues);
        }
        let control_tx_size = control_tx.layout().size;
        let mut device = Device {
            transport,
            vector,
            table: PortTable::new(ports.len() as u32),
            control_rx_buffers: (0..control_rx.layout().size)
                .map(|_| vec![0u8; CONTROL_BUFFER_SIZE].into_boxed_slice())
                .collect(),
            control_rx,
            control_tx,
            control_tx_buffers: vec![[0u8; HEADER_LEN]; usize::from(control_tx_size)]
                .into_boxed_slice(),
            control_tx_free: (0..control_tx_size).rev().collect(),
            control_backlog: VecDeque::new(),
            ports,
            table_waiters: Vec::new(),
            device_errors: 0,
            broken: false,
        };
        for id in 0..device.control_rx_buffers.len() as u16 {
            device.post_control_rx(id);
        }
        device.control_rx.publish();
        device.control_tx.set_interrupts(false);
        device
            .transport
            .start(&gsis, vector)
            .map_err(Error::Interrupt)?;
        device.transport.notify(CONTROL_RX);
        device.send_control(DriverMessage::DeviceReady { ok: true });
        crate::info!(
            "virtio-console: slot {slot} at {:#x} ({}), {max_ports} ports offered, {} served, gsi {gsis:?} -> vector {vector:#x}",
            device.transport.base(),
            if device.transport.is_legacy() { "legacy" } else { "modern" },
            device.ports.len(),
        );
        Ok(device)
    }

    /// Sets up the two queues of `port`; `None` (logged) when the device lacks them.
    pub(super) fn setup_port(transport: &mut Transport, port: u32) -> Option<PortQueues> {
        let (receive_index, transmit_index) = queue_indices(port)?;
        let queues = transport
            .setup_queue(receive_index, PORT_QUEUE_SIZE)
            .and_then(|rx| Ok((rx, transport.setup_queue(transmit_index, PORT_QUEUE_SIZE)?)));
        match queues {
            Ok((rx, tx)) if rx.layout().size >= 2 && tx.layout().size >= 2 => Some(PortQueues {
                receive_index,
                transmit_index,
                rx,
                tx,
                rx_buffers: Vec::new(),
                received: VecDeque::new(),
                tx_buffers: Vec::new(),
                tx_free: Vec::new(),
                tx_interrupts: true,
                rx_unnotified: false,
                reader: None,
                writer: None,
            }),
            Ok(_) => {
                crate::warn!("virtio-console: port {port}'s queues are too small; not served");
                None
            }
            Err(e) => {
                crate::warn!("virtio-console: port {port} not served: {e}");
                None
            }
        }
    }

    pub(super) fn post_control_rx(&mut self, id: u16) {
        let buffer = &mut self.control_rx_buffers[usize::from(id)];
        let (addr, len) = (buffer.as_mut_ptr() as u64, buffer.len() as u32);
        if let Err(e) = self.control_rx.post(id, addr, len, true) {
            // Only a driver bug gets here: the ids are the driver's own.
            crate::error!("virtio-console: cannot repost control buffer: {e}");
        }
    }

    pub(super) fn device_error(&mut self, what: &str, e: &dyn fmt::Display) {
        self.device_errors += 1;
        if self.device_errors <= LOGGED_ERRORS {
            crate::warn!("virtio-console: bad {what}: {e}");
        }
        let rings_broken = self.control_rx.is_broken()
            || self.control_tx.is_broken()
            || self
                .ports
                .iter()
                .any(|p| p.rx.is_broken() || p.tx.is_broken());
        if rings_broken && !self.broken {
            self.broken = true;
            crate::error!("virtio-console: the device broke its rings; it is disabled");
            self.transport.fail();
            self.wake_all();
        }
    }

    pub(super) fn wake_all(&mut self) {
        self.table_waiters.drain(..).for_each(Waker::wake);
        self.ports.iter_mut().for_each(PortQueues::wake);
    }

    pub(super) fn wait_for_table(&mut self, cx: &Context<'_>) {
        if !self.table_waiters.iter().any(|w| w.will_wake(cx.waker())) {
            self.table_waiters.push(cx.waker().clone());
        }
    }

    /// Queues a control message and sends what the transmit buffers allow.
    pub(super) fn send_control(&mut self, message: DriverMessage) {
        self.control_backlog.push_back(message);
        self.send_control_backlog();
    }

    pub(super) fn send_control_backlog(&mut self) {
        self.reclaim_control_tx();
        let mut sent = false;
        while let Some(&message) = self.control_backlog.front() {
            let Some(id) = self.control_tx_free.pop() else {
                break;
            };
            let buffer = &mut self.control_tx_buffers[usize::from(id)];
            *buffer = message.encode();
            let addr = buffer.as_ptr() as u64;
            if let Err(e) = self.control_tx.post(id, addr, HEADER_LEN as u32, false) {
                crate::error!("virtio-console: cannot post a control message: {e}");
                self.control_tx_free.push(id);
                break;
            }
            self.control_backlog.pop_front();
            sent = true;
        }
        if sent {
            self.control_tx.publish();
            if self.control_tx.device_wants_notification() {
                self.transport.notify(CONTROL_TX);
            }
        }
        // Interrupts only while messages wait for buffers.
        let waiting = !self.control_backlog.is_empty();
        self.control_tx.set_interrupts(waiting);
    }

    pub(super) fn reclaim_control_tx(&mut self) {
        while let Some(used) = self.control_tx.pop_used() {
            match used {
                Ok(used) => self.control_tx_free.push(used.id),
                Err(e @ UsedError::LengthTooLong { id, .. }) => {
                    self.control_tx_free.push(id);
                    self.device_error("control transmit entry", &e);
                }
                Err(e) => self.device_error("control transmit entry", &e),
            }
        }
    }

    /// The interrupt: everything the device did since the last one.
    pub(super) fn service(&mut self) {
        self.transport.acknowledge_interrupt();
        if self.broken {
            return;
        }
        self.send_control_backlog();
        self.receive_control();
        for port in 0..self.ports.len() {
            self.drain_rx(port);
            self.reclaim_tx(port);
        }
        // Waiters look again; those still unsatisfied wait again.
        self.ports.iter_mut().for_each(PortQueues::wake);
    }

    pub(super) fn receive_control(&mut self) {
        let mut reposted = false;
        while let Some(used) = self.control_rx.pop_used() {
            let used = match used {
                Ok(used) => used,
                Err(e @ UsedError::LengthTooLong { id, .. }) => {
                    self.device_error("control message", &e);
                    self.post_control_rx(id);
                    reposted = true;
                    continue;
                }
                Err(e) => {
                    self.device_error("control receive entry", &e);
                    if self.broken {
                        return;
                    }
                    continue;
                }
            };
            let mut bytes = [0u8; CONTROL_BUFFER_SIZE];
            let len = used.len as usize;
            bytes[..len].copy_from_slice(&self.control_rx_buffers[usize::from(used.id)][..len]);
            self.post_control_rx(used.id);
            reposted = true;
            self.handle_control(&bytes[..len]);
        }
        if reposted {
            self.control_rx.publish();
            if self.control_rx.device_wants_notification() {
                self.transport.notify(CONTROL_RX);
            }
        }
    }

    pub(super) fn handle_control(&mut self, bytes: &[u8]) {
        let message = match control::decode(bytes) {
            Ok(message) => message,
            Err(e) => return self.device_error("control message", &e),
        };
        let change = match self.table.apply(&message) {
            Ok(change) => change,
            Err(e) => return self.device_error("control message", &e),
        };
        match change {
            Change::Added(port) => {
                self.activate(port as usize);
                self.send_control(DriverMessage::PortReady { port, ok: true });
            }
            Change::Removed(port) => {
                self.discard_received(port as usize);
                self.ports[port as usize].wake();
            }
            Change::Named(_) | Change::HostOpened(_) | Change::HostClosed(_) => {}
            Change::Nothing => return,
        }
        self.table_waiters.drain(..).for_each(Waker::wake);
    }

    /// Gives an added port its buffers (the first time) and posts the receive ones.
    pub(super) fn activate(&mut self, port: usize) {
        let q = &mut self.ports[port];
        if !q.rx_buffers.is_empty() {
            // Added before: its receive buffers are still with the device.
            return;
        }
        let rx_count = RX_BUFFERS.min(q.rx.layout().size);
        let tx_count = TX_BUFFERS.min(q.tx.layout().size);
        q.rx_buffers = (0..rx_count)
            .map(|_| vec![0u8; RX_BUFFER_SIZE].into_boxed_slice())
            .collect();
        q.tx_buffers = (0..tx_count)
            .map(|_| vec![0u8; TX_BUFFER_SIZE].into_boxed_slice())
            .collect();
        q.tx_free = (0..tx_count).rev().collect();
        q.set_tx_interrupts(false);
        for id in 0..rx_count {
            self.post_rx(port, id);
        }
        self.notify_rx(port);
    }

    pub(super) fn post_rx(&mut self, port: usize, id: u16) {
        let q = &mut self.ports[port];
        let buffer = &mut q.rx_buffers[usize::from(id)];
        let (addr, len) = (buffer.as_mut_ptr() as u64, buffer.len() as u32);
        if let Err(e) = q.rx.post(id, addr, len, true) {
            crate::error!("virtio-console: cannot repost a receive buffer: {e}");
            return;
        }
        q.rx_unnotified = true;
    }

    pub(super) fn notify_rx(&mut self, port: usize) {
        let q = &mut self.ports[port];
        if !q.rx_unnotified {
            return;
        }
        q.rx_unnotified = false;
        q.rx.publish();
        if q.rx.device_wants_notification() {
            self.transport.notify(q.receive_index);
        }
    }

    /// Moves what the device wrote into `port`'s receive buffers to its `received` list.
    pub(super) fn drain_rx(&mut self, port: usize) {
        while let Some(used) = self.ports[port].rx.pop_used() {
            match used {
                Ok(used) if used.len == 0 => self.post_rx(port, used.id),
                Ok(used) => self.ports[port].received.push_back(Filled {
                    id: used.id,
                    start: 0,
                    end: used.len as usize,
                }),
                Err(e @ UsedError::LengthTooLong { id, .. }) => {
                    // The buffer is back, its contents untrustworthy: drop them.
                    self.device_error("receive entry", &e);
                    self.post_rx(port, id);
                }
                Err(e) => {
                    self.device_error("receive entry", &e);
                    if self.broken {
                        return;
                    }
                }
            }
        }
        self.notify_rx(port);
    }

    pub(super) fn discard_received(&mut self, port: usize) {
        while let Some(filled) = self.ports[port].received.pop_front() {
            self.post_rx(port, filled.id);
        }
        self.notify_rx(port);
    }

    pub(super) fn reclaim_tx(&mut self, port: usize) {
        loop {
            let q = &mut self.ports[port];
            let Some(used) = q.tx.pop_used() else {
                break;
            };
            match used {
                Ok(used) => q.tx_free.push(used.id),
                Err(e @ UsedError::LengthTooLong { id, .. }) => {
                    q.tx_free.push(id);
                    self.device_error("transmit entry", &e);
                }
                Err(e) => self.device_error("transmit entry", &e),
            }
        }
    }
}
