//! `device-mqtt`: EdgeX's MQTT device service as a lichen unikernel.
//!
//! Subscribes to `incoming/data/#` on the broker, where devices push their values
//! (`incoming/data/<device>/<source>`, see [`device_mqtt::ingest`]), and publishes each push as
//! an EdgeX event on `edgex/events/device/<service>/<profile>/<device>/<source>`. Pushes that
//! do not parse are counted and logged (the first few), never published. Devices are those of
//! the built-in device list with an `mqtt` protocol.
//!
//! Command line: `broker=HOST:PORT` (default `10.0.2.2:1883`), `service=` (default
//! `device-mqtt`), `outbox=N` (default 1000), `stats=` (default `5s`).

#![no_std]
#![no_main]

extern crate alloc;

use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use device_mqtt::ingest;
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
}

fn origin_ns() -> i64 {
    match kernel::wall_clock() {
        Some(t) => t.0,
        None => kernel::now().since_boot().as_nanos() as i64,
    }
}

impl State {
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
            subscriptions: alloc::vec![ingest::INCOMING.into()],
            keep_alive_s: 30,
            max_packet: 64 * 1024,
            version,
            ..Options::default()
        },
        move |p| receiver.push(&p.topic, &p.payload),
    ));
    loop {
        kernel::sleep(stats).await;
        let (published, queued, dropped, connects, failures) = state.client.counters();
        info!(
            "device-mqtt: stats events {} rejected {} published {} queued {} dropped {} broker_connects {} broker_failures {} heap_used {}",
            state.events.get(),
            state.rejected.get(),
            published,
            queued,
            dropped,
            connects,
            failures,
            kernel::mem::heap_used()
        );
    }
}
