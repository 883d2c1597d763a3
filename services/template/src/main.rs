//! `template`: the smallest complete lichen service, to copy when starting a new one
//! (docs/adding-a-service.md). It publishes its own status on the bus every `every_s` seconds
//! (default 5) and follows ping's round when a `ping` runs in the node.
//!
//! A service is: this declaration (what the launcher wires from), an async `main` that takes
//! its bus from `bus_io::channel::node()`, publishes and subscribes by `topics::` values, and
//! returns its exit status (0: done; the launcher's restart policy decides what follows).

#![no_std]
#![no_main]

extern crate alloc;

use bus_io::Update;
use kernel::{error, info, Args, Duration};
use topics::template::{Status, STATUS};
use topics::Global;

kernel::service! {
    main: main,
    memory_floor_mib: 8,
    publishes: &[STATUS.decl()],
    watches: &[topics::ping::SEQ.decl()],
}

async fn main(args: Args) -> i32 {
    let every = match args.parse_value::<u64>("every_s") {
        Ok(every) => Duration::from_secs(every.unwrap_or(5).max(1)),
        Err(e) => {
            error!("{e}");
            return 2;
        }
    };
    let node = bus_io::channel::node().await;
    let (status, rounds) = match (node.publish(&STATUS), node.subscribe(&topics::ping::SEQ)) {
        (Ok(status), Ok(rounds)) => (status, rounds),
        (Err(e), _) | (_, Err(e)) => {
            error!("{e}");
            return 1;
        }
    };
    let mut beats = 0;
    loop {
        beats += 1;
        let round = rounds.with(|view| view.iter().next().map(|(_, seq)| seq.n));
        if let Err(e) = status.publish(&Global, &Status { beats, round }) {
            error!("cannot publish my status: {e}");
            return 1;
        }
        // Take what the subscription reports (links and changes) without waiting for it.
        while let Some(update) = rounds.try_next() {
            if let Update::Link(link) = update {
                info!("ping's round: {link}");
            }
        }
        kernel::sleep(every).await;
    }
}
