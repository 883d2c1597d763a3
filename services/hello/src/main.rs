//! `hello`: the smallest lichen service.
//!
//! Logs a banner with the image name, version and boot timings, runs two concurrent tasks
//! that tick on timers, checks that their ticks came in deadline order and on time, and
//! exits 0. Test-only switches exercise the failure paths:
//!
//! - `panic`: panics with a known message;
//! - `fault=page` | `fault=divide` | `fault=stack`: a page fault at a known address, a divide
//!   error, a stack overflow (caught by the guard page and the double-fault stack);
//! - `oom`: allocates until the heap is exhausted;
//! - `exit=N`: exits with status N after the tasks;
//! - `ticks=N`, `period_ms=N`: how long the tasks run.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt::Write;
use kernel::{info, Args, Duration, Instant};

// The size and boot-time reference (docs/BENCHMARKS.md): its lines stay on its console, so
// the log forwarder and the channel code it needs are not linked in.
kernel::service! {
    main: main,
    memory_floor_mib: kernel::DEFAULT_MEMORY_FLOOR_MIB,
    log_forwarding: false,
}

/// Address the page-fault switch reads: canonical, far above the 4 GiB identity map.
const UNMAPPED: u64 = 0x7f00_dead_0000;
/// Largest accepted lateness of a timer, in ms (lenient: TCG on a loaded host is slow).
const LATENESS_LIMIT_MS: u64 = 250;

async fn main(args: Args) -> i32 {
    let timings = kernel::boot_timings();
    info!(
        "lichen {} {} up: entry tsc {}, main tsc {}, entry->main {} us, platform {}",
        kernel::service().name,
        kernel::service().version,
        timings.entry_tsc,
        timings.main_tsc,
        timings.entry_to_main().as_micros() as u64,
        kernel::platform::current().name(),
    );
    if let Some(wall) = kernel::wall_clock() {
        info!("wall clock: {} s since the epoch", wall.as_secs());
    }
    let mut shown = alloc::string::String::new();
    for (key, value) in args.iter() {
        let _ = write!(shown, " {key}=\"{value}\"");
    }
    info!("args:{shown}");

    if let Some(code) = failure_switches(&args) {
        return code;
    }

    let ticks: u32 = match args.parse_value("ticks") {
        Ok(v) => v.unwrap_or(3),
        Err(e) => {
            kernel::error!("{e}");
            return 2;
        }
    };
    let period_ms: u64 = match args.parse_value("period_ms") {
        Ok(v) => v.unwrap_or(20),
        Err(e) => {
            kernel::error!("{e}");
            return 2;
        }
    };
    // Task "a" ticks every period, task "b" every 1.5 periods: their ticks interleave in a
    // known order, which the log shows and the check below verifies.
    let log = alloc::rc::Rc::new(RefCell::new(Vec::new()));
    let start = kernel::now();
    let a = kernel::spawn(ticker("a", period_ms * 2, ticks, start, log.clone()));
    let b = kernel::spawn(ticker("b", period_ms * 3, ticks, start, log.clone()));
    let late_a = a.await;
    let late_b = b.await;
    let events = log.borrow();
    let ordered = events
        .windows(2)
        .all(|w: &[(Instant, &str)]| w[0].0 <= w[1].0);
    let worst = late_a.max(late_b);
    info!(
        "{} ticks in deadline order: {ordered}; worst lateness {} us",
        events.len(),
        worst.as_micros() as u64
    );
    if !ordered || worst > Duration::from_millis(LATENESS_LIMIT_MS) {
        kernel::error!("timers misbehaved");
        return 1;
    }
    let code = match args.parse_value::<i32>("exit") {
        Ok(v) => v.unwrap_or(0),
        Err(e) => {
            kernel::error!("{e}");
            2
        }
    };
    info!("bye (exit {code})");
    code
}

/// Ticks `count` times every `half_periods` half-periods; returns the worst lateness.
async fn ticker(
    name: &'static str,
    period_ms: u64,
    count: u32,
    start: Instant,
    log: alloc::rc::Rc<RefCell<Vec<(Instant, &'static str)>>>,
) -> Duration {
    let mut worst = Duration::ZERO;
    for i in 1..=u64::from(count) {
        let deadline = start + Duration::from_millis(period_ms * i / 2);
        kernel::sleep_until(deadline).await;
        let now = kernel::now();
        let late = now.saturating_duration_since(deadline);
        worst = worst.max(late);
        log.borrow_mut().push((deadline, name));
        info!(
            "tick {name} {i} at +{} ms (late {} us)",
            now.saturating_duration_since(start).as_millis() as u64,
            late.as_micros() as u64
        );
    }
    worst
}

/// Runs the failure switch given on the command line, if any.
fn failure_switches(args: &Args) -> Option<i32> {
    if args.flag("panic") {
        panic!("hello was asked to panic");
    }
    match args.get("fault") {
        None => {}
        Some("page") => {
            info!("reading unmapped address {UNMAPPED:#x}");
            // SAFETY: deliberately unsound: this read must fault (test switch).
            let v = unsafe { core::ptr::read_volatile(UNMAPPED as *const u64) };
            info!("read {v} from an unmapped address?");
        }
        Some("divide") => {
            info!("dividing by zero");
            let (n, d) = (core::hint::black_box(7u64), core::hint::black_box(0u64));
            // SAFETY: deliberately divides by zero so the CPU raises #DE (test switch); Rust's
            // own division would panic first, so this uses the instruction directly.
            unsafe {
                core::arch::asm!("div {d}", d = in(reg) d, inout("rax") n => _, inout("rdx") 0u64 => _)
            };
        }
        Some("stack") => {
            info!("recursing without bound");
            return Some(recurse(core::hint::black_box(1)) as i32);
        }
        Some(other) => {
            kernel::error!("unknown fault kind `{other}` (page, divide, stack)");
            return Some(2);
        }
    }
    if args.flag("oom") {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        let mut total = 0usize;
        loop {
            let chunk = alloc::vec![0xa5u8; 256 * 1024];
            total += chunk.len();
            hoard.push(chunk);
            if total.is_multiple_of(16 << 20) {
                info!("holding {} MiB", total >> 20);
            }
        }
    }
    None
}

/// Recurses forever (the frame is kept alive so the compiler cannot turn it into a loop).
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = core::hint::black_box([depth; 32]);
    recurse(depth + 1) + frame[3]
}
