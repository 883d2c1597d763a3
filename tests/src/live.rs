//! Guests that run beside the test: started in the background, their console lines collected
//! as they arrive, killed when dropped. For tests that talk to a guest while it runs (network
//! peers, several guests at once); [`Run::boot`](crate::Run::boot) suits a guest that runs to
//! its end.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::{build_images, Run};

/// A port free for both TCP and UDP on 127.0.0.1 at the time of asking.
pub fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind a host port");
        let port = tcp.local_addr().expect("local address").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A running guest (QEMU) and the console lines it printed so far.
pub struct LiveGuest {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl LiveGuest {
    /// Builds the images if needed and starts `run`'s QEMU command.
    pub fn start(run: &Run) -> LiveGuest {
        LiveGuest::spawn(&run.command())
    }

    /// Builds the images if needed and starts `argv` (a QEMU command, e.g. `Run::command`
    /// with devices added).
    pub fn spawn(argv: &[String]) -> LiveGuest {
        build_images();
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start qemu");
        let stdout = child.stdout.take().expect("piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        LiveGuest { child, lines }
    }

    /// The console so far, one line each.
    pub fn console(&self) -> String {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// The first console line containing `needle`, if one came.
    pub fn find(&self, needle: &str) -> Option<String> {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|l| l.contains(needle))
            .cloned()
    }

    /// Waits up to `within` for a console line containing `needle`; panics with the console
    /// when none comes.
    pub fn wait_for(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line) = self.find(needle) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no console line contains {needle:?} within {within:?}; console:\n{}",
                self.console()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Panics (with the console) if QEMU stopped or the guest printed PANIC or FATAL.
    pub fn assert_healthy(&mut self) {
        assert!(
            self.child.try_wait().expect("poll qemu").is_none(),
            "the guest stopped; console:\n{}",
            self.console()
        );
        let console = self.console();
        assert!(
            !console.contains("PANIC") && !console.contains("FATAL"),
            "{console}"
        );
    }
}

impl Drop for LiveGuest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
