//! `ping-pong`: two services exchanging bus messages in lockstep, one image with two roles
//! (`role=ping`, `role=pong`; see [`ping_pong::config`] for the other settings).
//!
//! `ping` publishes `ping-pong/Seq` over the channel `seq`, `pong` publishes `ping-pong/Ack` over
//! `ack` (`kernel::channel`: under Xen, vchans wired from the manifest, pong being the server of
//! both since the launcher starts it first).
//! Each checks the values it sees with a [`ping_pong::tally::Tally`], logs a progress line every
//! `report_every` rounds and, at the end, one verdict line:
//!
//! ```text
//! verdict ping: ok first 1 last 100 seen 100 gaps 0 duplicates 0 published 100 outages 1 resyncs 2 deletions 0
//! verdict pong: ok first 23 last 100 seen 78 gaps 0 duplicates 0 deletions 0
//! ```
//!
//! When pong dies, ping sees its channels end, waits for the launcher to restart it and
//! reconnects; the restarted pong rebuilds its table from ping's and only then publishes it, so
//! ping's view goes straight from the old acknowledgement to the new one. Exit status 0 when the
//! verdict is ok, 1 otherwise, 2 for a bad command line.

#![no_std]
#![no_main]

extern crate alloc;

mod drivers;
mod ping;
mod pong;

use kernel::{error, Args};
use ping_pong::config::{Config, Role};

kernel::service!(main);

async fn main(args: Args) -> i32 {
    let config = match Config::from_args(&args) {
        Ok(config) => config,
        Err(e) => {
            error!("{e}");
            return 2;
        }
    };
    match config.role {
        Role::Ping => ping::run(&config).await,
        Role::Pong => pong::run(&config).await,
    }
}
