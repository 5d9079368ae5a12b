use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;

use super::connection::ConnectionOutput;
use super::pool::{self, Pool};
use crate::stats::ListenStats;

/// A shutdown signal that stays on this thread.
type Signal = Pin<Box<dyn Future<Output = ()>>>;

/// [`Listen`](super::Listen) for connection futures that are not `Send`:
/// each connection runs as a task on the current
/// [`LocalSet`](tokio::task::LocalSet).
///
/// Made by [`ListenExt::listen_local`](super::ListenExt::listen_local). It
/// behaves as [`Listen`](super::Listen) does (the cap, graceful and forced
/// shutdown, panic isolation, counters), but all its connections run on the
/// thread of the `LocalSet` that polls it.
#[must_use = "futures do nothing unless polled"]
pub struct LocalListen<S>
where
    S: Stream,
    S::Item: Future,
{
    pool: Pool<S, Signal>,
}

/// What a connection future of `S` resolves to.
type Output<S> = <<S as Stream>::Item as Future>::Output;

pub(super) fn new<S>(stream: S, max_connections: usize) -> LocalListen<S>
where
    S: Stream,
    S::Item: Future,
{
    LocalListen {
        pool: Pool::new(stream, max_connections),
    }
}

impl<S> LocalListen<S>
where
    S: Stream,
    S::Item: Future,
{
    /// A handle to this server's live counters, as
    /// [`Listen::stats`](super::Listen::stats) describes.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::rc::Rc;
    ///
    /// use tk_listen::tokio1::ListenExt;
    /// use tokio::task::LocalSet;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let shared = Rc::new(()); // not `Send`
    /// let connections = tokio_stream::iter((0..3).map(move |_| {
    ///     let shared = shared.clone();
    ///     async move { drop(shared) }
    /// }));
    /// let server = connections.listen_local(2);
    /// let stats = server.stats();
    /// LocalSet::new().run_until(server).await;
    /// assert_eq!((stats.started(), stats.finished()), (3, 3));
    /// # });
    /// ```
    pub fn stats(&self) -> ListenStats {
        self.pool.stats()
    }

    /// Stops accepting when `signal` resolves, as
    /// [`Listen::with_graceful_shutdown`](super::Listen::with_graceful_shutdown)
    /// does; the signal need not be `Send`.
    ///
    /// # Examples
    ///
    /// ```
    /// use tk_listen::tokio1::ListenExt;
    /// use tokio::sync::oneshot;
    /// use tokio::task::LocalSet;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let (stop, stopped) = oneshot::channel::<()>();
    /// let endless = tokio_stream::pending::<std::future::Ready<()>>();
    /// let server = endless.listen_local(10).with_graceful_shutdown(stopped);
    /// drop(stop); // like `stop.send(())`
    /// LocalSet::new().run_until(server).await;
    /// # });
    /// ```
    pub fn with_graceful_shutdown<F>(mut self, signal: F) -> LocalListen<S>
    where
        F: Future + 'static,
    {
        self.pool.set_signal(Box::pin(async move {
            let _ = signal.await;
        }));
        self
    }

    /// Bounds the drain, as
    /// [`Listen::drain_deadline`](super::Listen::drain_deadline) does.
    ///
    /// # Panics
    ///
    /// As [`Listen::drain_deadline`](super::Listen::drain_deadline)'s.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use tk_listen::tokio1::ListenExt;
    /// use tokio::task::LocalSet;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let stuck = tokio_stream::iter((0..2).map(|_| std::future::pending::<()>()));
    /// let server = tokio_stream::StreamExt::chain(stuck, tokio_stream::pending())
    ///     .listen_local(10)
    ///     .with_graceful_shutdown(tokio::time::sleep(Duration::from_millis(1)))
    ///     .drain_deadline(Duration::from_millis(10));
    /// let stats = server.stats();
    /// LocalSet::new().run_until(server).await;
    /// assert_eq!((stats.aborted(), stats.running()), (2, 0));
    /// # });
    /// ```
    pub fn drain_deadline(mut self, deadline: Duration) -> LocalListen<S> {
        self.pool.set_drain_deadline(deadline);
        self
    }

    /// Stops accepting now, as
    /// [`Listen::stop_accepting`](super::Listen::stop_accepting) does.
    ///
    /// # Examples
    ///
    /// ```
    /// use tk_listen::tokio1::ListenExt;
    ///
    /// let endless = tokio_stream::pending::<std::future::Ready<()>>();
    /// let mut server = endless.listen_local(10);
    /// server.stop_accepting();
    /// assert!(server.get_ref().is_none());
    /// ```
    pub fn stop_accepting(&mut self) {
        self.pool.stop_accepting("asked to stop accepting");
    }

    /// The stream of connections, or `None` once it was dropped.
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

impl<S> Future for LocalListen<S>
where
    S: Stream + Unpin,
    S::Item: Future + 'static,
    Output<S>: ConnectionOutput + 'static,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.get_mut().pool.poll(cx, |connection, report| {
            if pool::boxes::<S::Item>() {
                tokio::task::spawn_local(pool::run(Box::pin(connection), report))
            } else {
                tokio::task::spawn_local(pool::run(connection, report))
            }
        })
    }
}

impl<S> fmt::Debug for LocalListen<S>
where
    S: Stream + fmt::Debug,
    S::Item: Future,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("LocalListen");
        self.pool.debug_fields(&mut d);
        d.finish()
    }
}
