//! Name resolution: smoltcp's DNS client behind a small cache.

use alloc::vec::Vec;
use core::fmt;
use core::future::poll_fn;
use core::net::IpAddr;
use core::task::Poll;

use smoltcp::socket::dns::{self, GetQueryResultError};
use smoltcp::wire::DnsQueryType;

use super::stack::{with_stack, NotStarted};
use crate::time::Duration;

/// How long one lookup may take before it is abandoned.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a name did not resolve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsError {
    /// The network stack is not running.
    NotStarted,
    /// No resolver is configured (none on the command line, none from DHCP yet).
    NoServers,
    /// The name is not a valid DNS name.
    InvalidName,
    /// The resolver did not answer, or answered with no address.
    Failed,
    /// No answer in time.
    TimedOut,
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsError::NotStarted => NotStarted.fmt(f),
            DnsError::NoServers => f.write_str("no DNS server configured"),
            DnsError::InvalidName => f.write_str("invalid name"),
            DnsError::Failed => f.write_str("lookup failed"),
            DnsError::TimedOut => f.write_str("lookup timed out"),
        }
    }
}

impl From<NotStarted> for DnsError {
    fn from(_: NotStarted) -> Self {
        DnsError::NotStarted
    }
}

/// The IPv4 addresses of `name` (an address literal resolves to itself).
pub async fn resolve(name: &str) -> Result<Vec<IpAddr>, DnsError> {
    if let Ok(address) = name.parse::<IpAddr>() {
        return Ok(alloc::vec![address]);
    }
    let query = with_stack(|s| {
        if let Some(hit) = s.dns_cache.get(name, crate::now()) {
            s.counters.dns_cache_hits += 1;
            return Ok(Err(hit));
        }
        if s.status_dns_servers_empty() {
            return Err(DnsError::NoServers);
        }
        let context = s.iface.context();
        let query = s
            .sockets
            .get_mut::<dns::Socket>(s.dns)
            .start_query(context, name, DnsQueryType::A)
            .map_err(|_| DnsError::InvalidName)?;
        s.counters.dns_queries += 1;
        s.kick();
        Ok(Ok(query))
    })??;
    let query = match query {
        Err(cached) => return Ok(cached),
        Ok(query) => query,
    };
    let wait = poll_fn(|cx| {
        let result = with_stack(|s| {
            let socket = s.sockets.get_mut::<dns::Socket>(s.dns);
            match socket.get_query_result(query) {
                Err(GetQueryResultError::Pending) => {
                    socket.register_query_waker(query, cx.waker());
                    Poll::Pending
                }
                Err(GetQueryResultError::Failed) => Poll::Ready(Err(DnsError::Failed)),
                Ok(addresses) => {
                    let addresses: Vec<IpAddr> = addresses.iter().map(|&a| a.into()).collect();
                    s.dns_cache.insert(name, addresses.clone(), crate::now());
                    Poll::Ready(if addresses.is_empty() {
                        Err(DnsError::Failed)
                    } else {
                        Ok(addresses)
                    })
                }
            }
        });
        result.unwrap_or(Poll::Ready(Err(DnsError::NotStarted)))
    });
    match crate::timeout(LOOKUP_TIMEOUT, wait).await {
        Ok(result) => result,
        Err(_) => {
            let _ = with_stack(|s| s.sockets.get_mut::<dns::Socket>(s.dns).cancel_query(query));
            Err(DnsError::TimedOut)
        }
    }
}
