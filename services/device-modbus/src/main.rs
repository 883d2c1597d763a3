//! `device-modbus`: EdgeX's Modbus device service as a lichen unikernel.
//!
//! Loads the device profiles and the device list built into the image (EdgeX's YAML, from
//! `services/lib/edgex/profiles/`), connects to each device over Modbus TCP and to the
//! broker of EdgeX's message bus (MQTT 3.1.1), then:
//!
//! - reads each autoEvent's source at its interval and publishes an EdgeX event on
//!   `edgex/events/device/<service>/<profile>/<device>/<source>` (`onChange` events only when a
//!   value changed);
//! - executes commands from `edgex/device/command/request/<service>/<device>/<command>/<get|set>`
//!   and answers on `edgex/response/<service>/<requestID>`.
//!
//! Modbus servers that answer with exceptions, short or mismatched frames or nothing are
//! counted (`device-modbus: stats ...` every `stats=` period) and polling goes on; while the
//! broker is away events wait in a bounded outbox that drops the oldest. The command line is
//! in [`device_modbus::config`]. Exit status 2: a bad command line, profile or device file.

#![no_std]
#![no_main]

extern crate alloc;

mod broker;
mod modbus_client;
mod poller;
mod stats;

use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::net::SocketAddr;
use device_modbus::config::Config;
use device_modbus::mapping::Point;
use edgex::{Device, DeviceProfile};
use kernel::{error, info, net, Args, Duration};

kernel::service!(main);

/// Profiles built into the image.
const PROFILES: [(&str, &str); 2] = [
    (
        "modbus-thermostat.yaml",
        include_str!("../../lib/edgex/profiles/modbus-thermostat.yaml"),
    ),
    (
        "modbus-swap.yaml",
        include_str!("../../lib/edgex/profiles/modbus-swap.yaml"),
    ),
];
/// The device list built into the image.
const DEVICES: &str = include_str!("../../lib/edgex/profiles/devices.yaml");

async fn main(args: Args) -> i32 {
    let config = match Config::from_args(&args) {
        Ok(c) => c,
        Err(e) => {
            error!("device-modbus: {e}");
            return 2;
        }
    };
    let mut profiles = Vec::new();
    for (file, text) in PROFILES {
        match DeviceProfile::parse(text) {
            Ok(p) => profiles.push(Rc::new(p)),
            Err(e) => {
                error!("device-modbus: {file}: {e}");
                return 2;
            }
        }
    }
    let devices = match Device::parse_list(DEVICES) {
        Ok(d) => d,
        Err(e) => {
            error!("device-modbus: devices.yaml: {e}");
            return 2;
        }
    };
    if let Err(e) = net::start(&args) {
        error!("device-modbus: {e}");
        return 1;
    }
    match net::wait_for_ipv4().await {
        Ok((address, prefix)) => info!("device-modbus: ipv4 address {address}/{prefix}"),
        Err(e) => {
            error!("device-modbus: no IPv4 address: {e}");
            return 1;
        }
    }
    let mut pollers = Vec::new();
    let mut inboxes = Vec::new();
    for device in devices
        .into_iter()
        .filter(|d| d.protocols.iter().any(|(p, _)| p == "modbus-tcp"))
    {
        match setup(&config, &profiles, &device).await {
            Ok((profile, points, client)) => {
                let inbox = Rc::new(broker::Inbox {
                    device: device.name.clone(),
                    queue: RefCell::new(Default::default()),
                    signal: Default::default(),
                });
                inboxes.push(inbox.clone());
                pollers.push((device, profile, points, client, inbox));
            }
            Err(e) => {
                error!("device-modbus: device {}: {e}", device.name);
                return 2;
            }
        }
    }
    let bus = Rc::new(broker::Bus {
        client: mqtt::client::Client::new(config.outbox),
        inboxes,
        service: config.service.clone(),
    });
    info!(
        "device-modbus: {} devices, broker {}:{}",
        pollers.len(),
        config.broker.host,
        config.broker.port
    );
    let options = mqtt::client::Options {
        host: config.broker.host.clone(),
        port: config.broker.port,
        client_id: config.service.clone(),
        subscriptions: alloc::vec![edgex::event::command_request_filter(&config.service)],
        keep_alive_s: 30,
        max_packet: 64 * 1024,
        version: config.mqtt,
        qos: config.qos,
        ..mqtt::client::Options::default()
    };
    let receiver = bus.clone();
    kernel::spawn(mqtt::client::run(bus.client.clone(), options, move |p| {
        receiver.received(p)
    }));
    kernel::spawn(poller::report(
        bus.clone(),
        Duration::from_micros(config.stats_us),
    ));
    let interval = config.interval_us.map(Duration::from_micros);
    for (device, profile, points, client, inbox) in pollers {
        let p = poller::Poller::new(
            device,
            profile,
            points,
            client,
            inbox,
            bus.clone(),
            interval,
        );
        kernel::spawn(p.run());
    }
    loop {
        kernel::sleep(Duration::from_secs(3600)).await;
    }
}

/// Finds a device's profile, maps its resources to Modbus points and makes its client.
async fn setup(
    config: &Config,
    profiles: &[Rc<DeviceProfile>],
    device: &Device,
) -> Result<(Rc<DeviceProfile>, Vec<Point>, modbus_client::ModbusClient), String> {
    let profile = profiles
        .iter()
        .find(|p| p.name == device.profile_name)
        .ok_or_else(|| alloc::format!("no profile named `{}`", device.profile_name))?
        .clone();
    let points = profile
        .device_resources
        .iter()
        .map(Point::of)
        .collect::<Result<Vec<_>, _>>()?;
    for a in &device.auto_events {
        if profile.resources_of(&a.source_name).is_none() {
            return Err(alloc::format!(
                "autoEvent source `{}` is not in the profile",
                a.source_name
            ));
        }
    }
    let prop = |key: &str| device.protocol("modbus-tcp", key);
    let (host, port) = match &config.modbus {
        Some(e) => (e.host.clone(), e.port),
        None => (
            String::from(prop("Address").unwrap_or("")),
            prop("Port")
                .and_then(|p| p.parse().ok())
                .ok_or("modbus-tcp `Port` missing or not a port")?,
        ),
    };
    let unit: u8 = prop("UnitID")
        .unwrap_or("1")
        .parse()
        .map_err(|_| "modbus-tcp `UnitID` is not 0..=255")?;
    let timeout_s: u64 = prop("Timeout")
        .unwrap_or("5")
        .parse()
        .map_err(|_| "modbus-tcp `Timeout` is not whole seconds")?;
    let address = match kernel::net::resolve(&host).await {
        Ok(a) if !a.is_empty() => a[0],
        _ => return Err(alloc::format!("cannot resolve `{host}`")),
    };
    let timeout = match config.timeout_us {
        Some(us) => Duration::from_micros(us),
        None => Duration::from_secs(timeout_s.max(1)),
    };
    let client = modbus_client::ModbusClient::new(SocketAddr::new(address, port), unit, timeout);
    Ok((profile, points, client))
}
