//! The lichen-bus sessions (see `vchan_bench::bus` for what they do): a publisher that runs the
//! bus plan and times each run, a subscriber that checks every object and reports its progress.
//! Both drive the bus with lichen-bus-io, either over two manifest channels of their own
//! (`wired`: the reference, one channel per topic) or as any service does, through the node on
//! the bus channel the launcher derived between the two images (`node`: both topics
//! multiplexed on one channel). A connection that ends before the plan is done fails the
//! session instead of being made again.

use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec;
use core::cell::RefCell;

use bus::{OwnedEvent, Publisher, Volatile};
use bus_io::channel::NamedChannel;
use bus_io::{EndReason, Link, Node, SharedPublisher, Subscription, Update};
use kernel::{info, Duration, JoinHandle};
use serde::{de::DeserializeOwned, Serialize};
use vchan_bench::bus::{
    ack_channel, key_of, BusRun, CheckError, Progress, RunCheck, Sample, BATCH, PROGRESS_KEY,
    PROGRESS_TOPIC, SAMPLE_TOPIC,
};

use super::{within, Failure, Limits, FILL};

/// How long a driver may take to drop its channel once closed.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// The operation name of bus failures.
const OP: &str = "bus";

/// Opens manifest channel `name` for as long as `wait` allows one attempt.
fn connector(name: String, wait: Duration) -> NamedChannel {
    // A session runs once per boot: leaking its two channel names is bounded.
    NamedChannel::new(name.leak()).wait(wait)
}

/// Why a driver's connection failed or ended, once it did: the bench does not reconnect.
#[derive(Clone, Default)]
struct Ended(Rc<RefCell<Option<String>>>);

impl Ended {
    fn note(&self, link: &Link) {
        self.0.borrow_mut().get_or_insert(link.to_string());
    }

    fn check(&self, what: &str) -> Result<(), String> {
        match self.0.borrow().as_ref() {
            Some(reason) => Err(format!("{what} channel: {reason}")),
            None => Ok(()),
        }
    }
}

/// Serves `publisher` over `channel` from a task, logging the session line once connected and
/// noting in `ended` why the connection failed or ended.
fn serve<T>(
    publisher: &SharedPublisher<T>,
    channel: NamedChannel,
    session: Option<(&str, &'static str)>,
    ended: &Ended,
) -> JoinHandle<()>
where
    T: Serialize + DeserializeOwned + 'static,
{
    let (publisher, ended) = (publisher.clone(), ended.clone());
    let session = session.map(|(name, role)| (name.to_string(), role));
    kernel::spawn(async move {
        publisher
            .serve(channel, |link| match link {
                Link::Connected => {
                    if let Some((name, role)) = &session {
                        log_session(name, role, None);
                    }
                }
                failed_or_ended => ended.note(&failed_or_ended),
            })
            .await
    })
}

/// Keeps `subscription` connected over `channel` from a task.
fn follow<T>(subscription: &Subscription<T>, channel: NamedChannel) -> JoinHandle<()>
where
    T: DeserializeOwned + PartialEq + Clone + 'static,
{
    let subscription = subscription.clone();
    kernel::spawn(async move { subscription.run(channel).await })
}

/// Prints the line the bench script counts a session by, once its channel is open.
fn log_session(name: &str, role: &str, node: Option<&Node>) {
    let vchan = if node.is_some() { "derived" } else { "wired" };
    info!("vbench-session session={name} impl=lichen-bus vchan={vchan} bench={role}");
}

/// The session's drivers: tasks on manifest channels (`wired`), or the node's.
enum Drivers<'a> {
    Wired(JoinHandle<()>, JoinHandle<()>),
    Node(&'a Node),
}

impl Drivers<'_> {
    /// Waits (a little) for the closed drivers to drop or close their streams.
    async fn stopped(self) {
        match self {
            Drivers::Wired(first, second) => {
                stopped(first).await;
                stopped(second).await;
            }
            Drivers::Node(node) => {
                let _ = kernel::timeout(STOP_WAIT, node.closed()).await;
            }
        }
    }
}

/// Waits (a little) for a closed driver to drop its channel, so that the peer sees a close.
async fn stopped(driver: JoinHandle<()>) {
    let _ = kernel::timeout(STOP_WAIT, driver).await;
}

/// The publishing session: runs `plan` and prints a row per run.
pub async fn publish(
    name: &str,
    plan: &[BusRun],
    limits: Limits,
    node: Option<&Node>,
) -> Result<(), Failure> {
    let setup = |e: bus_io::NodeError| Failure::new("setup", 0, e);
    let data_ended = Ended::default();
    let (samples, progress, drivers) = match node {
        None => {
            let samples = Publisher::<Sample, _>::new(SAMPLE_TOPIC, Volatile)
                .map(SharedPublisher::new)
                .map_err(|e| Failure::new("setup", 0, e))?;
            let progress = Subscription::<Progress>::new(PROGRESS_TOPIC);
            let serving = serve(
                &samples,
                connector(name.into(), limits.wait),
                Some((name, "publish")),
                &data_ended,
            );
            let following = follow(&progress, connector(ack_channel(name), limits.wait));
            (samples, progress, Drivers::Wired(serving, following))
        }
        Some(node) => {
            let samples = node.publish(&topics::vbench_a::SAMPLES).map_err(setup)?;
            let progress = node.subscribe(&topics::vbench_b::PROGRESS).map_err(setup)?;
            log_session(name, "publish", Some(node));
            (samples.shared().clone(), progress, Drivers::Node(node))
        }
    };
    let mut watch = ProgressWatch {
        progress: &progress,
        data_ended: &data_ended,
    };
    let mut result = Ok(());
    for (run, &spec) in (0..).zip(plan) {
        result = publish_run(name, &samples, &mut watch, run, spec, limits).await;
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        let done = 2 * plan.len() as u32;
        result = within(OP, 0, limits.op, watch.step(done)).await.map(drop);
    }
    // The data channel closes first: the subscriber takes its end as the end of the plan.
    samples.close();
    progress.close();
    drivers.stopped().await;
    result
}

/// What the publisher hears from its subscriber.
struct ProgressWatch<'a> {
    progress: &'a Subscription<Progress>,
    data_ended: &'a Ended,
}

impl ProgressWatch<'_> {
    /// Waits until the subscriber reached `step`; its progress then.
    async fn step(&mut self, step: u32) -> Result<Progress, String> {
        loop {
            self.data_ended.check("data")?;
            let now = self.progress.with(|s| s.get(PROGRESS_KEY).copied());
            if let Some(progress) = now.filter(|p| p.step >= step) {
                return Ok(progress);
            }
            match self.progress.next().await {
                Update::Link(Link::Connected) | Update::Event(_) => {}
                Update::Link(failed_or_ended) => {
                    return Err(format!("progress channel: {failed_or_ended}"))
                }
            }
        }
    }
}

/// Runs one item of the plan: publishes its objects (timed until the subscriber saw them all),
/// then deletes them and waits until the subscriber's view is empty.
async fn publish_run(
    name: &str,
    samples: &SharedPublisher<Sample>,
    watch: &mut ProgressWatch<'_>,
    run: u32,
    spec: BusRun,
    limits: Limits,
) -> Result<(), Failure> {
    // The subscriber may still be busy with earlier sessions when run 0 starts.
    let ready_limit = if run == 0 { limits.wait } else { limits.op };
    within(OP, spec.size, ready_limit, watch.step(2 * run)).await?;
    let mut sample = Sample {
        run,
        index: 0,
        count: spec.count,
        payload: vec![FILL; spec.size as usize],
    };
    let start = kernel::now();
    let seen = within(OP, spec.size, limits.op, async {
        for index in 0..spec.count {
            sample.index = index;
            samples
                .publish(&key_of(index), &sample)
                .map_err(|e| e.to_string())?;
            batch_written(samples, index, spec.count, watch.data_ended).await?;
        }
        watch.step(2 * run + 1).await
    })
    .await?;
    let us = start.elapsed().as_nanos() as f64 / 1e3;
    info!(
        "vbench-row session={name} op=bus size={} count={} bytes={} us={us:.0} resyncs={}",
        spec.size,
        spec.count,
        u64::from(spec.size) * u64::from(spec.count),
        seen.resyncs
    );
    within("bus-clear", spec.size, limits.op, async {
        for index in 0..spec.count {
            samples
                .unpublish(&key_of(index))
                .map_err(|e| e.to_string())?;
            batch_written(samples, index, spec.count, watch.data_ended).await?;
        }
        Ok(())
    })
    .await
}

/// At the end of a batch (object `index` of `count`), waits until the driver wrote it: the bus
/// then holds no changed key for the subscriber, so the next batch cannot overflow its bound.
/// The publisher has nothing else to do meanwhile, so it yields rather than sleeps.
async fn batch_written(
    samples: &SharedPublisher<Sample>,
    index: u32,
    count: u32,
    data_ended: &Ended,
) -> Result<(), String> {
    if !(index + 1).is_multiple_of(BATCH) && index + 1 != count {
        return Ok(());
    }
    while samples.with(|p| p.sessions().any(|s| p.wants_to_send(s))) {
        data_ended.check("data")?;
        kernel::yield_now().await;
    }
    data_ended.check("data")
}

/// The subscribing session: checks every run and reports its progress, until the publisher
/// closes the connection after the last run.
pub async fn subscribe(name: &str, limits: Limits, node: Option<&Node>) -> Result<(), Failure> {
    let setup = |e: bus_io::NodeError| Failure::new("setup", 0, e);
    let progress_ended = Ended::default();
    let (samples, progress, drivers) = match node {
        None => {
            let samples = Subscription::<Sample>::new(SAMPLE_TOPIC);
            let progress = Publisher::<Progress, _>::new(PROGRESS_TOPIC, Volatile)
                .map(SharedPublisher::new)
                .map_err(|e| Failure::new("setup", 0, e))?;
            let following = follow(&samples, connector(name.into(), limits.wait));
            let serving = serve(
                &progress,
                connector(ack_channel(name), limits.wait),
                None,
                &progress_ended,
            );
            (samples, progress, Drivers::Wired(following, serving))
        }
        Some(node) => {
            let samples = node.subscribe(&topics::vbench_a::SAMPLES).map_err(setup)?;
            let progress = node.publish(&topics::vbench_b::PROGRESS).map_err(setup)?;
            (samples, progress.shared().clone(), Drivers::Node(node))
        }
    };
    let result = check_runs(name, &samples, &progress, &progress_ended, limits, node).await;
    samples.close();
    progress.close();
    drivers.stopped().await;
    result
}

/// Follows the publisher's runs, checking every event, until it closes the connection.
async fn check_runs(
    name: &str,
    samples: &Subscription<Sample>,
    progress: &SharedPublisher<Progress>,
    progress_ended: &Ended,
    limits: Limits,
    node: Option<&Node>,
) -> Result<(), Failure> {
    let mut check = RunCheck::new();
    let mut synchronisations = 0u32;
    // Only a report needs the progress channel: the publisher closes it after the data channel.
    let report = |check: &RunCheck, synchronisations: u32| {
        progress_ended
            .check("progress")
            .map_err(|e| Failure::new(OP, 0, e))?;
        let now = Progress {
            step: check.step(),
            resyncs: synchronisations.saturating_sub(1),
        };
        progress
            .publish(PROGRESS_KEY, &now)
            .map_err(|e| Failure::new(OP, 0, e))
    };
    loop {
        // Until the first synchronisation the publisher may still be busy with earlier sessions.
        let limit = if synchronisations == 0 {
            limits.wait
        } else {
            limits.op
        };
        let update = kernel::timeout(limit, samples.next()).await.map_err(|_| {
            Failure::new(
                OP,
                0,
                format!("timeout-{}s at step {}", limit.as_secs(), check.step()),
            )
        })?;
        let run = check.runs();
        let failed = |e: CheckError| Failure::new(OP, 0, format!("run {run}: {e}"));
        let progressed = match update {
            Update::Link(Link::Connected) => {
                log_session(name, "subscribe", node);
                false
            }
            // The publisher closes once the subscriber's view is empty after its last run.
            Update::Link(Link::Ended(EndReason::PeerClosed))
                if check.runs() > 0 && check.step().is_multiple_of(2) =>
            {
                break
            }
            Update::Link(failed_or_ended) => {
                return Err(Failure::new(
                    OP,
                    0,
                    format!("data channel at step {}: {failed_or_ended}", check.step()),
                ))
            }
            Update::Event(OwnedEvent::Synchronized) => {
                synchronisations += 1;
                synchronisations == 1
            }
            Update::Event(OwnedEvent::Created { key, value }) => {
                check.created(&key, &value).map_err(failed)?
            }
            Update::Event(OwnedEvent::Deleted { key, value }) => {
                check.deleted(&key, &value).map_err(failed)?
            }
            Update::Event(OwnedEvent::Modified { key, .. }) => {
                return Err(failed(check.modified(&key)))
            }
            Update::Event(OwnedEvent::Restarted) => {
                return Err(Failure::new(OP, 0, "the publisher signalled a restart"))
            }
        };
        if progressed {
            report(&check, synchronisations)?;
        }
    }
    let (created, deleted) = check.totals();
    info!(
        "vbench-bus-check session={name} runs={} created={created} deleted={deleted} resyncs={}",
        check.runs(),
        synchronisations.saturating_sub(1)
    );
    Ok(())
}
