//! The tokio 1 adapter of [`LimitOpen`]: a `futures_core` stream that
//! polls and forwards; the slots are [`Slots`](super::slots::Slots)'.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_core::Stream;

use super::{LimitOpen, OpenConnection};

impl<S, T, A> Stream for LimitOpen<S>
where
    S: Stream<Item = (T, A)> + Unpin,
{
    type Item = (OpenConnection<T>, A);

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if !this.slots.poll_free(|| cx.waker().clone()) {
            return Poll::Pending;
        }
        let accepted = ready!(Pin::new(&mut this.stream).poll_next(cx));
        Poll::Ready(accepted.map(|accepted| this.open(accepted)))
    }
}
