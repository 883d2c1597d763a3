//! `app-service`: EdgeX's app-service-configurable as a lichen unikernel.
//!
//! Subscribes to events on EdgeX's message bus (`edgex/events/device/#`), runs them through
//! the pipeline ([`app_service::pipeline`]: filter by device and resource, JSON, batch) and
//! publishes the result to an export broker's topic. While the export broker is away,
//! messages wait in a bounded outbox that drops the oldest and counts (logged with the
//! other counters every `stats=` period).
//!
//! With `http_export=HOST:PORT/PATH` every exported message is also POSTed there (JSON,
//! `Connection: close`, one message per request) from its own bounded outbox: a 2xx answer
//! delivers it, a 4xx rejects it (counted, dropped), anything else or no answer keeps it for a
//! retry with backoff.
//!
//! Command line: `broker=HOST:PORT` (the bus, default `10.0.2.2:1883`), `export=HOST:PORT`
//! (default: the bus's broker), `export_topic=` (default `edgex-export`), `devices=A,B`,
//! `resources=X,Y`, `batch=N` (default 1), `batch_time=` (flush a partial batch after this
//! long, default `1s`), `outbox=N` (default 1000), `stats=` (default `5s`).

#![no_std]
#![no_main]

extern crate alloc;

use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use app_service::http::{self, Target};
use app_service::pipeline::{Pipeline, Settings};
use core::cell::{Cell, RefCell};
use edgex::device::parse_duration_us;
use kernel::net::{self, TcpOptions, TcpStream};
use kernel::{error, info, warn, Args, Duration};
use mqtt::client::{Client, Options};
use mqtt::sync::Signal;
use mqtt::Outbox;

kernel::service!(main);

fn endpoint(args: &Args, key: &str, default: &str) -> Result<(String, u16), String> {
    let text = args.get(key).unwrap_or(default);
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

struct Config {
    bus: (String, u16),
    export: (String, u16),
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

/// POSTs one message; the answer's status code.
async fn post(target: &Target, body: &[u8]) -> Result<u16, String> {
    let address = match net::resolve(&target.host).await {
        Ok(a) if !a.is_empty() => a[0],
        _ => return Err(alloc::format!("cannot resolve `{}`", target.host)),
    };
    let options = TcpOptions {
        timeout: Some(Duration::from_secs(5)),
        ..TcpOptions::default()
    };
    let mut stream = TcpStream::connect(core::net::SocketAddr::new(address, target.port), options)
        .await
        .map_err(|e| e.to_string())?;
    stream
        .write_all(&target.request(body))
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 512];
    let status = loop {
        if let Some(status) = http::status(&answer).map_err(String::from)? {
            break status;
        }
        match stream.read(&mut chunk).await {
            Ok(0) => return Err("closed before a status line".into()),
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(e.to_string()),
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
        match post(&export.target, &body).await {
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
        export: endpoint(args, "export", &default_export)?,
        bus,
        topic,
        settings: Settings {
            devices: list(args, "devices"),
            resources: list(args, "resources"),
            batch: number("batch", 1)?.max(1),
        },
        batch_time: duration(args, "batch_time", "1s")?,
        outbox: number("outbox", 1000)?.max(1),
        stats: duration(args, "stats", "5s")?,
        http: args.get("http_export").map(Target::parse).transpose()?,
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
    kernel::spawn(mqtt::client::run(
        export.clone(),
        Options {
            host: config.export.0.clone(),
            port: config.export.1,
            client_id: "app-service-export".into(),
            subscriptions: Vec::new(),
            keep_alive_s: 30,
            max_packet: 16 * 1024,
            ..Options::default()
        },
        |_| {},
    ));
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
            keep_alive_s: 30,
            max_packet: 256 * 1024,
            ..Options::default()
        },
        move |publish| {
            seen.set(seen.get() + 1);
            match p.borrow_mut().push(&publish.payload) {
                Ok(Some(json)) => {
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
        "app-service: bus {}:{}, export {}:{} topic {}, batch {}",
        config.bus.0,
        config.bus.1,
        config.export.0,
        config.export.1,
        config.topic,
        config.settings.batch
    );
    let mut next_stats = kernel::now() + config.stats;
    loop {
        kernel::sleep(config.batch_time.min(config.stats)).await;
        if let Some(json) = pipeline.borrow_mut().flush() {
            if let Some(h) = &http_export {
                h.push(json.clone());
            }
            export.publish(config.topic.clone(), json);
        }
        if kernel::now() >= next_stats {
            next_stats = kernel::now() + config.stats;
            let (published, queued, dropped, connects, failures) = export.counters();
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
                "app-service: stats received {} filtered {} malformed {} exported {} queued {} dropped {} export_connects {} export_failures {} heap_used {}",
                received.get(),
                pipeline.borrow().filtered,
                malformed.get(),
                published,
                queued,
                dropped,
                connects,
                failures,
                kernel::mem::heap_used()
            );
        }
    }
}
