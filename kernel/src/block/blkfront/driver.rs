//! The blkfront driver: the handshake, the ring and the granted data pages (see the module docs
//! of [`super`]); what the backend writes is checked by the pure functions there and by
//! [`FrontRing`].

use super::*;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::block::requests::{Op, RequestQueue, Requests};
use crate::block::{BlockDevice, Error, Geometry};
use crate::platform::xen::evtchn::{self, Port};
use crate::platform::xen::grant;
use crate::platform::xen::shared_ring::FrontRing;
use crate::platform::xen::{store, xenstore};
use crate::time::Duration;

/// `XenbusStateInitWait`.
const STATE_INIT_WAIT: u32 = 2;
/// `XenbusStateInitialised`.
const STATE_INITIALISED: u32 = 3;
/// `XenbusStateConnected`.
const STATE_CONNECTED: u32 = 4;
/// `XenbusStateClosing`.
const STATE_CLOSING: u32 = 5;
/// How long the backend may take for each step of the handshake. Generous: a node that
/// starts many domains at once keeps dom0's xenstore and xenwatch busy (seen under TCG: the
/// config disk's backend of a third and fourth reader took over 30 s), and a pillar that gives
/// up on its disk only crashes and comes back later.
const HANDSHAKE_STEP: Duration = Duration::from_secs(120);
/// Requests in flight at once (each with [`SEGMENTS`] granted pages).
const SLOTS: usize = 8;
/// Bytes per request.
const CHUNK: usize = SEGMENTS * PAGE;
/// Where the launcher writes a disk's name, by its xenstore id.
const NAMES: &str = "data/lichen/disk";

/// One request slot: its data pages (granted once) and the operation in flight.
struct Slot {
    data: &'static mut [u8],
    grefs: [u32; SEGMENTS],
    in_flight: Option<u8>,
}

/// The ring, the event channel and the slots: the driver side of the request engine.
struct Device {
    ring: FrontRing,
    port: Port,
    handle: u16,
    slots: Vec<Slot>,
    /// The backend's sector size over blkif's 512-byte unit.
    scale: u64,
    flush: Option<u8>,
    broken: bool,
    name: String,
}

/// A Xen virtual disk.
pub struct Blkfront {
    device: Device,
    engine: Requests,
    geometry: Geometry,
}

fn setup(what: &'static str) -> impl Fn(xenstore::Error) -> BlkfrontError {
    move |_| BlkfrontError::Xenstore(what)
}

/// Reads an optional key: `None` when absent.
async fn read_optional(path: &str) -> Option<String> {
    store::read(path)
        .await
        .ok()
        .map(|v| String::from(v.trim_end_matches('\0')))
}

impl Blkfront {
    /// The xenstore ids of this domain's disks (`device/vbd/<id>`), in order.
    pub async fn ids() -> Vec<u16> {
        let mut ids: Vec<u16> = store::directory("device/vbd")
            .await
            .unwrap_or_default()
            .iter()
            .filter_map(|id| id.trim_end_matches('\0').parse().ok())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Connects to disk `id`: rings, grants, the handshake with its backend.
    pub async fn connect(id: u16) -> Result<Blkfront, BlkfrontError> {
        let front = format!("device/vbd/{id}");
        let backend = store::read(&format!("{front}/backend"))
            .await
            .map_err(setup("read the backend path"))?;
        let backend = String::from(backend.trim_end_matches('\0'));
        let backend_id: u16 = store::read(&format!("{front}/backend-id"))
            .await
            .map_err(setup("read the backend id"))?
            .trim_end_matches('\0')
            .parse()
            .map_err(|_| BlkfrontError::BadValue("backend-id"))?;
        let name = read_optional(&format!("{NAMES}/{id}"))
            .await
            .unwrap_or_else(|| default_name(id));

        let state_path = format!("{backend}/state");
        let watch = store::watch(&state_path, "lichen-blkfront")
            .await
            .map_err(setup("watch the backend state"))?;
        backend_state(&watch, &state_path, |s| s >= STATE_INIT_WAIT).await?;

        let ring_page = crate::mem::alloc_frames(1).ok_or(BlkfrontError::Resources("memory"))?;
        // SAFETY: a fresh, page-aligned page that is never freed; only the backend (once
        // granted) writes it besides the ring.
        let ring = unsafe { FrontRing::init(ring_page as *mut u8, PAGE, SLOT) };
        let ring_ref = grant::grant_access(backend_id, ring_page, false)
            .map_err(|_| BlkfrontError::Resources("grant references"))?;
        let mut slots = Vec::with_capacity(SLOTS);
        for _ in 0..SLOTS.min(ring.size() as usize) {
            let addr =
                crate::mem::alloc_frames(SEGMENTS).ok_or(BlkfrontError::Resources("memory"))?;
            let mut grefs = [0u32; SEGMENTS];
            for (i, gref) in grefs.iter_mut().enumerate() {
                // Writable even for writes: persistent grants may be reused either way.
                *gref = grant::grant_access(backend_id, addr + (i * PAGE) as u64, false)
                    .map_err(|_| BlkfrontError::Resources("grant references"))?;
            }
            // SAFETY: fresh, zeroed, page-aligned frames that are never freed, and this is
            // the only reference to them; the backend writes them only while a read request
            // of this slot is in flight.
            let data = unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, CHUNK) };
            slots.push(Slot {
                data,
                grefs,
                in_flight: None,
            });
        }
        let port = evtchn::alloc_unbound(backend_id)
            .map_err(|_| BlkfrontError::Resources("event channels"))?;

        let keys = [
            ("ring-ref", format!("{ring_ref}")),
            ("event-channel", format!("{port}")),
            ("protocol", "x86_64-abi".into()),
            ("feature-persistent", "1".into()),
            ("state", format!("{STATE_INITIALISED}")),
        ];
        store::transaction(|tx| {
            let (keys, front) = (&keys, &front);
            async move {
                for (key, value) in keys {
                    tx.write(&format!("{front}/{key}"), value).await?;
                }
                Ok(())
            }
        })
        .await
        .map_err(setup("write the frontend keys"))?;
        backend_state(&watch, &state_path, |s| s == STATE_CONNECTED).await?;
        let _ = watch.cancel().await;

        let key = |k: &str| read_optional_owned(format!("{backend}/{k}"));
        let info = parse_backend(
            key("sectors").await.as_deref(),
            key("sector-size").await.as_deref(),
            key("info").await.as_deref(),
            key("mode").await.as_deref(),
            key("feature-flush-cache").await.as_deref(),
            key("feature-barrier").await.as_deref(),
        )?;
        store::write(&format!("{front}/state"), &format!("{STATE_CONNECTED}"))
            .await
            .map_err(setup("write the frontend state"))?;
        let geometry = Geometry {
            sector_size: info.sector_size,
            sectors: info.sectors,
            read_only: info.read_only,
        };
        crate::info!(
            "blkfront: disk {name:?} (vbd {id}), backend domain {backend_id}: {} sectors of {} bytes{}{}",
            geometry.sectors,
            geometry.sector_size,
            if geometry.read_only { ", read-only" } else { "" },
            match info.flush {
                Some(OP_FLUSH_DISKCACHE) => ", flush",
                Some(_) => ", barrier",
                None => "",
            },
        );
        let slots_len = slots.len();
        Ok(Blkfront {
            device: Device {
                ring,
                port,
                handle: id,
                slots,
                scale: u64::from(info.sector_size / SECTOR as u32),
                flush: info.flush,
                broken: false,
                name,
            },
            engine: Requests::new(slots_len),
            geometry,
        })
    }

    /// The disk's name: what the launcher called it, else `xvd<letter>` from its id.
    pub fn name(&self) -> &str {
        &self.device.name
    }
}

async fn read_optional_owned(path: String) -> Option<String> {
    read_optional(&path).await
}

/// The Linux-style name of xenstore disk id `id` (`xvda` for 51712), or `vbd<id>`.
fn default_name(id: u16) -> String {
    let (major, index) = (id >> 8, (id >> 4) & 0xf);
    if major == 202 {
        format!("xvd{}", char::from(b'a' + index as u8))
    } else {
        format!("vbd{id}")
    }
}

async fn backend_state(
    watch: &store::Watch,
    path: &str,
    done: impl Fn(u32) -> bool,
) -> Result<(), BlkfrontError> {
    loop {
        let state = store::read(path)
            .await
            .map_err(setup("read the backend state"))?;
        let state = crate::net::netfront::parse_state(&state)
            .ok_or(BlkfrontError::BadValue("backend state"))?;
        if done(state) {
            return Ok(());
        }
        if state >= STATE_CLOSING {
            return Err(BlkfrontError::BadValue("backend state (closing)"));
        }
        crate::timeout(HANDSHAKE_STEP, watch.next())
            .await
            .map_err(|_| BlkfrontError::Xenstore("wait for the backend (timed out)"))?
            .map_err(setup("watch the backend state"))?;
    }
}

impl Device {
    fn give_up(&mut self, why: &str) -> Error {
        if !self.broken {
            self.broken = true;
            crate::error!("blkfront {}: {why}; the disk is disabled", self.name);
        }
        Error::Broken
    }
}

impl RequestQueue for Device {
    fn slots(&self) -> usize {
        self.slots.len()
    }

    fn chunk(&self) -> usize {
        CHUNK
    }

    fn buffer(&mut self, slot: usize) -> &mut [u8] {
        self.slots[slot].data
    }

    fn post(&mut self, index: usize, op: Op, sector: u64, len: usize) -> Result<(), Error> {
        if self.broken {
            return Err(Error::Broken);
        }
        let operation = match op {
            Op::Read => OP_READ,
            Op::Write => OP_WRITE,
            Op::Flush => self.flush.ok_or(Error::Device(i32::from(RSP_EOPNOTSUPP)))?,
            Op::Identify => return Err(Error::Device(i32::from(RSP_EOPNOTSUPP))),
        };
        let (handle, scale) = (self.handle, self.scale);
        if self.slots[index].in_flight.is_some() {
            return Err(self.give_up("driver bug: a slot posted twice"));
        }
        let grefs = self.slots[index].grefs;
        let data_len = if matches!(op, Op::Read | Op::Write) {
            len
        } else {
            0
        };
        let Some(request) = self.ring.next_request() else {
            return Err(self.give_up("driver bug: more requests than ring slots"));
        };
        write_request(
            &request,
            operation,
            handle,
            index as u64,
            sector * scale,
            segments(&grefs, data_len),
        );
        self.slots[index].in_flight = Some(operation);
        Ok(())
    }

    fn kick(&mut self) {
        if self.ring.push_requests() {
            evtchn::notify(self.port);
        }
    }

    fn reap(&mut self, done: &mut dyn FnMut(usize, Result<(), Error>)) -> Result<(), Error> {
        if self.broken {
            return Err(Error::Broken);
        }
        loop {
            let response = match self.ring.next_response() {
                Ok(Some(slot)) => Response::read(&slot),
                Ok(None) => return Ok(()),
                Err(_) => return Err(self.give_up("the backend broke the ring's indices")),
            };
            let slots = &self.slots;
            match check_response(response, |i| slots.get(i).and_then(|s| s.in_flight)) {
                Verdict::Answered { slot, result } => {
                    self.slots[slot].in_flight = None;
                    done(
                        slot,
                        result.map_err(|status| Error::Device(i32::from(status))),
                    );
                }
                Verdict::Lie(why) => return Err(self.give_up(why)),
            }
        }
    }

    async fn wait(&mut self) {
        evtchn::wait(self.port).await;
    }

    fn broken(&self) -> bool {
        self.broken
    }
}

impl BlockDevice for Blkfront {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    async fn read(&mut self, sector: u64, buffer: &mut [u8]) -> Result<(), Error> {
        let geometry = self.geometry;
        self.engine
            .read(&mut self.device, &geometry, sector, buffer)
            .await
    }

    async fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), Error> {
        let geometry = self.geometry;
        self.engine
            .write(&mut self.device, &geometry, sector, data)
            .await
    }

    async fn flush(&mut self) -> Result<(), Error> {
        let geometry = self.geometry;
        let write_cache = self.device.flush.is_some();
        self.engine
            .flush(&mut self.device, &geometry, write_cache)
            .await
    }
}
