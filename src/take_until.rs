use std::fmt;

use futures::{try_ready, Async, Future, Poll, Stream};

use crate::shutdown::has_fired;

/// A stream that ends as soon as a shutdown signal fires, and closes the
/// inner stream at that moment.
///
/// Made by [`ListenExt::take_until`](crate::ListenExt::take_until). It yields
/// the items and errors of the inner stream unchanged until the signal future
/// resolves or fails; then it drops the inner stream (for a listener: closes
/// the listening socket) and ends. It also ends when the inner stream ends.
#[must_use = "streams do nothing unless polled"]
pub struct TakeUntil<S, F> {
    /// `None` once the stream has ended, by the signal or by itself.
    stream: Option<S>,
    signal: F,
}

pub(crate) fn new<S, F>(stream: S, signal: F) -> TakeUntil<S, F> {
    TakeUntil {
        stream: Some(stream),
        signal,
    }
}

impl<S, F> TakeUntil<S, F> {
    /// The inner stream, or `None` once this stream has ended (the inner
    /// stream is dropped at that point).
    pub fn get_ref(&self) -> Option<&S> {
        self.stream.as_ref()
    }

    /// The inner stream, mutably, or `None` once this stream has ended.
    ///
    /// Take care not to pull items out of it directly: they would not reach
    /// the consumer of this stream.
    pub fn get_mut(&mut self) -> Option<&mut S> {
        self.stream.as_mut()
    }

    /// The inner stream, or `None` once this stream has ended; the signal is
    /// dropped.
    pub fn into_inner(self) -> Option<S> {
        self.stream
    }

    /// Has this stream ended, by the signal or because the inner stream
    /// ended?
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::sync::oneshot;
    /// use futures::{stream, Stream};
    /// use tk_listen::ListenExt;
    ///
    /// let (stop, stopped) = oneshot::channel::<()>();
    /// let mut accepts = stream::iter_ok::<_, ()>(vec![1, 2]).take_until(stopped);
    /// assert!(!accepts.is_stopped());
    /// drop(stop); // a dropped sender is a signal too
    /// assert_eq!(accepts.by_ref().wait().count(), 0);
    /// assert!(accepts.is_stopped());
    /// ```
    pub fn is_stopped(&self) -> bool {
        self.stream.is_none()
    }
}

impl<S: Stream, F: Future> Stream for TakeUntil<S, F> {
    type Item = S::Item;
    type Error = S::Error;

    fn poll(&mut self) -> Poll<Option<S::Item>, S::Error> {
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => return Ok(Async::Ready(None)),
        };
        // The signal goes first: it must be noticed even while the inner
        // stream has an item ready, and polling it registers this task to be
        // woken when it fires, even if no client ever connects again.
        let fired = has_fired(&mut self.signal);
        if fired {
            self.stream = None;
            return Ok(Async::Ready(None));
        }
        let item = try_ready!(stream.poll());
        if item.is_none() {
            self.stream = None;
        }
        Ok(Async::Ready(item))
    }
}

impl<S: fmt::Debug, F> fmt::Debug for TakeUntil<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TakeUntil")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}
