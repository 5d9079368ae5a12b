use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;

use super::connection::ConnectionOutput;
use super::pool::{self, Pool};
use crate::stats::ListenStats;

/// A shutdown signal that may move between threads, boxed so that
/// [`Listen`] keeps one type with or without it.
type Signal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A future that runs one task per connection on the tokio runtime, at most
/// a fixed number at once.
///
/// Made by [`ListenExt::listen`](super::ListenExt::listen). It resolves to
/// `()` when the stream has ended (or [`stop_accepting`](Listen::stop_accepting)
/// or the signal of
/// [`with_graceful_shutdown`](Listen::with_graceful_shutdown) closed it) and
/// every connection has finished. Dropping it aborts every connection still
/// running: that is forced shutdown.
#[must_use = "futures do nothing unless polled"]
pub struct Listen<S>
where
    S: Stream,
    S::Item: Future,
{
    pool: Pool<S, Signal>,
}

/// What a connection future of `S` resolves to.
type Output<S> = <<S as Stream>::Item as Future>::Output;

pub(super) fn new<S>(stream: S, max_connections: usize) -> Listen<S>
where
    S: Stream,
    S::Item: Future,
{
    Listen {
        pool: Pool::new(stream, max_connections),
    }
}

impl<S> Listen<S>
where
    S: Stream,
    S::Item: Future,
{
    /// A handle to this server's live counters: connections started and
    /// running, and how each one ended. Take it before the future moves
    /// into a task; it can be read from any thread.
    ///
    /// `finished` counts outputs that are `()` or `Ok`, `failed` the `Err`
    /// outputs (see [`ConnectionOutput`](super::ConnectionOutput)),
    /// `panicked` the connections that panicked, `aborted` those cut
    /// unfinished: their tasks aborted because this future was dropped or
    /// the [drain deadline](Listen::drain_deadline) passed, or cancelled by
    /// a runtime shutting down; `running` is then 0. A task that ends as it
    /// is aborted is counted once, as whichever came first.
    ///
    /// # Examples
    ///
    /// ```
    /// use tk_listen::tokio1::ListenExt;
    /// use tokio_stream::StreamExt;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// // Two connections that end at once; the second one fails.
    /// let connections = tokio_stream::iter(vec![Ok(()), Err("reset")]).map(std::future::ready);
    /// let server = connections.listen(10);
    /// let stats = server.stats();
    /// server.await;
    /// assert_eq!((stats.started(), stats.finished(), stats.failed()), (2, 1, 1));
    /// assert_eq!(stats.running(), 0);
    /// # });
    /// ```
    pub fn stats(&self) -> ListenStats {
        self.pool.stats()
    }

    /// Stops accepting when `signal` resolves: graceful shutdown.
    ///
    /// At that moment the stream is dropped (for a listener: the listening
    /// socket is closed, so new clients are refused), the connections
    /// already running carry on, and this future resolves when the last of
    /// them has finished. The signal is polled first at every poll, also
    /// while the server is full, so an idle, busy or full server stops
    /// accepting as soon as it fires. Its output is ignored: a
    /// `tokio::sync::oneshot::Receiver` whose sender
    /// was dropped fires it too. Logged at `info`, with the number of
    /// connections left to drain.
    ///
    /// To bound the drain, add a
    /// [`drain_deadline`](Listen::drain_deadline). To have the connections
    /// learn of the drain (an HTTP server's idle keep-alive connections
    /// close at once), pass a [`Drain`](super::Drain) as the signal.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// use tk_listen::tokio1::{incoming, ListenExt};
    /// use tokio::io::AsyncWriteExt;
    /// use tokio::net::TcpListener;
    ///
    /// use tokio_stream::StreamExt;
    ///
    /// # async fn doc() -> std::io::Result<()> {
    /// let listener = TcpListener::bind("127.0.0.1:8080").await?;
    /// let server = incoming(listener)
    ///     .sleep_on_error(Duration::from_millis(100))
    ///     .map(|(mut socket, _peer)| async move { socket.write_all(b"hello\n").await })
    ///     .listen(1000)
    ///     .with_graceful_shutdown(tokio::signal::ctrl_c())
    ///     // Connections still running 10 s after Ctrl-C are dropped.
    ///     .drain_deadline(Duration::from_secs(10));
    /// server.await;
    /// # Ok(()) }
    /// ```
    pub fn with_graceful_shutdown<F>(mut self, signal: F) -> Listen<S>
    where
        F: Future + Send + 'static,
    {
        self.pool.set_signal(Box::pin(async move {
            let _ = signal.await;
        }));
        self
    }

    /// Bounds the drain: `deadline` after the signal of
    /// [`with_graceful_shutdown`](Listen::with_graceful_shutdown) fires, the
    /// connections still running are aborted, counted as
    /// [`aborted`](crate::ListenStats::aborted) and logged at `info` with
    /// how many, and this future resolves. A drain that ends sooner resolves
    /// sooner. The deadline starts with the signal only (not when the
    /// stream ends or [`stop_accepting`](Listen::stop_accepting) is called);
    /// without a signal it has no effect. Call it before or after
    /// `with_graceful_shutdown`.
    ///
    /// # Panics
    ///
    /// The poll in which the signal fires panics if the runtime has no timer
    /// (build it with `enable_time` or `enable_all`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use tk_listen::tokio1::ListenExt;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// // Three connections that never end, and a signal 1 ms later.
    /// let stuck = tokio_stream::iter((0..3).map(|_| std::future::pending::<()>()));
    /// let server = tokio_stream::StreamExt::chain(stuck, tokio_stream::pending())
    ///     .listen(10)
    ///     .with_graceful_shutdown(tokio::time::sleep(Duration::from_millis(1)))
    ///     .drain_deadline(Duration::from_millis(10));
    /// let stats = server.stats();
    /// server.await;
    /// assert_eq!((stats.started(), stats.aborted(), stats.running()), (3, 3, 0));
    /// # });
    /// ```
    pub fn drain_deadline(mut self, deadline: Duration) -> Listen<S> {
        self.pool.set_drain_deadline(deadline);
        self
    }

    /// Stops accepting now: drops the stream (closing a listener) and lets
    /// the running connections finish; the future then resolves. Logged at
    /// `info`, with the number of connections left to drain.
    ///
    /// # Examples
    ///
    /// ```
    /// use tk_listen::tokio1::ListenExt;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let endless = tokio_stream::pending::<std::future::Ready<()>>();
    /// let mut server = endless.listen(10);
    /// server.stop_accepting();
    /// assert!(server.get_ref().is_none());
    /// server.await; // nothing was running
    /// # });
    /// ```
    pub fn stop_accepting(&mut self) {
        self.pool.stop_accepting("asked to stop accepting");
    }

    /// The stream of connections, or `None` once it was dropped (it ended,
    /// or accepting stopped).
    pub fn get_ref(&self) -> Option<&S> {
        self.pool.stream()
    }

    /// The stream of connections, mutably, or `None` once it was dropped.
    ///
    /// Take care not to pull items out of it directly: those connections
    /// would never run.
    pub fn get_mut(&mut self) -> Option<&mut S> {
        self.pool.stream_mut()
    }
}

impl<S> Future for Listen<S>
where
    S: Stream + Unpin,
    S::Item: Future + Send + 'static,
    Output<S>: ConnectionOutput + Send + 'static,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.get_mut().pool.poll(cx, |connection, report| {
            if pool::boxes::<S::Item>() {
                tokio::spawn(pool::run(Box::pin(connection), report))
            } else {
                tokio::spawn(pool::run(connection, report))
            }
        })
    }
}

impl<S> fmt::Debug for Listen<S>
where
    S: Stream + fmt::Debug,
    S::Item: Future,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Listen");
        self.pool.debug_fields(&mut d);
        d.finish()
    }
}
