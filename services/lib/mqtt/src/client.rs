//! A reconnecting MQTT 3.1.1 client over `kernel::net` (feature `kernel`).
//!
//! [`run`] keeps one connection to the broker: CONNECT, SUBSCRIBE to the configured filters,
//! then publishes (QoS 0) whatever the [`Client`]'s outbox holds (a message leaves the outbox
//! only once written to the socket), hands every PUBLISH it receives to a callback, pings
//! when idle and declares the broker gone when it is silent for two keep-alive periods. When
//! the broker is away the outbox keeps the newest messages up to its bound and counts the
//! ones it drops; the connection is retried with a backoff from 100 ms to 2 s.
//!
//! What the broker sends is checked by [`crate::codec::decode`]; a protocol error ends the
//! connection (then it is retried), never the service.

use crate::codec::{self, Connect, Packet, Publish, QoS};
use crate::outbox::Outbox;
use crate::sync::{select, Either, Signal};
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::fmt;
use core::net::SocketAddr;
use kernel::net::{TcpError, TcpOptions, TcpStream};
use kernel::Duration;

/// A message to publish: topic and payload.
pub type Message = (String, Vec<u8>);

/// How to reach the broker.
#[derive(Clone, Debug)]
pub struct Options {
    /// Broker host name or address.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Client identifier.
    pub client_id: String,
    /// Filters subscribed to (QoS 0) on every connection.
    pub subscriptions: Vec<String>,
    /// Keep-alive, seconds.
    pub keep_alive_s: u16,
    /// Largest packet accepted from the broker.
    pub max_packet: usize,
}

/// The client's shared state: its outbox and counters.
pub struct Client {
    outbox: RefCell<Outbox<Message>>,
    ready: Signal,
    connected: Cell<bool>,
    published: Cell<u64>,
    connects: Cell<u64>,
    failures: Cell<u64>,
}

impl Client {
    /// A client whose outbox keeps at most `capacity` messages.
    pub fn new(capacity: usize) -> Rc<Client> {
        Rc::new(Client {
            outbox: RefCell::new(Outbox::new(capacity)),
            ready: Signal::default(),
            connected: Cell::new(false),
            published: Cell::new(0),
            connects: Cell::new(0),
            failures: Cell::new(0),
        })
    }

    /// Queues a message for the broker (dropping the oldest if the outbox is full).
    pub fn publish(&self, topic: String, payload: Vec<u8>) {
        self.outbox.borrow_mut().push((topic, payload));
        self.ready.notify();
    }

    /// Counters: `(published, queued, dropped, connects, failures)`.
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

    /// Whether a session with the broker is up.
    pub fn is_connected(&self) -> bool {
        self.connected.get()
    }
}

/// Why a session ended.
#[derive(Debug)]
pub enum SessionError {
    /// The connection failed.
    Io(TcpError),
    /// The broker broke the protocol.
    Mqtt(codec::Error),
    /// The broker refused the connection (CONNACK code).
    Refused(u8),
    /// Nothing heard for two keep-alive periods.
    Silent,
    /// The broker's name did not resolve.
    Resolve,
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Io(e) => write!(f, "{e}"),
            SessionError::Mqtt(e) => write!(f, "{e}"),
            SessionError::Refused(c) => {
                write!(f, "connection refused: {}", codec::connack_reason(*c))
            }
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

/// Keeps a session with the broker forever, calling `on_message` for each PUBLISH received.
pub async fn run(client: Rc<Client>, options: Options, mut on_message: impl FnMut(Publish)) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let result = match connect(&options).await {
            Ok(stream) => {
                client.connects.set(client.connects.get() + 1);
                backoff = Duration::from_millis(100);
                let r = session(&client, &options, stream, &mut on_message).await;
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
            client.failures.set(client.failures.get() + 1);
        }
        kernel::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn connect(options: &Options) -> Result<TcpStream, SessionError> {
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
    Ok(TcpStream::connect(SocketAddr::new(address, options.port), tcp).await?)
}

async fn send(stream: &mut TcpStream, packet: &Packet) -> Result<(), SessionError> {
    let mut bytes = Vec::new();
    codec::encode(packet, &mut bytes)?;
    stream.set_timeout(Some(IO_TIMEOUT));
    stream.write_all(&bytes).await?;
    Ok(())
}

async fn session(
    client: &Client,
    options: &Options,
    mut stream: TcpStream,
    on_message: &mut impl FnMut(Publish),
) -> Result<(), SessionError> {
    send(
        &mut stream,
        &Packet::Connect(Connect {
            client_id: options.client_id.clone(),
            keep_alive: options.keep_alive_s,
            clean_session: true,
            username: None,
            password: None,
        }),
    )
    .await?;
    let mut input = Vec::new();
    let mut chunk = alloc::vec![0u8; 4096];
    loop {
        if let Some((packet, used)) = codec::decode(&input, options.max_packet)? {
            input.drain(..used);
            match packet {
                Packet::ConnAck { code: 0, .. } => break,
                Packet::ConnAck { code, .. } => return Err(SessionError::Refused(code)),
                _ => return Err(codec::Error::Protocol("expected CONNACK").into()),
            }
        }
        stream.set_timeout(Some(IO_TIMEOUT));
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(SessionError::Io(TcpError::Closed));
        }
        input.extend_from_slice(&chunk[..n]);
    }
    if !options.subscriptions.is_empty() {
        let filters = options
            .subscriptions
            .iter()
            .map(|f| (f.clone(), QoS::AtMostOnce))
            .collect();
        send(
            &mut stream,
            &Packet::Subscribe {
                packet_id: 1,
                filters,
            },
        )
        .await?;
    }
    client.connected.set(true);
    kernel::info!(
        "mqtt: connected to {}:{} as {}",
        options.host,
        options.port,
        options.client_id
    );
    let keep_alive = Duration::from_secs(u64::from(options.keep_alive_s.max(1)));
    let mut last_sent = kernel::now();
    let mut last_heard = kernel::now();
    loop {
        loop {
            let (sequence, packet) = match client.outbox.borrow().front_numbered() {
                Some((sequence, (topic, payload))) => (
                    sequence,
                    Packet::Publish(Publish {
                        topic: topic.clone(),
                        payload: payload.clone(),
                        qos: QoS::AtMostOnce,
                        retain: false,
                        dup: false,
                        packet_id: None,
                    }),
                ),
                None => break,
            };
            send(&mut stream, &packet).await?;
            // While the write waited, a full outbox may have dropped this very message.
            client.outbox.borrow_mut().pop_delivered(sequence);
            client.published.set(client.published.get() + 1);
            last_sent = kernel::now();
        }
        let ping_at = last_sent + keep_alive / 2;
        stream.set_timeout(None);
        let woke = select(
            stream.read(&mut chunk),
            select(client.ready.wait(), kernel::sleep_until(ping_at)),
        )
        .await;
        match woke {
            Either::Left(Ok(0)) => return Err(SessionError::Io(TcpError::Closed)),
            Either::Left(Err(e)) => return Err(e.into()),
            Either::Left(Ok(n)) => {
                last_heard = kernel::now();
                input.extend_from_slice(&chunk[..n]);
                while let Some((packet, used)) = codec::decode(&input, options.max_packet)? {
                    input.drain(..used);
                    if let Packet::Publish(p) = packet {
                        on_message(p);
                    }
                }
            }
            Either::Right(Either::Left(())) => {}
            Either::Right(Either::Right(())) => {
                if kernel::now().saturating_duration_since(last_heard) > keep_alive * 2 {
                    return Err(SessionError::Silent);
                }
                send(&mut stream, &Packet::PingReq).await?;
                last_sent = kernel::now();
            }
        }
    }
}
