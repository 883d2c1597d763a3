//! Test tools: polling by hand, a single-threaded executor that detects stalls, an in-memory
//! duplex pipe whose ends can be cut, and a connector that hands out prepared streams.

use alloc::task::Wake;
use alloc::{boxed::Box, collections::VecDeque, rc::Rc, string::String, sync::Arc, vec::Vec};
use core::cell::{Cell, RefCell};
use core::future::{poll_fn, Future};
use core::pin::Pin;
use core::sync::atomic::{AtomicUsize, Ordering};
use core::task::{Context, Poll, Waker};

use crate::notify::Notify;
use crate::stream::{ByteStream, Connector, Duplex, Transferred};

/// A waker that counts its wakes.
pub(crate) struct CountingWaker(Arc<Counter>);

struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl CountingWaker {
    pub(crate) fn new() -> Self {
        Self(Arc::new(Counter(AtomicUsize::new(0))))
    }

    pub(crate) fn wakes(&self) -> usize {
        self.0 .0.load(Ordering::SeqCst)
    }

    fn waker(&self) -> Waker {
        Waker::from(self.0.clone())
    }
}

/// Polls `future` once with `waker`.
pub(crate) fn poll_once<F: Future + ?Sized>(
    future: Pin<&mut F>,
    waker: &CountingWaker,
) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(&waker.waker()))
}

type Task = Pin<Box<dyn Future<Output = ()>>>;

/// Background tasks for [`run`]: spawned with [`Tasks::spawn`], polled along with the main one.
#[derive(Default)]
pub(crate) struct Tasks(RefCell<Vec<Task>>);

impl Tasks {
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        self.0.borrow_mut().push(Box::pin(task));
    }

    /// Whether every task has finished.
    pub(crate) fn all_done(&self) -> bool {
        self.0.borrow().is_empty()
    }
}

/// Runs `main` and the background tasks until `main` completes. Panics when nothing can make
/// progress any more (no task woke another): a deadlock or a lost wake-up.
pub(crate) fn run<F: Future>(tasks: &Tasks, main: F) -> F::Output {
    let waker = CountingWaker::new();
    let mut main = core::pin::pin!(main);
    loop {
        let before = waker.wakes();
        if let Poll::Ready(value) = poll_once(main.as_mut(), &waker) {
            return value;
        }
        let mut running = core::mem::take(&mut *tasks.0.borrow_mut());
        running.retain_mut(|task| poll_once(task.as_mut(), &waker).is_pending());
        // Tasks spawned while polling were added to the emptied list.
        running.append(&mut tasks.0.borrow_mut());
        *tasks.0.borrow_mut() = running;
        assert!(
            waker.wakes() != before,
            "stalled: no task can make progress"
        );
    }
}

/// Yields to the executor once.
pub(crate) async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// One direction of a pipe.
#[derive(Default)]
struct Lane {
    bytes: VecDeque<u8>,
    /// The writing end is gone: the reader sees the end once the bytes are read.
    writer_gone: bool,
    /// The reading end is gone: writes fail.
    reader_gone: bool,
}

struct PipeState {
    lanes: [RefCell<Lane>; 2],
    capacity: usize,
    /// Notified on every change of either lane.
    changed: Notify,
}

/// One end of an in-memory duplex pipe; dropping it closes the pipe for the other end.
pub(crate) struct PipeEnd {
    state: Rc<PipeState>,
    /// The lane this end reads; it writes the other one.
    reads: usize,
}

/// The error of a pipe end whose peer is gone.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Broken;

impl core::fmt::Display for Broken {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("broken pipe")
    }
}

/// A pipe holding at most `capacity` bytes each way.
pub(crate) fn pipe(capacity: usize) -> (PipeEnd, PipeEnd) {
    let state = Rc::new(PipeState {
        lanes: Default::default(),
        capacity: capacity.max(1),
        changed: Notify::default(),
    });
    let end = |reads| PipeEnd {
        state: state.clone(),
        reads,
    };
    (end(0), end(1))
}

impl PipeEnd {
    fn read_lane(&self) -> &RefCell<Lane> {
        &self.state.lanes[self.reads]
    }

    fn write_lane(&self) -> &RefCell<Lane> {
        &self.state.lanes[1 - self.reads]
    }

    /// A handle that cuts this pipe as a dying peer would: both ways, at once.
    pub(crate) fn cutter(&self) -> Cutter {
        Cutter(self.state.clone())
    }
}

impl ByteStream for PipeEnd {
    type Error = Broken;

    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Broken> {
        self.state
            .changed
            .wait_until(|| {
                let lane = self.read_lane().borrow();
                !lane.bytes.is_empty() || lane.writer_gone
            })
            .await;
        let mut lane = self.read_lane().borrow_mut();
        let n = buf.len().min(lane.bytes.len());
        for (slot, byte) in buf.iter_mut().zip(lane.bytes.drain(..n)) {
            *slot = byte;
        }
        drop(lane);
        self.state.changed.notify();
        Ok(n)
    }

    async fn write_all(&mut self, mut buf: &[u8]) -> Result<(), Broken> {
        while !buf.is_empty() {
            let capacity = self.state.capacity;
            self.state
                .changed
                .wait_until(|| {
                    let lane = self.write_lane().borrow();
                    lane.bytes.len() < capacity || lane.reader_gone
                })
                .await;
            let mut lane = self.write_lane().borrow_mut();
            if lane.reader_gone || lane.writer_gone {
                return Err(Broken);
            }
            let n = buf.len().min(capacity - lane.bytes.len());
            lane.bytes.extend(&buf[..n]);
            drop(lane);
            buf = &buf[n..];
            self.state.changed.notify();
        }
        Ok(())
    }
}

impl Duplex for PipeEnd {
    async fn transfer(&mut self, out: &[u8], inp: &mut [u8]) -> Result<Transferred, Broken> {
        loop {
            let seen = self.state.changed.generation();
            {
                let mut lane = self.read_lane().borrow_mut();
                if !lane.bytes.is_empty() {
                    let n = inp.len().min(lane.bytes.len());
                    for (slot, byte) in inp.iter_mut().zip(lane.bytes.drain(..n)) {
                        *slot = byte;
                    }
                    drop(lane);
                    self.state.changed.notify();
                    return Ok(Transferred::Read(n));
                }
                if lane.writer_gone {
                    return Ok(Transferred::Read(0));
                }
            }
            if !out.is_empty() {
                let capacity = self.state.capacity;
                let mut lane = self.write_lane().borrow_mut();
                if lane.reader_gone {
                    return Err(Broken);
                }
                if lane.bytes.len() < capacity {
                    let n = out.len().min(capacity - lane.bytes.len());
                    lane.bytes.extend(&out[..n]);
                    drop(lane);
                    self.state.changed.notify();
                    return Ok(Transferred::Wrote(n));
                }
            }
            self.state.changed.changed_since(seen).await;
        }
    }
}

impl Drop for PipeEnd {
    fn drop(&mut self) {
        self.write_lane().borrow_mut().writer_gone = true;
        self.read_lane().borrow_mut().reader_gone = true;
        self.state.changed.notify();
    }
}

/// Cuts a pipe (see [`PipeEnd::cutter`]): what is in flight is lost, both ends see the end.
pub(crate) struct Cutter(Rc<PipeState>);

impl Cutter {
    pub(crate) fn cut(&self) {
        for lane in &self.0.lanes {
            let mut lane = lane.borrow_mut();
            lane.bytes.clear();
            lane.writer_gone = true;
            lane.reader_gone = true;
        }
        self.0.changed.notify();
    }
}

/// Hands out the streams the test offers, in order, waiting while there is none; fails once
/// for each error the test offers instead.
pub(crate) struct Offered<S> {
    queue: Rc<RefCell<VecDeque<Result<S, String>>>>,
    offered: Rc<Notify>,
    /// How many connections were asked for.
    pub(crate) attempts: Rc<Cell<usize>>,
}

impl<S> Clone for Offered<S> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            offered: self.offered.clone(),
            attempts: self.attempts.clone(),
        }
    }
}

impl<S> Offered<S> {
    pub(crate) fn new() -> Self {
        Self {
            queue: Rc::default(),
            offered: Rc::default(),
            attempts: Rc::default(),
        }
    }

    pub(crate) fn offer(&self, stream: S) {
        self.queue.borrow_mut().push_back(Ok(stream));
        self.offered.notify();
    }

    pub(crate) fn fail(&self, error: &str) {
        self.queue.borrow_mut().push_back(Err(error.into()));
        self.offered.notify();
    }
}

impl<S: ByteStream> Connector for Offered<S> {
    type Stream = S;
    type Error = String;

    async fn connect(&mut self) -> Result<S, String> {
        self.attempts.set(self.attempts.get() + 1);
        self.offered
            .wait_until(|| !self.queue.borrow().is_empty())
            .await;
        self.queue
            .borrow_mut()
            .pop_front()
            .expect("an offered stream")
    }
}
