//! The domain service's channel: dom0's end of the vchan to the app manager.
//!
//! Dom0 serves it with Xen's own libxenvchan peer, `vchan-socket-proxy -m server`, as a child
//! process whose standard input and output are the channel's two directions: the launcher
//! needs no vchan code of its own, and the manager (a lichen service) connects as an ordinary
//! client ([`crate::wiring::domain_service_path`]). A reader thread hands what arrives to the
//! supervisor's loop, which decodes frames ([`launcher_api::frame`]), lets [`crate::apps`]
//! answer, and writes the answers back.
//!
//! What the manager may corrupt: the byte stream. A broken frame header ends the connection
//! (the proxy is stopped and served anew: the manager reconnects); anything inside a frame is
//! [`crate::apps`]' to refuse.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, Instant};

use launcher_api::frame::{encode, Decoder};
use launcher_api::FromLauncher;

use crate::say;

/// Xen's libxenvchan proxy, as dom0 carries it.
pub const PROXY: &str = "vchan-socket-proxy";

/// Frames waiting for the manager to read them: past this, it is not reading, and the
/// connection is ended rather than letting the launcher wait for it.
const MAX_QUEUED: usize = 256;

/// How long after a connection ended the next one is served.
const RESPAWN_DELAY: Duration = Duration::from_millis(500);

/// What [`Link::poll`] found.
#[derive(Debug, Default)]
pub struct Polled {
    /// A new connection began (its first bytes are in `payloads`, if any).
    pub connected: bool,
    /// Complete frame payloads, in order.
    pub payloads: Vec<Vec<u8>>,
}

/// Dom0's end of the channel to the manager running as one domain.
pub struct Link {
    domid: u32,
    child: Option<Child>,
    to_proxy: Option<SyncSender<Vec<u8>>>,
    from_proxy: Option<Receiver<Vec<u8>>>,
    decoder: Decoder,
    next_start: Instant,
    /// Whether the current proxy has delivered bytes (the manager connected).
    live: bool,
}

impl Link {
    /// Serves the channel to the manager running as `domid` (its domain may still be paused).
    pub fn new(domid: u32) -> Link {
        let mut link = Link {
            domid,
            child: None,
            to_proxy: None,
            from_proxy: None,
            decoder: Decoder::new(),
            next_start: Instant::now(),
            live: false,
        };
        link.spawn();
        link
    }

    fn spawn(&mut self) {
        self.stop_proxy();
        self.decoder = Decoder::new();
        self.live = false;
        let path = crate::wiring::domain_service_path(self.domid);
        let child = Command::new(PROXY)
            .args(["-m", "server", &self.domid.to_string(), &path, "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) => {
                say!("domain service: cannot start {PROXY}: {e}");
                self.next_start = Instant::now() + RESPAWN_DELAY * 10;
                return;
            }
        };
        let (tx, rx) = mpsc::channel();
        let mut stdout = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                if tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        // A writer thread, so that a manager that does not read never blocks the launcher.
        let (to_proxy, queued) = mpsc::sync_channel::<Vec<u8>>(MAX_QUEUED);
        let mut stdin = child.stdin.take().expect("piped");
        std::thread::spawn(move || {
            for frame in queued {
                if stdin
                    .write_all(&frame)
                    .and_then(|()| stdin.flush())
                    .is_err()
                {
                    break;
                }
            }
        });
        self.to_proxy = Some(to_proxy);
        self.from_proxy = Some(rx);
        self.child = Some(child);
        say!(
            "domain service: serving the manager (domain {}) at {path}",
            self.domid
        );
    }

    fn stop_proxy(&mut self) {
        self.to_proxy = None;
        self.from_proxy = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Takes what arrived; serves a new connection once one ended.
    pub fn poll(&mut self) -> Polled {
        let mut polled = Polled::default();
        let Some(rx) = &self.from_proxy else {
            if Instant::now() >= self.next_start {
                self.spawn();
            }
            return polled;
        };
        let mut ended = false;
        loop {
            match rx.try_recv() {
                Ok(bytes) => {
                    if !self.live {
                        self.live = true;
                        polled.connected = true;
                    }
                    match self.decoder.feed(&bytes) {
                        Ok(payloads) => polled.payloads.extend(payloads),
                        Err(e) => {
                            say!(
                                "domain service: the manager broke the framing ({e}): reconnecting"
                            );
                            ended = true;
                            break;
                        }
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    say!("domain service: the connection ended");
                    ended = true;
                    break;
                }
            }
        }
        if ended {
            self.stop_proxy();
            self.next_start = Instant::now() + RESPAWN_DELAY;
        }
        polled
    }

    /// Sends `message`; a failure ends the connection.
    pub fn send(&mut self, message: &FromLauncher) {
        let frame = match encode(message) {
            Ok(frame) => frame,
            Err(e) => {
                say!("domain service: cannot encode a message ({e:?})");
                return;
            }
        };
        let Some(to_proxy) = &self.to_proxy else {
            return;
        };
        match to_proxy.try_send(frame) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                say!("domain service: the manager reads nothing ({MAX_QUEUED} frames queued): reconnecting");
                self.stop_proxy();
                self.next_start = Instant::now() + RESPAWN_DELAY;
            }
            // The writer ended: the read side notices the end too.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop_proxy();
    }
}
