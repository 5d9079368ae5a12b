use std::fmt;
use std::sync::Arc;

use futures::{executor, Async, Future, IntoFuture, Poll, Stream};
use log::info;

use crate::limits::{check_max_connections, yield_to_other_tasks, POLL_BUDGET};
use crate::stats::ListenStats;

use self::pool::{Pool, Wakeups, STREAM};

pub use self::graceful::WithGracefulShutdown;

mod graceful;
mod pool;

/// A future that runs one future per connection, at most a fixed number at
/// once.
///
/// Made by [`ListenExt::listen`](crate::ListenExt::listen). It owns the stream
/// of connections and the connections running now side by side: the stream is
/// polled only while fewer than `max_connections` run, the connections always.
/// It resolves to `Ok(())` when the stream has ended (or
/// [`stop_accepting`](Listen::stop_accepting) was called) and every connection
/// has finished, and to the stream's error as soon as the stream fails. Errors
/// of connection futures are counted and otherwise ignored; panics of
/// connection futures are caught, logged and counted (see
/// [`listen`](crate::ListenExt::listen)).
///
/// # Forced shutdown
///
/// Dropping a `Listen` drops its stream (closing the listener) and every
/// connection still running, which its [`stats`](Listen::stats) count as
/// [`aborted`](ListenStats::aborted). To stop at once on a signal, race the
/// server against it with `select`:
///
/// ```no_run
/// use std::time::Duration;
///
/// use futures::sync::oneshot;
/// use futures::{Future, Stream};
/// use tk_listen::ListenExt;
/// use tokio_core::net::TcpListener;
/// use tokio_core::reactor::Core;
///
/// let mut core = Core::new().unwrap();
/// let handle = core.handle();
/// let addr = "127.0.0.1:8080".parse().unwrap();
/// let listener = TcpListener::bind(&addr, &handle).unwrap();
/// let (stop, stopped) = oneshot::channel::<()>();
/// // Hand `stop` to whatever decides to stop; sending or dropping it stops.
/// # drop(stop);
///
/// let server = listener
///     .incoming()
///     .sleep_on_error(Duration::from_millis(100), &handle)
///     .map(|(socket, _peer)| {
///         tokio_io::io::write_all(socket, b"hello\n")
///             .map(|_| ())
///             .map_err(|e| log::error!("write error: {}", e))
///     })
///     .listen(1000);
/// let stopped = stopped.then(|_| Ok::<(), ()>(()));
/// core.run(server.select(stopped).map(|_| ()).map_err(|_| ()))
///     .unwrap();
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Listen<S>
where
    S: Stream,
    S::Item: IntoFuture<Item = (), Error = ()>,
{
    /// `None` once [`Listen::stop_accepting`] dropped it.
    stream: Option<S>,
    /// The stream returned `None`: it is kept, but not polled again.
    stream_ended: bool,
    /// The stream may have an item: it hasn't said `NotReady` since it last
    /// woke this task (or since the start).
    stream_may_be_ready: bool,
    connections: Pool<<S::Item as IntoFuture>::Future>,
    wakeups: Arc<Wakeups>,
    /// Wake-up ids taken from `wakeups` and not handled yet.
    woken: Vec<usize>,
    stats: ListenStats,
}

pub(crate) fn new<S>(stream: S, max_connections: usize) -> Listen<S>
where
    S: Stream,
    S::Item: IntoFuture<Item = (), Error = ()>,
{
    check_max_connections(max_connections);
    let stats = ListenStats::new(max_connections);
    Listen {
        stream: Some(stream),
        stream_ended: false,
        stream_may_be_ready: true,
        connections: Pool::new(stats.clone()),
        wakeups: Arc::new(Wakeups::default()),
        woken: Vec::new(),
        stats,
    }
}

impl<S> Listen<S>
where
    S: Stream,
    S::Item: IntoFuture<Item = (), Error = ()>,
{
    /// A handle to the live counters of this future: connections started,
    /// running, finished, failed and panicked, and the cap.
    ///
    /// Take it before the future moves into the event loop; any thread can
    /// read it at any time.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{future, stream, Future};
    /// use tk_listen::ListenExt;
    ///
    /// let connections = stream::iter_ok::<_, ()>(vec![future::ok::<(), ()>(())]);
    /// let server = connections.listen(10);
    /// let stats = server.stats();
    /// server.wait().unwrap();
    /// assert_eq!(stats.finished(), 1);
    /// ```
    pub fn stats(&self) -> ListenStats {
        self.stats.clone()
    }

    /// Stops taking connections from the stream and drops the stream at once
    /// (for a listener: closes the listening socket, so new clients are
    /// refused); the connections running now carry on, and the future
    /// resolves when the last of them has finished.
    ///
    /// For code that polls a `Listen` itself; with a shutdown signal, use
    /// [`with_graceful_shutdown`](Listen::with_graceful_shutdown). Logged at
    /// `info` with the number of connections left to drain. Calling it again
    /// does nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{future, stream, Future, Stream};
    /// use tk_listen::ListenExt;
    ///
    /// let endless = stream::repeat::<_, ()>(()).map(|()| future::ok::<(), ()>(()));
    /// let mut server = endless.listen(10);
    /// server.stop_accepting();
    /// assert!(!server.is_accepting());
    /// server.wait().unwrap(); // nothing runs: resolves at once
    /// ```
    pub fn stop_accepting(&mut self) {
        if self.stream.take().is_some() {
            info!(
                "no longer accepting connections; {} running connections to drain",
                self.connections.running()
            );
        }
    }

    /// Does this future still take connections from its stream? `false` once
    /// the stream has ended or [`stop_accepting`](Listen::stop_accepting) was
    /// called.
    pub fn is_accepting(&self) -> bool {
        self.stream.is_some() && !self.stream_ended
    }

    /// Stops accepting as soon as `signal` resolves or fails, even while all
    /// `max_connections` connections are running: graceful shutdown.
    ///
    /// The signal is polled first every time the server's task is woken, so it
    /// wins over a client ready to be accepted, and it is noticed on an idle,
    /// a busy or a full server alike. When it fires (logged at `info`),
    /// [`stop_accepting`](Listen::stop_accepting) drops the stream: the
    /// listening socket closes and new clients are refused at once, clients
    /// still waiting in the kernel's backlog are reset, and the connections
    /// already running carry on. The returned future resolves when the last of
    /// them has finished.
    ///
    /// The signal is any [`IntoFuture`]; its value and its error are ignored,
    /// so a dropped [`oneshot::Sender`](futures::sync::oneshot::Sender) shuts
    /// down too. To bound the drain, add a
    /// [`drain_deadline`](WithGracefulShutdown::drain_deadline). To have the
    /// connections learn of the drain, so that they finish soon (an idle
    /// keep-alive connection closes at once), pass a [`Drain`](crate::Drain)
    /// as the signal.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// use futures::sync::oneshot;
    /// use futures::{Future, Stream};
    /// use tk_listen::ListenExt;
    /// use tokio_core::net::TcpListener;
    /// use tokio_core::reactor::Core;
    ///
    /// let mut core = Core::new().unwrap();
    /// let handle = core.handle();
    /// let addr = "127.0.0.1:8080".parse().unwrap();
    /// let listener = TcpListener::bind(&addr, &handle).unwrap();
    /// let (stop, stopped) = oneshot::channel::<()>();
    /// // Hand `stop` to whatever decides to shut down.
    /// # drop(stop);
    ///
    /// let server = listener
    ///     .incoming()
    ///     .sleep_on_error(Duration::from_millis(100), &handle)
    ///     .map(|(socket, _peer)| {
    ///         tokio_io::io::write_all(socket, b"hello\n")
    ///             .map(|_| ())
    ///             .map_err(|e| log::error!("write error: {}", e))
    ///     })
    ///     .listen(1000)
    ///     .with_graceful_shutdown(stopped)
    ///     // Connections still running 10 s after the signal are dropped.
    ///     .drain_deadline(Duration::from_secs(10), &handle);
    /// core.run(server).unwrap();
    /// ```
    pub fn with_graceful_shutdown<F>(self, signal: F) -> WithGracefulShutdown<S, F::Future>
    where
        F: IntoFuture,
    {
        graceful::new(self, signal.into_future())
    }

    /// The stream of connections.
    ///
    /// # Panics
    ///
    /// Panics after [`stop_accepting`](Listen::stop_accepting): the stream was
    /// dropped then (check [`is_accepting`](Listen::is_accepting) first).
    pub fn get_ref(&self) -> &S {
        self.stream.as_ref().expect(STREAM_DROPPED)
    }

    /// The stream of connections, mutably. Taking items out of it directly
    /// means those connections never run.
    ///
    /// # Panics
    ///
    /// Panics after [`stop_accepting`](Listen::stop_accepting), like
    /// [`get_ref`](Listen::get_ref).
    pub fn get_mut(&mut self) -> &mut S {
        self.stream.as_mut().expect(STREAM_DROPPED)
    }

    /// The stream of connections; connections in flight are dropped.
    ///
    /// # Panics
    ///
    /// Panics after [`stop_accepting`](Listen::stop_accepting), like
    /// [`get_ref`](Listen::get_ref).
    pub fn into_inner(self) -> S {
        self.stream.expect(STREAM_DROPPED)
    }

    /// Drops every connection still running, counted as aborted; how many.
    pub(crate) fn abort_connections(&mut self) -> usize {
        self.connections.abort_all()
    }

    /// May the stream have a connection ready, and may one start now?
    fn should_poll_stream(&self) -> bool {
        self.stream_may_be_ready
            && self.is_accepting()
            && self.connections.running() < self.stats.max_connections()
    }
}

const STREAM_DROPPED: &str =
    "Listen: the stream was dropped by stop_accepting(); check is_accepting() first";

impl<S> Future for Listen<S>
where
    S: Stream,
    S::Item: IntoFuture<Item = (), Error = ()>,
{
    type Item = ();
    type Error = S::Error;

    fn poll(&mut self) -> Poll<(), S::Error> {
        // Accepted connections and polls of woken ones share one budget, so
        // that a flood of short connections can't keep this loop going for as
        // long as clients arrive.
        let mut budget = POLL_BUDGET;
        self.connections.new_poll();
        self.wakeups.take(&mut self.woken);
        let mut handled = 0;
        for &id in &self.woken {
            if budget == 0 {
                break;
            }
            handled += 1;
            if id == STREAM {
                self.stream_may_be_ready = true;
            } else if self.connections.poll(id, &self.wakeups) {
                budget -= 1;
            }
        }
        self.woken.drain(..handled);

        while self.should_poll_stream() && budget > 0 {
            let Some(stream) = self.stream.as_mut() else {
                break;
            };
            let polled = executor::with_notify(&self.wakeups, STREAM, || stream.poll());
            match polled? {
                Async::Ready(Some(connection)) => {
                    budget -= 1;
                    let future = connection.into_future();
                    self.connections.start(future, &self.wakeups);
                }
                Async::Ready(None) => self.stream_ended = true,
                // It will wake this task with the id `STREAM`.
                Async::NotReady => self.stream_may_be_ready = false,
            }
        }

        if !self.is_accepting() && self.connections.running() == 0 {
            return Ok(Async::Ready(()));
        }
        if self.woken.is_empty() && !self.should_poll_stream() {
            // Everything left waits for a wake-up.
            return Ok(Async::NotReady);
        }
        Ok(yield_to_other_tasks())
    }
}

impl<S> fmt::Debug for Listen<S>
where
    S: Stream,
    S::Item: IntoFuture<Item = (), Error = ()>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listen")
            .field("accepting", &self.is_accepting())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}
