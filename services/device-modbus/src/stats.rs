//! Counters, logged periodically (`device-modbus: stats ...`).

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// What the service has done and what went wrong.
pub struct Stats {
    /// Events built from readings.
    pub events: AtomicU64,
    /// Readings in them.
    pub readings: AtomicU64,
    /// Events not built because a read failed.
    pub read_errors: AtomicU64,
    /// Exceptions from Modbus servers.
    pub exceptions: AtomicU64,
    /// Malformed or mismatched Modbus answers.
    pub malformed: AtomicU64,
    /// Modbus transactions that timed out.
    pub timeouts: AtomicU64,
    /// Other Modbus connection failures.
    pub io_errors: AtomicU64,
    /// Late answers skipped.
    pub stale: AtomicU64,
    /// Modbus connections opened.
    pub modbus_connects: AtomicU64,
    /// Commands executed.
    pub commands: AtomicU64,
    /// Commands refused or failed.
    pub command_errors: AtomicU64,
}

/// The counters.
pub static STATS: Stats = Stats {
    events: AtomicU64::new(0),
    readings: AtomicU64::new(0),
    read_errors: AtomicU64::new(0),
    exceptions: AtomicU64::new(0),
    malformed: AtomicU64::new(0),
    timeouts: AtomicU64::new(0),
    io_errors: AtomicU64::new(0),
    stale: AtomicU64::new(0),
    modbus_connects: AtomicU64::new(0),
    commands: AtomicU64::new(0),
    command_errors: AtomicU64::new(0),
};

/// Logs one line with every counter, the broker client's and the heap.
pub fn log(client: &mqtt::client::Client) {
    let (published, queued, dropped, broker_connects, broker_failures) = client.counters();
    // A reading's way from its Modbus answer to the broker's socket, in this guest.
    let latency = client.latency();
    let s = &STATS;
    let l = |c: &AtomicU64| c.load(Relaxed);
    kernel::info!(
        "device-modbus: stats events {} readings {} read_errors {} exceptions {} malformed {} timeouts {} io_errors {} stale {} modbus_connects {} published {} queued {} dropped {} broker_connects {} broker_failures {} commands {} command_errors {} publish_samples {} publish_p50_us {} publish_p99_us {} publish_max_us {} heap_used {} heap_size {}",
        l(&s.events),
        l(&s.readings),
        l(&s.read_errors),
        l(&s.exceptions),
        l(&s.malformed),
        l(&s.timeouts),
        l(&s.io_errors),
        l(&s.stale),
        l(&s.modbus_connects),
        published,
        queued,
        dropped,
        broker_connects,
        broker_failures,
        l(&s.commands),
        l(&s.command_errors),
        latency.count(),
        latency.quantile(5000),
        latency.quantile(9900),
        latency.max(),
        kernel::mem::heap_used(),
        kernel::mem::heap_size(),
    );
}
