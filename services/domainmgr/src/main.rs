//! `domainmgr`: EVE's domain manager. It follows `zedmanager/DomainConfig`, asks the launcher's
//! domain service (channel `domains`, services/lib/launcher-api) to create, start, stop and
//! destroy app domains accordingly, and publishes each app's `domainmgr/DomainStatus` from what
//! the launcher reports. The decisions are the reconciler's (src/lib.rs); this is its I/O.
//!
//! The launcher keeps app domains when domainmgr dies: a new domainmgr adopts them from the
//! launcher's welcome. Nothing is decided before the configuration view is synchronized, so a
//! restart never mistakes a running app for a deleted one.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use bus_io::Subscription;
use domainmgr::{action_name, Reconciler};
use kernel::channel::Channel;
use kernel::{error, info, warn, Args, Duration};
use launcher_api::frame::{decode, encode, Decoder};
use launcher_api::{FromLauncher, Op, Reply, Request, CHANNEL, VERSION};
use topics::domainmgr::DOMAIN_STATUS;
use topics::zedmanager::{DomainConfig, DOMAIN_CONFIG};

kernel::service! {
    main: main,
    memory_floor_mib: 4,
    publishes: &[DOMAIN_STATUS.decl()],
    subscribes: &[DOMAIN_CONFIG.decl()],
}

/// How long the launcher may take to answer the hello. Xen's vchan-socket-proxy, dom0's end,
/// can miss a first write that lands together with the connection (it then waits for the
/// next event): a connection whose hello goes unanswered is made again.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// How long after connecting the hello is sent, so that the connection's event and the
/// hello's are not one.
const HELLO_PAUSE: Duration = Duration::from_millis(250);

/// How long the launcher may take to answer a request (a create reads the kernel and builds
/// the domain: tens of milliseconds natively, seconds under QEMU TCG; a Linux VM's create runs
/// `xl create`, which decompresses Debian's kernel from the app's volume: 150 s were measured
/// under TCG on a loaded machine). A request that outlives it makes a new connection, whose
/// welcome lists what the request did.
const REPLY_TIMEOUT: Duration = Duration::from_secs(300);

async fn main(_args: Args) -> i32 {
    let node = bus_io::channel::node().await;
    let (configs, status) = match (node.subscribe(&DOMAIN_CONFIG), node.publish(&DOMAIN_STATUS)) {
        (Ok(configs), Ok(status)) => (configs, status),
        (Err(e), _) | (_, Err(e)) => {
            error!("{e}");
            return 1;
        }
    };
    let mut reconciler = Reconciler::new();
    loop {
        let mut link = match connect(&mut reconciler).await {
            Ok(link) => link,
            Err(e) => {
                warn!("domain service: {e}; trying again");
                kernel::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if let Err(e) = serve(&mut link, &mut reconciler, &configs, &status).await {
            warn!("domain service: {e}; reconnecting");
        }
        link.channel.close();
    }
}

/// The channel to the launcher and what arrived on it but was not taken yet.
struct Link {
    channel: Channel,
    decoder: Decoder,
    pending: Vec<FromLauncher>,
    next_id: u32,
}

impl Link {
    async fn send(&mut self, op: Op) -> Result<u32, String> {
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        let frame = encode(&Request { id, op }).map_err(|e| alloc::format!("encode: {e:?}"))?;
        self.channel
            .write_all(&frame)
            .await
            .map_err(|e| alloc::format!("write: {e}"))?;
        Ok(id)
    }

    /// The next message, waiting up to `wait`; `Ok(None)` when none came.
    async fn next(&mut self, wait: Duration) -> Result<Option<FromLauncher>, String> {
        loop {
            if !self.pending.is_empty() {
                return Ok(Some(self.pending.remove(0)));
            }
            let mut buf = [0u8; 2048];
            let n = match kernel::timeout(wait, self.channel.read(&mut buf)).await {
                Err(_) => return Ok(None),
                Ok(Err(e)) => return Err(alloc::format!("read: {e}")),
                Ok(Ok(0)) => return Err("the launcher closed the channel".into()),
                Ok(Ok(n)) => n,
            };
            let payloads = self
                .decoder
                .feed(&buf[..n])
                .map_err(|e| alloc::format!("{e}"))?;
            for payload in payloads {
                match decode::<FromLauncher>(&payload) {
                    Some(message) => self.pending.push(message),
                    None => return Err("a message that does not decode".into()),
                }
            }
        }
    }

    /// Waits for the reply to request `id`, handing events to `reconciler` meanwhile.
    async fn reply(
        &mut self,
        id: u32,
        reconciler: &mut Reconciler,
        timeout: Duration,
    ) -> Result<Result<Reply, launcher_api::Refusal>, String> {
        let deadline = kernel::now().saturating_add(timeout);
        loop {
            let left = deadline.saturating_duration_since(kernel::now());
            if left == Duration::ZERO {
                return Err(alloc::format!("no reply to request {id}"));
            }
            match self.next(left).await? {
                Some(FromLauncher::Reply { id: got, result }) if got == id => return Ok(result),
                Some(FromLauncher::Reply { id: got, .. }) => {
                    warn!("a reply to request {got}, waiting for {id}")
                }
                Some(FromLauncher::Event(event)) => reconciler.event(event),
                None => {}
            }
        }
    }
}

/// Opens the channel and says hello; the welcome's domains are adopted.
async fn connect(reconciler: &mut Reconciler) -> Result<Link, String> {
    let channel = kernel::channel::open(CHANNEL, Duration::from_secs(30))
        .await
        .map_err(|e| alloc::format!("cannot open channel {CHANNEL}: {e}"))?;
    let mut link = Link {
        channel,
        decoder: Decoder::new(),
        pending: Vec::new(),
        next_id: 0,
    };
    kernel::sleep(HELLO_PAUSE).await;
    let id = link.send(Op::Hello { version: VERSION }).await?;
    match link.reply(id, reconciler, HELLO_TIMEOUT).await? {
        Ok(Reply::Welcome { limits, domains }) => {
            info!(
                "domain service: connected; apps may use {} MiB, {} vCPUs, {} domains; {} app domains exist",
                limits.memory_mib,
                limits.vcpus,
                limits.count,
                domains.len()
            );
            reconciler.welcome(domains);
            Ok(link)
        }
        Ok(other) => Err(alloc::format!("hello answered with {other:?}")),
        Err(refusal) => Err(alloc::format!("hello refused: {refusal}")),
    }
}

/// Reconciles until the connection fails.
async fn serve(
    link: &mut Link,
    reconciler: &mut Reconciler,
    configs: &Subscription<DomainConfig>,
    status: &bus_io::Publication<String, topics::domainmgr::DomainStatus>,
) -> Result<(), String> {
    let mut published: Vec<String> = Vec::new();
    loop {
        while configs.try_next().is_some() {}
        let view: Option<BTreeMap<String, DomainConfig>> = configs.with(|s| {
            s.is_synchronized().then(|| {
                s.iter()
                    .map(|(k, v)| (String::from(k), v.clone()))
                    .collect()
            })
        });
        if let Some(view) = view {
            let entries = || view.iter().map(|(k, v)| (k.as_str(), v));
            let mut acted = false;
            while let Some(action) = reconciler.next_action(entries()) {
                acted = true;
                let name = String::from(action_name(&action));
                let config = view.get(&name);
                info!("asking the launcher: {}", describe(&action));
                let id = link.send(action.clone()).await?;
                match link.reply(id, reconciler, REPLY_TIMEOUT).await? {
                    Ok(_) => {
                        if let (Op::Create { .. }, Some(config)) = (&action, config) {
                            reconciler.created(&name, config);
                        }
                    }
                    Err(refusal) => {
                        warn!("app {name}: the launcher refused: {refusal}");
                        reconciler.refused(&action, config, &refusal);
                    }
                }
                // Take the events that came with it before deciding again.
                while let Some(message) = link.next(Duration::from_millis(1)).await? {
                    if let FromLauncher::Event(event) = message {
                        reconciler.event(event);
                    }
                }
            }
            if acted {
                info!("heap in use: {} KiB", kernel::mem::heap_used() / 1024);
            }
            publish(reconciler, &view, status, &mut published);
        }
        // Wait for the launcher's events (or a configuration change, seen at the next round).
        if let Some(message) = link.next(Duration::from_millis(200)).await? {
            match message {
                FromLauncher::Event(event) => {
                    info!("app {}: {}", event.name, event.state);
                    reconciler.event(event);
                }
                FromLauncher::Reply { id, .. } => warn!("an unexpected reply to request {id}"),
            }
        }
    }
}

/// Publishes every configured app's status; unpublishes the deleted ones'.
fn publish(
    reconciler: &Reconciler,
    view: &BTreeMap<String, DomainConfig>,
    status: &bus_io::Publication<String, topics::domainmgr::DomainStatus>,
    published: &mut Vec<String>,
) {
    for (name, config) in view {
        let new = reconciler.status(name, config);
        if let Err(e) = status.publish(name, &new) {
            error!("cannot publish the status of {name}: {e}");
        }
    }
    published.retain(|name| {
        let keep = view.contains_key(name);
        if !keep {
            let _ = status.unpublish(name);
        }
        keep
    });
    for name in view.keys() {
        if !published.contains(name) {
            published.push(name.clone());
        }
    }
}

/// One line for the log.
fn describe(op: &Op) -> String {
    match op {
        Op::Create { name, spec } => alloc::format!(
            "create {name} ({} MiB, {} vCPUs, kernel from {})",
            spec.memory_mib,
            spec.vcpus,
            spec.kernel
        ),
        Op::Start { name } => alloc::format!("start {name}"),
        Op::Stop { name, grace_ms } => alloc::format!("stop {name} (grace {grace_ms} ms)"),
        Op::Destroy { name } => alloc::format!("destroy {name}"),
        Op::Hello { .. } | Op::List => String::from("hello"),
    }
}
