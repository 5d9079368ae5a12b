use std::fmt;
use std::time::Duration;

use futures::{Async, Future, IntoFuture, Poll, Stream};
use log::error;
use tokio_core::reactor::{Handle, Timeout};

use super::Listen;
use crate::drain::state::log_deadline_passed;
use crate::shutdown::has_fired;
use crate::stats::ListenStats;

/// A [`Listen`] future that stops accepting when a signal fires.
///
/// Made by [`Listen::with_graceful_shutdown`]. It resolves like the `Listen`
/// it wraps: once accepting has stopped (by the signal, or because the stream
/// ended) and every running connection has finished; or, with a
/// [`drain_deadline`](WithGracefulShutdown::drain_deadline), when the
/// deadline passes.
#[must_use = "futures do nothing unless polled"]
pub struct WithGracefulShutdown<S, F>
where
    S: Stream,
    S::Item: IntoFuture<Item = (), Error = ()>,
{
    listen: Listen<S>,
    /// `None` once it fired.
    signal: Option<F>,
    /// The drain deadline, and the event loop whose timer counts it.
    deadline: Option<(Duration, Handle)>,
    /// Started when the signal fires, if there is a deadline.
    timer: Option<Timeout>,
}

pub(super) fn new<S, F>(listen: Listen<S>, signal: F) -> WithGracefulShutdown<S, F>
where
    S: Stream,
    S::Item: IntoFuture<Item = (), Error = ()>,
{
    WithGracefulShutdown {
        listen,
        signal: Some(signal),
        deadline: None,
        timer: None,
    }
}

impl<S, F> WithGracefulShutdown<S, F>
where
    S: Stream,
    S::Item: IntoFuture<Item = (), Error = ()>,
{
    /// Bounds the drain: `deadline` after the signal fires, the connections
    /// still running are dropped, counted as
    /// [`aborted`](ListenStats::aborted) and logged at `info` with how many,
    /// and this future resolves. A drain that ends sooner resolves sooner.
    /// The deadline starts with the signal only (not when the stream ends);
    /// `handle`'s event loop counts it, and must be the one polling this
    /// future. If its timer can't be made (the event loop is gone), the
    /// connections are dropped when the signal fires, logged at `error`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use futures::{future, stream, Stream};
    /// use tk_listen::ListenExt;
    /// use tokio_core::reactor::{Core, Timeout};
    ///
    /// let mut core = Core::new().unwrap();
    /// let handle = core.handle();
    /// // Three connections that never end, and a signal 1 ms later.
    /// let stuck = stream::iter_ok::<_, ()>((0..3).map(|_| future::empty::<(), ()>()));
    /// let signal = Timeout::new(Duration::from_millis(1), &handle).unwrap();
    /// let server = stuck
    ///     .chain(stream::empty())
    ///     .listen(10)
    ///     .with_graceful_shutdown(signal)
    ///     .drain_deadline(Duration::from_millis(10), &handle);
    /// let stats = server.stats();
    /// core.run(server).unwrap();
    /// assert_eq!((stats.started(), stats.aborted(), stats.running()), (3, 3, 0));
    /// ```
    pub fn drain_deadline(mut self, deadline: Duration, handle: &Handle) -> Self {
        self.deadline = Some((deadline, handle.clone()));
        self
    }

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
                if let Some((deadline, handle)) = &self.deadline {
                    match Timeout::new(*deadline, handle) {
                        Ok(timer) => self.timer = Some(timer),
                        Err(e) => {
                            error!("no timer for the drain deadline ({}): dropping the connections now", e);
                            let deadline = *deadline;
                            self.cut(deadline);
                            return Ok(Async::Ready(()));
                        }
                    }
                }
            }
        }
        if self.listen.poll()?.is_ready() {
            self.timer = None;
            return Ok(Async::Ready(()));
        }
        if let Some(timer) = &mut self.timer {
            // A timer error means the event loop is gone: nothing would
            // count the deadline any more.
            if !matches!(timer.poll(), Ok(Async::NotReady)) {
                self.timer = None;
                let deadline = self.deadline.as_ref().map_or(Duration::ZERO, |d| d.0);
                self.cut(deadline);
                return Ok(Async::Ready(()));
            }
        }
        Ok(Async::NotReady)
    }
}

impl<S, F> WithGracefulShutdown<S, F>
where
    S: Stream,
    S::Item: IntoFuture<Item = (), Error = ()>,
{
    /// The deadline passed: drops the connections left, counted as aborted.
    fn cut(&mut self, deadline: Duration) {
        let left = self.listen.abort_connections();
        log_deadline_passed(deadline, left);
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
            .field("drain_deadline", &self.deadline.as_ref().map(|d| d.0))
            .finish()
    }
}
