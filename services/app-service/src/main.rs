//! `app-service`: EdgeX's app-service-configurable as a lichen unikernel.
//!
//! Subscribes to events on EdgeX's message bus (`edgex/events/device/#`), runs them through
//! the pipeline ([`app_service::pipeline`]: filter by device and resource, JSON, batch) and
//! publishes the result to an export broker's topic. While the export broker is away,
//! messages wait in a bounded outbox that drops the oldest and counts (logged with the
//! other counters every `stats=` period).
//!
//! With `http_export=[http://|https://]HOST:PORT/PATH` every exported message is also POSTed
//! there (`Connection: close`, one message per request) from its own bounded outbox: a 2xx
//! answer delivers it, a 4xx rejects it (counted, dropped), anything else or no answer keeps
//! it for a retry with backoff.
//!
//! Export options named after app-service-configurable's: `compress=gzip|zlib` (its
//! `Compress` function: compressed, then Base64), `export_qos=0|1|2` (`MQTTExport`'s `QOS`:
//! with 1 a message leaves the outbox only when the broker acknowledged it, and is sent again
//! after a reconnection), `export=tls://HOST:PORT` (also `mqtts://`, `ssl://`; `tcp://` or
//! none for plain TCP) and `https://` for TLS, verified against the root CA given as
//! `tls_root=` (Base64 of its DER) and the wall clock (there is no way to skip verification),
//! `export_user=` and `export_password=` for the export broker's login (`AuthMode`
//! `usernamepassword`).
//!
//! Command line: `broker=HOST:PORT` (the bus, default `10.0.2.2:1883`), `mqtt=4|5` (the
//! bus's protocol level, default 4: MQTT 3.1.1), `qos=0|1|2` (the bus subscription's), `export=[SCHEME://]HOST:PORT` (default: the
//! bus's broker), `export_mqtt=4|5` (default: `mqtt=`), `export_topic=` (default
//! `edgex-export`), `devices=A,B`, `resources=X,Y`, `batch=N` (default 1), `batch_time=`
//! (flush a partial batch after this long, default `1s`), `outbox=N` (default 1000),
//! `stats=` (default `5s`).

#![no_std]
#![no_main]

extern crate alloc;

use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use app_service::compress::Compression;
use app_service::http::{self, Target};
use app_service::pipeline::{Pipeline, Settings};
use core::cell::{Cell, RefCell};
use edgex::device::parse_duration_us;
use kernel::net::{self, TcpOptions, TcpStream};
use kernel::{error, info, warn, Args, Duration};
use mqtt::client::{Client, Options, SessionError};
use mqtt::sync::Signal;
use mqtt::{Outbox, QoS, Version};
use tls::{Transport, Trust};

kernel::service!(main);

fn endpoint(args: &Args, key: &str, default: &str) -> Result<(String, u16), String> {
    let text = args.get(key).unwrap_or(default);
    host_port(key, text)
}

fn host_port(key: &str, text: &str) -> Result<(String, u16), String> {
    text.rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok().filter(|&p| p != 0)?)))
        .filter(|(h, _)| !h.is_empty())
        .ok_or_else(|| alloc::format!("bad `{key}={text}`: expected HOST:PORT"))
}

fn duration(args: &Args, key: &str, default: &str) -> Result<Duration, String> {
    let text = args.get(key).unwrap_or(default);
    parse_duration_us(text)
        .filter(|&us| us > 0)
        .map(Duration::from_micros)
        .ok_or_else(|| alloc::format!("bad `{key}={text}`: expected a duration like 1s"))
}

fn list(args: &Args, key: &str) -> Vec<String> {
    args.get(key)
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// `[SCHEME://]HOST:PORT` of the MQTT export: whether it is TLS, and where.
fn export_endpoint(args: &Args, default: &str) -> Result<(bool, (String, u16)), String> {
    let text = args.get("export").unwrap_or(default);
    let (tls, bare) = match text.split_once("://") {
        Some(("tls" | "mqtts" | "ssl", rest)) => (true, rest),
        Some(("tcp" | "mqtt", rest)) => (false, rest),
        Some(_) => {
            return Err(alloc::format!(
                "bad `export={text}`: the scheme is tcp://, tls://, mqtt:// or mqtts://"
            ))
        }
        None => (false, text),
    };
    Ok((tls, host_port("export", bare)?))
}

fn version(args: &Args, key: &str, default: Version) -> Result<Version, String> {
    Version::from_arg(key, args.get(key), default)
}

/// MQTT over TLS 1.3 to the export broker, verified against the pinned root.
struct TlsConnector(Trust);

/// A TLS connection to the export broker.
struct TlsConnection(tls::TlsStream<TcpStream>);

impl mqtt::client::Connection for TlsConnection {
    fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.0.transport_mut().set_timeout(timeout)
    }

    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, SessionError> {
        self.0
            .read(buf)
            .await
            .map_err(|e| SessionError::Layer(e.to_string()))
    }

    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        self.0
            .write_all(bytes)
            .await
            .map_err(|e| SessionError::Layer(e.to_string()))
    }
}

impl mqtt::client::Connector for TlsConnector {
    type Conn = TlsConnection;

    async fn connect(&self, host: &str, tcp: TcpStream) -> Result<TlsConnection, SessionError> {
        tls::TlsStream::connect(&self.0, host, tcp)
            .await
            .map(TlsConnection)
            .map_err(|e| SessionError::Layer(e.to_string()))
    }
}

/// The wall clock in Unix seconds, for certificate validity.
fn unix_now() -> Option<u64> {
    kernel::wall_clock().and_then(|t| u64::try_from(t.as_secs()).ok())
}

struct Config {
    bus: (String, u16),
    bus_version: Version,
    bus_qos: QoS,
    export: (String, u16),
    export_version: Version,
    export_qos: QoS,
    export_tls: bool,
    compression: Compression,
    trust: Option<Trust>,
    topic: String,
    settings: Settings,
    batch_time: Duration,
    outbox: usize,
    stats: Duration,
    http: Option<Target>,
}

/// The HTTP export: its outbox and counters.
struct HttpExport {
    target: Target,
    trust: Option<Trust>,
    content_type: &'static str,
    outbox: RefCell<Outbox<Vec<u8>>>,
    ready: Signal,
    posted: Cell<u64>,
    rejected: Cell<u64>,
    failures: Cell<u64>,
}

impl HttpExport {
    fn push(&self, body: Vec<u8>) {
        self.outbox.borrow_mut().push(body);
        self.ready.notify();
    }
}

/// POSTs one message (over TLS when the target is `https://`); the answer's status code.
async fn post(export: &HttpExport, body: &[u8]) -> Result<u16, String> {
    let target = &export.target;
    let address = match net::resolve(&target.host).await {
        Ok(a) if !a.is_empty() => a[0],
        _ => return Err(alloc::format!("cannot resolve `{}`", target.host)),
    };
    let options = TcpOptions {
        timeout: Some(Duration::from_secs(5)),
        ..TcpOptions::default()
    };
    let stream = TcpStream::connect(core::net::SocketAddr::new(address, target.port), options)
        .await
        .map_err(|e| e.to_string())?;
    let request = target.request(export.content_type, body);
    match &export.trust {
        Some(trust) if target.tls => {
            let tls = tls::TlsStream::connect(trust, &target.host, stream)
                .await
                .map_err(|e| e.to_string())?;
            exchange(tls, &request).await
        }
        _ => exchange(stream, &request).await,
    }
}

/// Sends the request, reads the answer's status line.
async fn exchange(mut stream: impl Transport, request: &[u8]) -> Result<u16, String> {
    stream.write_all(request).await?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 512];
    let status = loop {
        if let Some(status) = http::status(&answer).map_err(String::from)? {
            break status;
        }
        match stream.read(&mut chunk).await? {
            0 => return Err("closed before a status line".into()),
            n => answer.extend_from_slice(&chunk[..n]),
        }
    };
    drop(stream); // closes in the background
    Ok(status)
}

async fn run_http(export: Rc<HttpExport>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let next = export
            .outbox
            .borrow()
            .front_numbered()
            .map(|(sequence, body)| (sequence, body.clone()));
        let Some((sequence, body)) = next else {
            export.ready.wait().await;
            continue;
        };
        match post(&export, &body).await {
            Ok(200..=299) => {
                export.outbox.borrow_mut().pop_delivered(sequence);
                export.posted.set(export.posted.get() + 1);
                backoff = Duration::from_millis(100);
                continue;
            }
            Ok(status @ 400..=499) => {
                export.outbox.borrow_mut().pop_delivered(sequence);
                export.rejected.set(export.rejected.get() + 1);
                if export.rejected.get() <= 5 {
                    warn!("app-service: http export: {status}: message dropped");
                }
                continue;
            }
            Ok(status) => {
                export.failures.set(export.failures.get() + 1);
                kernel::debug!("app-service: http export: {status}");
            }
            Err(e) => {
                export.failures.set(export.failures.get() + 1);
                kernel::debug!("app-service: http export: {e}");
            }
        }
        kernel::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

fn config(args: &Args) -> Result<Config, String> {
    let bus = endpoint(args, "broker", "10.0.2.2:1883")?;
    let default_export = alloc::format!("{}:{}", bus.0, bus.1);
    let bus_version = version(args, "mqtt", Version::V311)?;
    let (export_tls, export) = export_endpoint(args, &default_export)?;
    let http = args.get("http_export").map(Target::parse).transpose()?;
    let trust = match args.get("tls_root") {
        Some(b64) => {
            use base64ct::{Base64, Encoding};
            let der = Base64::decode_vec(b64).map_err(|_| {
                String::from("bad `tls_root=`: expected Base64 of a DER certificate")
            })?;
            Some(Trust::new(&der, unix_now).map_err(|e| alloc::format!("`tls_root=`: {e}"))?)
        }
        None => None,
    };
    if trust.is_none() && (export_tls || http.as_ref().is_some_and(|t| t.tls)) {
        return Err(
            "TLS export needs the server's root CA: `tls_root=` (Base64 of its DER)".into(),
        );
    }
    let export_qos = QoS::from_arg("export_qos", args.get("export_qos"), QoS::AtMostOnce)?;
    let number = |key: &str, default: usize| {
        args.parse_value::<usize>(key)
            .map_err(|e| e.to_string())
            .map(|v| v.unwrap_or(default))
    };
    let topic = args
        .get("export_topic")
        .unwrap_or("edgex-export")
        .to_string();
    if topic.is_empty() || topic.contains(['+', '#']) {
        return Err(alloc::format!(
            "bad `export_topic={topic}`: a topic name without wildcards"
        ));
    }
    Ok(Config {
        export,
        export_version: version(args, "export_mqtt", bus_version)?,
        export_qos,
        export_tls,
        compression: Compression::parse(args.get("compress").unwrap_or("none"))?,
        trust,
        bus,
        bus_version,
        bus_qos: QoS::from_arg("qos", args.get("qos"), QoS::AtMostOnce)?,
        topic,
        settings: Settings {
            devices: list(args, "devices"),
            resources: list(args, "resources"),
            batch: number("batch", 1)?.max(1),
        },
        batch_time: duration(args, "batch_time", "1s")?,
        outbox: number("outbox", 1000)?.max(1),
        stats: duration(args, "stats", "5s")?,
        http,
    })
}

async fn main(args: Args) -> i32 {
    let config = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            error!("app-service: {e}");
            return 2;
        }
    };
    if let Err(e) = net::start(&args) {
        error!("app-service: {e}");
        return 1;
    }
    match net::wait_for_ipv4().await {
        Ok((a, p)) => info!("app-service: ipv4 address {a}/{p}"),
        Err(e) => {
            error!("app-service: {e}");
            return 1;
        }
    }
    let http_export = config.http.clone().map(|target| {
        Rc::new(HttpExport {
            target,
            trust: config.trust.clone(),
            content_type: if config.compression == Compression::None {
                "application/json"
            } else {
                "text/plain"
            },
            outbox: RefCell::new(Outbox::new(config.outbox)),
            ready: Signal::default(),
            posted: Cell::new(0),
            rejected: Cell::new(0),
            failures: Cell::new(0),
        })
    });
    if let Some(h) = &http_export {
        kernel::spawn(run_http(h.clone()));
    }
    let input = Client::new(16);
    let export = Client::new(config.outbox);
    let pipeline = Rc::new(RefCell::new(Pipeline::new(config.settings.clone())));
    let malformed = Rc::new(Cell::new(0u64));
    let received = Rc::new(Cell::new(0u64));
    let export_options = Options {
        host: config.export.0.clone(),
        port: config.export.1,
        client_id: "app-service-export".into(),
        subscriptions: Vec::new(),
        version: config.export_version,
        qos: config.export_qos,
        keep_alive_s: 30,
        max_packet: 16 * 1024,
        username: args.get("export_user").map(String::from),
        password: args.get("export_password").map(|p| p.as_bytes().to_vec()),
        ..Options::default()
    };
    match (&config.trust, config.export_tls) {
        (Some(trust), true) => {
            kernel::spawn(mqtt::client::run_with(
                export.clone(),
                export_options,
                TlsConnector(trust.clone()),
                |_| {},
            ));
        }
        _ => {
            kernel::spawn(mqtt::client::run(export.clone(), export_options, |_| {}));
        }
    }
    let compression = config.compression;
    let (p, out, bad, seen, topic, to_http) = (
        pipeline.clone(),
        export.clone(),
        malformed.clone(),
        received.clone(),
        config.topic.clone(),
        http_export.clone(),
    );
    kernel::spawn(mqtt::client::run(
        input.clone(),
        Options {
            host: config.bus.0.clone(),
            port: config.bus.1,
            client_id: "app-service".into(),
            subscriptions: alloc::vec!["edgex/events/device/#".into()],
            version: config.bus_version,
            qos: config.bus_qos,
            keep_alive_s: 30,
            max_packet: 256 * 1024,
            ..Options::default()
        },
        move |publish| {
            seen.set(seen.get() + 1);
            match p.borrow_mut().push(&publish.payload) {
                Ok(Some(json)) => {
                    let json = compression.apply(json);
                    if let Some(h) = &to_http {
                        h.push(json.clone());
                    }
                    out.publish(topic.clone(), json)
                }
                Ok(None) => {}
                Err(e) => {
                    bad.set(bad.get() + 1);
                    if bad.get() <= 5 {
                        warn!("app-service: event on {}: {e}", publish.topic);
                    }
                }
            }
        },
    ));
    info!(
        "app-service: bus {}:{}, export {}{}:{} topic {} qos {}, batch {}, compress {:?}",
        config.bus.0,
        config.bus.1,
        if config.export_tls { "tls://" } else { "" },
        config.export.0,
        config.export.1,
        config.topic,
        config.export_qos as u8,
        config.settings.batch,
        config.compression
    );
    let mut next_stats = kernel::now() + config.stats;
    loop {
        kernel::sleep(config.batch_time.min(config.stats)).await;
        let flushed = pipeline.borrow_mut().flush();
        if let Some(json) = flushed.map(|j| compression.apply(j)) {
            if let Some(h) = &http_export {
                h.push(json.clone());
            }
            export.publish(config.topic.clone(), json);
        }
        if kernel::now() >= next_stats {
            next_stats = kernel::now() + config.stats;
            let (published, queued, dropped, connects, failures) = export.counters();
            let (inflight, resent, refused) = export.qos_counters();
            if let Some(h) = &http_export {
                let o = h.outbox.borrow();
                info!(
                    "app-service: http stats posted {} rejected {} failures {} queued {} dropped {}",
                    h.posted.get(),
                    h.rejected.get(),
                    h.failures.get(),
                    o.len(),
                    o.dropped()
                );
            }
            info!(
                "app-service: stats received {} filtered {} malformed {} exported {} queued {} dropped {} inflight {} resent {} refused {} export_connects {} export_failures {} heap_used {}",
                received.get(),
                pipeline.borrow().filtered,
                malformed.get(),
                published,
                queued,
                dropped,
                inflight,
                resent,
                refused,
                connects,
                failures,
                kernel::mem::heap_used()
            );
        }
    }
}
