//! Ports as services use them: finding a port by name, reading and writing it, on the one
//! console device ([`super::device`]) brought up on first use.

use alloc::boxed::Box;
use core::cell::RefCell;
use core::future::poll_fn;
use core::task::{Context, Poll};

use super::control::DriverMessage;
use super::device::{Device, Error, DEVICE_ID};
use crate::Duration;

impl Device {
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
fn poll_device<T>(f: impl FnOnce(&mut Device) -> Poll<Result<T, Error>>) -> Poll<Result<T, Error>> {
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
