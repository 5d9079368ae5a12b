//! The tokio 1 adapter of [`LimitPerPeer`]: a `futures_core` stream that
//! polls and forwards; the decisions are [`LimitPerPeer::admit`]'s.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_core::Stream;

use super::{LimitPerPeer, PeerConnection};
use crate::limits::POLL_BUDGET;

impl<S, T> Stream for LimitPerPeer<S>
where
    S: Stream<Item = (T, SocketAddr)> + Unpin,
{
    type Item = (PeerConnection<T>, SocketAddr);

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        for _ in 0..POLL_BUDGET {
            let Some(accepted) = ready!(Pin::new(&mut this.stream).poll_next(cx)) else {
                return Poll::Ready(None);
            };
            if let Some(ready) = this.admit(accepted, |admitted| Poll::Ready(Some(admitted))) {
                return ready;
            }
        }
        // A flood of rejected connections: let the other tasks on this
        // worker run, and carry on at the next poll.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
