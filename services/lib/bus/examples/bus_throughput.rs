//! Measures bus messages per second through an in-memory publisher/subscriber pair: every
//! message is published, framed, copied through a channel of `CHANNEL_BYTES`, decoded, checked
//! and applied to the subscriber's view.
//!
//! ```text
//! cargo run --release -p lichen-bus --example bus-throughput -- [MESSAGES [PAYLOAD_BYTES]] [--json]
//! ```

use std::{hint::black_box, time::Instant};

use bus::{loopback, Event, Publisher, Subscriber, Topic, Volatile};
use serde::{Deserialize, Serialize};

/// The room a channel has for one write, like a vchan ring of one page.
const CHANNEL_BYTES: usize = 4096;
/// How many distinct keys the messages cycle through.
const KEYS: usize = 256;

/// The published object: a counter, so that every message is a real change, and a payload.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Sample {
    counter: u64,
    payload: Vec<u8>,
}

fn main() {
    let mut numbers = std::env::args()
        .skip(1)
        .filter(|arg| arg != "--json")
        .map(|arg| {
            arg.parse::<usize>()
                .unwrap_or_else(|_| panic!("not a number: {arg}"))
        });
    let messages = numbers.next().unwrap_or(200_000);
    let payload_bytes = numbers.next().unwrap_or(64);
    let json = std::env::args().any(|arg| arg == "--json");

    let topic = Topic::new("bench/samples", 1);
    let mut publisher =
        Publisher::<Sample>::new(topic, Volatile).expect("volatile storage never fails");
    let session = publisher.connect();
    let mut subscriber = Subscriber::new(topic);
    subscriber.connect();
    loopback::pump(
        &mut publisher,
        session,
        &mut subscriber,
        CHANNEL_BYTES,
        |_| {},
    )
    .expect("sync");

    let keys: Vec<String> = (0..KEYS).map(|key| format!("sample-{key}")).collect();
    let mut sample = Sample {
        counter: 0,
        payload: vec![0xa5; payload_bytes],
    };
    let mut delivered = 0usize;
    let start = Instant::now();
    for counter in 0..messages {
        sample.counter = counter as u64;
        publisher
            .publish(&keys[counter % KEYS], &sample)
            .expect("publish");
        loopback::pump(
            &mut publisher,
            session,
            &mut subscriber,
            CHANNEL_BYTES,
            |event| {
                if let Event::Created { value, .. } | Event::Modified { new: value, .. } = event {
                    black_box(value);
                    delivered += 1;
                }
            },
        )
        .expect("pump");
    }
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(delivered, messages, "every message reaches the subscriber");

    let rate = messages as f64 / seconds;
    if json {
        println!(
            "{{\"messages\":{messages},\"payload_bytes\":{payload_bytes},\"seconds\":{seconds:.6},\"messages_per_second\":{rate:.0}}}"
        );
    } else {
        println!("bus-throughput: {messages} messages of {payload_bytes} payload bytes in {seconds:.3} s: {rate:.0} messages/s");
    }
}
