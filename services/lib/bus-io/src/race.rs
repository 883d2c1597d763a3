//! Waiting for the first of two futures.

use core::future::{poll_fn, Future};
use core::pin::pin;
use core::task::Poll;

/// Which of two futures completed first.
pub(crate) enum First<A, B> {
    /// The first one.
    Left(A),
    /// The second one.
    Right(B),
}

/// Runs both futures until one completes (the first one wins a tie) and drops the other.
pub(crate) async fn race<A: Future, B: Future>(left: A, right: B) -> First<A::Output, B::Output> {
    let mut left = pin!(left);
    let mut right = pin!(right);
    poll_fn(|cx| {
        if let Poll::Ready(value) = left.as_mut().poll(cx) {
            return Poll::Ready(First::Left(value));
        }
        right.as_mut().poll(cx).map(First::Right)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{poll_once, CountingWaker};
    use core::future::{pending, ready};

    #[test]
    fn the_first_ready_future_wins() {
        let waker = CountingWaker::new();
        let left = poll_once(pin!(race(ready(1), ready("b"))), &waker);
        assert!(matches!(left, Poll::Ready(First::Left(1))));
        let right = poll_once(pin!(race(pending::<u8>(), ready("b"))), &waker);
        assert!(matches!(right, Poll::Ready(First::Right("b"))));
        let neither = poll_once(pin!(race(pending::<u8>(), pending::<u8>())), &waker);
        assert!(neither.is_pending());
    }
}
