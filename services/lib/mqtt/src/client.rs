//! A reconnecting MQTT client (3.1.1 or 5, QoS 0, 1 or 2) over `kernel::net` (feature `kernel`),
//! on plain TCP or on whatever [`Connector`] the image brings (TLS, say).
//!
//! [`run`] keeps one connection to the broker: CONNECT at the chosen protocol level, SUBSCRIBE
//! to the configured filters, then publishes whatever the [`Client`]'s outbox holds, hands
//! every PUBLISH it receives to a callback, pings when idle and declares the broker gone when
//! it is silent for two keep-alive periods. When the broker is away the outbox keeps the newest
//! messages up to its bound and counts the ones it drops; the connection is retried with a
//! backoff from 100 ms to 2 s.
//!
//! - **QoS 0**: a message leaves the outbox once written to the socket.
//! - **QoS 1**: a message leaves the outbox only when the broker acknowledges it (PUBACK); up to
//!   the broker's Receive Maximum (MQTT 5) or [`WINDOW`] are in flight. A new connection sends
//!   the unacknowledged ones again first, with their packet ids and DUP set
//!   ([`crate::inflight`]), and asks the broker to keep the session: a first connection with
//!   clean session (5: clean start) on only discards an earlier run's session, the next ones
//!   have it off (5: with a session expiry). An MQTT 5 PUBACK with
//!   a failure reason code (quota exceeded, not authorized, ...) means the broker refused the
//!   message: it is dropped and counted (`rejected`), not sent again.
//! - **QoS 2** (exactly once): a message leaves the outbox when the broker's PUBREC says it has
//!   it; the client answers PUBREL and the packet id stays taken until the broker's PUBCOMP.
//!   A new connection resuming the session sends PUBREL again for messages the broker has, and
//!   PUBLISH (DUP) for the others, so each reaches the broker's subscribers once. Received QoS 2
//!   messages are delivered to the service once per packet id until the broker's PUBREL, also
//!   across connections of one session ([`crate::inflight::Received2`]).
//! - **MQTT 5**: the CONNACK's Receive Maximum, Maximum QoS (a broker that takes only QoS 0 gets
//!   QoS 0), Maximum Packet Size (a bigger message is refused here and counted) and Server Keep
//!   Alive are obeyed; a DISCONNECT from the broker ends the connection with its reason logged.
//! - **TLS**: [`run_with`] takes a [`Connector`] that wraps the TCP stream (app-service's runs
//!   `tls::TlsStream`, verified against a pinned root). The crate itself has no TLS code, so
//!   images that never use it do not carry it.
//!
//! What the broker sends is checked by [`crate::codec::decode`]; a protocol error ends the
//! connection (then it is retried), never the service.

use crate::codec::{self, Ack, Connect, Packet, Publish, QoS, Version};
use crate::inflight::{Inflight, Received, Received2, Resend};
use crate::latency::Histogram;
use crate::outbox::Outbox;
use crate::properties::{id, Properties, Value};
use crate::sync::{select, Either, Signal};
use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::fmt;
use core::future::Future;
use core::net::SocketAddr;
use kernel::net::{TcpError, TcpOptions, TcpStream};
use kernel::{Duration, Instant};

/// A message to publish: topic and payload.
pub type Message = (String, Vec<u8>);

/// QoS 1 and 2 messages in flight at most (fewer if the broker's Receive Maximum says so).
pub const WINDOW: usize = 32;

/// How to reach the broker.
#[derive(Clone, Debug)]
pub struct Options {
    /// Broker host name or address.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Client identifier.
    pub client_id: String,
    /// Filters subscribed to on every connection, at [`Options::qos`] (with QoS 1 the broker
    /// keeps what arrives while the connection is down, and may deliver a message twice).
    pub subscriptions: Vec<String>,
    /// Keep-alive, seconds.
    pub keep_alive_s: u16,
    /// Largest packet accepted from the broker.
    pub max_packet: usize,
    /// Protocol level.
    pub version: Version,
    /// QoS of the messages published and of the subscriptions (lowered to the broker's
    /// Maximum QoS, MQTT 5).
    pub qos: QoS,
    /// MQTT 5 with QoS 1 or 2: seconds the broker keeps the session after a connection breaks.
    pub session_expiry_s: u32,
    /// User name for the broker's login (EdgeX's `AuthMode` `usernamepassword`).
    pub username: Option<String>,
    /// Password for the broker's login.
    pub password: Option<Vec<u8>>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            host: String::new(),
            port: 1883,
            client_id: String::new(),
            subscriptions: Vec::new(),
            keep_alive_s: 30,
            max_packet: 64 * 1024,
            version: Version::V311,
            qos: QoS::AtMostOnce,
            session_expiry_s: 3600,
            username: None,
            password: None,
        }
    }
}

/// The client's shared state: its outbox, what is in flight, counters.
pub struct Client {
    outbox: RefCell<Outbox<Message>>,
    inflight: RefCell<Inflight>,
    /// QoS 2 messages received and delivered, awaiting the broker's PUBREL (made on first use).
    received: RefCell<Option<Received2>>,
    /// When each waiting message started its way (outbox sequence number, instant), oldest
    /// first, at most one per outbox place.
    queued_at: RefCell<VecDeque<(u64, Instant)>>,
    /// From then to the first write of its PUBLISH to the broker's socket.
    latency: Histogram,
    ready: Signal,
    connected: Cell<bool>,
    published: Cell<u64>,
    rejected: Cell<u64>,
    resent: Cell<u64>,
    connects: Cell<u64>,
    failures: Cell<u64>,
}

impl Client {
    /// A client whose outbox keeps at most `capacity` messages.
    pub fn new(capacity: usize) -> Rc<Client> {
        Rc::new(Client {
            outbox: RefCell::new(Outbox::new(capacity)),
            inflight: RefCell::new(Inflight::new()),
            received: RefCell::new(None),
            queued_at: RefCell::new(VecDeque::new()),
            latency: Histogram::default(),
            ready: Signal::default(),
            connected: Cell::new(false),
            published: Cell::new(0),
            rejected: Cell::new(0),
            resent: Cell::new(0),
            connects: Cell::new(0),
            failures: Cell::new(0),
        })
    }

    /// Queues a message for the broker (dropping the oldest if the outbox is full).
    pub fn publish(&self, topic: String, payload: Vec<u8>) {
        self.publish_since(topic, payload, kernel::now());
    }

    /// Queues a message that started its way at `since` (a device service: when the last
    /// reading of the event arrived); [`Client::latency`] counts from then.
    pub fn publish_since(&self, topic: String, payload: Vec<u8>, since: Instant) {
        let (sequence, capacity) = {
            let mut outbox = self.outbox.borrow_mut();
            (outbox.push((topic, payload)), outbox.capacity())
        };
        let mut queued = self.queued_at.borrow_mut();
        queued.push_back((sequence, since));
        while queued.len() > capacity {
            queued.pop_front();
        }
        drop(queued);
        self.ready.notify();
    }

    /// Message `sequence` was written to the broker's socket for the first time.
    fn written(&self, sequence: u64) {
        let mut queued = self.queued_at.borrow_mut();
        while queued.front().is_some_and(|(s, _)| *s < sequence) {
            queued.pop_front(); // dropped, refused or sent before this connection
        }
        if queued.front().is_some_and(|(s, _)| *s == sequence) {
            if let Some((_, since)) = queued.pop_front() {
                let us = kernel::now().saturating_duration_since(since).as_micros();
                self.latency.record(u64::try_from(us).unwrap_or(u64::MAX));
            }
        }
    }

    /// Time from [`Client::publish_since`] (or `publish`) to the first write of the message
    /// to the broker's socket, in microseconds: the part of a message's way that runs here.
    pub fn latency(&self) -> &Histogram {
        &self.latency
    }

    /// Counters: `(published, queued, dropped, connects, failures)`. `published` counts
    /// messages written (QoS 0), acknowledged (QoS 1) or completed (QoS 2); `queued` includes
    /// those in flight the broker has not received yet.
    pub fn counters(&self) -> (u64, usize, u64, u64, u64) {
        let o = self.outbox.borrow();
        (
            self.published.get(),
            o.len(),
            o.dropped(),
            self.connects.get(),
            self.failures.get(),
        )
    }

    /// QoS 1 and 2 counters: `(in flight, sent again (PUBLISH with DUP, or PUBREL), refused by
    /// the broker)`.
    pub fn qos_counters(&self) -> (usize, u64, u64) {
        (
            self.inflight.borrow().len(),
            self.resent.get(),
            self.rejected.get(),
        )
    }

    /// Whether a session with the broker is up.
    pub fn is_connected(&self) -> bool {
        self.connected.get()
    }

    fn count(cell: &Cell<u64>) {
        cell.set(cell.get() + 1);
    }
}

/// Why a session ended.
#[derive(Debug)]
pub enum SessionError {
    /// The connection failed.
    Io(TcpError),
    /// The connector's layer failed (TLS: the broker's certificate did not verify, a record
    /// did not authenticate...).
    Layer(String),
    /// The broker broke the protocol.
    Mqtt(codec::Error),
    /// The broker refused the connection (CONNACK code).
    Refused(Version, u8),
    /// The broker closed the connection with an MQTT 5 DISCONNECT (reason code, reason string).
    Disconnected(u8, Option<String>),
    /// Nothing heard for two keep-alive periods.
    Silent,
    /// The broker's name did not resolve.
    Resolve,
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Io(e) => write!(f, "{e}"),
            SessionError::Layer(e) => write!(f, "{e}"),
            SessionError::Mqtt(e) => write!(f, "{e}"),
            SessionError::Refused(v, c) => {
                write!(f, "connection refused: {}", codec::connack_reason(*v, *c))
            }
            SessionError::Disconnected(c, why) => write!(
                f,
                "broker disconnected: {} ({})",
                crate::reason::describe(*c),
                why.as_deref().unwrap_or("no reason string")
            ),
            SessionError::Silent => write!(f, "broker silent past the keep-alive"),
            SessionError::Resolve => write!(f, "cannot resolve the broker's name"),
        }
    }
}

impl From<TcpError> for SessionError {
    fn from(e: TcpError) -> Self {
        SessionError::Io(e)
    }
}

impl From<codec::Error> for SessionError {
    fn from(e: codec::Error) -> Self {
        SessionError::Mqtt(e)
    }
}

const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to the broker: a byte stream with timeouts.
pub trait Connection {
    /// Limits each later read and write (`None`: no limit).
    fn set_timeout(&mut self, timeout: Option<Duration>);
    /// Reads some bytes; 0 means the broker closed the connection.
    fn read(&mut self, buf: &mut [u8]) -> impl Future<Output = Result<usize, SessionError>>;
    /// Writes all of `bytes`.
    fn write_all(&mut self, bytes: &[u8]) -> impl Future<Output = Result<(), SessionError>>;
}

impl Connection for TcpStream {
    fn set_timeout(&mut self, timeout: Option<Duration>) {
        TcpStream::set_timeout(self, timeout)
    }

    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, SessionError> {
        Ok(TcpStream::read(self, buf).await?)
    }

    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        Ok(TcpStream::write_all(self, bytes).await?)
    }
}

/// Turns a TCP connection to the broker into the connection MQTT runs on (TLS, say).
///
/// A connection's read is dropped unfinished when the client has something to send (it races
/// the outbox and the keep-alive timer): a layer must lose nothing then.
pub trait Connector {
    /// The connection made.
    type Conn: Connection;
    /// Wraps `tcp`, connected to `host` (the name or address dialled).
    fn connect(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> impl Future<Output = Result<Self::Conn, SessionError>>;
}

/// Plain TCP.
pub struct Plain;

impl Connector for Plain {
    type Conn = TcpStream;

    async fn connect(&self, _host: &str, tcp: TcpStream) -> Result<TcpStream, SessionError> {
        Ok(tcp)
    }
}

/// Keeps a session with the broker forever over plain TCP, calling `on_message` for each
/// PUBLISH received.
pub async fn run(client: Rc<Client>, options: Options, on_message: impl FnMut(Publish)) {
    run_with(client, options, Plain, on_message).await
}

/// Keeps a session with the broker forever over `connector`'s connections, calling
/// `on_message` for each PUBLISH received.
pub async fn run_with<C: Connector>(
    client: Rc<Client>,
    options: Options,
    connector: C,
    mut on_message: impl FnMut(Publish),
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let result = match connect(&options, &connector).await {
            Ok(conn) => {
                backoff = Duration::from_millis(100);
                let r = session(&client, &options, conn, &mut on_message).await;
                client.connected.set(false);
                if let Err(e) = &r {
                    kernel::warn!("mqtt: broker {}:{}: {e}", options.host, options.port);
                }
                r
            }
            Err(e) => {
                kernel::debug!("mqtt: broker {}:{}: {e}", options.host, options.port);
                Err(e)
            }
        };
        if result.is_err() {
            Client::count(&client.failures);
        }
        kernel::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn connect<C: Connector>(options: &Options, connector: &C) -> Result<C::Conn, SessionError> {
    let address = match kernel::net::resolve(&options.host).await {
        Ok(a) if !a.is_empty() => a[0],
        _ => return Err(SessionError::Resolve),
    };
    let tcp = TcpOptions {
        rx_buffer: 16 * 1024,
        tx_buffer: 64 * 1024,
        timeout: Some(IO_TIMEOUT),
        ..TcpOptions::default()
    };
    let stream = TcpStream::connect(SocketAddr::new(address, options.port), tcp).await?;
    connector.connect(&options.host, stream).await
}

async fn send(
    conn: &mut impl Connection,
    version: Version,
    packet: &Packet,
) -> Result<(), SessionError> {
    let mut bytes = Vec::new();
    codec::encode(packet, version, &mut bytes)?;
    conn.set_timeout(Some(IO_TIMEOUT));
    conn.write_all(&bytes).await
}

/// What the broker's CONNACK allows on this connection.
struct Limits {
    qos: QoS,
    window: usize,
    max_packet: usize,
    keep_alive: Duration,
}

impl Limits {
    fn new(options: &Options, properties: &Properties) -> Limits {
        let mut qos = options.qos;
        if let Some(max) = properties.byte(id::MAXIMUM_QOS) {
            if (qos as u8) > max {
                qos = QoS::from_bits(max).unwrap_or(QoS::AtMostOnce);
                kernel::warn!("mqtt: the broker takes QoS {max} at most: publishing at QoS {max}");
            }
        }
        let window = properties
            .u16(id::RECEIVE_MAXIMUM)
            .map_or(WINDOW, |m| WINDOW.min(usize::from(m)));
        let max_packet = properties
            .u32(id::MAXIMUM_PACKET_SIZE)
            .map_or(usize::MAX, |m| m as usize);
        let keep_alive_s = properties
            .u16(id::SERVER_KEEP_ALIVE)
            .unwrap_or(options.keep_alive_s);
        Limits {
            qos,
            window: window.max(1),
            max_packet,
            keep_alive: Duration::from_secs(u64::from(keep_alive_s.max(1))),
        }
    }
}

/// Encodes message number `sequence` as a PUBLISH; `None` if the broker's maximum packet size
/// cannot take it (then it is refused, counted and dropped).
fn encode_message(
    client: &Client,
    version: Version,
    limits: &Limits,
    sequence: u64,
    packet_id: Option<u16>,
    dup: bool,
) -> Result<Option<Vec<u8>>, SessionError> {
    let publish = {
        let outbox = client.outbox.borrow();
        let Some((topic, payload)) = outbox.get(sequence) else {
            // Dropped by a full outbox meanwhile: it no longer holds a place in flight.
            if let Some(id) = packet_id {
                client.inflight.borrow_mut().acknowledge(id);
            }
            return Ok(None);
        };
        let mut p = Publish::new(topic.clone(), payload.clone());
        if let Some(id) = packet_id {
            p.qos = limits.qos;
            p.packet_id = Some(id);
            p.dup = dup;
        }
        p
    };
    let mut bytes = Vec::new();
    codec::encode(&Packet::Publish(publish), version, &mut bytes)?;
    if bytes.len() > limits.max_packet {
        if let Some(id) = packet_id {
            client.inflight.borrow_mut().acknowledge(id);
        }
        client.outbox.borrow_mut().pop_delivered(sequence);
        Client::count(&client.rejected);
        kernel::warn!(
            "mqtt: a message of {} bytes is over the broker's maximum packet size: dropped",
            bytes.len()
        );
        return Ok(None);
    }
    Ok(Some(bytes))
}

async fn session(
    client: &Client,
    options: &Options,
    mut conn: impl Connection,
    on_message: &mut impl FnMut(Publish),
) -> Result<(), SessionError> {
    let version = options.version;
    let qos1 = options.qos > QoS::AtMostOnce;
    // QoS 1 and 2 keep the session across connections (not on the first: nothing to resume).
    let resume = qos1 && client.connects.get() > 0;
    // A stale session (an earlier run of this client's, whose packet ids and messages are not
    // this run's) ends only with a connection made with clean session (5: clean start) on, and
    // MQTT 3.1.1 keeps a session after its connection only if that connection was made with
    // clean session off. Mosquitto (2.0) also saves to its database, across its restarts, only
    // sessions made with clean start off, even with a session expiry (MQTT 5). So with QoS 1
    // or 2 the first connection only discards whatever session the broker holds (clean on,
    // then DISCONNECT), and the next one, clean off (5: with a session expiry), makes the
    // session the broker keeps across broken connections and, with its persistence on, its
    // own restarts.
    let discard_only = qos1 && !resume;
    let mut properties = Properties::new();
    if version == Version::V5 {
        if resume {
            properties = properties.with(
                id::SESSION_EXPIRY_INTERVAL,
                Value::U32(options.session_expiry_s),
            );
        }
        let max = u32::try_from(options.max_packet).unwrap_or(u32::MAX).max(1);
        properties = properties.with(id::MAXIMUM_PACKET_SIZE, Value::U32(max));
    }
    send(
        &mut conn,
        version,
        &Packet::Connect(Connect {
            client_id: options.client_id.clone(),
            keep_alive: options.keep_alive_s,
            clean_session: !resume,
            username: options.username.clone(),
            password: options.password.clone(),
            properties,
        }),
    )
    .await?;
    client.connects.set(client.connects.get() + 1);
    let mut input = Vec::new();
    let mut chunk = alloc::vec![0u8; 4096];
    let limits = loop {
        if let Some((packet, used)) = codec::decode(&input, version, options.max_packet)? {
            input.drain(..used);
            match packet {
                Packet::ConnAck {
                    code: 0,
                    properties,
                    session_present,
                } => {
                    if !session_present {
                        // The broker will not release what it sent to an earlier session.
                        if let Some(r) = client.received.borrow_mut().as_mut() {
                            r.clear();
                        }
                    }
                    if discard_only {
                        let bye = Packet::Disconnect {
                            reason: 0,
                            properties: Properties::new(),
                        };
                        send(&mut conn, version, &bye).await?;
                        kernel::info!(
                            "mqtt: {}:{}: earlier session discarded; making a persistent one",
                            options.host,
                            options.port
                        );
                        return Ok(());
                    }
                    break Limits::new(options, &properties);
                }
                Packet::ConnAck { code, .. } => return Err(SessionError::Refused(version, code)),
                _ => return Err(codec::Error::Protocol("expected CONNACK").into()),
            }
        }
        conn.set_timeout(Some(IO_TIMEOUT));
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(SessionError::Io(TcpError::Closed));
        }
        input.extend_from_slice(&chunk[..n]);
    };
    if !options.subscriptions.is_empty() {
        let filters = options
            .subscriptions
            .iter()
            .map(|f| (f.clone(), limits.qos))
            .collect();
        send(
            &mut conn,
            version,
            &Packet::Subscribe {
                packet_id: 1,
                filters,
                properties: Properties::new(),
            },
        )
        .await?;
    }
    client.connected.set(true);
    kernel::info!(
        "mqtt: connected to {}:{} as {} (MQTT {}, QoS {})",
        options.host,
        options.port,
        options.client_id,
        if version == Version::V5 { "5" } else { "3.1.1" },
        limits.qos as u8
    );
    let qos1 = limits.qos > QoS::AtMostOnce;
    // Unacknowledged messages of the last connection go first, as they were, with DUP set.
    let again = client
        .inflight
        .borrow_mut()
        .restart(&client.outbox.borrow());
    for resend in again {
        match resend {
            // The broker has it (QoS 2): release it again, whatever QoS is allowed now.
            Resend::Release(id) => {
                send(&mut conn, version, &Packet::PubRel(Ack::new(id))).await?;
                Client::count(&client.resent);
            }
            Resend::Publish(sequence, packet_id) if qos1 => {
                if let Some(bytes) =
                    encode_message(client, version, &limits, sequence, Some(packet_id), true)?
                {
                    conn.set_timeout(Some(IO_TIMEOUT));
                    conn.write_all(&bytes).await?;
                    Client::count(&client.resent);
                }
            }
            // Publishing at QoS 0 now (the broker allows no more): nothing waits for an
            // acknowledgement; the message stays in the outbox and goes out again at QoS 0.
            Resend::Publish(_, id) => {
                client.inflight.borrow_mut().acknowledge(id);
            }
        }
    }
    let keep_alive = limits.keep_alive;
    let mut last_sent = kernel::now();
    let mut last_heard = kernel::now();
    loop {
        loop {
            let next = if qos1 {
                client
                    .inflight
                    .borrow_mut()
                    .next(&client.outbox.borrow(), limits.window)
                    .map(|(s, id)| (s, Some(id)))
            } else {
                client
                    .outbox
                    .borrow()
                    .front_numbered()
                    .map(|(s, _)| (s, None))
            };
            let Some((sequence, packet_id)) = next else {
                break;
            };
            let Some(bytes) = encode_message(client, version, &limits, sequence, packet_id, false)?
            else {
                continue;
            };
            conn.set_timeout(Some(IO_TIMEOUT));
            conn.write_all(&bytes).await?;
            client.written(sequence);
            if !qos1 {
                // While the write waited, a full outbox may have dropped this very message.
                client.outbox.borrow_mut().pop_delivered(sequence);
                Client::count(&client.published);
            }
            last_sent = kernel::now();
        }
        let ping_at = last_sent + keep_alive / 2;
        conn.set_timeout(None);
        let woke = select(
            conn.read(&mut chunk),
            select(client.ready.wait(), kernel::sleep_until(ping_at)),
        )
        .await;
        match woke {
            Either::Left(Ok(0)) => return Err(SessionError::Io(TcpError::Closed)),
            Either::Left(Err(e)) => return Err(e),
            Either::Left(Ok(n)) => {
                last_heard = kernel::now();
                input.extend_from_slice(&chunk[..n]);
                while let Some((packet, used)) = codec::decode(&input, version, options.max_packet)?
                {
                    input.drain(..used);
                    receive(client, &mut conn, version, packet, on_message).await?;
                }
            }
            Either::Right(Either::Left(())) => {}
            Either::Right(Either::Right(())) => {
                if kernel::now().saturating_duration_since(last_heard) > keep_alive * 2 {
                    return Err(SessionError::Silent);
                }
                send(&mut conn, version, &Packet::PingReq).await?;
                last_sent = kernel::now();
            }
        }
    }
}

/// Handles one packet from the broker after CONNACK.
async fn receive(
    client: &Client,
    conn: &mut impl Connection,
    version: Version,
    packet: Packet,
    on_message: &mut impl FnMut(Publish),
) -> Result<(), SessionError> {
    match packet {
        Packet::Publish(p) => match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => {
                on_message(p);
                send(conn, version, &Packet::PubAck(Ack::new(id))).await?
            }
            (QoS::ExactlyOnce, Some(id)) => {
                // Delivered once per packet id until the broker's PUBREL frees it.
                let fresh = client
                    .received
                    .borrow_mut()
                    .get_or_insert_with(Received2::default)
                    .publish(id);
                if fresh {
                    on_message(p);
                }
                send(conn, version, &Packet::PubRec(Ack::new(id))).await?
            }
            _ => on_message(p),
        },
        Packet::PubRel(ack) => {
            let held = client
                .received
                .borrow_mut()
                .as_mut()
                .is_some_and(|r| r.release(ack.packet_id));
            let mut comp = Ack::new(ack.packet_id);
            if !held && version == Version::V5 {
                comp.reason = 0x92; // packet identifier not found
            }
            send(conn, version, &Packet::PubComp(comp)).await?
        }
        Packet::PubRec(ack) => {
            let step = client.inflight.borrow_mut().received(ack.packet_id);
            match step {
                Received::First(sequence) if ack.reason >= 0x80 => {
                    // Refused at the first step: the exchange ends here (no PUBREL).
                    client.inflight.borrow_mut().complete(ack.packet_id);
                    client.outbox.borrow_mut().pop_delivered(sequence);
                    Client::count(&client.rejected);
                    kernel::warn!(
                        "mqtt: the broker refused a message: {} ({})",
                        crate::reason::describe(ack.reason),
                        ack.properties.str(id::REASON_STRING).unwrap_or("")
                    );
                    client.ready.notify();
                }
                Received::First(sequence) => {
                    client.outbox.borrow_mut().pop_delivered(sequence);
                    send(conn, version, &Packet::PubRel(Ack::new(ack.packet_id))).await?
                }
                Received::Again => {
                    send(conn, version, &Packet::PubRel(Ack::new(ack.packet_id))).await?
                }
                Received::Unknown => {
                    kernel::debug!("mqtt: PUBREC for {} not in flight", ack.packet_id)
                }
            }
        }
        Packet::PubComp(ack) => {
            if client.inflight.borrow_mut().complete(ack.packet_id) {
                Client::count(&client.published);
                client.ready.notify(); // the window has room again
            } else {
                kernel::debug!("mqtt: PUBCOMP for {} not released", ack.packet_id);
            }
        }
        Packet::PubAck(ack) => {
            let sequence = client.inflight.borrow_mut().acknowledge(ack.packet_id);
            match sequence {
                Some(sequence) => {
                    client.outbox.borrow_mut().pop_delivered(sequence);
                    if ack.reason >= 0x80 {
                        Client::count(&client.rejected);
                        kernel::warn!(
                            "mqtt: the broker refused a message: {} ({})",
                            crate::reason::describe(ack.reason),
                            ack.properties.str(id::REASON_STRING).unwrap_or("")
                        );
                    } else {
                        Client::count(&client.published);
                    }
                    client.ready.notify(); // the window has room again
                }
                None => kernel::debug!("mqtt: PUBACK for {} not in flight", ack.packet_id),
            }
        }
        Packet::Disconnect { reason, properties } => {
            return Err(SessionError::Disconnected(
                reason,
                properties.str(id::REASON_STRING).map(String::from),
            ))
        }
        Packet::SubAck { codes, .. } if codes.iter().any(|&c| c >= 0x80) => {
            kernel::warn!("mqtt: the broker refused a subscription: {codes:?}");
        }
        _ => {}
    }
    Ok(())
}
