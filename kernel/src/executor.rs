//! A small async executor for one CPU: tasks, wakers, timers, and an idle loop that halts.
//!
//! Tasks are boxed futures in slots. Waking a task queues it once on the ready queue. The run
//! loop polls ready tasks, fires expired timers, wakes tasks whose interrupts came in, and when
//! nothing is ready arms the timer for the earliest deadline and halts until an interrupt.
//! There is no busy polling: a task that waits is not polled until something wakes it.

use alloc::boxed::Box;
use alloc::collections::{BinaryHeap, VecDeque};
use alloc::rc::Rc;
use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::cmp::Ordering as CmpOrdering;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::task::{Context, Poll, Waker};
use core::time::Duration;

#[cfg(target_os = "none")]
use crate::arch::cpu;
use crate::sync::IrqMutex;
use crate::time::{self, Instant};

type BoxedTask = Pin<Box<dyn Future<Output = ()>>>;

/// Makes a value placeable in a `static` although it is not `Send`.
struct SingleCpu<T>(T);
// SAFETY: lichen runs one CPU; tasks are created, polled and dropped only by task code (never
// by interrupt handlers), so a task is never touched from two contexts at once.
unsafe impl<T> Send for SingleCpu<T> {}

struct TaskWaker {
    slot: usize,
    queued: AtomicBool,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            READY.lock().push_back(self.clone());
        }
    }
}

struct Slot {
    /// `None` while the task is being polled.
    future: Option<BoxedTask>,
    waker: Arc<TaskWaker>,
}

static TASKS: IrqMutex<SingleCpu<Vec<Option<Slot>>>> = IrqMutex::new(SingleCpu(Vec::new()));
static READY: IrqMutex<VecDeque<Arc<TaskWaker>>> = IrqMutex::new(VecDeque::new());
static TIMERS: IrqMutex<BinaryHeap<TimerEntry>> = IrqMutex::new(BinaryHeap::new());
static TIMER_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Starts a task; the handle yields its result.
pub fn spawn<T: 'static>(future: impl Future<Output = T> + 'static) -> JoinHandle<T> {
    let state = Rc::new(RefCell::new(JoinState {
        result: None,
        waiter: None,
    }));
    let producer = state.clone();
    let task = async move {
        let value = future.await;
        let waiter = {
            let mut s = producer.borrow_mut();
            s.result = Some(value);
            s.waiter.take()
        };
        if let Some(w) = waiter {
            w.wake();
        }
    };
    let mut tasks = TASKS.lock();
    let index = tasks.0.iter().position(Option::is_none).unwrap_or_else(|| {
        tasks.0.push(None);
        tasks.0.len() - 1
    });
    let waker = Arc::new(TaskWaker {
        slot: index,
        queued: AtomicBool::new(false),
    });
    tasks.0[index] = Some(Slot {
        future: Some(Box::pin(task)),
        waker: waker.clone(),
    });
    drop(tasks);
    waker.wake();
    JoinHandle { state }
}

struct JoinState<T> {
    result: Option<T>,
    waiter: Option<Waker>,
}

/// The result of a spawned task, as a future.
pub struct JoinHandle<T> {
    state: Rc<RefCell<JoinState<T>>>,
}

impl<T> JoinHandle<T> {
    /// Whether the task has finished (its result not yet taken).
    pub fn is_finished(&self) -> bool {
        self.state.borrow().result.is_some()
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut state = self.state.borrow_mut();
        match state.result.take() {
            Some(v) => Poll::Ready(v),
            None => {
                state.waiter = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Number of live tasks.
pub fn task_count() -> usize {
    TASKS.lock().0.iter().filter(|s| s.is_some()).count()
}

/// Polls one task; returns without doing anything if the wake is stale.
fn poll_task(waker: Arc<TaskWaker>) {
    waker.queued.store(false, Ordering::Release);
    let future = {
        let mut tasks = TASKS.lock();
        match tasks.0.get_mut(waker.slot) {
            Some(Some(slot)) if Arc::ptr_eq(&slot.waker, &waker) => slot.future.take(),
            _ => None,
        }
    };
    let Some(mut future) = future else { return };
    let std_waker = Waker::from(waker.clone());
    let done = future
        .as_mut()
        .poll(&mut Context::from_waker(&std_waker))
        .is_ready();
    let mut tasks = TASKS.lock();
    if done {
        // Drop the finished future outside the lock: its destructor may touch the executor.
        let finished = tasks.0[waker.slot].take();
        drop(tasks);
        drop(finished);
        drop(future);
    } else if let Some(slot) = tasks.0[waker.slot].as_mut() {
        slot.future = Some(future);
    }
}

/// Runs tasks until `main` completes, and returns its output.
pub fn run<T: 'static>(main: impl Future<Output = T> + 'static) -> T {
    let handle = spawn(main);
    loop {
        // Poll what is ready now; tasks woken meanwhile wait for the next round, so timers
        // and interrupts are looked at between rounds.
        let ready: VecDeque<_> = core::mem::take(&mut *READY.lock());
        for waker in ready {
            poll_task(waker);
        }
        if let Some(result) = handle.state.borrow_mut().result.take() {
            return result;
        }
        let now = time::now();
        match fire_timers(now) {
            // More timers are due (at a later deadline): they fire next round, without a
            // sleep, but the interrupts and events that came in are still handed to their
            // tasks. Skipping that too starved every task that waits on an event for as long
            // as some timer was always late (under load, a periodic task that never catches
            // up): zedagent's xenstore and channels in the node test, forever.
            Some(next) if next <= now => wake_interrupts_and_events(),
            next_deadline => wait_for_work(next_deadline),
        }
    }
}

/// Wakes the tasks whose interrupts or events came in (without sleeping).
#[cfg(target_os = "none")]
fn wake_interrupts_and_events() {
    crate::irq::wake_pending();
    crate::platform::current().wake_events();
}

/// Host unit tests: wakes the tasks whose "interrupts" task code raised.
#[cfg(all(test, not(target_os = "none")))]
fn wake_interrupts_and_events() {
    crate::irq::wake_pending();
}

/// With nothing ready: sleeps until an interrupt, an event or `next_deadline` (the earliest
/// timer), or returns at once if work came in meanwhile.
#[cfg(target_os = "none")]
fn wait_for_work(next_deadline: Option<Instant>) {
    let platform = crate::platform::current();
    let waiting_on_interrupts = crate::irq::wake_pending() | platform.wake_events();
    cpu::disable_interrupts();
    if !READY.lock().is_empty() || crate::irq::any_pending() || platform.events_pending() {
        cpu::enable_interrupts();
        return;
    }
    match next_deadline {
        Some(deadline) => platform.arm_timer(deadline),
        None if !waiting_on_interrupts => {
            cpu::enable_interrupts();
            panic!("deadlock: every task waits, and no timer or interrupt can wake one");
        }
        None => {}
    }
    platform.idle();
    crate::irq::take(crate::arch::trap::TIMER_VECTOR);
}

/// Host unit tests: "interrupts" are raised by task code (a loopback card), so with nothing
/// ready and none pending only a timer can wake a task: the simulated clock jumps to it.
#[cfg(all(test, not(target_os = "none")))]
fn wait_for_work(next_deadline: Option<Instant>) {
    crate::irq::wake_pending();
    if !READY.lock().is_empty() || crate::irq::any_pending() {
        return;
    }
    match next_deadline {
        Some(deadline) => time::advance_to(deadline),
        None => panic!("deadlock: every task waits, and no timer or interrupt can wake one"),
    }
}

/// The executor is one per kernel: host unit tests that run it take turns with this.
#[cfg(all(test, not(target_os = "none")))]
pub(crate) static TEST_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Forgets every task and timer (host unit tests: each test starts from an empty executor).
#[cfg(all(test, not(target_os = "none")))]
pub(crate) fn reset() {
    let tasks = core::mem::take(&mut TASKS.lock().0);
    READY.lock().clear();
    TIMERS.lock().clear();
    drop(tasks);
}

struct TimerEntry {
    deadline: Instant,
    sequence: u64,
    waker: Waker,
}

impl PartialEq for TimerEntry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}
impl Eq for TimerEntry {}
impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimerEntry {
    /// Reversed: the max-heap yields the earliest deadline first, then the earliest armed.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.deadline, other.sequence).cmp(&(self.deadline, self.sequence))
    }
}

/// Wakes the timers of the earliest deadline if it is due at `now` (those of later deadlines,
/// even if due too, are left to the next rounds); returns the next deadline.
///
/// One deadline per round keeps late timers in deadline order: when the CPU comes back long
/// after several deadlines passed (a loaded host, a vCPU not scheduled), the task of the
/// earliest runs first, and its next [`Sleep`], already due, still waits for the timers due
/// before it (see [`Sleep::poll`]).
fn fire_timers(now: Instant) -> Option<Instant> {
    let mut fired = None;
    loop {
        let mut timers = TIMERS.lock();
        match timers.peek() {
            Some(entry) if entry.deadline <= now && fired.is_none_or(|d| entry.deadline == d) => {
                let entry = timers.pop().expect("peeked");
                drop(timers);
                fired = Some(entry.deadline);
                entry.waker.wake();
            }
            Some(entry) => return Some(entry.deadline),
            None => return None,
        }
    }
}

/// Whether a timer armed for an earlier deadline than `deadline` has yet to fire.
fn earlier_timer_pending(deadline: Instant) -> bool {
    TIMERS
        .lock()
        .peek()
        .is_some_and(|entry| entry.deadline < deadline)
}

/// Completes at `deadline`, and not before the timers armed for earlier deadlines fired: late
/// timers keep their order. A sleep already due when first polled goes through the timers once
/// (a round of the executor) for the same reason.
pub struct Sleep {
    deadline: Instant,
    armed_for: Option<Waker>,
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let due = time::now() >= self.deadline;
        if due && self.armed_for.is_some() && !earlier_timer_pending(self.deadline) {
            return Poll::Ready(());
        }
        // Due but never armed (it was already late when first polled), or due behind an
        // earlier timer: armed (again: its entry may have fired already), so that it fires in
        // deadline order after the timers due before it, including those of tasks woken but
        // not yet run.
        if due
            || !self
                .armed_for
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
        {
            let sequence = TIMER_SEQUENCE.fetch_add(1, Ordering::Relaxed);
            TIMERS.lock().push(TimerEntry {
                deadline: self.deadline,
                sequence,
                waker: cx.waker().clone(),
            });
            self.armed_for = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Completes after `duration`.
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(time::now() + duration)
}

/// Completes at `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        armed_for: None,
    }
}

/// The error of [`timeout`]: the time ran out first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed;

impl core::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("timed out")
    }
}

/// Runs `future` for at most `duration`.
pub async fn timeout<T>(duration: Duration, future: impl Future<Output = T>) -> Result<T, Elapsed> {
    let mut future = core::pin::pin!(future);
    let mut timer = sleep(duration);
    core::future::poll_fn(|cx| {
        if let Poll::Ready(v) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        Pin::new(&mut timer).poll(cx).map(|()| Err(Elapsed))
    })
    .await
}

/// Gives other ready tasks a turn.
pub async fn yield_now() {
    let mut yielded = false;
    core::future::poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

#[cfg(all(test, not(target_os = "none")))]
mod tests {
    use super::*;

    /// Ticks `count` times, every `period_ms` from `start`, logging each deadline met.
    async fn ticker(
        name: &'static str,
        period_ms: u64,
        count: u64,
        start: Instant,
        log: Rc<RefCell<Vec<(Instant, &'static str)>>>,
    ) {
        for i in 1..=count {
            let deadline = start + Duration::from_millis(period_ms * i);
            sleep_until(deadline).await;
            log.borrow_mut().push((deadline, name));
        }
    }

    /// Runs tickers `a` (every 20 ms) and `b` (every 30 ms), `count` ticks each, with the CPU
    /// away for `away_ms` once both armed their first timer; returns the ticks in the order
    /// they came.
    fn late_tickers(count: u64, away_ms: u64) -> Vec<(Instant, &'static str)> {
        let _turn = TEST_TURN.lock().unwrap_or_else(|e| e.into_inner());
        reset();
        let start = time::now();
        let log = Rc::new(RefCell::new(Vec::new()));
        let (a_log, b_log) = (log.clone(), log.clone());
        run(async move {
            let a = spawn(ticker("a", 20, count, start, a_log));
            let b = spawn(ticker("b", 30, count, start, b_log));
            yield_now().await;
            time::advance_to(start + Duration::from_millis(away_ms));
            a.await;
            b.await;
        });
        reset();
        let ticks = log.borrow().clone();
        ticks
    }

    /// Sleeps `rounds` times until a deadline `lag_ns` behind the clock, which it moves on by
    /// 2 ms first each time: always late, never caught up. Stops early once `stop` is set;
    /// returns how many times it slept.
    async fn always_late(lag_ns: u64, rounds: u64, stop: Rc<RefCell<bool>>) -> u64 {
        for slept in 0..rounds {
            if *stop.borrow() {
                return slept;
            }
            let now = time::now();
            time::advance_to(now + Duration::from_millis(2));
            sleep_until(Instant::from_nanos(now.as_nanos().saturating_sub(lag_ns))).await;
        }
        rounds
    }

    #[test]
    fn interrupts_reach_their_task_while_timers_are_always_late() {
        let _turn = TEST_TURN.lock().unwrap_or_else(|e| e.into_inner());
        reset();
        crate::irq::reset();
        const VECTOR: u8 = 0x42;
        // Far enough from zero that the deadlines behind the clock stay distinct.
        time::advance_to(time::now() + Duration::from_secs(1));
        let woken = Rc::new(RefCell::new(false));
        let (seen, stop_a, stop_b) = (woken.clone(), woken.clone(), woken.clone());
        run(async move {
            let waiter = spawn(async move {
                crate::irq::wait(VECTOR).await;
                *seen.borrow_mut() = true;
            });
            // Two tasks always behind, never at the same deadline: every round ends with a
            // timer fired and the other one due.
            let a = spawn(always_late(1_000_003, 500, stop_a));
            let b = spawn(always_late(5_000_017, 500, stop_b));
            yield_now().await;
            crate::irq::raise(VECTOR);
            let slept = (a.await, b.await);
            assert!(
                slept.0 < 500 && slept.1 < 500,
                "the interrupt reached its task only once no timer was late: {slept:?}"
            );
            waiter.await;
        });
        reset();
        crate::irq::reset();
    }

    #[test]
    fn timers_that_are_late_together_fire_in_deadline_order() {
        // Every deadline (a: 20, 40, 60; b: 30, 60, 90) has passed when the tasks run again.
        let log = late_tickers(3, 100);
        let names: Vec<&str> = log.iter().map(|(_, name)| *name).collect();
        assert_eq!(names, ["a", "b", "a", "b", "a", "b"], "{log:?}");
        assert!(log.windows(2).all(|w| w[0].0 <= w[1].0), "{log:?}");
        // The same with deadlines shared by both (60, 120) and some not yet due (hello's case).
        let log = late_tickers(5, 130);
        assert_eq!(log.len(), 10);
        assert!(log.windows(2).all(|w| w[0].0 <= w[1].0), "{log:?}");
    }
}
