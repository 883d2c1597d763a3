//! `core-data`: EdgeX's core-data and core-command as a lichen unikernel.
//!
//! - Subscribes to EdgeX's message bus (MQTT) for events (`edgex/events/device/#`) and keeps
//!   the newest `max_events` in memory (the oldest dropped and counted).
//! - Serves EdgeX's v3 REST API on `http_port` (59880, core-data's port) and `command_port`
//!   (59882, core-command's): event submission and queries, readings, counts (see
//!   [`core_data::api`]), and `GET`/`PUT /api/v3/device/name/{device}/{command}`, forwarded
//!   to the device's service over the bus (the service is learnt from the device's event
//!   topics, else `device_service=`); the answer comes back on `edgex/response/#`.
//!
//! - With `persist=vault`, the events are also kept in the node's vault (the persistent table
//!   `core-data/Event`, [`core_data::persist`]): the newest `max_events` within `persist_kib`
//!   KiB of JSON (default and at most 128). At start core-data waits for the vault's copy and serves it
//!   before anything new; `core-data: N events durable` tells when the vault committed them.
//!
//! Command line: `broker=HOST:PORT` (default `10.0.2.2:1883`), `mqtt=4|5` (the broker's
//! protocol level, default 4: MQTT 3.1.1), `qos=0|1|2` (default 0), `http_port=`, `command_port=`,
//! `max_events=` (default 1000), `device_service=` (default `device-modbus`),
//! `command_timeout=` (default `5s`), `stats=` (default `5s`), `persist=vault`, `persist_kib=`.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core_data::api::{self, Action};
use core_data::http;
use core_data::persist::{Change, Journal};
use core_data::store::Store;
use edgex::device::parse_duration_us;
use edgex::{AddEventRequest, Envelope, Ids};
use kernel::net::{self, TcpListener, TcpOptions, TcpStream};
use kernel::{error, info, warn, Args, Duration};
use mqtt::client::{Client, Options};
use mqtt::sync::Signal;
use mqtt::Publish;
use topics::core_data::{StoredEvent, EVENTS};
use topics::vault::STORED;

kernel::service! {
    main: main,
    memory_floor_mib: kernel::DEFAULT_MEMORY_FLOOR_MIB,
    publishes: &[EVENTS.decl()],
    subscribes: &[STORED.decl()],
}

/// A command waiting for its device service's answer.
struct Pending {
    request_id: String,
    answer: RefCell<Option<Vec<u8>>>,
    signal: Signal,
}

/// What the tasks share.
struct State {
    store: RefCell<Store>,
    client: Rc<Client>,
    /// Device name to the service that publishes its events.
    services: RefCell<Vec<(String, String)>>,
    default_service: String,
    pending: RefCell<Vec<Rc<Pending>>>,
    ids: RefCell<Ids>,
    command_timeout: Duration,
    received: Cell<u64>,
    malformed: Cell<u64>,
    duplicates: Cell<u64>,
    requests: Cell<u64>,
    commands: Cell<u64>,
    /// The vault's table and its bookkeeping, with `persist=vault`.
    persisted: Option<Persisted>,
    /// Connections being served (each may buffer up to a request's limit).
    active: Cell<usize>,
    refused: Cell<u64>,
}

/// The persistent table of events and what it holds.
struct Persisted {
    /// The node's bus (its channels serve the table to the vault).
    _node: bus_io::Node,
    table: bus_io::Publication<String, StoredEvent>,
    journal: RefCell<Journal>,
    /// Raised when the table changed (the durability reporter waits for it).
    changed: Signal,
}

impl Persisted {
    /// Applies the journal's changes to the table.
    fn apply(&self, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        for change in changes {
            let result = match change {
                Change::Put(key, json) => self.table.publish(&key, &StoredEvent { json }),
                Change::Delete(key) => self.table.unpublish(&key).map(drop),
            };
            if let Err(e) = result {
                error!("core-data: the persistent table refused a change: {e}");
            }
        }
        self.changed.notify();
    }
}

/// How long core-data waits for its IPv4 address before it gives up (and fails).
const NET_TIMEOUT: Duration = Duration::from_secs(90);

/// The most JSON kept in the vault, KiB: all of it may be pending at once, and the vault
/// commits pending changes as one record of at most 256 KiB (services/vault).
const MAX_PERSIST_KIB: usize = 128;

/// Connections served at once: each may hold a request of up to `http::MAX_BODY` bytes.
const MAX_CONNECTIONS: usize = 16;

struct Settings {
    broker: (String, u16),
    mqtt: mqtt::Version,
    qos: mqtt::QoS,
    http_port: u16,
    command_port: u16,
    max_events: usize,
    device_service: String,
    command_timeout: Duration,
    stats: Duration,
    /// `persist=vault`: keep the events in the vault, within this many bytes.
    persist: Option<usize>,
}

fn settings(args: &Args) -> Result<Settings, String> {
    let broker = args.get("broker").unwrap_or("10.0.2.2:1883");
    let broker = broker
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok().filter(|&p| p != 0)?)))
        .filter(|(h, _)| !h.is_empty())
        .ok_or_else(|| alloc::format!("bad `broker={broker}`: expected HOST:PORT"))?;
    let duration = |key: &str, default: &str| -> Result<Duration, String> {
        let text = args.get(key).unwrap_or(default);
        parse_duration_us(text)
            .filter(|&us| us > 0)
            .map(Duration::from_micros)
            .ok_or_else(|| alloc::format!("bad `{key}={text}`: expected a duration like 5s"))
    };
    let number = |key: &str, default: usize| -> Result<usize, String> {
        args.parse_value::<usize>(key)
            .map_err(|e| e.to_string())
            .map(|v| v.unwrap_or(default))
    };
    Ok(Settings {
        broker,
        mqtt: mqtt::Version::from_arg("mqtt", args.get("mqtt"), mqtt::Version::V311)?,
        qos: mqtt::QoS::from_arg("qos", args.get("qos"), mqtt::QoS::AtMostOnce)?,
        http_port: args
            .parse_value("http_port")
            .map_err(|e| e.to_string())?
            .unwrap_or(59880),
        command_port: args
            .parse_value("command_port")
            .map_err(|e| e.to_string())?
            .unwrap_or(59882),
        max_events: number("max_events", 1000)?.max(1),
        device_service: args
            .get("device_service")
            .unwrap_or("device-modbus")
            .to_string(),
        command_timeout: duration("command_timeout", "5s")?,
        stats: duration("stats", "5s")?,
        persist: match args.get("persist") {
            None | Some("none") => None,
            Some("vault") => match number("persist_kib", MAX_PERSIST_KIB)? {
                kib @ 1..=MAX_PERSIST_KIB => Some(kib * 1024),
                kib => {
                    return Err(alloc::format!(
                        "bad `persist_kib={kib}`: 1 to {MAX_PERSIST_KIB} (every pending change must fit one vault commit)"
                    ))
                }
            },
            Some(other) => {
                return Err(alloc::format!(
                    "bad `persist={other}`: expected `vault` or `none`"
                ))
            }
        },
    })
}

async fn main(args: Args) -> i32 {
    let settings = match settings(&args) {
        Ok(s) => s,
        Err(e) => {
            error!("core-data: {e}");
            return 2;
        }
    };
    if let Err(e) = net::start(&args) {
        error!("core-data: {e}");
        return 1;
    }
    let mut listeners = Vec::new();
    for port in [settings.http_port, settings.command_port] {
        if listeners.iter().any(|l: &TcpListener| l.port() == port) {
            continue;
        }
        match TcpListener::bind(port, 64, TcpOptions::default()) {
            Ok(l) => listeners.push(l),
            Err(e) => {
                error!("core-data: port {port}: {e}");
                return 1;
            }
        }
    }
    // A node's supervisor restarts a service that fails: a network card whose backend never
    // answered (a busy dom0) gets a fresh start rather than a service waiting forever.
    match kernel::timeout(NET_TIMEOUT, net::wait_for_ipv4()).await {
        Ok(Ok((a, p))) => info!("core-data: ipv4 address {a}/{p}"),
        Ok(Err(e)) => {
            error!("core-data: {e}");
            return 1;
        }
        Err(_) => {
            error!("core-data: no ipv4 address within {NET_TIMEOUT:?}");
            return 1;
        }
    }
    let mut store = Store::new(settings.max_events);
    let persisted = match settings.persist {
        None => None,
        Some(max_bytes) => match restore(&mut store, settings.max_events, max_bytes).await {
            Ok(p) => Some(p),
            Err(e) => {
                error!("core-data: {e}");
                return 1;
            }
        },
    };
    let state = Rc::new(State {
        store: RefCell::new(store),
        client: Client::new(256),
        services: RefCell::new(Vec::new()),
        default_service: settings.device_service.clone(),
        pending: RefCell::new(Vec::new()),
        ids: RefCell::new(Ids::new(kernel::arch::cpu::rdtsc())),
        command_timeout: settings.command_timeout,
        received: Cell::new(0),
        malformed: Cell::new(0),
        duplicates: Cell::new(0),
        requests: Cell::new(0),
        commands: Cell::new(0),
        active: Cell::new(0),
        refused: Cell::new(0),
        persisted,
    });
    if state.persisted.is_some() {
        kernel::spawn(report_durable(state.clone()));
    }
    let options = Options {
        host: settings.broker.0.clone(),
        port: settings.broker.1,
        client_id: "core-data".into(),
        subscriptions: alloc::vec!["edgex/events/device/#".into(), "edgex/response/#".into()],
        keep_alive_s: 30,
        max_packet: 256 * 1024,
        version: settings.mqtt,
        qos: settings.qos,
        ..Options::default()
    };
    let receiver = state.clone();
    kernel::spawn(mqtt::client::run(state.client.clone(), options, move |p| {
        received(&receiver, p)
    }));
    kernel::spawn(report(state.clone(), settings.stats));
    info!(
        "core-data: serving EdgeX v3 on ports {} and {}, broker {}:{}",
        settings.http_port, settings.command_port, settings.broker.0, settings.broker.1
    );
    for listener in listeners {
        kernel::spawn(serve(state.clone(), listener));
    }
    loop {
        kernel::sleep(Duration::from_secs(3600)).await;
    }
}

/// A message from the bus: an event to keep or a command's answer.
fn received(state: &State, publish: Publish) {
    if let Some(rest) = publish.topic.strip_prefix("edgex/events/device/") {
        let envelope: Envelope<AddEventRequest> = match serde_json::from_slice(&publish.payload) {
            Ok(e) => e,
            Err(e) => {
                let n = state.malformed.get();
                state.malformed.set(n + 1);
                if n < 5 {
                    warn!("core-data: event on {}: {e}", publish.topic);
                }
                return;
            }
        };
        let event = envelope.payload.event;
        if let Some(service) = rest.split('/').next() {
            let mut services = state.services.borrow_mut();
            match services.iter_mut().find(|(d, _)| *d == event.device_name) {
                Some((_, s)) if s == service => {}
                Some((_, s)) => *s = service.to_string(),
                None => services.push((event.device_name.clone(), service.to_string())),
            }
        }
        state.received.set(state.received.get() + 1);
        if !keep(state, event) {
            state.duplicates.set(state.duplicates.get() + 1);
        }
    } else if publish.topic.starts_with("edgex/response/") {
        let id = publish.topic.rsplit('/').next().unwrap_or("");
        if let Some(p) = state.pending.borrow().iter().find(|p| p.request_id == id) {
            *p.answer.borrow_mut() = Some(publish.payload);
            p.signal.notify();
        }
    }
}

/// Keeps a new event in the store, and in the vault when persistence is asked; `false` if an
/// event with its id is kept already.
fn keep(state: &State, event: edgex::Event) -> bool {
    if state.store.borrow().contains(&event.id) {
        return false;
    }
    if let Some(p) = &state.persisted {
        let changes = p.journal.borrow_mut().record(&event);
        p.apply(changes);
    }
    state.store.borrow_mut().add(event)
}

/// Waits for the vault's copy of `core-data/Event` and puts its events in `store`, oldest
/// first; deletes what the journal does not keep.
async fn restore(
    store: &mut Store,
    max_events: usize,
    max_bytes: usize,
) -> Result<Persisted, String> {
    info!(
        "core-data: waiting for the vault's copy of {}",
        EVENTS.name()
    );
    let node = bus_io::channel::node().await;
    let table = node
        .publish_persistent(&EVENTS)
        .await
        .map_err(|e| alloc::format!("{}: {e}", EVENTS.name()))?;
    let stored: Vec<(String, Vec<u8>)> = table
        .shared()
        .with(|p| p.iter().map(|(k, v)| (k.to_string(), v.json)).collect());
    let mut journal = Journal::new(max_events, max_bytes);
    let restored = journal.restore(stored);
    let count = restored.events.len();
    for event in restored.events {
        store.add(event);
    }
    let (_, _, unreadable) = journal.counters();
    info!(
        "core-data: {count} events restored from the vault ({unreadable} unreadable objects deleted)"
    );
    let persisted = Persisted {
        _node: node,
        table,
        journal: RefCell::new(journal),
        changed: Signal::default(),
    };
    persisted.apply(restored.changes);
    Ok(persisted)
}

/// Logs `core-data: N events durable` whenever the vault has committed the table as it was.
async fn report_durable(state: Rc<State>) {
    let Some(p) = &state.persisted else {
        return;
    };
    let mut last = usize::MAX;
    loop {
        p.table.durable().await;
        let n = p.journal.borrow().len();
        if n != last {
            info!("core-data: {n} events durable");
            last = n;
        }
        p.changed.wait().await;
    }
}

async fn serve(state: Rc<State>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(mut stream) => {
                stream.set_timeout(Some(Duration::from_secs(10)));
                if state.active.get() >= MAX_CONNECTIONS {
                    state.refused.set(state.refused.get() + 1);
                    let (status, body) = respond(api::error(503, "too many connections"));
                    kernel::spawn(async move {
                        let _ = stream.write_all(&http::response(status, &body)).await;
                        let _ = stream.close().await;
                    });
                    continue;
                }
                state.active.set(state.active.get() + 1);
                let state = state.clone();
                kernel::spawn(async move {
                    handle(&state, &mut stream).await;
                    let _ = stream.close().await;
                    state.active.set(state.active.get() - 1);
                });
            }
            Err(e) => {
                warn!("core-data: accept: {e}");
                kernel::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Requests served on one connection at most (then it is closed).
const MAX_REQUESTS_PER_CONNECTION: u32 = 1000;

/// Serves the requests of one connection: several with keep-alive, each answered in order;
/// a malformed one is answered and ends the connection. An idle connection ends with the
/// stream's timeout.
async fn handle(state: &State, stream: &mut TcpStream) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 2048];
    for served in 1..=MAX_REQUESTS_PER_CONNECTION {
        let request = loop {
            match http::parse(&buffer) {
                Ok(Some(r)) => break r,
                Ok(None) => {}
                Err(e) => {
                    let body = match api::error(e.status, e.message) {
                        Action::Respond(_, b) => b,
                        _ => Vec::new(),
                    };
                    let _ = stream.write_all(&http::response(e.status, &body)).await;
                    return;
                }
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        buffer.drain(..request.length);
        let keep_alive = request.keep_alive && served < MAX_REQUESTS_PER_CONNECTION;
        let (status, body) = serve_request(state, request).await;
        let answer = http::response_keeping(status, &body, keep_alive);
        if stream.write_all(&answer).await.is_err() || !keep_alive {
            return;
        }
    }
}

/// Routes one request and runs what it asks.
async fn serve_request(state: &State, request: http::Request) -> (u16, Vec<u8>) {
    state.requests.set(state.requests.get() + 1);
    let action = api::route(&state.store.borrow(), &request);
    match action {
        Action::Respond(status, body) => (status, body),
        Action::Add(event) => {
            let id = event.id.clone();
            if keep(state, event) {
                (201, api::created(&id))
            } else {
                respond(api::error(409, "an event with this id exists"))
            }
        }
        Action::Command {
            device,
            command,
            settings,
        } => forward(state, &device, &command, settings).await,
    }
}

fn respond(action: Action) -> (u16, Vec<u8>) {
    match action {
        Action::Respond(s, b) => (s, b),
        _ => (500, Vec::new()),
    }
}

/// Sends a command to the device's service and waits for its answer.
async fn forward(
    state: &State,
    device: &str,
    command: &str,
    settings: Option<serde_json::Value>,
) -> (u16, Vec<u8>) {
    state.commands.set(state.commands.get() + 1);
    let service = state
        .services
        .borrow()
        .iter()
        .find(|(d, _)| d == device)
        .map_or_else(|| state.default_service.clone(), |(_, s)| s.clone());
    let method = if settings.is_some() { "set" } else { "get" };
    let request_id = state.ids.borrow_mut().next_id();
    let payload = settings.unwrap_or(serde_json::Value::Object(Default::default()));
    let envelope = Envelope::new(payload, request_id.clone(), request_id.clone());
    let body = serde_json::to_vec(&envelope).unwrap_or_default();
    let pending = Rc::new(Pending {
        request_id: request_id.clone(),
        answer: RefCell::new(None),
        signal: Signal::default(),
    });
    state.pending.borrow_mut().push(pending.clone());
    state.client.publish(
        alloc::format!("edgex/device/command/request/{service}/{device}/{command}/{method}"),
        body,
    );
    let answered = kernel::timeout(state.command_timeout, pending.signal.wait()).await;
    state
        .pending
        .borrow_mut()
        .retain(|p| p.request_id != request_id);
    if answered.is_err() {
        return respond(api::error(
            503,
            &alloc::format!(
                "{service} did not answer within {:?}",
                state.command_timeout
            ),
        ));
    }
    let answer = pending.answer.borrow_mut().take().unwrap_or_default();
    match serde_json::from_slice::<Envelope<serde_json::Value>>(&answer) {
        Ok(envelope) => {
            let status = envelope
                .payload
                .get("statusCode")
                .and_then(|s| s.as_u64())
                .and_then(|s| u16::try_from(s).ok())
                .filter(|s| (200..600).contains(s))
                .unwrap_or(500);
            (
                status,
                serde_json::to_vec(&envelope.payload).unwrap_or_default(),
            )
        }
        Err(_) => respond(api::error(500, "the device service's answer is malformed")),
    }
}

async fn report(state: Rc<State>, every: Duration) {
    loop {
        kernel::sleep(every).await;
        let (published, queued, dropped, connects, failures) = state.client.counters();
        let store = state.store.borrow();
        info!(
            "core-data: stats received {} stored {} store_dropped {} duplicates {} malformed {} requests {} refused {} commands {} published {} queued {} dropped {} broker_connects {} broker_failures {} heap_used {}",
            state.received.get(),
            store.len(),
            store.dropped(),
            state.duplicates.get(),
            state.malformed.get(),
            state.requests.get(),
            state.refused.get(),
            state.commands.get(),
            published,
            queued,
            dropped,
            connects,
            failures,
            kernel::mem::heap_used()
        );
        if let Some(p) = &state.persisted {
            let journal = p.journal.borrow();
            let (evicted, too_large, unreadable) = journal.counters();
            info!(
                "core-data: persisted {} bytes {} evicted {} too_large {} unreadable {}",
                journal.len(),
                journal.bytes(),
                evicted,
                too_large,
                unreadable
            );
        }
    }
}
