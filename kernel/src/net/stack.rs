//! The network stack: one smoltcp interface on one card, driven by one task.
//!
//! The stack task sleeps until the card's interrupt fires, smoltcp's next deadline (a
//! retransmission, a delayed ACK, a DHCP renewal) comes, or a socket operation kicks it
//! because it queued something to send. Then it takes in what arrived (a bounded batch, so
//! that other tasks get their turn under load), sends what is queued, applies DHCP events,
//! refills TCP listeners' pools of listening sockets and tells the card. Socket futures are
//! woken through smoltcp's socket wakers, never by polling.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;
use core::future::{poll_fn, Future};
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::pin::pin;
use core::task::{Poll, Waker};

use smoltcp::iface::{
    Config, Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet,
};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::{dhcpv4, dns, tcp};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Cidr};

use super::config::{link_local_ipv6, Ipv4Mode, NetConfig};
use super::device::{DeviceCounters, EventSource, Frame, NetDevice};
use super::dns_cache::DnsCache;
use super::tcp_options::TcpOptions;
#[cfg(target_os = "none")]
use crate::cmdline::Args;
use crate::time::{self, Duration, Instant};

/// Packets taken in per round before the stack task lets other tasks run.
const INGRESS_BUDGET: usize = 128;
/// Rounds of egress per wake-up (each sends what every socket has ready).
const EGRESS_BUDGET: usize = 64;
/// Most resolvers smoltcp's DNS socket is built for (its `dns-max-server-count` default).
const MAX_DNS_SERVERS: usize = 1;
/// Names kept by the resolver cache, and for how long.
const DNS_CACHE_NAMES: usize = 64;
const DNS_CACHE_TTL: Duration = Duration::from_secs(60);

/// Why the stack could not start.
#[derive(Debug)]
pub enum StartError {
    /// The stack is already running.
    AlreadyStarted,
    /// No network card was found.
    NoDevice,
    /// The card could not be brought up.
    #[cfg(target_os = "none")]
    Device(crate::virtio::mmio::SetupError),
    /// The Xen network card (netfront) could not be set up.
    Netfront(super::netfront::NetfrontError),
    /// The command line's network settings are wrong.
    Config(super::config::ConfigError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::AlreadyStarted => f.write_str("the network stack is already running"),
            StartError::NoDevice => f.write_str(
                "no network card (under QEMU: scripts/run <image> --hostfwd HOST:GUEST adds one)",
            ),
            #[cfg(target_os = "none")]
            StartError::Device(e) => write!(f, "network card: {e}"),
            StartError::Netfront(e) => write!(f, "xen network card: {e}"),
            StartError::Config(e) => write!(f, "network configuration: {e}"),
        }
    }
}

/// The error of an operation that needs the stack before it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotStarted;

impl fmt::Display for NotStarted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the network stack is not running (kernel::net::start)")
    }
}

/// Counters the stack keeps (the card's are in [`NetStatus::device`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackCounters {
    /// TCP connections handed to `accept`.
    pub tcp_accepted: u64,
    /// TCP connections opened by `connect`.
    pub tcp_connected: u64,
    /// DHCP leases obtained (renewals that change nothing are not counted).
    pub dhcp_leases: u64,
    /// Names resolved from the network.
    pub dns_queries: u64,
    /// Names answered from the cache.
    pub dns_cache_hits: u64,
    /// Rounds of the stack task.
    pub polls: u64,
    /// Rounds started by the card's interrupt.
    pub interrupts: u64,
    /// Rounds started by a smoltcp deadline (timers: retransmission, delayed ACK, DHCP).
    pub deadlines: u64,
    /// Rounds started by a socket operation with something to send.
    pub kicks: u64,
}

/// A snapshot of the stack's state.
#[derive(Clone, Debug)]
pub struct NetStatus {
    /// The card's MAC address.
    pub mac: [u8; 6],
    /// IPv4 address and prefix length, once configured.
    pub ipv4: Option<(Ipv4Addr, u8)>,
    /// IPv4 default gateway.
    pub gateway: Option<Ipv4Addr>,
    /// IPv6 link-local address, if enabled.
    pub ipv6_link_local: Option<Ipv6Addr>,
    /// Resolvers in use.
    pub dns_servers: Vec<IpAddr>,
    /// Sockets open (TCP, UDP, DHCP, DNS), listening ones included.
    pub sockets: usize,
    /// The card's counters.
    pub device: DeviceCounters,
    /// The stack's counters.
    pub stack: StackCounters,
}

/// A TCP listener's state inside the stack: sockets waiting for a SYN or in their handshake,
/// and established connections not yet accepted.
pub(super) struct Listener {
    pub(super) port: u16,
    pub(super) options: TcpOptions,
    /// Most connections pending + ready at once (beyond it, SYNs are refused).
    pub(super) backlog: usize,
    /// Sockets in Listen or SynReceived.
    pub(super) pending: Vec<SocketHandle>,
    /// Connections past the handshake, oldest first.
    pub(super) ready: VecDeque<SocketHandle>,
    /// The task waiting in `accept`.
    pub(super) waker: Option<Waker>,
}

/// How many sockets a listener keeps in Listen state (each holds its buffers).
const LISTEN_POOL: usize = 8;

/// The running stack.
pub(super) struct Stack {
    pub(super) iface: Interface,
    pub(super) sockets: SocketSet<'static>,
    device: Box<dyn NetDevice>,
    config: NetConfig,
    dhcp: Option<SocketHandle>,
    pub(super) dns: SocketHandle,
    pub(super) dns_cache: DnsCache,
    pub(super) listeners: Vec<Option<Listener>>,
    /// Sockets whose owner let go, closing gracefully; removed once closed.
    closing: Vec<SocketHandle>,
    /// Set by socket operations that queued output; cleared by the stack task.
    kicked: bool,
    stack_waker: Option<Waker>,
    config_waiters: Vec<Waker>,
    ipv4: Option<Ipv4Cidr>,
    gateway: Option<Ipv4Addr>,
    dns_servers: Vec<IpAddr>,
    next_ephemeral_port: u16,
    pub(super) counters: StackCounters,
}

/// The stack, reachable from tasks (never from interrupt handlers).
struct StackCell(RefCell<Option<Stack>>);
// SAFETY: lichen runs one CPU and only task code (never an interrupt handler) touches the
// cell, so it is never accessed from two contexts at once; RefCell catches re-entry.
unsafe impl Sync for StackCell {}

static STACK: StackCell = StackCell(RefCell::new(None));

/// Runs `f` on the stack.
pub(super) fn with_stack<R>(f: impl FnOnce(&mut Stack) -> R) -> Result<R, NotStarted> {
    let mut cell = STACK.0.borrow_mut();
    cell.as_mut().map(f).ok_or(NotStarted)
}

/// Stops the stack and forgets it (host unit tests: each test starts afresh).
#[cfg(all(test, not(target_os = "none")))]
pub(super) fn reset() {
    let stack = STACK.0.borrow_mut().take();
    drop(stack);
}

/// smoltcp's clock: microseconds since boot.
pub(super) fn smol_now() -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros((time::now().as_nanos() / 1000) as i64)
}

fn kernel_instant(at: smoltcp::time::Instant) -> Instant {
    Instant::from_nanos(at.total_micros().max(0) as u64 * 1000)
}

/// Starts the stack on the first network card, configured from the command line (see
/// [`super::config`]); returns the card's MAC address.
#[cfg(target_os = "none")]
pub fn start(args: &Args) -> Result<[u8; 6], StartError> {
    let config = NetConfig::from_args(args).map_err(StartError::Config)?;
    if STACK.0.borrow().is_some() {
        return Err(StartError::AlreadyStarted);
    }
    // Under Xen the card is a netfront (device/vif/0 in xenstore); elsewhere virtio-net.
    if crate::platform::kind() == crate::platform::Kind::Xen {
        let card = super::netfront::Netfront::find_first()
            .ok_or(StartError::NoDevice)?
            .map_err(StartError::Netfront)?;
        return start_with_device(Box::new(card), config);
    }
    let card = crate::virtio::net::VirtioNet::find_first()
        .ok_or(StartError::NoDevice)?
        .map_err(StartError::Device)?;
    start_with_device(Box::new(card), config)
}

/// The seed of smoltcp's generator (TCP initial sequence numbers, ephemeral ports, DHCP
/// transaction ids): RDRAND's, so that an off-path attacker cannot guess them. Without RDRAND
/// the clock and the MAC address still make nodes differ, but the seed is guessable: that is
/// logged.
fn random_seed(mac: [u8; 6]) -> u64 {
    let weak = time::now().as_nanos()
        ^ u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0x4c, 0x69]);
    #[cfg(target_os = "none")]
    match crate::random::word() {
        Ok(word) => return word ^ weak,
        Err(e) => crate::warn!("net: {e}: TCP sequence numbers and ports are guessable"),
    }
    weak
}

/// Starts the stack on `device` with `config`; returns the card's MAC address.
pub fn start_with_device(
    mut device: Box<dyn NetDevice>,
    config: NetConfig,
) -> Result<[u8; 6], StartError> {
    if STACK.0.borrow().is_some() {
        return Err(StartError::AlreadyStarted);
    }
    let mac = device.mac_address();
    let mut iface_config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    iface_config.random_seed = random_seed(mac);
    let mut iface = {
        let mut adapter = Adapter::new(device.as_mut());
        Interface::new(iface_config, &mut adapter, smol_now())
    };
    let mut sockets = SocketSet::new(Vec::new());
    let mut ipv4 = None;
    let mut gateway = None;
    iface.update_ip_addrs(|addrs| {
        if config.ipv6_link_local {
            let ll = IpCidr::new(IpAddress::Ipv6(link_local_ipv6(mac)), 64);
            let _ = addrs.push(ll);
        }
        if let Ipv4Mode::Static(s) = config.ipv4 {
            let cidr = Ipv4Cidr::new(s.address, s.prefix_len);
            let _ = addrs.push(IpCidr::Ipv4(cidr));
            ipv4 = Some(cidr);
        }
    });
    if let Ipv4Mode::Static(s) = config.ipv4 {
        if let Some(gw) = s.gateway {
            let _ = iface.routes_mut().add_default_ipv4_route(gw);
            gateway = Some(gw);
        }
    }
    let dhcp = (config.ipv4 == Ipv4Mode::Dhcp).then(|| sockets.add(dhcpv4::Socket::new()));
    let dns_servers = config.dns_servers.clone();
    let dns = sockets.add(dns::Socket::new(&resolver_list(&dns_servers), Vec::new()));
    crate::info!(
        "net: up on {}, ipv4 {}, ipv6 link-local {}",
        super::device::MacDisplay(mac),
        match config.ipv4 {
            Ipv4Mode::Dhcp => alloc::string::String::from("by dhcp"),
            Ipv4Mode::Static(s) =>
                alloc::format!("{}/{} gw {:?}", s.address, s.prefix_len, s.gateway),
            Ipv4Mode::Off => alloc::string::String::from("off"),
        },
        if config.ipv6_link_local {
            alloc::format!("{}", link_local_ipv6(mac))
        } else {
            alloc::string::String::from("off")
        }
    );
    let source = device.event_source();
    *STACK.0.borrow_mut() = Some(Stack {
        iface,
        sockets,
        device,
        config,
        dhcp,
        dns,
        dns_cache: DnsCache::new(DNS_CACHE_NAMES, DNS_CACHE_TTL),
        listeners: Vec::new(),
        closing: Vec::new(),
        kicked: false,
        stack_waker: None,
        config_waiters: Vec::new(),
        ipv4,
        gateway,
        dns_servers,
        next_ephemeral_port: 49152 + (time::now().as_nanos() % 8192) as u16,
        counters: StackCounters::default(),
    });
    crate::spawn(run(source));
    Ok(mac)
}

fn resolver_list(servers: &[IpAddr]) -> Vec<IpAddress> {
    servers
        .iter()
        .take(MAX_DNS_SERVERS)
        .map(|&a| IpAddress::from(a))
        .collect()
}

/// What ended the stack task's wait.
enum Wake {
    Interrupt,
    Deadline,
    Kick,
}

/// Waits for the card's next event.
async fn wait_event(source: EventSource) {
    match source {
        EventSource::Vector(vector) => crate::irq::wait(vector).await,
        #[cfg(target_os = "none")]
        EventSource::XenPort(port) => crate::platform::xen::evtchn::wait(port).await,
        #[cfg(not(target_os = "none"))]
        EventSource::XenPort(_) => core::future::pending().await,
    }
}

/// The stack task.
async fn run(source: EventSource) {
    let mut interrupted = true;
    loop {
        let Ok((deadline, more)) = with_stack(|s| s.round(interrupted)) else {
            return;
        };
        if more {
            interrupted = false;
            crate::yield_now().await;
            continue;
        }
        let mut irq = pin!(wait_event(source));
        let mut timer = deadline.map(crate::sleep_until);
        let mut waited = false;
        let woke = poll_fn(|cx| {
            if irq.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Interrupt);
            }
            if let Some(t) = timer.as_mut() {
                if core::pin::Pin::new(t).poll(cx).is_ready() {
                    return Poll::Ready(Wake::Deadline);
                }
            }
            let kicked = with_stack(|s| {
                if s.kicked {
                    s.kicked = false;
                    true
                } else {
                    s.stack_waker = Some(cx.waker().clone());
                    false
                }
            });
            match kicked {
                Ok(true) => Poll::Ready(Wake::Kick),
                _ => {
                    waited = true;
                    Poll::Pending
                }
            }
        })
        .await;
        // A deadline already due (smoltcp keeps one due while it has something to send and
        // the card cannot take it, e.g. a netfront still connecting) must not make this task
        // loop without ever letting the others run: give them a turn.
        if !waited {
            crate::yield_now().await;
        }
        let _ = with_stack(|s| match woke {
            Wake::Interrupt => s.counters.interrupts += 1,
            Wake::Deadline => s.counters.deadlines += 1,
            Wake::Kick => s.counters.kicks += 1,
        });
        // Woken otherwise, the card may still have interrupted meanwhile: take that too.
        interrupted = matches!(woke, Wake::Interrupt)
            || match source {
                EventSource::Vector(vector) => crate::irq::take(vector),
                // Looking at a netfront's rings is cheap: always do it.
                EventSource::XenPort(_) => true,
            };
    }
}

impl Stack {
    /// One round: device interrupt, ingress, egress, DHCP, listeners, reaping. Returns the
    /// next smoltcp deadline and whether more input is waiting.
    fn round(&mut self, interrupted: bool) -> (Option<Instant>, bool) {
        self.counters.polls += 1;
        let now = smol_now();
        if interrupted {
            self.device.handle_interrupt();
        }
        let mut more = false;
        let mut taken = 0;
        loop {
            let mut adapter = Adapter::new(self.device.as_mut());
            match self
                .iface
                .poll_ingress_single(now, &mut adapter, &mut self.sockets)
            {
                PollIngressSingleResult::None => break,
                PollIngressSingleResult::PacketProcessed => {}
                PollIngressSingleResult::SocketStateChanged => self.service_listeners(),
            }
            taken += 1;
            if taken >= INGRESS_BUDGET {
                more = true;
                break;
            }
        }
        for _ in 0..EGRESS_BUDGET {
            let mut adapter = Adapter::new(self.device.as_mut());
            if self.iface.poll_egress(now, &mut adapter, &mut self.sockets) == PollResult::None {
                break;
            }
        }
        self.apply_dhcp();
        self.service_listeners();
        self.reap_closed();
        self.device.flush();
        let deadline = self
            .iface
            .poll_at(smol_now(), &self.sockets)
            .map(kernel_instant);
        (deadline, more)
    }

    /// Moves listeners' sockets that got past the handshake to their ready queues, re-arms
    /// sockets whose handshake failed, and tops up each pool of listening sockets.
    fn service_listeners(&mut self) {
        for listener in self.listeners.iter_mut().flatten() {
            let mut listening = 0;
            let mut arrived = false;
            let mut i = 0;
            while i < listener.pending.len() {
                let handle = listener.pending[i];
                let socket = self.sockets.get_mut::<tcp::Socket>(handle);
                match socket.state() {
                    tcp::State::Listen => {
                        listening += 1;
                        i += 1;
                    }
                    tcp::State::SynReceived => i += 1,
                    tcp::State::Closed | tcp::State::TimeWait => {
                        // The handshake failed (a reset): listen again.
                        socket.abort();
                        if socket.listen(listener.port).is_ok() {
                            listening += 1;
                        }
                        i += 1;
                    }
                    _ => {
                        listener.pending.swap_remove(i);
                        listener.ready.push_back(handle);
                        arrived = true;
                    }
                }
            }
            while listening < LISTEN_POOL
                && listener.pending.len() + listener.ready.len() < listener.backlog
            {
                let mut socket = listener.options.new_socket();
                if socket.listen(listener.port).is_err() {
                    break;
                }
                listener.pending.push(self.sockets.add(socket));
                listening += 1;
            }
            if arrived {
                if let Some(w) = listener.waker.take() {
                    w.wake();
                }
            }
        }
    }

    fn apply_dhcp(&mut self) {
        let Some(handle) = self.dhcp else { return };
        let event = match self.sockets.get_mut::<dhcpv4::Socket>(handle).poll() {
            None => return,
            Some(dhcpv4::Event::Configured(c)) => Some((
                c.address,
                c.router,
                c.dns_servers
                    .iter()
                    .map(|&a| IpAddr::V4(a))
                    .collect::<Vec<_>>(),
            )),
            Some(dhcpv4::Event::Deconfigured) => None,
        };
        match event {
            Some((address, router, servers)) => {
                let changed = self.ipv4 != Some(address) || self.gateway != router;
                self.set_ipv4(Some(address), router);
                let mut all = self.config.dns_servers.clone();
                all.extend(
                    servers
                        .into_iter()
                        .filter(|s| !self.config.dns_servers.contains(s)),
                );
                self.set_dns_servers(all);
                if changed {
                    self.counters.dhcp_leases += 1;
                    crate::info!(
                        "net: dhcp: leased {}/{}, router {:?}, dns {:?}",
                        address.address(),
                        address.prefix_len(),
                        router,
                        self.dns_servers
                    );
                }
                for w in self.config_waiters.drain(..) {
                    w.wake();
                }
            }
            None if self.ipv4.is_none() => {}
            None => {
                crate::warn!("net: dhcp: lease lost; no IPv4 address until the next one");
                self.set_ipv4(None, None);
                let servers = self.config.dns_servers.clone();
                self.set_dns_servers(servers);
            }
        }
    }

    fn set_ipv4(&mut self, address: Option<Ipv4Cidr>, router: Option<Ipv4Addr>) {
        self.iface.update_ip_addrs(|addrs| {
            addrs.retain(|a| !matches!(a, IpCidr::Ipv4(_)));
            if let Some(a) = address {
                let _ = addrs.push(IpCidr::Ipv4(a));
            }
        });
        match router {
            Some(r) => {
                let _ = self.iface.routes_mut().add_default_ipv4_route(r);
            }
            None => {
                self.iface.routes_mut().remove_default_ipv4_route();
            }
        }
        self.ipv4 = address;
        self.gateway = router;
    }

    fn set_dns_servers(&mut self, servers: Vec<IpAddr>) {
        self.sockets
            .get_mut::<dns::Socket>(self.dns)
            .update_servers(&resolver_list(&servers));
        self.dns_servers = servers;
    }

    /// Removes sockets closed by their owners once the connection is over.
    fn reap_closed(&mut self) {
        let sockets = &mut self.sockets;
        self.closing.retain(|&handle| {
            let state = sockets.get::<tcp::Socket>(handle).state();
            let done = matches!(state, tcp::State::Closed | tcp::State::TimeWait);
            if done {
                sockets.remove(handle);
            }
            !done
        });
    }

    /// Wakes the stack task: a socket has something to send.
    pub(super) fn kick(&mut self) {
        self.kicked = true;
        if let Some(w) = self.stack_waker.take() {
            w.wake();
        }
    }

    /// Lets go of a TCP socket: closes it gracefully and removes it once closed.
    pub(super) fn release_tcp(&mut self, handle: SocketHandle) {
        let socket = self.sockets.get_mut::<tcp::Socket>(handle);
        if socket.state() == tcp::State::Closed {
            self.sockets.remove(handle);
            return;
        }
        socket.close();
        self.closing.push(handle);
        self.kick();
    }

    /// A fresh local port for an outgoing connection.
    pub(super) fn ephemeral_port(&mut self) -> u16 {
        let port = self.next_ephemeral_port;
        self.next_ephemeral_port = if port == u16::MAX { 49152 } else { port + 1 };
        port
    }

    pub(super) fn status_dns_servers_empty(&self) -> bool {
        self.dns_servers.is_empty()
    }

    fn status(&self) -> NetStatus {
        NetStatus {
            mac: self.device.mac_address(),
            ipv4: self.ipv4.map(|c| (c.address(), c.prefix_len())),
            gateway: self.gateway,
            ipv6_link_local: self
                .config
                .ipv6_link_local
                .then(|| link_local_ipv6(self.device.mac_address())),
            dns_servers: self.dns_servers.clone(),
            sockets: self.sockets.iter().count(),
            device: self.device.counters(),
            stack: self.counters,
        }
    }
}

/// A snapshot of the stack's configuration and counters.
pub fn status() -> Result<NetStatus, NotStarted> {
    with_stack(|s| s.status())
}

/// Waits until the interface has an IPv4 address (at once for a static one); returns it with
/// its prefix length.
pub async fn wait_for_ipv4() -> Result<(Ipv4Addr, u8), NotStarted> {
    poll_fn(|cx| {
        match with_stack(|s| match s.ipv4 {
            Some(c) => Some((c.address(), c.prefix_len())),
            None => {
                s.config_waiters.push(cx.waker().clone());
                None
            }
        }) {
            Err(e) => Poll::Ready(Err(e)),
            Ok(Some(a)) => Poll::Ready(Ok(a)),
            Ok(None) => Poll::Pending,
        }
    })
    .await
}

/// smoltcp's view of a [`NetDevice`]: tokens share the card through a `RefCell`, borrowed
/// only for the moment a buffer changes hands (smoltcp sends replies from inside a receive).
struct Adapter<'a> {
    card: RefCell<&'a mut dyn NetDevice>,
}

impl<'a> Adapter<'a> {
    fn new(card: &'a mut dyn NetDevice) -> Self {
        Adapter {
            card: RefCell::new(card),
        }
    }
}

struct RxToken<'b, 'a> {
    card: &'b RefCell<&'a mut dyn NetDevice>,
    frame: Option<Frame>,
}

struct TxToken<'b, 'a> {
    card: &'b RefCell<&'a mut dyn NetDevice>,
}

impl<'a> phy::Device for Adapter<'a> {
    type RxToken<'b>
        = RxToken<'b, 'a>
    where
        Self: 'b;
    type TxToken<'b>
        = TxToken<'b, 'a>
    where
        Self: 'b;

    fn receive(
        &mut self,
        _timestamp: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.card.get_mut().receive()?;
        Some((
            RxToken {
                card: &self.card,
                frame: Some(frame),
            },
            TxToken { card: &self.card },
        ))
    }

    fn transmit(&mut self, _timestamp: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        // Only promise a token when a buffer is free (smoltcp then keeps the packet queued).
        self.card
            .get_mut()
            .can_transmit()
            .then_some(TxToken { card: &self.card })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.card.borrow().max_frame_len();
        caps
    }
}

impl phy::RxToken for RxToken<'_, '_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(mut self, f: F) -> R {
        let frame = self
            .frame
            .take()
            .expect("an RxToken holds its frame until consumed");
        let result = f(frame.bytes());
        self.card.borrow_mut().recycle(frame);
        result
    }
}

impl Drop for RxToken<'_, '_> {
    fn drop(&mut self) {
        if let Some(frame) = self.frame.take() {
            self.card.borrow_mut().recycle(frame);
        }
    }
}

impl phy::TxToken for TxToken<'_, '_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let buffer = self.card.borrow_mut().transmit_buffer();
        match buffer {
            Some(mut frame) if len <= frame.max_len() => {
                let result = f(frame.bytes_mut(len));
                self.card.borrow_mut().send(frame);
                result
            }
            other => {
                // No buffer free (or a frame longer than the card carries): build it and drop
                // it; TCP retransmits, and the counters show it.
                if let Some(frame) = other {
                    self.card.borrow_mut().discard_tx(frame);
                }
                f(&mut vec![0u8; len])
            }
        }
    }
}
