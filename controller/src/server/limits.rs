//! The limits that keep idle, slow or too many connections from starving the controller.

use std::time::Duration;

/// How long a connection may take at each step, and how many there may be.
#[derive(Debug, Clone)]
pub struct Limits {
    /// From accepting the TCP connection to the end of the TLS handshake.
    pub tls_handshake: Duration,
    /// From the first byte of a request to the end of its headers.
    pub header: Duration,
    /// A kept-alive connection with no request in flight is closed after this. Longer than
    /// EVE's default polling interval (60 s), so that polling devices keep their connection.
    pub idle: Duration,
    /// A request body may arrive at any pace for this long after its headers ...
    pub body_grace: Duration,
    /// ... and must then have arrived at this many bytes per second on average.
    pub min_body_rate: u64,
    /// Open connections in total; 0 derives it from the file descriptor limit. When full, the
    /// connection that has waited longest without a request in flight makes room for a new one.
    pub max_connections: usize,
    /// Open connections from one client address; more are closed at once.
    pub max_connections_per_address: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            tls_handshake: Duration::from_secs(10),
            header: Duration::from_secs(10),
            idle: Duration::from_secs(300),
            body_grace: Duration::from_secs(10),
            min_body_rate: 1024,
            max_connections: 0,
            max_connections_per_address: 1024,
        }
    }
}

impl Limits {
    /// The cap on connections in total: [`Self::max_connections`], or, when that is 0, what the
    /// file descriptor limit leaves after a reserve for the store, the listener and the runtime.
    pub fn effective_max_connections(&self) -> usize {
        if self.max_connections > 0 {
            return self.max_connections;
        }
        let files = open_files_limit().unwrap_or(1024);
        let reserve = (files / 8).clamp(32, 256);
        files.saturating_sub(reserve).max(1)
    }
}

/// The soft limit on open file descriptors (`RLIMIT_NOFILE`), if it is finite.
fn open_files_limit() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a pointer to a valid, owned value.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY)
        .then(|| usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_cap_leaves_a_reserve_of_descriptors() {
        let derived = Limits::default().effective_max_connections();
        let files = open_files_limit().unwrap_or(1024);
        assert!(
            derived < files && derived + 256 >= files,
            "{derived} of {files}"
        );
        let fixed = Limits {
            max_connections: 7,
            ..Limits::default()
        };
        assert_eq!(fixed.effective_max_connections(), 7);
    }
}
