//! `ping`: publishes `ping/Seq` round by round, each once pong acknowledged the one before
//! (tests/images/ping-pong: the exchange, its checks and its verdict; docs/bus.md).
//! Exit status 0 when the verdict is ok, 1 otherwise, 2 for a bad command line.

#![no_std]
#![no_main]

extern crate alloc;

#[path = "../drivers.rs"]
mod drivers;
#[path = "../ping.rs"]
mod ping;

use kernel::{error, Args};
use ping_pong::config::Config;

kernel::service! {
    main: main,
    memory_floor_mib: 8,
    publishes: &[topics::ping::SEQ.decl()],
    subscribes: &[topics::pong::ACK.decl()],
}

async fn main(args: Args) -> i32 {
    match Config::from_args(&args) {
        Ok(config) => ping::run(&config).await,
        Err(e) => {
            error!("{e}");
            2
        }
    }
}
