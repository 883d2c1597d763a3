//! ping: publishes round 1, then round n + 1 once pong acknowledged round n, until the last
//! round is acknowledged; checks that the acknowledgements it sees are 1, 2, ... exactly once
//! each, whatever happens to pong.

use bus::OwnedEvent;
use bus_io::{Link, Update};
use kernel::{error, info, warn, Duration};
use ping_pong::config::Config;
use ping_pong::tally::{Step, Tally};
use topics::ping::{Seq, SEQ};
use topics::pong::{Ack, ACK};
use topics::{Global, Key};

use crate::drivers::{self, LinkLog};

/// What ping saw of pong.
#[derive(Default)]
struct Watch {
    acks: Tally,
    /// Times the acknowledgement channel ended before the last round.
    outages: u32,
    /// Synchronisations of pong's table (one per connection).
    resyncs: u32,
    /// Deletions of pong's object (pong never deletes it: each is a failure).
    deletions: u32,
    /// Whether a synchronisation is due after an outage.
    resync_pending: bool,
}

pub async fn run(config: &Config) -> i32 {
    let node = bus_io::channel::node().await;
    let (seqs, acks) = match (node.publish(&SEQ), node.subscribe(&ACK)) {
        (Ok(seqs), Ok(acks)) => (seqs, acks),
        (Err(e), _) | (_, Err(e)) => {
            error!("{e}");
            return 1;
        }
    };
    let mut watch = Watch::default();
    let mut ack_log = LinkLog::new(ACK.name());
    let mut patience = drivers::Patience::new(Duration::from_secs(config.stall_s));
    let mut published = 0;
    let mut stalled = false;
    info!(
        "ping: {} rounds, at least {} ms apart",
        config.rounds, config.interval_ms
    );
    loop {
        if watch.acks.last() == Some(published) || published == 0 {
            if published == config.rounds {
                break;
            }
            if published > 0 {
                kernel::sleep(Duration::from_millis(config.interval_ms)).await;
            }
            published += 1;
            if let Err(e) = seqs.publish(&Global, &Seq { n: published }) {
                error!("cannot publish round {published}: {e}");
                break;
            }
            continue;
        }
        let Some(update) = patience.next(&acks).await else {
            error!(
                "no change from pong for {} s at round {published}",
                config.stall_s
            );
            stalled = true;
            break;
        };
        match update {
            Update::Link(link) => {
                ack_log.note(&link);
                if let Link::Ended(reason) = link {
                    watch.outages += 1;
                    watch.resync_pending = true;
                    warn!(
                        "pong lost ({reason}) at round {published}, last acknowledged {}; waiting for it to come back",
                        watch.acks.last().unwrap_or(0)
                    );
                }
            }
            Update::Event(event) => watch.apply(&event, config),
        }
    }
    seqs.close();
    acks.close();
    drivers::stopped(&node).await;

    let ok = !stalled && watch.deletions == 0 && watch.acks.is_exactly(1, config.rounds);
    let verdict = if ok { "ok" } else { "FAILED" };
    info!(
        "verdict: {verdict} {} published {published} outages {} resyncs {} deletions {}",
        watch.acks, watch.outages, watch.resyncs, watch.deletions
    );
    if ok {
        0
    } else {
        1
    }
}

impl Watch {
    /// Takes one event of pong's table into account.
    fn apply(&mut self, event: &OwnedEvent<Ack>, config: &Config) {
        match event {
            OwnedEvent::Created { key, value: ack }
            | OwnedEvent::Modified { key, new: ack, .. }
                if Global::from_key(key).is_some() =>
            {
                match self.acks.observe(ack.n) {
                    Step::First | Step::Next => {}
                    Step::Gap { missing } => {
                        error!("acknowledgement {}: {missing} missing before it", ack.n)
                    }
                    Step::Repeat => error!("acknowledgement {} seen again", ack.n),
                }
                if ack.n % config.report_every == 0 {
                    info!("round {} acknowledged", ack.n);
                }
            }
            OwnedEvent::Created { key, .. } | OwnedEvent::Modified { key, .. } => {
                warn!("ignoring object {key} in pong's table")
            }
            OwnedEvent::Deleted { key, value } => {
                self.deletions += 1;
                error!(
                    "pong's object {key} (acknowledging {}) was deleted",
                    value.n
                );
            }
            OwnedEvent::Synchronized => {
                self.resyncs += 1;
                if core::mem::take(&mut self.resync_pending) {
                    info!(
                        "resynchronised with pong after outage {}: its table acknowledges {}",
                        self.outages,
                        self.acks.last().unwrap_or(0)
                    );
                }
            }
            OwnedEvent::Restarted => info!("pong signalled a restart"),
        }
    }
}
