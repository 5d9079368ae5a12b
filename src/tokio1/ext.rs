use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_core::Stream;

use super::{
    listen, local_listen, sleep_on_error, ConnectionOutput, Listen, LocalListen, SleepOnError,
};
use crate::limit_open::{self, LimitOpen};
use crate::limit_per_peer::{self, LimitPerPeer};

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
    /// (it spawns tasks); the connection it was starting then counts as
    /// started and failed, and its slot is free again.
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
    /// outside a `LocalSet` (it spawns local tasks), counting the
    /// connection it was starting as started and failed.
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

    /// Lets each peer (a client IP address, or its IPv6 `/64`) hold at most
    /// `max_per_peer` of the connections at once; a connection over its
    /// peer's cap is closed at once.
    ///
    /// The tokio 1 door to the crate's per-peer cap: the table, the peers
    /// and their prefixes, the counters ([`PeerStats`](super::PeerStats))
    /// and the policy are those of [`crate::ListenExt::limit_per_peer`],
    /// whose docs say how a peer is counted and what it costs; the builder
    /// methods ([`ipv4_prefix`](super::LimitPerPeer::ipv4_prefix),
    /// [`ipv6_prefix`](super::LimitPerPeer::ipv6_prefix),
    /// [`peer_of`](super::LimitPerPeer::peer_of),
    /// [`stats`](super::LimitPerPeer::stats)) are the same. It takes the
    /// `(socket, peer address)` pairs of
    /// [`sleep_on_error`](ListenExt::sleep_on_error) and yields
    /// `(`[`PeerConnection<socket>`](super::PeerConnection)`, peer address)`,
    /// which is tokio 1's `AsyncRead` and `AsyncWrite` when the socket is
    /// (vectored writes included) and releases its slot when dropped.
    ///
    /// Put it before [`listen`](ListenExt::listen): a connection over the
    /// cap is closed before it reaches `map` and never takes one of
    /// `listen`'s slots, so one client that opens connections in a loop can
    /// lock out only itself. At most 64 connections are closed in one poll;
    /// then the stream yields to the other tasks and carries on at its next
    /// poll.
    ///
    /// # Panics
    ///
    /// Panics at once if `max_per_peer` is 0, which would close every
    /// connection.
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
    /// let limited = incoming(listener)
    ///     .sleep_on_error(Duration::from_millis(100))
    ///     // At most 8 connections from one client address.
    ///     .limit_per_peer(8);
    /// let peers = limited.stats();
    /// limited
    ///     // The slot is released when `connection` drops.
    ///     .map(|(mut connection, _peer)| async move { connection.write_all(b"hello\n").await })
    ///     .listen(1000)
    ///     .await;
    /// println!("closed over the per-peer cap: {}", peers.rejected());
    /// # Ok(()) }
    /// ```
    fn limit_per_peer<T>(self, max_per_peer: usize) -> LimitPerPeer<Self>
    where
        Self: Stream<Item = (T, SocketAddr)> + Sized + Unpin,
    {
        limit_per_peer::new(self, max_per_peer)
    }

    /// Keeps at most `max_open` of the stream's connections open at once,
    /// for code that spawns its connections itself (`axum::serve`, a
    /// hand-written `tokio::spawn` loop): each item `(socket, a)` is
    /// yielded as `(`[`OpenConnection<socket>`](super::OpenConnection)`, a)`,
    /// which holds a slot until it is dropped, and while all `max_open`
    /// slots are taken the inner stream is not polled (a listener's
    /// `accept()` is not called; new clients wait in the kernel's backlog).
    /// `OpenConnection` is tokio 1's `AsyncRead` and `AsyncWrite` when the
    /// socket is (vectored writes included), so it goes wherever the
    /// socket went.
    ///
    /// **When to use which.** [`listen(n)`](ListenExt::listen) is the
    /// server: it spawns the connection futures, isolates their panics,
    /// counts how they end and drains them on shutdown. Use it whenever you
    /// turn each socket into a future yourself. `limit_open(n)` is only a
    /// cap, for when something else spawns and owns the connections: it
    /// doesn't run, count or drain anything, it counts sockets, and a slot
    /// is freed only when the `OpenConnection` is dropped, on whichever
    /// thread. Don't put it in front of `listen(n)`: `listen` caps the same
    /// connections already.
    ///
    /// A freed slot wakes the stream's task: one atomic operation per
    /// connection, plus a short lock for the one that frees the first slot
    /// of a full stream. The items' second half passes through untouched.
    /// The same type and counters as
    /// [`crate::ListenExt::limit_open`] (futures 0.1);
    /// [`LimitOpen::stats`](super::LimitOpen::stats) counts what it did.
    ///
    /// # Panics
    ///
    /// Panics at once if `max_open` is 0, which would never yield a
    /// connection.
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
    /// let mut accepts = incoming(listener)
    ///     .sleep_on_error(Duration::from_millis(100))
    ///     .limit_open(1000);
    /// while let Some((mut connection, _peer)) = accepts.next().await {
    ///     // The slot is freed when the task drops `connection`.
    ///     tokio::spawn(async move { connection.write_all(b"hello\n").await });
    /// }
    /// # Ok(()) }
    /// ```
    fn limit_open<T, A>(self, max_open: usize) -> LimitOpen<Self>
    where
        Self: Stream<Item = (T, A)> + Sized + Unpin,
    {
        limit_open::new(self, max_open)
    }
}

impl<S: Stream + ?Sized> ListenExt for S {}
