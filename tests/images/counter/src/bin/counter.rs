//! `counter`: publishes the persistent table `counter/Count`. At start it restores the count
//! from the vault, counts one more start, then counts `rounds` (default 20) more, one every
//! `interval_ms` (default 200), waiting each time until the vault has committed the new value:
//! `counter: start S at V` and `counter: V durable` lines tell a test what is on disk.
//! `delay_ms` (default 0) waits before anything, so that subscribers meet the vault first.
//! Exit status 0 when done, 1 when the bus or the vault fails it, 2 for a bad command line.

#![no_std]
#![no_main]

use kernel::{error, info, Args, Duration};
use topics::counter::{Count, COUNT};
use topics::vault::STORED;
use topics::Global;

kernel::service! {
    main: main,
    memory_floor_mib: 8,
    publishes: &[COUNT.decl()],
    subscribes: &[STORED.decl()],
}

/// How long the vault may take to commit one value (a restarted vault included: under Xen in
/// QEMU TCG on a busy machine a domain takes up to a minute to come back).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(300);

async fn main(args: Args) -> i32 {
    let (rounds, interval) = match (
        args.parse_value::<u64>("rounds"),
        args.parse_value::<u64>("interval_ms"),
    ) {
        (Ok(r), Ok(i)) => (r.unwrap_or(20), Duration::from_millis(i.unwrap_or(200))),
        (Err(e), _) | (_, Err(e)) => {
            error!("{e}");
            return 2;
        }
    };
    match args.parse_value::<u64>("delay_ms") {
        Ok(delay) => kernel::sleep(Duration::from_millis(delay.unwrap_or(0))).await,
        Err(e) => {
            error!("{e}");
            return 2;
        }
    }
    let node = bus_io::channel::node().await;
    let count = match node.publish_persistent(&COUNT).await {
        Ok(count) => count,
        Err(e) => {
            error!("counter: {e}");
            return 1;
        }
    };
    let mut now: Count = count.shared().with(|p| p.get("global")).unwrap_or_default();
    now.starts += 1;
    for round in 0..=rounds {
        if round > 0 {
            kernel::sleep(interval).await;
            now.value += 1;
        }
        if let Err(e) = count.publish(&Global, &now) {
            error!("counter: cannot publish: {e}");
            return 1;
        }
        if kernel::timeout(COMMIT_TIMEOUT, count.durable())
            .await
            .is_err()
        {
            error!("counter: the vault did not commit {} in time", now.value);
            return 1;
        }
        if round == 0 {
            info!("counter: start {} at {}", now.starts, now.value);
        } else {
            info!("counter: {} durable", now.value);
        }
    }
    info!("counter: done at {} after {} starts", now.value, now.starts);
    0
}
