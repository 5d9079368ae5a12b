use std::fmt;

use futures::{Future, IntoFuture, Poll, Stream};

use super::Listen;
use crate::shutdown::has_fired;
use crate::stats::ListenStats;

/// A [`Listen`] future that stops accepting when a signal fires.
///
/// Made by [`Listen::with_graceful_shutdown`]. It resolves like the `Listen`
/// it wraps: once accepting has stopped (by the signal, or because the stream
/// ended) and every running connection has finished.
#[must_use = "futures do nothing unless polled"]
pub struct WithGracefulShutdown<S, F>
where
    S: Stream,
    S::Item: IntoFuture<Item = (), Error = ()>,
{
    listen: Listen<S>,
    /// `None` once it fired.
    signal: Option<F>,
}

pub(super) fn new<S, F>(listen: Listen<S>, signal: F) -> WithGracefulShutdown<S, F>
where
    S: Stream,
    S::Item: IntoFuture<Item = (), Error = ()>,
{
    WithGracefulShutdown {
        listen,
        signal: Some(signal),
    }
}

impl<S, F> WithGracefulShutdown<S, F>
where
    S: Stream,
    S::Item: IntoFuture<Item = (), Error = ()>,
{
    /// The live counters of the wrapped [`Listen`]; see [`Listen::stats`].
    pub fn stats(&self) -> ListenStats {
        self.listen.stats()
    }

    /// The wrapped [`Listen`].
    pub fn get_ref(&self) -> &Listen<S> {
        &self.listen
    }

    /// The wrapped [`Listen`], mutably.
    pub fn get_mut(&mut self) -> &mut Listen<S> {
        &mut self.listen
    }

    /// The wrapped [`Listen`]; the signal is dropped.
    pub fn into_inner(self) -> Listen<S> {
        self.listen
    }
}

impl<S, F> Future for WithGracefulShutdown<S, F>
where
    S: Stream,
    S::Item: IntoFuture<Item = (), Error = ()>,
    F: Future,
{
    type Item = ();
    type Error = S::Error;

    fn poll(&mut self) -> Poll<(), S::Error> {
        // First, so that it is noticed while the pool is full (when `Listen`
        // doesn't poll its stream) and wins over a client ready to be
        // accepted. Polling it registers this task to be woken when it fires.
        if let Some(signal) = &mut self.signal {
            if has_fired(signal) {
                self.signal = None;
                self.listen.stop_accepting();
            }
        }
        self.listen.poll()
    }
}

impl<S, F> fmt::Debug for WithGracefulShutdown<S, F>
where
    S: Stream,
    S::Item: IntoFuture<Item = (), Error = ()>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithGracefulShutdown")
            .field("listen", &self.listen)
            .field("signal_fired", &self.signal.is_none())
            .finish()
    }
}
