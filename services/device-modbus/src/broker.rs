//! The MQTT side: one connection to the broker that publishes what the outbox holds, receives
//! command requests, and reconnects (with backoff) when the broker goes away. While it is
//! away, the outbox keeps the newest `outbox=` messages and counts the ones it drops.

use crate::signal::{select, Either, Signal};
use crate::stats::STATS;
use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::net::SocketAddr;
use core::sync::atomic::Ordering::Relaxed;
use device_modbus::command::{self, CommandRequest};
use device_modbus::config::Endpoint;
use edgex::Outbox;
use kernel::net::{TcpError, TcpOptions, TcpStream};
use kernel::{info, warn, Duration};
use mqtt::{Packet, Publish, QoS};

/// A message to publish: topic and payload.
pub type Message = (String, Vec<u8>);

/// Commands for one device, handed from the broker task to the device's task.
pub struct Inbox {
    /// The device.
    pub device: String,
    /// Requests waiting.
    pub queue: RefCell<VecDeque<CommandRequest>>,
    /// Set when a request arrives.
    pub signal: Signal,
}

/// What the broker task shares with the device tasks.
pub struct Bus {
    /// Messages waiting for the broker.
    pub outbox: RefCell<Outbox<Message>>,
    /// Set when the outbox gets a message.
    pub ready: Signal,
    /// One inbox per device.
    pub inboxes: Vec<Rc<Inbox>>,
    /// The service name in topics.
    pub service: String,
}

impl Bus {
    /// Queues a message for the broker.
    pub fn publish(&self, topic: String, payload: Vec<u8>) {
        self.outbox.borrow_mut().push((topic, payload));
        self.ready.notify();
    }
}

/// Largest packet accepted from the broker.
const MAX_PACKET: usize = 64 * 1024;
const KEEP_ALIVE_S: u16 = 30;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
enum SessionError {
    Io(TcpError),
    Mqtt(mqtt::Error),
    Refused(u8),
    Silent,
}

impl core::fmt::Display for SessionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SessionError::Io(e) => write!(f, "{e}"),
            SessionError::Mqtt(e) => write!(f, "{e}"),
            SessionError::Refused(c) => {
                write!(f, "connection refused: {}", mqtt::connack_reason(*c))
            }
            SessionError::Silent => write!(f, "broker silent past the keep-alive"),
        }
    }
}

impl From<TcpError> for SessionError {
    fn from(e: TcpError) -> Self {
        SessionError::Io(e)
    }
}

impl From<mqtt::Error> for SessionError {
    fn from(e: mqtt::Error) -> Self {
        SessionError::Mqtt(e)
    }
}

/// Runs the broker connection forever.
pub async fn run(bus: Rc<Bus>, broker: Endpoint, client_id: String) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match connect(&broker).await {
            Ok(stream) => {
                STATS.broker_connects.fetch_add(1, Relaxed);
                match session(&bus, stream, &client_id).await {
                    Ok(()) => {}
                    Err(e) => {
                        STATS.broker_failures.fetch_add(1, Relaxed);
                        warn!("device-modbus: broker {}:{}: {e}", broker.host, broker.port);
                    }
                }
                backoff = Duration::from_millis(100);
            }
            Err(e) => {
                STATS.broker_failures.fetch_add(1, Relaxed);
                kernel::debug!("device-modbus: broker {}:{}: {e}", broker.host, broker.port);
            }
        }
        kernel::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn connect(broker: &Endpoint) -> Result<TcpStream, SessionError> {
    let address = match kernel::net::resolve(&broker.host).await {
        Ok(a) if !a.is_empty() => a[0],
        _ => return Err(SessionError::Io(TcpError::BadAddress)),
    };
    let options = TcpOptions {
        rx_buffer: 16 * 1024,
        tx_buffer: 64 * 1024,
        timeout: Some(IO_TIMEOUT),
        ..TcpOptions::default()
    };
    Ok(TcpStream::connect(SocketAddr::new(address, broker.port), options).await?)
}

async fn send(stream: &mut TcpStream, packet: &Packet) -> Result<(), SessionError> {
    let mut bytes = Vec::new();
    mqtt::encode(packet, &mut bytes)?;
    stream.set_timeout(Some(IO_TIMEOUT));
    stream.write_all(&bytes).await?;
    Ok(())
}

async fn session(bus: &Bus, mut stream: TcpStream, client_id: &str) -> Result<(), SessionError> {
    send(
        &mut stream,
        &Packet::Connect(mqtt::Connect {
            client_id: client_id.into(),
            keep_alive: KEEP_ALIVE_S,
            clean_session: true,
            username: None,
            password: None,
        }),
    )
    .await?;
    let mut input = Vec::new();
    let mut chunk = alloc::vec![0u8; 4096];
    // CONNACK first.
    loop {
        if let Some((packet, used)) = mqtt::decode(&input, MAX_PACKET)? {
            input.drain(..used);
            match packet {
                Packet::ConnAck { code: 0, .. } => break,
                Packet::ConnAck { code, .. } => return Err(SessionError::Refused(code)),
                _ => {
                    return Err(SessionError::Mqtt(mqtt::Error::Protocol(
                        "expected CONNACK",
                    )))
                }
            }
        }
        stream.set_timeout(Some(IO_TIMEOUT));
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(SessionError::Io(TcpError::Closed));
        }
        input.extend_from_slice(&chunk[..n]);
    }
    send(
        &mut stream,
        &Packet::Subscribe {
            packet_id: 1,
            filters: alloc::vec![(
                edgex::event::command_request_filter(&bus.service),
                QoS::AtMostOnce
            )],
        },
    )
    .await?;
    info!("device-modbus: connected to the broker");
    let keep_alive = Duration::from_secs(u64::from(KEEP_ALIVE_S));
    let mut last_sent = kernel::now();
    let mut last_heard = kernel::now();
    loop {
        // Publish everything waiting; a message leaves the outbox only once written.
        loop {
            let packet = match bus.outbox.borrow().front() {
                Some((topic, payload)) => Packet::Publish(Publish {
                    topic: topic.clone(),
                    payload: payload.clone(),
                    qos: QoS::AtMostOnce,
                    retain: false,
                    dup: false,
                    packet_id: None,
                }),
                None => break,
            };
            send(&mut stream, &packet).await?;
            bus.outbox.borrow_mut().pop();
            STATS.published.fetch_add(1, Relaxed);
            last_sent = kernel::now();
        }
        let ping_at = last_sent + keep_alive / 2;
        stream.set_timeout(None);
        let woke = select(
            stream.read(&mut chunk),
            select(bus.ready.wait(), kernel::sleep_until(ping_at)),
        )
        .await;
        match woke {
            Either::Left(Ok(0)) => return Err(SessionError::Io(TcpError::Closed)),
            Either::Left(Err(e)) => return Err(e.into()),
            Either::Left(Ok(n)) => {
                last_heard = kernel::now();
                input.extend_from_slice(&chunk[..n]);
                while let Some((packet, used)) = mqtt::decode(&input, MAX_PACKET)? {
                    input.drain(..used);
                    received(bus, packet);
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

/// Handles a packet from the broker.
fn received(bus: &Bus, packet: Packet) {
    let Packet::Publish(publish) = packet else {
        return; // SUBACK, PINGRESP
    };
    if !mqtt::topic_matches(
        &edgex::event::command_request_filter(&bus.service),
        &publish.topic,
    ) {
        return;
    }
    match command::parse(&bus.service, &publish.topic, &publish.payload) {
        Ok(request) => match bus.inboxes.iter().find(|i| i.device == request.device) {
            Some(inbox) => {
                inbox.queue.borrow_mut().push_back(request);
                inbox.signal.notify();
            }
            None => {
                STATS.command_errors.fetch_add(1, Relaxed);
                let message = alloc::format!("device `{}` not found", request.device);
                let body = command::response(
                    &request.correlation_id,
                    &request.request_id,
                    Err((404, &message)),
                );
                bus.publish(
                    edgex::event::response_topic(&bus.service, &request.request_id),
                    body,
                );
            }
        },
        Err((id, message)) => {
            STATS.command_errors.fetch_add(1, Relaxed);
            warn!("device-modbus: command on {}: {message}", publish.topic);
            if let Some(id) = id {
                let body = command::response("", &id, Err((400, &message)));
                bus.publish(edgex::event::response_topic(&bus.service, &id), body);
            }
        }
    }
}
