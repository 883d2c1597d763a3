//! One task per device: reads its sources per autoEvent, builds EdgeX events, and executes
//! the commands addressed to it, all over the device's one Modbus connection.

use crate::broker::{Bus, Inbox};
use crate::modbus_client::ModbusClient;
use crate::stats::STATS;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering::Relaxed;
use device_modbus::mapping::Point;
use edgex::command::{self, CommandRequest, Method};
use edgex::{value, Device, DeviceProfile, DeviceResource, Event, Ids, Reading};
use kernel::{info, warn, Duration, Instant};
use modbus::Response;
use mqtt::sync::select;

/// A periodic read.
struct Schedule {
    source: String,
    every: Duration,
    next: Instant,
    on_change: bool,
    last: Option<Vec<String>>,
}

/// A device with its profile, points and connection.
pub struct Poller {
    device: Device,
    profile: Rc<DeviceProfile>,
    points: Vec<Point>,
    client: ModbusClient,
    inbox: Rc<Inbox>,
    bus: Rc<Bus>,
    ids: Ids,
    schedules: Vec<Schedule>,
}

/// Logs the first few failures of a kind, then stays quiet (the counters keep counting).
fn noisy(count: u64) -> bool {
    count < 5
}

impl Poller {
    /// Sets a device up; `interval_override` replaces every autoEvent's interval.
    pub fn new(
        device: Device,
        profile: Rc<DeviceProfile>,
        points: Vec<Point>,
        client: ModbusClient,
        inbox: Rc<Inbox>,
        bus: Rc<Bus>,
        interval_override: Option<Duration>,
    ) -> Poller {
        let now = kernel::now();
        let schedules = device
            .auto_events
            .iter()
            .map(|a| Schedule {
                source: a.source_name.clone(),
                every: interval_override.unwrap_or(Duration::from_micros(a.interval_us)),
                next: now,
                on_change: a.on_change,
                last: None,
            })
            .collect();
        let ids = Ids::new(kernel::arch::cpu::rdtsc() ^ (device.name.len() as u64) << 32);
        Poller {
            device,
            profile,
            points,
            client,
            inbox,
            bus,
            ids,
            schedules,
        }
    }

    /// Runs forever.
    pub async fn run(mut self) {
        let mut first = true;
        loop {
            loop {
                let request = self.inbox.queue.borrow_mut().pop_front();
                match request {
                    Some(r) => self.command(r).await,
                    None => break,
                }
            }
            let now = kernel::now();
            let Some(next) = self.schedules.iter().map(|s| s.next).min() else {
                self.inbox.signal.wait().await;
                continue;
            };
            if next > now {
                select(self.inbox.signal.wait(), kernel::sleep_until(next)).await;
                continue;
            }
            for i in 0..self.schedules.len() {
                if self.schedules[i].next > now {
                    continue;
                }
                let s = &mut self.schedules[i];
                s.next = s.next + s.every;
                if s.next < now {
                    s.next = now + s.every; // fell behind: skip, do not burst
                }
                let source = s.source.clone();
                let Some(event) = self.read(&source).await else {
                    continue;
                };
                let read_at = kernel::now();
                let values: Vec<String> = event.readings.iter().map(|r| r.value.clone()).collect();
                let s = &mut self.schedules[i];
                if s.on_change && s.last.as_ref() == Some(&values) {
                    continue;
                }
                s.last = Some(values);
                self.publish(&event, read_at);
                if first {
                    first = false;
                    info!(
                        "device-modbus: first event from {} at {} ms since boot",
                        self.device.name,
                        kernel::now().since_boot().as_millis()
                    );
                }
            }
        }
    }

    /// Publishes an event whose last reading arrived at `read_at` (the client measures its way
    /// to the broker's socket from then).
    fn publish(&self, event: &Event, read_at: kernel::Instant) {
        STATS.events.fetch_add(1, Relaxed);
        STATS
            .readings
            .fetch_add(event.readings.len() as u64, Relaxed);
        let topic = edgex::event::event_topic(
            &self.bus.service,
            &event.profile_name,
            &event.device_name,
            &event.source_name,
        );
        let envelope = edgex::Envelope::new(
            edgex::AddEventRequest::new(event.clone()),
            event.id.clone(),
            String::new(),
        );
        match serde_json::to_vec(&envelope) {
            Ok(payload) => self.bus.client.publish_since(topic, payload, read_at),
            Err(e) => warn!("device-modbus: encoding an event: {e}"),
        }
    }

    fn resources(&self, source: &str) -> Option<Vec<DeviceResource>> {
        self.profile
            .resources_of(source)
            .map(|rs| rs.into_iter().cloned().collect())
    }

    fn point(&self, name: &str) -> Option<&Point> {
        self.points.iter().find(|p| p.name == name)
    }

    /// Reads a resource or command; `None` (counted, logged) if any read fails.
    async fn read(&mut self, source: &str) -> Option<Event> {
        match self.try_read(source).await {
            Ok(event) => Some(event),
            Err(e) => {
                let n = STATS.read_errors.fetch_add(1, Relaxed);
                if noisy(n) {
                    warn!("device-modbus: {} {source}: {e}", self.device.name);
                }
                None
            }
        }
    }

    async fn try_read(&mut self, source: &str) -> Result<Event, String> {
        let resources = self
            .resources(source)
            .ok_or_else(|| alloc::format!("no resource or command `{source}`"))?;
        let origin = origin_ns();
        let mut readings = Vec::with_capacity(resources.len());
        for r in resources
            .iter()
            .filter(|r| r.properties.read_write.readable())
        {
            let point = self
                .point(&r.name)
                .ok_or_else(|| alloc::format!("`{}` has no Modbus point", r.name))?
                .clone();
            let response = self
                .client
                .transact(&point.read_request())
                .await
                .map_err(|e| alloc::format!("reading `{}`: {e}", r.name))?;
            let raw = point.decode(&response)?;
            let v = value::transform_read(&r.properties, raw)
                .map_err(|e| alloc::format!("`{}`: {e}", r.name))?;
            readings.push(Reading {
                id: self.ids.next_id(),
                origin,
                device_name: self.device.name.clone(),
                resource_name: r.name.clone(),
                profile_name: self.profile.name.clone(),
                value_type: r.properties.value_type.name().into(),
                units: r.properties.units.clone().unwrap_or_default(),
                value: value::format_value(r.properties.value_type, &v),
            });
        }
        if readings.is_empty() {
            return Err(alloc::format!("`{source}` has no readable resource"));
        }
        Ok(Event {
            api_version: edgex::event::API_VERSION.into(),
            id: self.ids.next_id(),
            device_name: self.device.name.clone(),
            profile_name: self.profile.name.clone(),
            source_name: source.into(),
            origin,
            readings,
        })
    }

    async fn command(&mut self, request: CommandRequest) {
        let result = self.execute(&request).await;
        let body = match &result {
            Ok(event) => {
                STATS.commands.fetch_add(1, Relaxed);
                command::response(
                    &request.correlation_id,
                    &request.request_id,
                    Ok(event.as_ref()),
                )
            }
            Err((code, message)) => {
                STATS.command_errors.fetch_add(1, Relaxed);
                warn!(
                    "device-modbus: command {} {}: {message}",
                    request.device, request.command
                );
                command::response(
                    &request.correlation_id,
                    &request.request_id,
                    Err((*code, message)),
                )
            }
        };
        info!(
            "device-modbus: command {:?} {}/{} -> {}",
            request.method,
            request.device,
            request.command,
            result.as_ref().map_or_else(|e| e.0, |_| 200)
        );
        let topic = edgex::event::response_topic(&self.bus.service, &request.request_id);
        self.bus.publish(topic, body);
    }

    async fn execute(&mut self, request: &CommandRequest) -> Result<Option<Event>, (u16, String)> {
        if self.device.locked {
            return Err((423, "the device is locked".into()));
        }
        let resources = self
            .resources(&request.command)
            .ok_or_else(|| (404, alloc::format!("no command `{}`", request.command)))?;
        let command_access = self.profile.command(&request.command).map(|c| c.read_write);
        match request.method {
            Method::Get => {
                if command_access.is_some_and(|a| !a.readable()) {
                    return Err((405, "the command is not readable".into()));
                }
                self.try_read(&request.command)
                    .await
                    .map(Some)
                    .map_err(|e| (500, e))
            }
            Method::Set => {
                if command_access.is_some_and(|a| !a.writable()) {
                    return Err((405, "the command is not writable".into()));
                }
                // Check every value before writing any.
                let mut writes = Vec::new();
                for (name, text) in &request.settings {
                    let r = resources.iter().find(|r| &r.name == name).ok_or_else(|| {
                        (
                            400,
                            alloc::format!("`{name}` is not part of `{}`", request.command),
                        )
                    })?;
                    if !r.properties.read_write.writable() {
                        return Err((405, alloc::format!("`{name}` is read-only")));
                    }
                    let raw = value::parse_write(&r.properties, text)
                        .map_err(|e| (400, alloc::format!("`{name}`: {e}")))?;
                    let point = self
                        .point(name)
                        .ok_or_else(|| (500, alloc::format!("`{name}` has no Modbus point")))?;
                    let write = point
                        .write_request(&raw)
                        .map_err(|e| (400, alloc::format!("`{name}`: {e}")))?;
                    writes.push((name.clone(), write));
                }
                for (name, write) in writes {
                    match self.client.transact(&write).await {
                        Ok(Response::Written) => {}
                        Ok(_) => return Err((500, alloc::format!("`{name}`: unexpected answer"))),
                        Err(e) => return Err((503, alloc::format!("writing `{name}`: {e}"))),
                    }
                }
                Ok(None)
            }
        }
    }
}

/// Nanoseconds since the Unix epoch (since boot if the wall clock is unknown).
fn origin_ns() -> i64 {
    match kernel::wall_clock() {
        Some(t) => t.0,
        None => kernel::now().since_boot().as_nanos() as i64,
    }
}

/// Logs counters every `every`.
pub async fn report(bus: Rc<Bus>, every: Duration) {
    loop {
        kernel::sleep(every).await;
        crate::stats::log(&bus.client);
    }
}
