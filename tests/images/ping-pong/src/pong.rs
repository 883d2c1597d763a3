//! pong: subscribes to ping's rounds and acknowledges each one it sees; checks that they come
//! one by one, each once. It publishes its table only once it has rebuilt it from ping's (at
//! the first synchronisation), so that after a restart ping never sees it empty.

use bus::OwnedEvent;
use bus_io::{Link, Publication, Update};
use kernel::{error, info, warn, Duration};
use ping_pong::config::Config;
use ping_pong::tally::{Step, Tally};
use topics::ping::SEQ;
use topics::pong::{Ack, ACK};
use topics::{Global, Key};

use crate::drivers::{self, LinkLog};

pub async fn run(config: &Config) -> i32 {
    let node = bus_io::channel::node().await;
    let seqs = match node.subscribe(&SEQ) {
        Ok(seqs) => seqs,
        Err(e) => {
            error!("{e}");
            return 1;
        }
    };
    // Published only once rebuilt from ping's table (at the first synchronisation).
    let mut acks: Option<Publication<Global, Ack>> = None;
    let mut seq_log = LinkLog::new(SEQ.name());
    let mut rounds = Tally::default();
    let (mut deletions, mut failed) = (0u32, false);
    let mut patience = drivers::Patience::new(Duration::from_secs(config.stall_s));
    loop {
        let Some(update) = patience.next(&seqs).await else {
            error!("no change from ping for {} s", config.stall_s);
            failed = true;
            break;
        };
        match update {
            Update::Link(link) => {
                seq_log.note(&link);
                if let Link::Ended(reason) = link {
                    if rounds.last() == Some(config.rounds) {
                        info!("ping is done ({reason})");
                        break;
                    }
                    warn!("ping lost ({reason}); waiting for it to come back");
                }
            }
            Update::Event(
                OwnedEvent::Created { key, value }
                | OwnedEvent::Modified {
                    key, new: value, ..
                },
            ) if Global::from_key(&key).is_some() => {
                match rounds.observe(value.n) {
                    Step::First => info!("first round seen: {}", value.n),
                    Step::Next => {}
                    Step::Gap { missing } => {
                        error!("round {}: {missing} missing before it", value.n)
                    }
                    Step::Repeat => error!("round {} seen again", value.n),
                }
                // Before the first synchronisation completes the table is not served yet: the
                // round is acknowledged when it is (below).
                if let Some(Err(e)) = acks
                    .as_ref()
                    .map(|a| a.publish(&Global, &Ack { n: value.n }))
                {
                    error!("cannot acknowledge round {}: {e}", value.n);
                    failed = true;
                    break;
                }
                if value.n % config.report_every == 0 {
                    info!("acked {} of {}", value.n, config.rounds);
                }
            }
            Update::Event(OwnedEvent::Created { key, .. } | OwnedEvent::Modified { key, .. }) => {
                warn!("ignoring object {key} in ping's table")
            }
            Update::Event(OwnedEvent::Deleted { key, value }) => {
                deletions += 1;
                error!("ping's object {key} (round {}) was deleted", value.n);
            }
            Update::Event(OwnedEvent::Synchronized) => {
                if acks.is_none() {
                    info!(
                        "synchronised with ping at round {}: publishing acknowledgements",
                        rounds.last().unwrap_or(0)
                    );
                    let publication = match node.publish(&ACK) {
                        Ok(publication) => publication,
                        Err(e) => {
                            error!("{e}");
                            failed = true;
                            break;
                        }
                    };
                    if let Some(n) = rounds.last() {
                        if let Err(e) = publication.publish(&Global, &Ack { n }) {
                            error!("cannot acknowledge round {n}: {e}");
                            failed = true;
                            break;
                        }
                    }
                    acks = Some(publication);
                }
            }
            Update::Event(OwnedEvent::Restarted) => info!("ping signalled a restart"),
        }
    }
    if let Some(acks) = &acks {
        acks.close();
    }
    seqs.close();
    drivers::stopped(&node).await;

    let ok = !failed && deletions == 0 && rounds.is_unbroken_up_to(config.rounds);
    let verdict = if ok { "ok" } else { "FAILED" };
    info!("verdict: {verdict} {rounds} deletions {deletions}");
    if ok {
        0
    } else {
        1
    }
}
