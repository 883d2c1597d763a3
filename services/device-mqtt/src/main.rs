//! `device-mqtt`: EdgeX's MQTT device service as a lichen unikernel.
//!
//! Subscribes to `incoming/data/#` on the broker, where devices push their values
//! (`incoming/data/<device>/<source>`, see [`device_mqtt::ingest`]), and publishes each push as
//! an EdgeX event on `edgex/events/device/<service>/<profile>/<device>/<source>`. Pushes that
//! do not parse are counted and logged (the first few), never published. Devices are those of
//! the built-in device list with an `mqtt` protocol.
//!
//! Commands from core-command (`edgex/device/command/request/<service>/...`) go to the device
//! on its `CommandTopic` and its answer on `command/response/<uuid>` goes back as core-command's
//! response (see [`device_mqtt::command`]); a device that does not answer within
//! `command_timeout=` gets a 503.
//!
//! Command line: `broker=HOST:PORT` (default `10.0.2.2:1883`), `mqtt=4|5` (the broker's
//! protocol level, default 4: MQTT 3.1.1), `qos=0|1|2` (default 0), `service=` (default `device-mqtt`), `outbox=N`
//! (default 1000), `command_timeout=` (default `5s`), `stats=` (default `5s`).

#![no_std]
#![no_main]

extern crate alloc;

use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use device_mqtt::command::{self, Pending, Waiting};
use device_mqtt::ingest;
use edgex::command::CommandRequest;
use edgex::device::parse_duration_us;
use edgex::{AddEventRequest, Device, DeviceProfile, Envelope, Ids};
use kernel::{error, info, net, warn, Args, Duration};
use mqtt::client::{Client, Options};

kernel::service!(main);

const PROFILES: [&str; 1] = [include_str!("../../lib/edgex/profiles/mqtt-sensor.yaml")];
const DEVICES: &str = include_str!("../../lib/edgex/profiles/devices.yaml");

struct State {
    devices: Vec<(Device, Rc<DeviceProfile>)>,
    client: Rc<Client>,
    service: String,
    ids: RefCell<Ids>,
    events: Cell<u64>,
    rejected: Cell<u64>,
    waiting: RefCell<Waiting>,
    command_timeout: Duration,
    commands: Cell<u64>,
    command_errors: Cell<u64>,
}

fn now_ms() -> u64 {
    kernel::now().since_boot().as_millis() as u64
}

fn origin_ns() -> i64 {
    match kernel::wall_clock() {
        Some(t) => t.0,
        None => kernel::now().since_boot().as_nanos() as i64,
    }
}

impl State {
    /// A message from the broker: a push, a command request or a device's answer.
    fn received(&self, topic: &str, payload: &[u8]) {
        if topic.starts_with("edgex/device/command/request/") {
            self.request(topic, payload)
        } else if let Some(uuid) = command::response_uuid(topic) {
            self.device_answered(uuid, payload)
        } else {
            self.push(topic, payload)
        }
    }

    fn device(&self, name: &str) -> Option<&(Device, Rc<DeviceProfile>)> {
        self.devices.iter().find(|(d, _)| d.name == name)
    }

    /// Answers core-command's request `request` with `result`.
    fn respond(
        &self,
        request: &CommandRequest,
        result: Result<Option<&edgex::Event>, (u16, &str)>,
    ) {
        if result.is_err() {
            self.command_errors.set(self.command_errors.get() + 1);
        }
        let body = edgex::command::response(&request.correlation_id, &request.request_id, result);
        self.client.publish(
            edgex::event::response_topic(&self.service, &request.request_id),
            body,
        );
    }

    fn request(&self, topic: &str, payload: &[u8]) {
        self.commands.set(self.commands.get() + 1);
        let request = match edgex::command::parse(&self.service, topic, payload) {
            Ok(r) => r,
            Err((id, message)) => {
                self.command_errors.set(self.command_errors.get() + 1);
                warn!("device-mqtt: command on {topic}: {message}");
                if let Some(id) = id {
                    let body = edgex::command::response("", &id, Err((400, &message)));
                    self.client
                        .publish(edgex::event::response_topic(&self.service, &id), body);
                }
                return;
            }
        };
        let Some((device, profile)) = self.device(&request.device) else {
            let message = alloc::format!("device `{}` not found", request.device);
            return self.respond(&request, Err((404, &message)));
        };
        let uuid = self.ids.borrow_mut().next_id();
        let sent = command::to_device(device, profile, &request, &uuid).and_then(|message| {
            self.waiting.borrow_mut().add(Pending {
                uuid,
                request: request.clone(),
                deadline_ms: now_ms() + self.command_timeout.as_millis() as u64,
            })?;
            Ok(message)
        });
        match sent {
            Ok((topic, payload)) => self.client.publish(topic, payload),
            Err((code, message)) => self.respond(&request, Err((code, &message))),
        }
    }

    fn device_answered(&self, uuid: &str, payload: &[u8]) {
        let Some(pending) = self.waiting.borrow_mut().take(uuid) else {
            self.rejected.set(self.rejected.get() + 1);
            return;
        };
        let Some((device, profile)) = self.device(&pending.request.device) else {
            return;
        };
        let result = command::answer(
            device,
            profile,
            &pending,
            payload,
            &mut self.ids.borrow_mut(),
            origin_ns(),
        );
        match &result {
            Ok(event) => self.respond(&pending.request, Ok(event.as_ref())),
            Err((code, message)) => self.respond(&pending.request, Err((*code, message))),
        }
    }

    /// Answers 503 for requests no device answered in time.
    fn expire(&self) {
        let expired = self.waiting.borrow_mut().expired(now_ms());
        for pending in expired {
            self.respond(
                &pending.request,
                Err((503, "the device did not answer in time")),
            );
        }
    }

    fn push(&self, topic: &str, payload: &[u8]) {
        if let Err(e) = self.try_push(topic, payload) {
            let n = self.rejected.get();
            self.rejected.set(n + 1);
            if n < 5 {
                warn!("device-mqtt: {topic}: {e}");
            }
        }
    }

    fn try_push(&self, topic: &str, payload: &[u8]) -> Result<(), String> {
        let (name, source) = ingest::parse_topic(topic)?;
        let (device, profile) = self
            .devices
            .iter()
            .find(|(d, _)| d.name == name)
            .ok_or_else(|| alloc::format!("no device `{name}`"))?;
        if device.locked {
            return Err(alloc::format!("device `{name}` is locked"));
        }
        let event = ingest::event(
            device,
            profile,
            source,
            payload,
            &mut self.ids.borrow_mut(),
            origin_ns(),
        )?;
        let topic = edgex::event::event_topic(&self.service, &profile.name, &device.name, source);
        let envelope = Envelope::new(
            AddEventRequest::new(event),
            self.ids.borrow_mut().next_id(),
            String::new(),
        );
        let body = serde_json::to_vec(&envelope).map_err(|e| e.to_string())?;
        self.client.publish(topic, body);
        self.events.set(self.events.get() + 1);
        Ok(())
    }
}

async fn main(args: Args) -> i32 {
    let broker = args.get("broker").unwrap_or("10.0.2.2:1883");
    let Some((host, port)) = broker
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok().filter(|&p| p != 0)?)))
        .filter(|(h, _)| !h.is_empty())
    else {
        error!("device-mqtt: bad `broker={broker}`: expected HOST:PORT");
        return 2;
    };
    let version = match mqtt::Version::from_arg("mqtt", args.get("mqtt"), mqtt::Version::V311) {
        Ok(v) => v,
        Err(e) => {
            error!("device-mqtt: {e}");
            return 2;
        }
    };
    let qos = match mqtt::QoS::from_arg("qos", args.get("qos"), mqtt::QoS::AtMostOnce) {
        Ok(q) => q,
        Err(e) => {
            error!("device-mqtt: {e}");
            return 2;
        }
    };
    let timeout_text = args.get("command_timeout").unwrap_or("5s");
    let Some(command_timeout) = parse_duration_us(timeout_text)
        .filter(|&us| us > 0)
        .map(Duration::from_micros)
    else {
        error!("device-mqtt: bad `command_timeout={timeout_text}`");
        return 2;
    };
    let stats_text = args.get("stats").unwrap_or("5s");
    let Some(stats) = parse_duration_us(stats_text)
        .filter(|&us| us > 0)
        .map(Duration::from_micros)
    else {
        error!("device-mqtt: bad `stats={stats_text}`");
        return 2;
    };
    let outbox = match args.parse_value::<usize>("outbox") {
        Ok(v) => v.unwrap_or(1000).max(1),
        Err(e) => {
            error!("device-mqtt: {e}");
            return 2;
        }
    };
    let mut profiles = Vec::new();
    for text in PROFILES {
        match DeviceProfile::parse(text) {
            Ok(p) => profiles.push(Rc::new(p)),
            Err(e) => {
                error!("device-mqtt: profile: {e}");
                return 2;
            }
        }
    }
    let mut devices = Vec::new();
    match Device::parse_list(DEVICES) {
        Ok(list) => {
            for d in list
                .into_iter()
                .filter(|d| d.protocols.iter().any(|(p, _)| p == "mqtt"))
            {
                match profiles.iter().find(|p| p.name == d.profile_name) {
                    Some(p) => devices.push((d, p.clone())),
                    None => {
                        error!(
                            "device-mqtt: device {}: no profile `{}`",
                            d.name, d.profile_name
                        );
                        return 2;
                    }
                }
            }
        }
        Err(e) => {
            error!("device-mqtt: devices.yaml: {e}");
            return 2;
        }
    }
    if let Err(e) = net::start(&args) {
        error!("device-mqtt: {e}");
        return 1;
    }
    if let Err(e) = net::wait_for_ipv4().await {
        error!("device-mqtt: {e}");
        return 1;
    }
    let state = Rc::new(State {
        devices,
        client: Client::new(outbox),
        service: args.get("service").unwrap_or("device-mqtt").to_string(),
        ids: RefCell::new(Ids::new(kernel::arch::cpu::rdtsc())),
        events: Cell::new(0),
        rejected: Cell::new(0),
        waiting: RefCell::new(Waiting::new()),
        command_timeout,
        commands: Cell::new(0),
        command_errors: Cell::new(0),
    });
    info!(
        "device-mqtt: {} devices, broker {host}:{port}",
        state.devices.len()
    );
    let receiver = state.clone();
    kernel::spawn(mqtt::client::run(
        state.client.clone(),
        Options {
            host,
            port,
            client_id: state.service.clone(),
            subscriptions: alloc::vec![
                ingest::INCOMING.into(),
                edgex::event::command_request_filter(&state.service),
                command::RESPONSES.into(),
            ],
            keep_alive_s: 30,
            max_packet: 64 * 1024,
            version,
            qos,
            ..Options::default()
        },
        move |p| receiver.received(&p.topic, &p.payload),
    ));
    let expiring = state.clone();
    kernel::spawn(async move {
        loop {
            kernel::sleep(Duration::from_millis(100)).await;
            expiring.expire();
        }
    });
    loop {
        kernel::sleep(stats).await;
        let (published, queued, dropped, connects, failures) = state.client.counters();
        info!(
            "device-mqtt: stats events {} rejected {} commands {} command_errors {} waiting {} published {} queued {} dropped {} broker_connects {} broker_failures {} heap_used {}",
            state.events.get(),
            state.rejected.get(),
            state.commands.get(),
            state.command_errors.get(),
            state.waiting.borrow().len(),
            published,
            queued,
            dropped,
            connects,
            failures,
            kernel::mem::heap_used()
        );
    }
}
