//! zedrouter's network cards: the uplink and one app-side card per port, as raw frame devices
//! (no TCP/IP stack), and waiting for any of them.
//!
//! Under Xen the launcher gives zedrouter vif 0 on the uplink bridge and vif `i` (1..) on the
//! network-instance bridge `lichenni<i>` (xen/launcher's manifest `network_instances`); each is
//! a netfront. Under QEMU's microvm there are exactly two virtio-net cards: the uplink and
//! one app side (see [`virtio_pair`]).

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;

use kernel::net::device::{EventSource, NetDevice};
use kernel::net::netfront::Netfront;
use kernel::virtio::net::{VirtioNet, DEVICE_ID};
use kernel::{error, Args};
use router::wire::Mac;

/// A card, whichever driver runs it.
pub type Card = Box<dyn NetDevice>;

/// An app-side card and the dom0 bridge it sits on (empty under microvm).
pub struct Port {
    /// The card.
    pub card: Card,
    /// The bridge apps join to reach it (launcher-api's `AppSpec::network`).
    pub bridge: String,
}

/// The dom0 bridge of vif `devid` (the launcher's naming, xen/launcher/src/manifest.rs).
pub fn bridge_of(devid: u32) -> String {
    format!("lichenni{devid}")
}

/// The cards: the uplink and the ports, or why not.
pub fn find(args: &Args) -> Result<(Card, Vec<Port>), String> {
    if kernel::platform::kind() == kernel::platform::Kind::Xen {
        netfronts()
    } else {
        let (uplink, app) = virtio_pair(args)?;
        Ok((
            Box::new(uplink),
            alloc::vec![Port {
                card: Box::new(app),
                bridge: String::new(),
            }],
        ))
    }
}

fn netfronts() -> Result<(Card, Vec<Port>), String> {
    let uplink = match Netfront::find(0) {
        Some(Ok(card)) => card,
        Some(Err(e)) => return Err(format!("uplink vif 0: {e}")),
        None => return Err("no vif 0 (the uplink): give zedrouter `network = \"bridge\"`".into()),
    };
    let mut ports = Vec::new();
    for devid in 1..=router::ports::MAX_PORTS as u32 {
        match Netfront::find(devid) {
            Some(Ok(card)) => ports.push(Port {
                card: Box::new(card),
                bridge: bridge_of(devid),
            }),
            Some(Err(e)) => return Err(format!("vif {devid}: {e}")),
            None => break,
        }
    }
    if ports.is_empty() {
        return Err("no vif 1 (a network-instance port): set `router = true` and `network_instances` in the manifest".into());
    }
    Ok((Box::new(uplink), ports))
}

fn parse_mac(text: &str) -> Option<Mac> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// The two virtio cards, the uplink first: the one whose MAC is `uplink_mac=`, else the one
/// in the highest virtio-mmio slot (under QEMU's microvm, the first card on QEMU's command
/// line: `scripts/run --hostfwd` before `--udp-nic`).
fn virtio_pair(args: &Args) -> Result<(VirtioNet, VirtioNet), String> {
    let mut found: Vec<_> = kernel::virtio::discover()
        .into_iter()
        .filter(|f| f.transport.device_id() == DEVICE_ID)
        .collect();
    if found.len() != 2 {
        return Err(format!(
            "found {} network cards, need 2 (uplink and app side)",
            found.len()
        ));
    }
    let second = found.pop().ok_or("no card")?;
    let first = found.pop().ok_or("no card")?;
    let a = VirtioNet::new(first).map_err(|e| format!("first card: {e}"))?;
    let b = VirtioNet::new(second).map_err(|e| format!("second card: {e}"))?;
    match args.get("uplink_mac") {
        None => Ok((b, a)),
        Some(text) => {
            let mac = parse_mac(text).ok_or("bad uplink_mac (expected xx:xx:xx:xx:xx:xx)")?;
            if a.mac_address() == mac {
                Ok((a, b))
            } else if b.mac_address() == mac {
                Ok((b, a))
            } else {
                error!("zedrouter: uplink_mac {text} is neither card's");
                Err("no card has the uplink_mac given".into())
            }
        }
    }
}

/// A future that completes when `source` fires.
pub fn event(source: EventSource) -> Pin<Box<dyn Future<Output = ()>>> {
    match source {
        EventSource::Vector(v) => Box::pin(kernel::irq::wait(v)),
        EventSource::XenPort(p) => Box::pin(kernel::platform::xen::evtchn::wait(p)),
    }
}
