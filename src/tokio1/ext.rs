use std::future::Future;
use std::io;
use std::time::Duration;

use futures_core::Stream;

use super::{
    listen, local_listen, sleep_on_error, ConnectionOutput, Listen, LocalListen, SleepOnError,
};

/// Adapters that turn a stream of `accept()` results into a tokio 1 server.
///
/// Implemented for every [`futures_core::Stream`]; bring it into scope with
/// `use tk_listen::tokio1::ListenExt;`. The streams must be [`Unpin`], as
/// [`incoming`](super::incoming) and most combinators are; pin any other
/// with `Box::pin(stream)` first.
pub trait ListenExt: Stream {
    /// Skips per-connection `accept()` errors and pauses for `delay` on the
    /// others, such as running out of file descriptors.
    ///
    /// The error policy is the crate's: the table in
    /// [`crate::ListenExt::sleep_on_error`], decided by the same function.
    /// The pause is a [`tokio::time::sleep`]; while it runs, the inner
    /// stream is not polled, so a listener's `accept()` is not called and
    /// pending clients wait in the kernel's backlog. A delay longer than a
    /// year is cut to a year, and one over a minute is logged at `warn` when
    /// the stream is built, as there. A zero delay retries at the next tick of
    /// tokio's timer (about a millisecond) and gives up most of that
    /// protection.
    ///
    /// At most 64 skipped errors or ended pauses are handled in one poll;
    /// then the stream wakes its task and yields to the other tasks, and
    /// carries on at its next poll.
    ///
    /// The items are the inner stream's `Ok` values; the stream ends when
    /// the inner stream ends. [`SleepOnError::stats`] counts what it did.
    ///
    /// # Panics
    ///
    /// Polling it panics if a pause must start outside a tokio runtime with
    /// the time driver enabled (as [`tokio::time::sleep`] does).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// use tk_listen::tokio1::{incoming, ListenExt};
    /// use tokio::net::TcpListener;
    /// use tokio_stream::StreamExt;
    ///
    /// # async fn doc() -> std::io::Result<()> {
    /// let listener = TcpListener::bind("127.0.0.1:8080").await?;
    /// let mut accepts = incoming(listener).sleep_on_error(Duration::from_millis(100));
    /// while let Some((_socket, peer)) = accepts.next().await {
    ///     println!("accepted {}", peer);
    /// }
    /// # Ok(()) }
    /// ```
    fn sleep_on_error<T>(self, delay: Duration) -> SleepOnError<Self>
    where
        Self: Stream<Item = io::Result<T>> + Sized + Unpin,
    {
        sleep_on_error::new(self, delay)
    }

    /// Runs each item, a connection's whole life as a future, as a task on
    /// the tokio runtime, at most `max_connections` at once.
    ///
    /// While `max_connections` tasks are running, the stream is not polled
    /// at all, so a listener's `accept()` is not called and new clients wait
    /// in the kernel's backlog rather than taking memory and descriptors.
    /// On a multi-thread runtime the connections run on every worker, while
    /// this future accepts on one.
    ///
    /// A connection future outputs `()` or `Result<(), E>`
    /// ([`ConnectionOutput`]): an `Err` is counted as failed and otherwise
    /// ignored. Each future runs as a task of its own, so it must be
    /// `Send + 'static`, and so must its output. A connection that panics
    /// is dropped, its slot freed, and the panic logged at `error` with its
    /// message and counted; the server goes on (unless the program is built
    /// with `panic = "abort"`). A panic of the stream itself is not caught:
    /// it unwinds out of this future's poll.
    ///
    /// The returned [`Listen`] resolves once the stream has ended and every
    /// connection has finished (a graceful drain); see
    /// [`Listen::with_graceful_shutdown`] to end the stream on a signal.
    /// Dropping it aborts every running connection (forced shutdown).
    /// [`Listen::stats`] counts what it did.
    ///
    /// One poll handles at most 64 finished connections and starts at most
    /// 64; then the future wakes its task and yields to the other tasks.
    ///
    /// # Panics
    ///
    /// Panics at once if `max_connections` is 0, which would accept nothing
    /// and never resolve. Polling the future panics outside a tokio runtime
    /// (it spawns tasks).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// use tk_listen::tokio1::{incoming, ListenExt};
    /// use tokio::io::AsyncWriteExt;
    /// use tokio::net::TcpListener;
    /// use tokio_stream::StreamExt;
    ///
    /// # async fn doc() -> std::io::Result<()> {
    /// let listener = TcpListener::bind("127.0.0.1:8080").await?;
    /// incoming(listener)
    ///     .sleep_on_error(Duration::from_millis(100))
    ///     .map(|(mut socket, _peer)| async move { socket.write_all(b"hello\n").await })
    ///     .listen(1000)
    ///     .await;
    /// # Ok(()) }
    /// ```
    fn listen(self, max_connections: usize) -> Listen<Self>
    where
        Self: Sized + Unpin,
        Self::Item: Future + Send + 'static,
        <Self::Item as Future>::Output: ConnectionOutput + Send + 'static,
    {
        listen::new(self, max_connections)
    }

    /// [`listen`](ListenExt::listen) for connection futures that are not
    /// `Send`: they run as tasks on the current
    /// [`LocalSet`](tokio::task::LocalSet), on its thread.
    ///
    /// Everything else is as `listen` describes.
    ///
    /// # Panics
    ///
    /// Panics at once if `max_connections` is 0. Polling the future panics
    /// outside a `LocalSet` (it spawns local tasks).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// use std::time::Duration;
    ///
    /// use tk_listen::tokio1::{incoming, ListenExt};
    /// use tokio::io::AsyncWriteExt;
    /// use tokio::net::TcpListener;
    /// use tokio::task::LocalSet;
    /// use tokio_stream::StreamExt;
    ///
    /// # async fn doc() -> std::io::Result<()> {
    /// let listener = TcpListener::bind("127.0.0.1:8080").await?;
    /// let greeted = Rc::new(Cell::new(0)); // shared, not `Send`
    /// let server = incoming(listener)
    ///     .sleep_on_error(Duration::from_millis(100))
    ///     .map(move |(mut socket, _peer)| {
    ///         let greeted = greeted.clone();
    ///         async move {
    ///             greeted.set(greeted.get() + 1);
    ///             let hello = format!("hello, you are number {}\n", greeted.get());
    ///             socket.write_all(hello.as_bytes()).await
    ///         }
    ///     })
    ///     .listen_local(1000);
    /// LocalSet::new().run_until(server).await;
    /// # Ok(()) }
    /// ```
    fn listen_local(self, max_connections: usize) -> LocalListen<Self>
    where
        Self: Sized + Unpin,
        Self::Item: Future + 'static,
        <Self::Item as Future>::Output: ConnectionOutput + 'static,
    {
        local_listen::new(self, max_connections)
    }
}

impl<S: Stream + ?Sized> ListenExt for S {}
