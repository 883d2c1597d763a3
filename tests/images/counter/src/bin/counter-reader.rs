//! `counter-reader`: subscribes to the persistent table `counter/Count` and logs each value it
//! sees: `reader: count V after S starts (stored)` while counter has never synchronised it
//! (the vault's copy), `(live)` once it has. Exits 0 once it saw a live value of at least `until`
//! (default: never; a node runs it as a daemon).

#![no_std]
#![no_main]

use bus::OwnedEvent;
use bus_io::Update;
use kernel::{error, info, Args};
use topics::counter::COUNT;
use topics::vault::STORED;

kernel::service! {
    main: main,
    memory_floor_mib: 8,
    subscribes: &[COUNT.decl(), STORED.decl()],
}

async fn main(args: Args) -> i32 {
    let until = match args.parse_value::<u64>("until") {
        Ok(until) => until.unwrap_or(u64::MAX),
        Err(e) => {
            error!("{e}");
            return 2;
        }
    };
    let node = bus_io::channel::node().await;
    let counts = match node.subscribe(&COUNT) {
        Ok(counts) => counts,
        Err(e) => {
            error!("reader: {e}");
            return 1;
        }
    };
    loop {
        let value = match counts.next().await {
            Update::Event(OwnedEvent::Created { value, .. })
            | Update::Event(OwnedEvent::Modified { new: value, .. }) => value,
            Update::Link(link) => {
                info!("reader: counter/Count: {link}");
                continue;
            }
            _ => continue,
        };
        let live = counts.with(|s| s.has_heard_publisher());
        info!("reader: {value} ({})", if live { "live" } else { "stored" });
        if live && value.value >= until {
            return 0;
        }
    }
}
