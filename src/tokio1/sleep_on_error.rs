use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use tokio::time::Sleep;

use crate::accept_error::{judge, Verdict};
use crate::limits::{LONGEST_DELAY, POLL_BUDGET};
use crate::stats::AcceptStats;

/// A stream of accepted connections that skips per-connection errors and
/// pauses on resource exhaustion, on tokio 1.
///
/// Made by [`ListenExt::sleep_on_error`](super::ListenExt::sleep_on_error).
/// It yields the `Ok` items of the inner stream, unwrapped, and ends when the
/// inner stream ends; the errors are handled as that method describes.
#[must_use = "streams do nothing unless polled"]
pub struct SleepOnError<S> {
    stream: S,
    delay: Duration,
    pause: Option<Pause>,
    stats: AcceptStats,
}

pub(super) fn new<S>(stream: S, delay: Duration) -> SleepOnError<S> {
    crate::accept_error::check_delay(delay);
    SleepOnError {
        stream,
        delay,
        pause: None,
        stats: AcceptStats::new(),
    }
}

impl<S> SleepOnError<S> {
    /// A handle to this stream's live counters: connections accepted, errors
    /// skipped, pauses and the time spent in them. Take it before the stream
    /// moves into a task; it can be read from any thread.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io;
    /// use std::time::Duration;
    ///
    /// use tk_listen::tokio1::ListenExt;
    /// use tokio_stream::StreamExt;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let accepts = tokio_stream::iter(vec![
    ///     Ok("a client"),
    ///     Err(io::Error::from(io::ErrorKind::ConnectionReset)),
    ///     Ok("another client"),
    /// ]);
    /// let accepts = accepts.sleep_on_error(Duration::from_millis(100));
    /// let stats = accepts.stats();
    /// assert_eq!(accepts.collect::<Vec<_>>().await.len(), 2);
    /// assert_eq!((stats.accepted(), stats.skipped(), stats.pauses()), (2, 1, 0));
    /// # });
    /// ```
    pub fn stats(&self) -> AcceptStats {
        self.stats.clone()
    }

    /// The inner stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The inner stream, mutably.
    ///
    /// Take care not to pull items or errors out of it directly: they would
    /// bypass the error policy of this stream.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The inner stream; a pause in progress is dropped.
    pub fn into_inner(self) -> S {
        self.stream
    }
}

impl<T, S> Stream for SleepOnError<S>
where
    S: Stream<Item = io::Result<T>> + Unpin,
{
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = self.get_mut();
        // Each turn handles one skipped error or one pause that ran out; a
        // zero delay can make pauses run out at once, so both count.
        for _ in 0..POLL_BUDGET {
            if let Some(pause) = &mut this.pause {
                ready!(pause.sleep.as_mut().poll(cx));
                this.pause = None;
            }
            match ready!(Pin::new(&mut this.stream).poll_next(cx)) {
                Some(Ok(item)) => {
                    this.stats.record_accept();
                    return Poll::Ready(Some(item));
                }
                None => return Poll::Ready(None),
                Some(Err(e)) => {
                    if judge(&e, this.delay, &this.stats) == Verdict::Pause {
                        this.pause = Some(Pause::new(this.delay, &e, &this.stats));
                    }
                }
            }
        }
        // Let the other tasks on this worker run; carry on at the next poll.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<S: fmt::Debug> fmt::Debug for SleepOnError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SleepOnError")
            .field("stream", &self.stream)
            .field("delay", &self.delay)
            .field("stats", &self.stats)
            .finish()
    }
}

/// A pause in progress; its time counts in [`AcceptStats`] until it is
/// dropped, whether it ran out or the stream was dropped first.
struct Pause {
    /// Boxed so that the stream stays `Unpin`; one allocation per pause.
    sleep: Pin<Box<Sleep>>,
    stats: AcceptStats,
}

impl Pause {
    fn new(delay: Duration, cause: &io::Error, stats: &AcceptStats) -> Pause {
        stats.record_pause_start(cause);
        Pause {
            sleep: Box::pin(tokio::time::sleep(delay.min(LONGEST_DELAY))),
            stats: stats.clone(),
        }
    }
}

impl Drop for Pause {
    fn drop(&mut self) {
        self.stats.record_pause_end();
    }
}
