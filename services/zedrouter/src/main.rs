//! `zedrouter`: one local network instance as a unikernel with two network cards, an app side
//! and an uplink, forwarding raw frames between them through `router` (DHCP server, DNS
//! forwarder, source NAT, port maps, ACLs, flow records). No TCP/IP stack runs here: frames go
//! from one card's receive ring through the router into the other card's transmit ring.
//!
//! Settings (command line): those of `router::settings` (subnet, DHCP range, uplink address and
//! gateway, DNS, NAT size and ports, `acl`), plus `uplink_mac=MAC` to say which card is the
//! uplink (default: the one in the highest virtio-mmio slot, which under QEMU's microvm is the
//! first card on QEMU's command line: `scripts/run --hostfwd` before `--udp-nic`), and `flowlog_s=N` (default 10): how often
//! flow records, new DNS answers and counters are logged (zedagent will take them from a bus
//! topic instead; see docs/router.md).

#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::future::{poll_fn, Future};
use core::pin::pin;
use core::task::Poll;

use kernel::net::device::{MacDisplay, NetDevice};
use kernel::virtio::net::{VirtioNet, DEVICE_ID};
use kernel::{error, info, warn, Args, Duration};
use router::router::{Side, Verdict};
use router::wire::{Mac, PROTO_TCP, PROTO_UDP};
use router::Router;

kernel::service!(main);

/// Frames taken from one card before looking at the other (fairness between the sides).
const BATCH: usize = 64;
/// How often expired connections are reclaimed.
const TICK: Duration = Duration::from_millis(500);

fn now_ms() -> u64 {
    kernel::now().as_nanos() / 1_000_000
}

fn parse_mac(text: &str) -> Option<Mac> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// The two cards: the uplink first.
fn cards(args: &Args) -> Result<(VirtioNet, VirtioNet), &'static str> {
    let mut found: Vec<_> = kernel::virtio::discover()
        .into_iter()
        .filter(|f| f.transport.device_id() == DEVICE_ID)
        .collect();
    if found.len() != 2 {
        error!(
            "zedrouter: found {} network cards, need 2 (uplink and app side)",
            found.len()
        );
        return Err("need two network cards");
    }
    let second = found.pop().ok_or("no card")?;
    let first = found.pop().ok_or("no card")?;
    let a = VirtioNet::new(first).map_err(|e| {
        error!("zedrouter: first card: {e}");
        "card failed"
    })?;
    let b = VirtioNet::new(second).map_err(|e| {
        error!("zedrouter: second card: {e}");
        "card failed"
    })?;
    match args.get("uplink_mac") {
        // QEMU's microvm gives the first card on its command line the highest slot:
        // discovery (by slot) finds it last.
        None => Ok((b, a)),
        Some(text) => {
            let mac = parse_mac(text).ok_or("bad uplink_mac (expected xx:xx:xx:xx:xx:xx)")?;
            if a.mac_address() == mac {
                Ok((a, b))
            } else if b.mac_address() == mac {
                Ok((b, a))
            } else {
                Err("no card has the uplink_mac given")
            }
        }
    }
}

async fn main(args: Args) -> i32 {
    let (mut uplink, mut app) = match cards(&args) {
        Ok(c) => c,
        Err(e) => {
            error!("zedrouter: {e}");
            return 2;
        }
    };
    let mut seed = [0u8; 16];
    if kernel::random::fill(&mut seed).is_err() {
        warn!("zedrouter: no entropy: the connection table's hash is not keyed at random");
    }
    let seed = [
        u64::from_le_bytes(seed[..8].try_into().unwrap_or_default()),
        u64::from_le_bytes(seed[8..].try_into().unwrap_or_default()),
    ];
    let config = match router::settings::config_from(
        |k| args.get(k),
        app.mac_address(),
        uplink.mac_address(),
        seed,
    ) {
        Ok(c) => c,
        Err(e) => {
            error!("zedrouter: {e}");
            return 2;
        }
    };
    let mut router = match Router::new(config) {
        Ok(r) => r,
        Err(e) => {
            error!("zedrouter: {e}");
            return 2;
        }
    };
    let flowlog = Duration::from_secs(match args.parse_value::<u64>("flowlog_s") {
        Ok(v) => v.unwrap_or(10).max(1),
        Err(e) => {
            error!("zedrouter: {e}");
            return 2;
        }
    });
    let c = router.config();
    info!(
        "zedrouter: uplink {} {}/{} via {}, app side {} {}/{} (dhcp {}-{}, dns {}), {} rules, {} connections",
        MacDisplay(c.uplink_mac),
        c.uplink_ip,
        c.uplink_prefix,
        c.uplink_gateway,
        MacDisplay(c.app_mac),
        c.gateway,
        c.prefix,
        c.dhcp_range.0,
        c.dhcp_range.1,
        c.dns_upstream.map_or(alloc::string::String::from("off"), |d| alloc::format!("{d}")),
        c.rules.len(),
        c.nat_capacity,
    );
    if c.rules.is_empty() {
        warn!("zedrouter: no acl: every connection is denied (EVE's default)");
    }
    info!(
        "zedrouter: heap in use {} KiB",
        kernel::mem::heap_used() / 1024
    );
    router.start(now_ms());
    run(&mut router, &mut uplink, &mut app, flowlog).await;
    0
}

/// Moves frames from `from` through the router; returns how many were taken.
fn drain(
    router: &mut Router,
    side: Side,
    from: &mut VirtioNet,
    to: &mut VirtioNet,
    stats: &mut Stats,
) -> usize {
    let now = now_ms();
    let mut taken = 0;
    while taken < BATCH {
        let Some(mut frame) = from.receive() else {
            break;
        };
        taken += 1;
        let len = frame.len();
        let verdict = router.handle(side, frame.bytes_mut(len), now);
        if let Verdict::Forward(_, out_len) = verdict {
            match to.transmit_buffer() {
                Some(mut tx) => {
                    tx.bytes_mut(out_len)
                        .copy_from_slice(&frame.bytes()[..out_len]);
                    to.send(tx);
                }
                None => stats.tx_full += 1,
            }
        }
        from.recycle(frame);
    }
    taken
}

#[derive(Default)]
struct Stats {
    tx_full: u64,
    acks_logged: u64,
}

fn send_output(
    router: &mut Router,
    uplink: &mut VirtioNet,
    app: &mut VirtioNet,
    stats: &mut Stats,
) {
    for (side, frame) in router.take_output() {
        let card = match side {
            Side::Uplink => &mut *uplink,
            Side::App => &mut *app,
        };
        match card.transmit_buffer() {
            Some(mut tx) => {
                let n = frame.len().min(tx.max_len());
                tx.bytes_mut(n).copy_from_slice(&frame[..n]);
                card.send(tx);
            }
            None => stats.tx_full += 1,
        }
    }
}

fn protocol_name(p: u8) -> &'static str {
    match p {
        PROTO_TCP => "tcp",
        PROTO_UDP => "udp",
        1 => "icmp",
        _ => "ip",
    }
}

/// Logs new leases, flow records, DNS answers and counters (the flow log until zedagent
/// takes it from the bus).
fn report(router: &mut Router, stats: &mut Stats) {
    for f in router.take_flows() {
        info!(
            "zedrouter: flow {} {}:{} -> {}:{} {} acl {} {:?} tx {}/{} rx {}/{} ms {}..{}",
            protocol_name(f.protocol),
            f.src.ip,
            f.src.port,
            f.dst.ip,
            f.dst.port,
            if f.inbound { "in" } else { "out" },
            f.acl_id,
            f.action,
            f.counters.tx_packets,
            f.counters.tx_bytes,
            f.counters.rx_packets,
            f.counters.rx_bytes,
            f.start_ms,
            f.end_ms,
        );
    }
    for r in router.dns().take_new() {
        info!("zedrouter: dns {} -> {:?}", r.name, r.addrs);
    }
    let c = router.counters().clone();
    let drops: Vec<_> = router.drops().filter(|d| d.1 > 0).collect();
    info!(
        "zedrouter: counters to_uplink {} to_app {} consumed {} connections {} tx_full {} flows_lost {} heap {} KiB drops {:?}",
        c.to_uplink,
        c.to_app,
        c.consumed,
        router.nat().len(),
        stats.tx_full,
        router.flows_lost(),
        kernel::mem::heap_used() / 1024,
        drops,
    );
}

async fn run(router: &mut Router, uplink: &mut VirtioNet, app: &mut VirtioNet, flowlog: Duration) {
    let (uv, av) = (uplink.interrupt_vector(), app.interrupt_vector());
    let mut stats = Stats::default();
    let mut next_tick = kernel::now().saturating_add(TICK);
    let mut next_report = kernel::now().saturating_add(flowlog);
    loop {
        uplink.handle_interrupt();
        app.handle_interrupt();
        let mut busy = false;
        busy |= drain(router, Side::Uplink, uplink, app, &mut stats) == BATCH;
        busy |= drain(router, Side::App, app, uplink, &mut stats) == BATCH;
        send_output(router, uplink, app, &mut stats);
        uplink.flush();
        app.flush();
        let acks = router.counters().dhcp_acks;
        if acks != stats.acks_logged {
            stats.acks_logged = acks;
            for l in router
                .dhcp()
                .leases()
                .iter()
                .filter(|l| l.expires_ms > now_ms())
            {
                info!("zedrouter: dhcp lease {} -> {}", l.ip, MacDisplay(l.mac));
            }
        }
        let now = kernel::now();
        if now >= next_tick {
            router.tick(now_ms());
            next_tick = now.saturating_add(TICK);
        }
        if now >= next_report {
            report(router, &mut stats);
            next_report = now.saturating_add(flowlog);
        }
        if busy {
            kernel::yield_now().await;
            continue;
        }
        let mut up_irq = pin!(kernel::irq::wait(uv));
        let mut app_irq = pin!(kernel::irq::wait(av));
        let mut timer = pin!(kernel::sleep_until(next_tick.min(next_report)));
        poll_fn(|cx| {
            let a = up_irq.as_mut().poll(cx).is_ready();
            let b = app_irq.as_mut().poll(cx).is_ready();
            let t = timer.as_mut().poll(cx).is_ready();
            if a || b || t {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}
