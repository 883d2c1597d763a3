//! What echo does as an app on a network instance, when asked (the node test's app-side
//! checks of zedrouter's DNS forwarder and ACLs, tests/xen/tests/node.rs):
//!
//! - `resolve=NAME`: resolves NAME through the DNS server its DHCP lease named (zedrouter's
//!   gateway, which forwards the query and records the answer for the flow log as `dnsReqs`)
//!   and logs `echo: resolved NAME -> [addresses]` or the error;
//! - `probe=A.B.C.D:PORT`: opens a TCP connection there and logs what became of it
//!   (`echo: probe A.B.C.D:PORT: connected` or the error; each attempt gives up after
//!   [`PROBE_TIMEOUT`]): a connection its ACL does not allow is dropped by the router and
//!   times out here.
//!
//! Both are done once the address is leased, then every `probe_every` seconds (default 30),
//! so that a router that restarted (its counters back at zero) sees them again. A name
//! resolved is cached by the stack for its TTL: a later lookup within it asks no one.

use core::net::SocketAddr;

use kernel::net::{self, TcpOptions, TcpStream};
use kernel::{info, Args, Duration};

/// How long a probe's connection may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What to do, from the command line.
pub struct Probe {
    /// A name to resolve.
    resolve: Option<alloc::string::String>,
    /// Where to try a connection.
    connect: Option<SocketAddr>,
    /// The pause between two rounds.
    every: Duration,
}

impl Probe {
    /// The probe the command line asks for (`None`: none).
    pub fn from_args(args: &Args) -> Result<Option<Probe>, alloc::string::String> {
        let connect = match args.get("probe") {
            Some(target) => Some(
                target
                    .parse::<SocketAddr>()
                    .map_err(|_| alloc::format!("bad `probe={target}`: expected A.B.C.D:PORT"))?,
            ),
            None => None,
        };
        let resolve = args.get("resolve").map(alloc::string::String::from);
        let every = args
            .parse_value::<u64>("probe_every")
            .map_err(|e| alloc::format!("{e}"))?
            .unwrap_or(30);
        if every == 0 {
            return Err("probe_every must be at least 1 (seconds)".into());
        }
        Ok((connect.is_some() || resolve.is_some()).then_some(Probe {
            resolve,
            connect,
            every: Duration::from_secs(every),
        }))
    }

    /// Runs the rounds, forever.
    pub async fn run(self) {
        if net::wait_for_ipv4().await.is_err() {
            return;
        }
        loop {
            if let Some(name) = &self.resolve {
                match net::resolve(name).await {
                    Ok(addrs) => info!("echo: resolved {name} -> {addrs:?}"),
                    Err(e) => info!("echo: resolve {name}: {e}"),
                }
            }
            if let Some(to) = self.connect {
                let options = TcpOptions {
                    timeout: Some(PROBE_TIMEOUT),
                    ..TcpOptions::default()
                };
                match TcpStream::connect(to, options).await {
                    Ok(stream) => {
                        info!("echo: probe {to}: connected");
                        let _ = stream.close().await;
                    }
                    Err(e) => info!("echo: probe {to}: {e}"),
                }
            }
            kernel::sleep(self.every).await;
        }
    }
}
