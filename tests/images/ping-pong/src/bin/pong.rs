//! `pong`: acknowledges every round of `ping/Seq` it sees in `pong/Ack`
//! (tests/images/ping-pong: the exchange, its checks and its verdict; docs/bus.md).
//! Exit status 0 when the verdict is ok, 1 otherwise, 2 for a bad command line.

#![no_std]
#![no_main]

extern crate alloc;

#[path = "../drivers.rs"]
mod drivers;
#[path = "../pong.rs"]
mod pong;

use kernel::{error, Args};
use ping_pong::config::Config;

kernel::service! {
    main: main,
    memory_floor_mib: 8,
    publishes: &[topics::pong::ACK.decl()],
    subscribes: &[topics::ping::SEQ.decl()],
}

async fn main(args: Args) -> i32 {
    match Config::from_args(&args) {
        Ok(config) => pong::run(&config).await,
        Err(e) => {
            error!("{e}");
            2
        }
    }
}
