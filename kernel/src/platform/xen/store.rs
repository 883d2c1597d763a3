//! The async xenstore client: what services and drivers use to read and write xenstore, watch
//! keys and run transactions.
//!
//! Requests from any number of tasks share the one ring: a task sends its whole request while
//! holding the send turn, then waits for the answer with its request id. Whoever is woken by the
//! xenstore event channel drains the ring and files every message: answers by request id, watch
//! events by token; then wakes everyone waiting on xenstore to look for theirs.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::future::poll_fn;
use core::task::{Context, Poll, Waker};

use super::evtchn;
use super::xenstore::{check_answer, kind, payload, split_list, Error, Header, WatchEvent};
use crate::sync::IrqMutex;

struct Mailbox {
    answers: BTreeMap<u32, (Header, Vec<u8>)>,
    events: VecDeque<WatchEvent>,
    waiters: Vec<Waker>,
    sending: bool,
}

static MAILBOX: IrqMutex<Mailbox> = IrqMutex::new(Mailbox {
    answers: BTreeMap::new(),
    events: VecDeque::new(),
    waiters: Vec::new(),
    sending: false,
});

/// Most watch events kept for watches nobody reads; older ones are dropped first.
const MAX_QUEUED_EVENTS: usize = 256;

fn with_ring<R>(f: impl FnOnce(&mut super::xenstore::XenStore) -> R) -> Result<R, Error> {
    super::platform()
        .with_xenstore(f)
        .ok_or(Error::Protocol("this domain has no xenstore"))
}

/// Files one message from the ring: a watch event for its watcher, an answer for the task
/// that asked.
fn file(header: Header, body: Vec<u8>) {
    let mut mailbox = MAILBOX.lock();
    if header.kind == kind::WATCH_EVENT {
        if let Some(event) = WatchEvent::parse(&body) {
            if mailbox.events.len() == MAX_QUEUED_EVENTS {
                mailbox.events.pop_front();
            }
            mailbox.events.push_back(event);
        }
    } else {
        mailbox.answers.insert(header.req_id, (header, body));
    }
}

/// Wakes every task waiting on the mailbox.
fn wake_waiters() {
    let waiters = core::mem::take(&mut MAILBOX.lock().waiters);
    waiters.into_iter().for_each(Waker::wake);
}

/// Files every complete message in the ring; wakes waiters if anything arrived.
fn drain() -> Result<(), Error> {
    let mut arrived = false;
    while let Some((header, body)) = with_ring(|xs| xs.try_receive())?? {
        arrived = true;
        file(header, body);
    }
    if arrived {
        wake_waiters();
    }
    Ok(())
}

/// Sends one request and waits for its answer without awaiting (yielding the CPU to Xen), for
/// code that cannot await (netfront's set-up). It shares the ring with the tasks' requests:
/// answers to theirs and watch events that arrive meanwhile are filed for them, never taken.
/// It fails while a task is half-way through sending a request, whose bytes it must not
/// interleave with and which cannot finish while this blocks.
pub fn request_blocking(request_kind: u32, tx_id: u32, body: &[u8]) -> Result<Vec<u8>, Error> {
    if MAILBOX.lock().sending {
        return Err(Error::Protocol(
            "a task is half-way through sending a request",
        ));
    }
    let mut others = Vec::new();
    let answer = with_ring(|xs| {
        xs.request_blocking_filing(request_kind, tx_id, body, &mut |header, body| {
            others.push((header, body))
        })
    })?;
    if !others.is_empty() {
        others
            .into_iter()
            .for_each(|(header, body)| file(header, body));
        wake_waiters();
    }
    answer
}

/// Polls `check` after draining the ring; registers for the xenstore event and for other
/// tasks' drains when it is not ready yet.
fn poll_mailbox<T>(
    cx: &mut Context<'_>,
    mut check: impl FnMut(&mut Mailbox) -> Option<T>,
) -> Poll<Result<T, Error>> {
    let port = match with_ring(|xs| xs.port()) {
        Ok(port) => port,
        Err(e) => return Poll::Ready(Err(e)),
    };
    loop {
        if let Err(e) = drain() {
            return Poll::Ready(Err(e));
        }
        if let Some(v) = check(&mut MAILBOX.lock()) {
            return Poll::Ready(Ok(v));
        }
        MAILBOX.lock().waiters.push(cx.waker().clone());
        // An event that came in since the drain means more to read: go round again.
        if evtchn::poll_fired(port, cx).is_pending() {
            return Poll::Pending;
        }
    }
}

/// The send turn: released (and waiters woken) when dropped, even if the sending task is
/// cancelled half-way.
struct SendTurn;

impl Drop for SendTurn {
    fn drop(&mut self) {
        let mut mailbox = MAILBOX.lock();
        mailbox.sending = false;
        core::mem::take(&mut mailbox.waiters)
            .into_iter()
            .for_each(Waker::wake);
    }
}

/// Sends one request and waits for its answer.
pub async fn request(request_kind: u32, tx_id: u32, body: &[u8]) -> Result<Vec<u8>, Error> {
    // A request's bytes must not interleave with another's: take the send turn.
    let turn = poll_fn(|cx| poll_mailbox(cx, |m| (!m.sending).then(|| m.sending = true))).await;
    turn?;
    let turn = SendTurn;
    let sent = send(request_kind, tx_id, body).await;
    drop(turn);
    let req_id = sent?;
    let (header, answer) = poll_fn(|cx| poll_mailbox(cx, |m| m.answers.remove(&req_id))).await?;
    check_answer(&header, request_kind, answer)
}

/// Puts a request's bytes in the ring (the caller holds the send turn); returns its id.
async fn send(request_kind: u32, tx_id: u32, body: &[u8]) -> Result<u32, Error> {
    let (req_id, bytes) = with_ring(|xs| xs.encode(request_kind, tx_id, body))??;
    let mut sent = 0;
    while sent < bytes.len() {
        sent += poll_fn(|cx| poll_ring_space(cx, &bytes[sent..])).await?;
    }
    Ok(req_id)
}

/// Puts as much of `bytes` in the request ring as fits; while none fits, drains the answers
/// (xenstored stops taking requests while it cannot answer) and waits for the xenstore event
/// or another task's drain.
///
/// Space in the ring is looked for again at every wake-up, never inferred from the event
/// alone: the event is shared by every task waiting on xenstore, and the one that takes it
/// may well be a task waiting for an answer, which then finds nothing to file and wakes no one.
/// A sender that waited for the event itself (as it once did) slept on through that, holding
/// the send turn: every other task's request then waited behind it for good (a node's
/// pillars, each opening several channels with pipelined batches, filled the 1 KiB ring and
/// never connected a channel).
fn poll_ring_space(cx: &mut Context<'_>, bytes: &[u8]) -> Poll<Result<usize, Error>> {
    let port = match with_ring(|xs| xs.port()) {
        Ok(port) => port,
        Err(e) => return Poll::Ready(Err(e)),
    };
    loop {
        match with_ring(|xs| xs.send_some(bytes)) {
            Ok(Ok(0)) => {}
            Ok(result) => return Poll::Ready(result),
            Err(e) => return Poll::Ready(Err(e)),
        }
        if let Err(e) = drain() {
            return Poll::Ready(Err(e));
        }
        MAILBOX.lock().waiters.push(cx.waker().clone());
        // An event that came in since the attempt may mean room: go round again.
        if evtchn::poll_fired(port, cx).is_pending() {
            return Poll::Pending;
        }
    }
}

/// One request of a [`batch`].
#[derive(Clone, Copy, Debug)]
pub enum Request<'a> {
    /// Reads a key.
    Read(&'a str),
    /// Writes a key (creating missing parents).
    Write(&'a str, &'a str),
    /// Sets a key's permissions (as [`set_perms`]).
    SetPerms(&'a str, &'a [&'a str]),
}

impl Request<'_> {
    fn encode(&self) -> Result<(u32, Vec<u8>), Error> {
        Ok(match *self {
            Request::Read(path) => (kind::READ, payload(&[path], &[])?),
            Request::Write(path, value) => (kind::WRITE, payload(&[path], value.as_bytes())?),
            Request::SetPerms(path, perms) => {
                let mut strings = Vec::with_capacity(perms.len() + 1);
                strings.push(path);
                strings.extend_from_slice(perms);
                (kind::SET_PERMS, payload(&strings, &[])?)
            }
        })
    }
}

/// Sends `requests` back to back, then waits for all their answers: one round trip through
/// dom0's xenstored instead of one per request (each costs milliseconds of dom0 under load,
/// and a service's start, on the way of every restart, makes a dozen). xenstored handles a
/// connection's requests one at a time in the order they arrive, so they take effect in that
/// order, as if each had waited for the one before; but one that fails does not stop those
/// after it. The answers are in the requests' order (a read's as [`text`] turns it).
pub async fn batch(requests: &[Request<'_>]) -> Vec<Result<Vec<u8>, Error>> {
    let mut sent: Vec<Result<(u32, u32), Error>> = Vec::with_capacity(requests.len());
    // The send turn for the whole batch: its requests go out back to back.
    match poll_fn(|cx| poll_mailbox(cx, |m| (!m.sending).then(|| m.sending = true))).await {
        Ok(()) => {
            let turn = SendTurn;
            let mut broken = false;
            for request in requests {
                let one = match request.encode() {
                    _ if broken => Err(Error::Protocol("not sent: the ring failed before it")),
                    Ok((kind, body)) => send(kind, 0, &body).await.map(|id| (kind, id)),
                    Err(e) => Err(e),
                };
                // A failed send may have left part of a message in the ring: send no more.
                broken |= matches!(one, Err(Error::Protocol(_)));
                sent.push(one);
            }
            drop(turn);
        }
        Err(e) => sent.extend(requests.iter().map(|_| Err(e.clone()))),
    }
    let mut answers = Vec::with_capacity(sent.len());
    for one in sent {
        answers.push(match one {
            Ok((request_kind, req_id)) => {
                match poll_fn(|cx| poll_mailbox(cx, |m| m.answers.remove(&req_id))).await {
                    Ok((header, answer)) => check_answer(&header, request_kind, answer),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        });
    }
    answers
}

/// A read's answer as text.
pub fn text(answer: Result<Vec<u8>, Error>) -> Result<String, Error> {
    String::from_utf8(answer?).map_err(|_| Error::Protocol("value is not UTF-8"))
}

/// Reads a key.
pub async fn read(path: &str) -> Result<String, Error> {
    let body = request(kind::READ, 0, &payload(&[path], &[])?).await?;
    String::from_utf8(body).map_err(|_| Error::Protocol("value is not UTF-8"))
}

/// Writes a key (creating missing parents).
pub async fn write(path: &str, value: &str) -> Result<(), Error> {
    request(kind::WRITE, 0, &payload(&[path], value.as_bytes())?)
        .await
        .map(drop)
}

/// Lists the children of a key.
pub async fn directory(path: &str) -> Result<Vec<String>, Error> {
    Ok(split_list(
        &request(kind::DIRECTORY, 0, &payload(&[path], &[])?).await?,
    ))
}

/// Creates a key with an empty value.
pub async fn mkdir(path: &str) -> Result<(), Error> {
    request(kind::MKDIR, 0, &payload(&[path], &[])?)
        .await
        .map(drop)
}

/// Removes a key and everything under it.
pub async fn rm(path: &str) -> Result<(), Error> {
    request(kind::RM, 0, &payload(&[path], &[])?)
        .await
        .map(drop)
}

/// A key's permissions, as xenstore writes them: `n0` (owner 0, others none), `r5` (domain 5
/// may read), `w`, `b` (both).
pub async fn get_perms(path: &str) -> Result<Vec<String>, Error> {
    Ok(split_list(
        &request(kind::GET_PERMS, 0, &payload(&[path], &[])?).await?,
    ))
}

/// Sets a key's permissions (the first entry names the owner and what everyone else may do).
pub async fn set_perms(path: &str, perms: &[&str]) -> Result<(), Error> {
    let mut strings = Vec::with_capacity(perms.len() + 1);
    strings.push(path);
    strings.extend_from_slice(perms);
    request(kind::SET_PERMS, 0, &payload(&strings, &[])?)
        .await
        .map(drop)
}

/// A watch on a key and everything under it.
pub struct Watch {
    path: String,
    token: String,
}

/// Watches `path`; xenstore reports it once at once, then on every change.
pub async fn watch(path: &str, token: &str) -> Result<Watch, Error> {
    request(kind::WATCH, 0, &payload(&[path, token], &[])?).await?;
    Ok(Watch {
        path: path.into(),
        token: token.into(),
    })
}

impl Watch {
    /// The next change (the path that changed).
    pub async fn next(&self) -> Result<String, Error> {
        poll_fn(|cx| {
            poll_mailbox(cx, |m| {
                let i = m.events.iter().position(|e| e.token == self.token)?;
                m.events.remove(i).map(|e| e.path)
            })
        })
        .await
    }

    /// Removes the watch.
    pub async fn cancel(self) -> Result<(), Error> {
        request(kind::UNWATCH, 0, &payload(&[&self.path, &self.token], &[])?)
            .await
            .map(drop)?;
        MAILBOX.lock().events.retain(|e| e.token != self.token);
        Ok(())
    }
}

/// A transaction in progress (see [`transaction`]).
#[derive(Clone, Copy, Debug)]
pub struct Transaction(u32);

impl Transaction {
    /// Reads a key inside the transaction.
    pub async fn read(self, path: &str) -> Result<String, Error> {
        let body = request(kind::READ, self.0, &payload(&[path], &[])?).await?;
        String::from_utf8(body).map_err(|_| Error::Protocol("value is not UTF-8"))
    }

    /// Writes a key inside the transaction.
    pub async fn write(self, path: &str, value: &str) -> Result<(), Error> {
        request(kind::WRITE, self.0, &payload(&[path], value.as_bytes())?)
            .await
            .map(drop)
    }

    /// Removes a key inside the transaction.
    pub async fn rm(self, path: &str) -> Result<(), Error> {
        request(kind::RM, self.0, &payload(&[path], &[])?)
            .await
            .map(drop)
    }
}

/// Most attempts of a transaction that keeps conflicting.
const MAX_TRANSACTION_ATTEMPTS: u32 = 16;

/// Runs `body` in a transaction and commits it; a conflict (`EAGAIN`) runs it again, up to
/// 16 times. An error from `body` aborts the transaction.
pub async fn transaction<T, F, Fut>(mut body: F) -> Result<T, Error>
where
    F: FnMut(Transaction) -> Fut,
    Fut: core::future::Future<Output = Result<T, Error>>,
{
    for _ in 0..MAX_TRANSACTION_ATTEMPTS {
        let id = request(kind::TRANSACTION_START, 0, b"\0").await?;
        let id = core::str::from_utf8(&id)
            .ok()
            .and_then(|s| s.trim_end_matches('\0').parse().ok())
            .ok_or(Error::Protocol("bad transaction id"))?;
        let tx = Transaction(id);
        match body(tx).await {
            Ok(value) => match request(kind::TRANSACTION_END, id, b"T\0").await {
                Ok(_) => return Ok(value),
                Err(Error::Xenstore(e)) if e == "EAGAIN" => continue,
                Err(e) => return Err(e),
            },
            Err(e) => {
                let _ = request(kind::TRANSACTION_END, id, b"F\0").await;
                return Err(e);
            }
        }
    }
    Err(Error::Xenstore("EAGAIN".into()))
}
