//! virtio-console (virtio 1.2, section 5.3) with the MULTIPORT feature: named byte-stream
//! ports (QEMU's `virtserialport`), each usable as a channel through [`open`].
//!
//! - [`control`]: the control-message codec, every device-written field checked (pure, host
//!   tested);
//! - [`ports`]: the port table and queue numbering (pure, host tested);
//! - the driver, below: one device, found on the virtio-mmio bus the first time a port is
//!   opened.
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
pub use device::*;

#[cfg(target_os = "none")]
mod device {
    use alloc::boxed::Box;
    use alloc::collections::VecDeque;
    use alloc::string::String;
    use alloc::vec;
    use alloc::vec::Vec;
    use core::cell::RefCell;
    use core::fmt;
    use core::future::poll_fn;
    use core::task::{Context, Poll, Waker};

    use super::control::{self, DriverMessage, HEADER_LEN, MAX_NAME_LEN};
    use super::ports::{queue_indices, Change, PortTable};
    use crate::arch::ioapic::RouteError;
    use crate::virtio::mmio::{Transport, TransportError};
    use crate::virtio::queue::{UsedError, Virtqueue};
    use crate::virtio::Found;
    use crate::Duration;

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
    struct Filled {
        id: u16,
        start: usize,
        end: usize,
    }

    /// The queues and buffers of one port.
    struct PortQueues {
        receive_index: u16,
        transmit_index: u16,
        rx: Virtqueue,
        tx: Virtqueue,
        /// Receive buffers by descriptor id (allocated when the port is first added); each is
        /// with the device unless listed in `received`.
        rx_buffers: Vec<Box<[u8]>>,
        received: VecDeque<Filled>,
        /// Transmit buffers by descriptor id; those in `tx_free` are home.
        tx_buffers: Vec<Box<[u8]>>,
        tx_free: Vec<u16>,
        tx_interrupts: bool,
        rx_unnotified: bool,
        reader: Option<Waker>,
        writer: Option<Waker>,
    }

    impl PortQueues {
        fn set_tx_interrupts(&mut self, enabled: bool) {
            if self.tx_interrupts != enabled {
                self.tx_interrupts = enabled;
                self.tx.set_interrupts(enabled);
            }
        }

        fn wake(&mut self) {
            self.reader.take().into_iter().for_each(Waker::wake);
            self.writer.take().into_iter().for_each(Waker::wake);
        }
    }

    /// The console device.
    struct Device {
        transport: Transport,
        vector: u8,
        table: PortTable,
        control_rx: Virtqueue,
        control_rx_buffers: Vec<Box<[u8]>>,
        control_tx: Virtqueue,
        control_tx_buffers: Box<[[u8; HEADER_LEN]]>,
        control_tx_free: Vec<u16>,
        /// Control messages waiting for a transmit buffer.
        control_backlog: VecDeque<DriverMessage>,
        /// Queues of ports `0..ports.len()` (the ports served).
        ports: Vec<PortQueues>,
        /// Tasks waiting for the port table to change.
        table_waiters: Vec<Waker>,
        device_errors: u64,
        broken: bool,
    }

    impl Device {
        fn new(found: Found) -> Result<Device, Error> {
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
        fn setup_port(transport: &mut Transport, port: u32) -> Option<PortQueues> {
            let (receive_index, transmit_index) = queue_indices(port)?;
            let queues = transport
                .setup_queue(receive_index, PORT_QUEUE_SIZE)
                .and_then(|rx| Ok((rx, transport.setup_queue(transmit_index, PORT_QUEUE_SIZE)?)));
            match queues {
                Ok((rx, tx)) if rx.layout().size >= 2 && tx.layout().size >= 2 => {
                    Some(PortQueues {
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
                    })
                }
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

        fn post_control_rx(&mut self, id: u16) {
            let buffer = &mut self.control_rx_buffers[usize::from(id)];
            let (addr, len) = (buffer.as_mut_ptr() as u64, buffer.len() as u32);
            if let Err(e) = self.control_rx.post(id, addr, len, true) {
                // Only a driver bug gets here: the ids are the driver's own.
                crate::error!("virtio-console: cannot repost control buffer: {e}");
            }
        }

        fn device_error(&mut self, what: &str, e: &dyn fmt::Display) {
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

        fn wake_all(&mut self) {
            self.table_waiters.drain(..).for_each(Waker::wake);
            self.ports.iter_mut().for_each(PortQueues::wake);
        }

        fn wait_for_table(&mut self, cx: &Context<'_>) {
            if !self.table_waiters.iter().any(|w| w.will_wake(cx.waker())) {
                self.table_waiters.push(cx.waker().clone());
            }
        }

        /// Queues a control message and sends what the transmit buffers allow.
        fn send_control(&mut self, message: DriverMessage) {
            self.control_backlog.push_back(message);
            self.send_control_backlog();
        }

        fn send_control_backlog(&mut self) {
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

        fn reclaim_control_tx(&mut self) {
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
        fn service(&mut self) {
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

        fn receive_control(&mut self) {
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

        fn handle_control(&mut self, bytes: &[u8]) {
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
        fn activate(&mut self, port: usize) {
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

        fn post_rx(&mut self, port: usize, id: u16) {
            let q = &mut self.ports[port];
            let buffer = &mut q.rx_buffers[usize::from(id)];
            let (addr, len) = (buffer.as_mut_ptr() as u64, buffer.len() as u32);
            if let Err(e) = q.rx.post(id, addr, len, true) {
                crate::error!("virtio-console: cannot repost a receive buffer: {e}");
                return;
            }
            q.rx_unnotified = true;
        }

        fn notify_rx(&mut self, port: usize) {
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
        fn drain_rx(&mut self, port: usize) {
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

        fn discard_received(&mut self, port: usize) {
            while let Some(filled) = self.ports[port].received.pop_front() {
                self.post_rx(port, filled.id);
            }
            self.notify_rx(port);
        }

        fn reclaim_tx(&mut self, port: usize) {
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

        fn poll_find(&mut self, name: &str, cx: &Context<'_>) -> Poll<Result<u32, Error>> {
            if self.broken {
                return Poll::Ready(Err(Error::Broken));
            }
            match self.table.find(name) {
                Some(port) => Poll::Ready(Ok(port)),
                None => {
                    self.wait_for_table(cx);
                    Poll::Pending
                }
            }
        }

        /// Opens the guest end of `port`.
        fn claim(&mut self, port: u32, name: &str) -> Result<(), Error> {
            if self.table.port(port).is_some_and(|p| p.guest_open) {
                return Err(Error::Busy(name.into()));
            }
            if !self.table.set_guest_open(port, true) {
                return Err(Error::Closed);
            }
            // Nothing from before this opening belongs to the new reader.
            self.discard_received(port as usize);
            self.send_control(DriverMessage::PortOpen { port, open: true });
            Ok(())
        }

        /// Closes the guest end of `port`, dropping what it did not read.
        fn release(&mut self, port: u32) {
            if self.table.set_guest_open(port, false) {
                self.send_control(DriverMessage::PortOpen { port, open: false });
            }
            let q = &mut self.ports[port as usize];
            q.reader = None;
            q.writer = None;
            self.discard_received(port as usize);
        }

        fn host_open(&self, port: u32) -> bool {
            self.table
                .port(port)
                .is_some_and(|p| p.added && p.host_open)
        }

        fn poll_host_open(&mut self, port: u32, cx: &Context<'_>) -> Poll<Result<(), Error>> {
            if self.broken {
                return Poll::Ready(Err(Error::Broken));
            }
            if !self.table.port(port).is_some_and(|p| p.added) {
                return Poll::Ready(Err(Error::Closed));
            }
            if self.host_open(port) {
                return Poll::Ready(Ok(()));
            }
            self.wait_for_table(cx);
            Poll::Pending
        }

        fn poll_read(
            &mut self,
            port: u32,
            buf: &mut [u8],
            cx: &Context<'_>,
        ) -> Poll<Result<usize, Error>> {
            if self.broken {
                return Poll::Ready(Err(Error::Broken));
            }
            let index = port as usize;
            self.drain_rx(index);
            let mut copied = 0;
            while copied < buf.len() {
                let q = &mut self.ports[index];
                let Some(filled) = q.received.front_mut() else {
                    break;
                };
                let data = &q.rx_buffers[usize::from(filled.id)][filled.start..filled.end];
                let n = data.len().min(buf.len() - copied);
                buf[copied..copied + n].copy_from_slice(&data[..n]);
                copied += n;
                filled.start += n;
                if filled.start == filled.end {
                    let id = filled.id;
                    q.received.pop_front();
                    self.post_rx(index, id);
                }
            }
            self.notify_rx(index);
            if copied > 0 {
                return Poll::Ready(Ok(copied));
            }
            // Everything received before the host closed was read above: end of stream.
            if !self.host_open(port) {
                return Poll::Ready(Ok(0));
            }
            self.ports[index].reader = Some(cx.waker().clone());
            Poll::Pending
        }

        fn poll_write(
            &mut self,
            port: u32,
            buf: &[u8],
            cx: &Context<'_>,
        ) -> Poll<Result<usize, Error>> {
            if self.broken {
                return Poll::Ready(Err(Error::Broken));
            }
            if !self.host_open(port) {
                return Poll::Ready(Err(Error::Closed));
            }
            let index = port as usize;
            self.reclaim_tx(index);
            if self.ports[index].tx_free.is_empty() {
                // Ask to be interrupted when buffers come back, then look once more (the
                // device may have finished some before it saw the request).
                self.ports[index].set_tx_interrupts(true);
                self.reclaim_tx(index);
            }
            let q = &mut self.ports[index];
            let Some(id) = q.tx_free.pop() else {
                q.writer = Some(cx.waker().clone());
                return Poll::Pending;
            };
            q.set_tx_interrupts(false);
            let buffer = &mut q.tx_buffers[usize::from(id)];
            let n = buf.len().min(buffer.len());
            buffer[..n].copy_from_slice(&buf[..n]);
            let addr = buffer.as_ptr() as u64;
            if let Err(e) = q.tx.post(id, addr, n as u32, false) {
                // Only a driver bug gets here: the ids are the driver's own.
                q.tx_free.push(id);
                crate::error!("virtio-console: cannot post a transmit buffer: {e}");
                return Poll::Ready(Err(Error::Broken));
            }
            q.tx.publish();
            if q.tx.device_wants_notification() {
                self.transport.notify(q.transmit_index);
            }
            Poll::Ready(Ok(n))
        }

        fn poll_flush(&mut self, port: u32, cx: &Context<'_>) -> Poll<Result<(), Error>> {
            if self.broken {
                return Poll::Ready(Err(Error::Broken));
            }
            let index = port as usize;
            for attempt in 0..2 {
                self.reclaim_tx(index);
                if self.ports[index].tx.in_flight() == 0 {
                    self.ports[index].set_tx_interrupts(false);
                    return Poll::Ready(Ok(()));
                }
                if attempt == 0 {
                    if !self.host_open(port) {
                        return Poll::Ready(Err(Error::Closed));
                    }
                    self.ports[index].set_tx_interrupts(true);
                }
            }
            self.ports[index].writer = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    /// The device, reachable from tasks (never from interrupt handlers).
    enum Slot {
        /// Not looked for yet.
        Unprobed,
        /// Looked for and not usable, for this reason.
        Unusable(Error),
        /// Running (boxed: the device is large and looked for once).
        Running(Box<Device>),
    }

    struct DeviceCell(RefCell<Slot>);
    // SAFETY: lichen runs one CPU and only task code (never an interrupt handler) touches the
    // cell, so it is never accessed from two contexts at once; RefCell catches re-entry.
    unsafe impl Sync for DeviceCell {}

    static DEVICE: DeviceCell = DeviceCell(RefCell::new(Slot::Unprobed));

    fn with_device<R>(f: impl FnOnce(&mut Device) -> R) -> Result<R, Error> {
        match &mut *DEVICE.0.borrow_mut() {
            Slot::Running(device) => Ok(f(device)),
            Slot::Unusable(e) => Err(e.clone()),
            Slot::Unprobed => Err(Error::NoDevice),
        }
    }

    /// Polls `f` on the device; an unusable device ends the wait with its error.
    fn poll_device<T>(
        f: impl FnOnce(&mut Device) -> Poll<Result<T, Error>>,
    ) -> Poll<Result<T, Error>> {
        with_device(f).unwrap_or_else(|e| Poll::Ready(Err(e)))
    }

    /// Finds and brings up the console the first time; later calls return the outcome.
    fn start() -> Result<(), Error> {
        let mut slot = DEVICE.0.borrow_mut();
        if let Slot::Unprobed = *slot {
            *slot = match crate::virtio::find(DEVICE_ID).map(Device::new) {
                None => Slot::Unusable(Error::NoDevice),
                Some(Err(e)) => {
                    crate::error!("virtio-console: {e}");
                    Slot::Unusable(e)
                }
                Some(Ok(device)) => {
                    crate::spawn(serve_interrupts(device.vector));
                    Slot::Running(Box::new(device))
                }
            };
        }
        match &*slot {
            Slot::Running(_) => Ok(()),
            Slot::Unusable(e) => Err(e.clone()),
            Slot::Unprobed => unreachable!("probed above"),
        }
    }

    /// The device's interrupt task.
    async fn serve_interrupts(vector: u8) {
        loop {
            crate::irq::wait(vector).await;
            if with_device(Device::service).is_err() {
                return;
            }
        }
    }

    /// Opens the port called `name`, waiting up to `wait` for the device to announce it and
    /// for a program to be connected to its host end.
    pub async fn open(name: &str, wait: Duration) -> Result<Port, Error> {
        start()?;
        let deadline = crate::now().saturating_add(wait);
        let found = crate::timeout(wait, poll_fn(|cx| poll_device(|d| d.poll_find(name, cx))));
        let id = match found.await {
            Ok(found) => found?,
            Err(_) => {
                let known = with_device(|d| d.table.names())?;
                return Err(Error::NotFound {
                    name: name.into(),
                    known,
                });
            }
        };
        with_device(|d| d.claim(id, name))??;
        let port = Port {
            id,
            eof: false,
            open: true,
        };
        let remaining = deadline.saturating_duration_since(crate::now());
        let connected = poll_fn(|cx| poll_device(|d| d.poll_host_open(id, cx)));
        match crate::timeout(remaining, connected).await {
            Ok(connected) => connected.map(|()| port),
            Err(_) => Err(Error::NoPeer(name.into())),
        }
    }

    /// An open port: a byte stream to the program connected to its host end.
    pub struct Port {
        id: u32,
        eof: bool,
        open: bool,
    }

    impl Port {
        /// The port's id on the device.
        pub fn id(&self) -> u32 {
            self.id
        }

        /// Reads at least one byte (up to `buf.len()`), waiting for them; `Ok(0)` once the host
        /// end closed and everything received before was read.
        pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
            if buf.is_empty() || self.eof {
                return Ok(0);
            }
            let id = self.id;
            let n = poll_fn(|cx| poll_device(|d| d.poll_read(id, buf, cx))).await?;
            self.eof = n == 0;
            Ok(n)
        }

        /// Writes some of `buf` (at least one byte), waiting for a transmit buffer;
        /// [`Error::Closed`] once the host end closed.
        pub async fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
            if buf.is_empty() {
                return Ok(0);
            }
            let id = self.id;
            poll_fn(|cx| poll_device(|d| d.poll_write(id, buf, cx))).await
        }

        /// Reads into `inp` or writes some of `out`, whichever the device allows first
        /// (`Read(0)`: the host end closed and everything was read). Cancel-safe.
        pub async fn transfer(
            &mut self,
            out: &[u8],
            inp: &mut [u8],
        ) -> Result<crate::channel::Transferred, Error> {
            use crate::channel::Transferred;
            if inp.is_empty() || self.eof {
                return Ok(Transferred::Read(0));
            }
            let id = self.id;
            let moved = poll_fn(|cx| {
                poll_device(|d| {
                    if let Poll::Ready(read) = d.poll_read(id, inp, cx) {
                        return Poll::Ready(read.map(Transferred::Read));
                    }
                    if out.is_empty() {
                        return Poll::Pending;
                    }
                    d.poll_write(id, out, cx).map(|w| w.map(Transferred::Wrote))
                })
            })
            .await?;
            self.eof = moved == Transferred::Read(0);
            Ok(moved)
        }

        /// Writes all of `buf`.
        pub async fn write_all(&mut self, mut buf: &[u8]) -> Result<(), Error> {
            while !buf.is_empty() {
                let n = self.write(buf).await?;
                buf = &buf[n..];
            }
            Ok(())
        }

        /// Waits until the device handed everything written so far to the host end (QEMU
        /// returns a buffer once it wrote it to the backend); [`Error::Closed`] if the host
        /// end closes first.
        pub async fn flush(&mut self) -> Result<(), Error> {
            let id = self.id;
            poll_fn(|cx| poll_device(|d| d.poll_flush(id, cx))).await
        }

        /// Closes the guest end: the device learns it (`PORT_OPEN 0`) and unread data is
        /// dropped.
        pub fn close(mut self) {
            self.release();
        }

        fn release(&mut self) {
            if core::mem::take(&mut self.open) {
                let id = self.id;
                let _ = with_device(|d| d.release(id));
            }
        }
    }

    impl Drop for Port {
        fn drop(&mut self) {
            self.release();
        }
    }
}
