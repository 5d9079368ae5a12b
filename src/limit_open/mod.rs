//! `limit_open`: at most `n` connections open at once, counted by the
//! connections themselves, for servers that spawn their own connections.

mod connection;
mod slots;
#[cfg(feature = "tokio1")]
mod tokio1;

use std::fmt;
use std::sync::Arc;
use std::task::{Wake, Waker};

use futures::{task, Async, Poll, Stream};

pub use self::connection::OpenConnection;
pub use self::slots::OpenStats;
use self::slots::Slots;

/// A stream of connections of which at most `max_open` are open at once;
/// while they are, the inner stream is not polled.
///
/// Made by [`ListenExt::limit_open`](crate::ListenExt::limit_open)
/// (futures 0.1) or, with the `tokio1` feature,
/// `tokio1::ListenExt::limit_open` (a `futures_core` stream), from a stream of `(socket, A)` pairs. It
/// yields `(`[`OpenConnection<socket>`](OpenConnection)`, A)`; each
/// connection holds a slot until it is dropped. Errors of the inner stream
/// pass through unchanged, and it ends when the inner stream ends.
#[must_use = "streams do nothing unless polled"]
pub struct LimitOpen<S> {
    stream: S,
    slots: Arc<Slots>,
}

pub(crate) fn new<S>(stream: S, max_open: usize) -> LimitOpen<S> {
    assert!(
        max_open > 0,
        "limit_open(0) would never yield a connection; \
         pass the most connections to keep open at once (at least 1)"
    );
    LimitOpen {
        stream,
        slots: Slots::new(max_open),
    }
}

impl<S> LimitOpen<S> {
    /// A handle to this stream's live counters: connections open now and
    /// so far, and the waits at the cap. Take it before the stream moves
    /// into its task; it can be read from any thread.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{stream, Stream};
    /// use tk_listen::ListenExt;
    ///
    /// let limited = stream::iter_ok::<_, ()>(vec![("a socket", ())]).limit_open(8);
    /// let stats = limited.stats();
    /// let open: Vec<_> = limited.wait().collect::<Result<_, _>>().unwrap();
    /// assert_eq!((stats.max_open(), stats.open(), stats.accepted()), (8, 1, 1));
    /// # drop(open);
    /// ```
    pub fn stats(&self) -> OpenStats {
        OpenStats::new(&self.slots)
    }

    /// The inner stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The inner stream, mutably.
    ///
    /// Take care not to pull connections out of it directly: they would
    /// hold no slot.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The inner stream. Connections already yielded keep their slots until
    /// they are dropped, but nothing limits the new ones any more.
    pub fn into_inner(self) -> S {
        self.stream
    }

    /// The decision both stacks' adapters apply once a slot is free and
    /// the inner stream yielded `(socket, a)`.
    #[inline]
    fn open<T, A>(&self, (socket, a): (T, A)) -> (OpenConnection<T>, A) {
        (connection::new(socket, self.slots.take()), a)
    }
}

impl<S, T, A> Stream for LimitOpen<S>
where
    S: Stream<Item = (T, A)>,
{
    type Item = (OpenConnection<T>, A);
    type Error = S::Error;

    fn poll(&mut self) -> Poll<Option<Self::Item>, S::Error> {
        if !self.slots.poll_free(current_task) {
            return Ok(Async::NotReady);
        }
        match self.stream.poll()? {
            Async::Ready(Some(accepted)) => Ok(Async::Ready(Some(self.open(accepted)))),
            Async::Ready(None) => Ok(Async::Ready(None)),
            Async::NotReady => Ok(Async::NotReady),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for LimitOpen<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimitOpen")
            .field("stream", &self.stream)
            .field("stats", &self.stats())
            .finish()
    }
}

/// The futures 0.1 task polling now, as a [`Waker`] for [`Slots`] (made
/// only while the stream waits at the cap).
fn current_task() -> Waker {
    Waker::from(Arc::new(NotifyTask(task::current())))
}

struct NotifyTask(task::Task);

impl Wake for NotifyTask {
    fn wake(self: Arc<Self>) {
        self.0.notify();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.notify();
    }
}
