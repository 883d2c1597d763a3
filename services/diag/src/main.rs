//! `diag`: the node at a glance, as EVE's diag shows it on the console.
//!
//! It subscribes to every status topic the contracts list (`topics::status`) and, every
//! `every_s` seconds (default 5), prints one screen: for each topic, its publisher, whether the
//! view is synchronised, and one line per object (its `Display`). With `exit_when_alone=true`
//! it exits (status 0) once every publisher it followed has gone, after having seen at least
//! one: a test node then finishes when its services do.

#![no_std]
#![no_main]

extern crate alloc;

mod view;

use alloc::vec::Vec;

use kernel::{error, info, Args, Duration};
use view::{watch, StatusView};

kernel::service! {
    main: main,
    memory_floor_mib: 8,
    watches: topics::status::TOPICS,
}

async fn main(args: Args) -> i32 {
    let every = match args.parse_value::<u64>("every_s") {
        Ok(every) => Duration::from_secs(every.unwrap_or(5).max(1)),
        Err(e) => {
            error!("{e}");
            return 2;
        }
    };
    let exit_when_alone = args.get("exit_when_alone") == Some("true");
    let node = bus_io::channel::node().await;
    let mut views: Vec<StatusView> = Vec::new();
    macro_rules! follow {
        ($topic:expr) => {
            match watch(&node, $topic) {
                Ok(view) => views.push(view),
                Err(e) => error!("{e}"),
            }
        };
    }
    topics::for_each_status_topic!(follow);
    info!(
        "following {} status topics over {} channels",
        views.len(),
        node.channels().len()
    );
    let mut seen_any = false;
    loop {
        kernel::sleep(every).await;
        print_summary(&views);
        seen_any |= views.iter().any(StatusView::ever_connected);
        if exit_when_alone && seen_any && views.iter().all(|v| !v.connected()) {
            info!("every publisher is gone: done");
            return 0;
        }
    }
}

/// One screen: a heading, then each topic and its objects.
fn print_summary(views: &[StatusView]) {
    let live = views.iter().filter(|v| v.synchronized()).count();
    info!(
        "node summary at {:.1} s: {live} of {} status topics live",
        kernel::now().since_boot().as_secs_f64(),
        views.len()
    );
    for view in views {
        for line in view.lines() {
            info!("  {line}");
        }
    }
}
