//! Drives a publisher session and a subscriber against each other in memory: for tests,
//! benchmarks, and services that share one address space.

use alloc::vec;

use serde::{de::DeserializeOwned, Serialize};

use crate::{Event, ProtocolError, Publisher, SessionId, Storage, Subscriber};

/// Moves at most `buffer.len()` bytes from the subscriber to the publisher session, then at most
/// as many back, as a byte channel with that much room would. Returns how many bytes moved in
/// all; 0 means both sides are idle.
pub fn step<T, S>(
    publisher: &mut Publisher<T, S>,
    session: SessionId,
    subscriber: &mut Subscriber<T>,
    buffer: &mut [u8],
    on_event: impl FnMut(Event<'_, T>),
) -> Result<usize, ProtocolError>
where
    T: Serialize + DeserializeOwned + PartialEq,
    S: Storage,
{
    let up = subscriber.fill(buffer);
    if up > 0 {
        publisher.receive(session, &buffer[..up])?;
    }
    let down = publisher.fill(session, buffer);
    if down > 0 {
        subscriber.receive(&buffer[..down], on_event)?;
    }
    Ok(up + down)
}

/// Moves bytes both ways, `chunk` at a time, until both sides are idle. Returns how many bytes
/// moved in all.
pub fn pump<T, S>(
    publisher: &mut Publisher<T, S>,
    session: SessionId,
    subscriber: &mut Subscriber<T>,
    chunk: usize,
    mut on_event: impl FnMut(Event<'_, T>),
) -> Result<usize, ProtocolError>
where
    T: Serialize + DeserializeOwned + PartialEq,
    S: Storage,
{
    let mut buffer = vec![0; chunk.max(1)];
    let mut moved = 0;
    loop {
        match step(publisher, session, subscriber, &mut buffer, &mut on_event)? {
            0 => return Ok(moved),
            bytes => moved += bytes,
        }
    }
}
