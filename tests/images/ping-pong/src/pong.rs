//! pong: subscribes to ping's rounds and acknowledges each one it sees; checks that they come
//! one by one, each once. It publishes its table only once it has rebuilt it from ping's (at
//! the first synchronisation), so that after a restart ping never sees it empty.

use bus::{OwnedEvent, Publisher, Volatile};
use bus_io::{Link, SharedPublisher, Subscription, Update};
use kernel::{error, info, warn, Duration, JoinHandle};
use ping_pong::config::Config;
use ping_pong::protocol::{
    Ack, Seq, ACK_CHANNEL, ACK_TOPIC, PING_KEY, PONG_KEY, SEQ_CHANNEL, SEQ_TOPIC,
};
use ping_pong::tally::{Step, Tally};

use crate::drivers::{self, LinkLog};

pub async fn run(config: &Config) -> i32 {
    let acks = match Publisher::<Ack, _>::new(ACK_TOPIC, Volatile) {
        Ok(publisher) => SharedPublisher::new(publisher),
        Err(e) => {
            error!("cannot publish {}: {e}", ACK_TOPIC.name);
            return 1;
        }
    };
    let seqs = Subscription::<Seq>::new(SEQ_TOPIC);
    let following = drivers::follow(&seqs, SEQ_CHANNEL);
    let mut serving: Option<JoinHandle<()>> = None;
    let mut seq_log = LinkLog::new(SEQ_CHANNEL);
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
            ) if key == PING_KEY => {
                match rounds.observe(value.n) {
                    Step::First => info!("first round seen: {}", value.n),
                    Step::Next => {}
                    Step::Gap { missing } => {
                        error!("round {}: {missing} missing before it", value.n)
                    }
                    Step::Repeat => error!("round {} seen again", value.n),
                }
                if let Err(e) = acks.publish(PONG_KEY, &Ack { n: value.n }) {
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
                if serving.is_none() {
                    info!(
                        "synchronised with ping at round {}: publishing acknowledgements",
                        rounds.last().unwrap_or(0)
                    );
                    serving = Some(drivers::serve(&acks, ACK_CHANNEL));
                }
            }
            Update::Event(OwnedEvent::Restarted) => info!("ping signalled a restart"),
        }
    }
    acks.close();
    seqs.close();
    drivers::stopped(serving.into_iter().chain([following])).await;

    let ok = !failed && deletions == 0 && rounds.is_unbroken_up_to(config.rounds);
    let verdict = if ok { "ok" } else { "FAILED" };
    info!("verdict pong: {verdict} {rounds} deletions {deletions}");
    if ok {
        0
    } else {
        1
    }
}
