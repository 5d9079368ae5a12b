use std::net::SocketAddr;
use std::time::Duration;

use futures::{IntoFuture, Stream};
use tokio_core::reactor::Handle;

use crate::limit_open::{self, LimitOpen};
use crate::limit_per_peer::{self, LimitPerPeer};
use crate::{listen, sleep_on_error, take_until, Listen, SleepOnError, TakeUntil};

/// Adapters that turn a stream of `accept()` results into a server.
///
/// Implemented for every [`Stream`]; bring it into scope with
/// `use tk_listen::ListenExt;`.
pub trait ListenExt: Stream {
    /// Skips per-connection `accept()` errors and pauses for `delay` on the
    /// others, such as running out of file descriptors.
    ///
    /// Meant for `TcpListener::incoming()` or any other stream whose error is
    /// an [`std::io::Error`]. What each error leads to:
    ///
    /// | error | what happens | logged at |
    /// |---|---|---|
    /// | `ConnectionRefused`, `ConnectionAborted`, `ConnectionReset` | skipped, the next `accept()` runs at once | `debug` |
    /// | `ENETDOWN`, `EPROTO`, `ENOPROTOOPT`, `EHOSTDOWN`, `ENONET`, `EHOSTUNREACH`, `EOPNOTSUPP`, `ENETUNREACH` (unix) | skipped, as the Linux `accept(2)` manual says | `debug` |
    /// | anything else: `EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`, unknown | no `accept()` for `delay`, then carry on | `warn`, once per pause |
    ///
    /// Pausing is what keeps a server alive and quiet when the process runs
    /// out of descriptors: the pending clients wait in the kernel's backlog
    /// instead of the process failing, or retrying `accept()` in a busy loop at
    /// 100% CPU. Choose a `delay` long enough for connections to finish and
    /// free descriptors (100 ms to 1 s is typical). A zero delay retries at
    /// the next tick of the event loop's timer (about a millisecond) and gives
    /// up most of that protection; a delay longer than a year is cut to a
    /// year.
    ///
    /// A delay over a minute is logged at `warn` once, when the stream is
    /// built: while a pause runs nobody is accepted, so waiting clients time
    /// out and health checks fail, and the server looks dead although
    /// descriptors are often free again within a second.
    ///
    /// At most 64 skipped errors in a row are handled in one `poll`; then the
    /// stream yields to the other tasks on the event loop and carries on at
    /// its next poll.
    ///
    /// The stream's error type is `()`. It fails only if the pause timer
    /// cannot be created or fails (the event loop is gone), which is logged at
    /// `error`; the stream should not be polled after that.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// use futures::{Future, Stream};
    /// use tk_listen::ListenExt;
    /// use tokio_core::net::TcpListener;
    /// use tokio_core::reactor::Core;
    ///
    /// let mut core = Core::new().unwrap();
    /// let handle = core.handle();
    /// let addr = "127.0.0.1:8080".parse().unwrap();
    /// let listener = TcpListener::bind(&addr, &handle).unwrap();
    /// let accepts = listener
    ///     .incoming()
    ///     .sleep_on_error(Duration::from_millis(100), &handle)
    ///     .for_each(|(_socket, peer)| {
    ///         println!("accepted {}", peer);
    ///         Ok(())
    ///     });
    /// core.run(accepts).unwrap();
    /// ```
    ///
    /// Any stream of `io::Error` results works, e.g. a Unix domain socket
    /// listener from `tokio-uds` 0.1:
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// use futures::{Future, Stream};
    /// use tk_listen::ListenExt;
    /// use tokio_core::reactor::Core;
    /// use tokio_uds::UnixListener;
    ///
    /// let mut core = Core::new().unwrap();
    /// let handle = core.handle();
    /// let listener = UnixListener::bind("/tmp/hello.sock", &handle).unwrap();
    /// let server = listener
    ///     .incoming()
    ///     .sleep_on_error(Duration::from_millis(100), &handle)
    ///     .map(|(socket, _peer)| {
    ///         tokio_io::io::write_all(socket, b"hello\n")
    ///             .map(|_| ())
    ///             .map_err(|e| log::error!("write error: {}", e))
    ///     })
    ///     .listen(1000);
    /// core.run(server).unwrap();
    /// ```
    fn sleep_on_error(self, delay: Duration, handle: &Handle) -> SleepOnError<Self>
    where
        Self: Sized,
    {
        sleep_on_error::new(self, delay, handle)
    }

    /// Runs one future per item, at most `max_connections` at once.
    ///
    /// Each item is a connection's whole life as a future. While
    /// `max_connections` of them are running, the stream is not polled at all,
    /// so a listener's `accept()` is not called and new clients wait in the
    /// kernel's backlog rather than taking memory and descriptors. The
    /// connections run inside the returned future, on the task that polls it.
    ///
    /// The returned future resolves to `Ok(())` once the stream has ended and
    /// every connection has finished (a graceful drain), or to the stream's
    /// own error as soon as the stream fails (dropping it drops the
    /// connections still running). To stop accepting on a signal even while
    /// every slot is taken, use
    /// [`Listen::with_graceful_shutdown`](crate::Listen::with_graceful_shutdown).
    ///
    /// What happens to each connection, as counted by
    /// [`Listen::stats`](crate::Listen::stats):
    ///
    /// | the connection future | what happens | logged at |
    /// |---|---|---|
    /// | resolves `Ok(())` | its slot is free again | nothing |
    /// | resolves `Err(())` | the same: errors are ignored (log them in the future itself, `.map_err(\|e\| log::error!(..))`) | nothing |
    /// | panics, on its first poll or a later one | the panic is caught, the future dropped and its slot freed; the other connections and the listener carry on | `error`, with the panic's message |
    ///
    /// Only the connection futures are guarded: a panic in the stream (the
    /// listener, [`sleep_on_error`](ListenExt::sleep_on_error), or the closure
    /// of a `map` that makes the connections) still unwinds through this future
    /// and `Core::run`. The panic hook still runs first (by default it prints
    /// the message to stderr), and a build with `panic = "abort"` aborts as
    /// usual. Anything the panicking future shared with others (an
    /// `Rc<RefCell<..>>`, say) is left as the panic left it.
    ///
    /// One `poll` starts or finishes at most 64 connections; then it lets the
    /// other tasks on the event loop run, so that a flood of short
    /// connections can't monopolise it. A woken connection is polled alone,
    /// and the stream only when it woke the task itself: a connection's
    /// wake-up never costs an `accept()` call.
    ///
    /// # Panics
    ///
    /// Panics at once if `max_connections` is 0, which would accept nothing
    /// and never resolve.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{future, stream, Future};
    /// use tk_listen::ListenExt;
    ///
    /// // Three "connections"; the second fails, which doesn't stop the rest.
    /// let connections = stream::iter_ok::<_, ()>(vec![
    ///     future::ok(()),
    ///     future::err(()),
    ///     future::ok(()),
    /// ]);
    /// connections.listen(2).wait().unwrap();
    /// ```
    fn listen(self, max_connections: usize) -> Listen<Self>
    where
        Self: Sized,
        Self::Item: IntoFuture<Item = (), Error = ()>,
    {
        listen::new(self, max_connections)
    }

    /// Ends the stream as soon as `signal` resolves or fails, dropping the
    /// inner stream at that moment: graceful shutdown.
    ///
    /// Put it before [`listen`](ListenExt::listen): when the signal fires, the
    /// listening socket is closed at once (new clients are refused), the
    /// stream ends, and `listen` resolves once the connections already running
    /// have finished. The signal is polled before the inner stream, so an idle
    /// server stops as soon as the signal fires, without waiting for another
    /// client, and the signal wins over a client that is ready to be accepted.
    /// This is what `take_while` with a flag can't do: a flag is only looked at
    /// when the next client connects.
    ///
    /// The signal is any [`IntoFuture`], e.g. a
    /// [`oneshot::Receiver`](futures::sync::oneshot::Receiver). Its value is
    /// ignored, and so is its error: an error counts as the signal too, so
    /// dropping the `oneshot::Sender` also shuts down. Both cases are logged at
    /// `info`. Clients that were still waiting in the kernel's backlog when the
    /// socket closed are reset.
    ///
    /// While `listen(n)` is full it doesn't poll its stream, so the signal is
    /// only noticed (and the socket only closed) when a connection finishes;
    /// until then new clients wait in the backlog, and are reset when the
    /// socket closes. A server that can fill up should use
    /// [`Listen::with_graceful_shutdown`](crate::Listen::with_graceful_shutdown)
    /// instead, which notices the signal at the cap too.
    ///
    /// To bound the drain, race the server against a
    /// [`Timeout`](tokio_core::reactor::Timeout) that starts when the signal
    /// fires (share the signal with [`Future::shared`](futures::Future::shared)); when the timeout wins,
    /// the connections still running are dropped.
    ///
    /// # Examples
    ///
    /// The signal wins over an inner stream that never ends:
    ///
    /// ```
    /// use futures::sync::oneshot;
    /// use futures::{stream, Future, Stream};
    /// use tk_listen::ListenExt;
    ///
    /// let (stop, stopped) = oneshot::channel::<()>();
    /// let endless = stream::repeat::<_, ()>("a client").take_until(stopped);
    /// drop(stop); // like `stop.send(())`
    /// assert_eq!(endless.collect().wait(), Ok(vec![]));
    /// ```
    ///
    /// A server that stops accepting on a signal, then lets the running
    /// connections finish for at most 10 seconds:
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// use futures::sync::oneshot;
    /// use futures::{Future, Stream};
    /// use tk_listen::ListenExt;
    /// use tokio_core::net::TcpListener;
    /// use tokio_core::reactor::{Core, Timeout};
    ///
    /// let mut core = Core::new().unwrap();
    /// let handle = core.handle();
    /// let addr = "127.0.0.1:8080".parse().unwrap();
    /// let listener = TcpListener::bind(&addr, &handle).unwrap();
    /// let (stop, stopped) = oneshot::channel::<()>();
    /// // Hand `stop` to whatever decides to shut down.
    /// # drop(stop);
    /// let stopped = stopped.shared();
    ///
    /// let drained = listener
    ///     .incoming()
    ///     .sleep_on_error(Duration::from_millis(100), &handle)
    ///     .take_until(stopped.clone())
    ///     .map(|(socket, _peer)| {
    ///         tokio_io::io::write_all(socket, b"hello\n")
    ///             .map(|_| ())
    ///             .map_err(|e| log::error!("write error: {}", e))
    ///     })
    ///     .listen(1000);
    /// let timer_handle = handle.clone();
    /// let deadline = stopped
    ///     .then(move |_| Timeout::new(Duration::from_secs(10), &timer_handle))
    ///     .flatten()
    ///     .map_err(|e| log::error!("timer error: {}", e));
    /// // Whichever comes first: every connection finished, or the deadline.
    /// let _ = core.run(drained.select(deadline));
    /// ```
    fn take_until<F>(self, signal: F) -> TakeUntil<Self, F::Future>
    where
        Self: Sized,
        F: IntoFuture,
    {
        take_until::new(self, signal.into_future())
    }
    /// Lets each peer (client IP address) hold at most `max_per_peer`
    /// connections at once, so that one client can't take every slot of
    /// [`listen`](ListenExt::listen).
    ///
    /// Meant for streams of `(socket, peer address)` such as
    /// `TcpListener::incoming()` and [`BindMany`](crate::BindMany), before or
    /// after [`sleep_on_error`](ListenExt::sleep_on_error). It yields
    /// `(`[`PeerConnection`](crate::PeerConnection)`<socket>, peer address)`:
    /// the connection counts against its peer until the `PeerConnection` is
    /// dropped, which happens when the connection future that owns it
    /// finishes or is dropped. A `PeerConnection` reads and writes like the
    /// socket (`Deref`, `Read`, `Write`, `AsyncRead`, `AsyncWrite`), so the
    /// connection code doesn't change.
    ///
    /// **Who is a peer.** Connections are counted by IP address; the port is
    /// ignored. An IPv4 address is one peer; an IPv6 address counts as its
    /// `/64` prefix, because one host can use any address of its `/64`; an
    /// IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, what a dual-stack
    /// `[::]` listener reports for IPv4 clients) counts as the IPv4 address.
    /// [`ipv4_prefix`](crate::LimitPerPeer::ipv4_prefix) and
    /// [`ipv6_prefix`](crate::LimitPerPeer::ipv6_prefix) change the prefix
    /// lengths. Behind a proxy or a NAT every client has the proxy's or the
    /// NAT's address, so they share one peer's cap.
    ///
    /// **Over the cap**, the connection has already been accepted (its address
    /// is only known then): it is dropped at once, which closes the socket the
    /// ordinary way (a FIN, or a reset if the client already sent data), logged
    /// at `debug` and counted in [`PeerStats::rejected`](crate::PeerStats::rejected).
    /// It never reaches `listen`, so it never takes one of its slots. The
    /// connection is not reset on purpose (`SO_LINGER` 0): the socket type is
    /// generic here, and a plain close tells a well-behaved client clearly
    /// that it was turned away. At most 64 connections in a row are closed in
    /// one `poll`; then the stream yields to the other tasks on the event
    /// loop, so that a flood from one peer can't monopolise it.
    ///
    /// **Errors** of the inner stream pass through unchanged, so the
    /// stream still fits `sleep_on_error`. Put `sleep_on_error` first
    /// (`incoming().sleep_on_error(..).limit_per_peer(n)`) and its
    /// [`AcceptStats::accepted`](crate::AcceptStats::accepted) counts every
    /// accepted connection, including those then closed over the cap; put it
    /// after, and it counts only the connections let through.
    ///
    /// **Memory** follows the connections held, not the peers ever seen.
    /// Each peer holding connections has an entry in a shared table (its key
    /// in an `Arc`, about 48 bytes with the allocator's header) pointed to
    /// by an 8-byte bucket and by each of its `PeerConnection`s, which add
    /// those 8 bytes to the socket. A peer whose last connection is dropped
    /// holds nothing at once; its entry stays, so that a client coming back
    /// finds it, until a new peer makes more than half the buckets used.
    /// Then the table is rebuilt with only the peers holding connections,
    /// keeps up to half its buckets' worth of idle entries for the next new
    /// peers (so that they don't allocate), and is resized to four times the
    /// peers kept if they need more than a quarter of it or less than a
    /// sixteenth, never below 1024 buckets. So the table takes about 64 KiB
    /// at most (1024 buckets and entries, and the lists of the entries set
    /// aside) until more than 256 peers hold connections at once, and beyond
    /// that at most 16 buckets and entries, about 1 KiB, per peer holding
    /// connections when it was last rebuilt: bounded by the most connections
    /// held at once. After a peak, the memory is given back at the next
    /// rebuild, after at most half the buckets' worth of new peers; peers
    /// that only come back don't rebuild the table.
    ///
    /// **Cost in time**: a connection is let through under the table's lock,
    /// taken once per accepted connection and otherwise only by
    /// [`PeerStats`](crate::PeerStats) readings: a folded multiply with
    /// random seeds per stream for the hash (much cheaper than the standard
    /// SipHash; the seeds keep a client with many addresses from aiming
    /// collisions at it) and a linear probe. A connection gives its place
    /// back by dropping its reference to the peer's entry: one atomic
    /// decrement, without the lock or a lookup, on whichever thread drops
    /// it. `benches/README.md` (section `callgrind`) has the measured
    /// instructions per connection.
    ///
    /// Live counters: [`LimitPerPeer::stats`](crate::LimitPerPeer::stats).
    ///
    /// # Panics
    ///
    /// Panics at once if `max_per_peer` is 0, which would close every
    /// connection.
    ///
    /// # Examples
    ///
    /// Two connections from one client with a cap of 1: the second is closed.
    ///
    /// ```
    /// use std::net::SocketAddr;
    ///
    /// use futures::{stream, Stream};
    /// use tk_listen::ListenExt;
    ///
    /// let client: SocketAddr = "192.0.2.1:40000".parse().unwrap();
    /// let other: SocketAddr = "192.0.2.2:40000".parse().unwrap();
    /// let accepts = stream::iter_ok::<_, ()>(vec![
    ///     ("first", client),
    ///     ("second", client),
    ///     ("third", other),
    /// ]);
    /// // Keep every connection: dropping one would free its slot.
    /// let held: Vec<_> = accepts.limit_per_peer(1).wait().collect::<Result<_, _>>().unwrap();
    /// let sockets: Vec<&str> = held.iter().map(|(connection, _)| **connection).collect();
    /// assert_eq!(sockets, ["first", "third"]);
    /// ```
    ///
    /// A server with at most 1000 connections, at most 8 of them from one
    /// peer:
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// use futures::{Future, Stream};
    /// use tk_listen::ListenExt;
    /// use tokio_core::net::TcpListener;
    /// use tokio_core::reactor::Core;
    ///
    /// let mut core = Core::new().unwrap();
    /// let handle = core.handle();
    /// let addr = "127.0.0.1:8080".parse().unwrap();
    /// let listener = TcpListener::bind(&addr, &handle).unwrap();
    /// let server = listener
    ///     .incoming()
    ///     .sleep_on_error(Duration::from_millis(100), &handle)
    ///     .limit_per_peer(8)
    ///     .map(|(connection, _peer)| {
    ///         tokio_io::io::write_all(connection, b"hello\n")
    ///             .map(|_| ()) // the slot is released when `connection` drops
    ///             .map_err(|e| log::error!("write error: {}", e))
    ///     })
    ///     .listen(1000);
    /// core.run(server).unwrap();
    /// ```
    fn limit_per_peer<T>(self, max_per_peer: usize) -> LimitPerPeer<Self>
    where
        Self: Sized + Stream<Item = (T, SocketAddr)>,
    {
        limit_per_peer::new(self, max_per_peer)
    }

    /// Keeps at most `max_open` of the stream's connections open at once,
    /// for code that runs its connections itself: each item `(socket, a)`
    /// is yielded as `(`[`OpenConnection<socket>`](crate::OpenConnection)`, a)`,
    /// which holds a slot until it is dropped, and while all `max_open`
    /// slots are taken the inner stream is not polled (a listener's
    /// `accept()` is not called; new clients wait in the kernel's backlog).
    ///
    /// **When to use which.** [`listen(n)`](ListenExt::listen) is the
    /// server: it runs the connection futures itself, isolates their panics,
    /// counts how they end and drains them on shutdown. Use it whenever you
    /// turn each socket into a future yourself. `limit_open(n)` is only a
    /// cap, for when something else owns the connections (a framework's
    /// `serve` loop, a connection handed to another thread or task, a
    /// pool): it doesn't run, count or drain anything, it counts sockets,
    /// and a slot is freed only when the `OpenConnection` is dropped,
    /// wherever that happens. Don't put it in front of `listen(n)`: `listen`
    /// caps the same connections already.
    ///
    /// A freed slot wakes the stream's task (a connection may be dropped on
    /// any thread): one atomic operation per connection, plus a short lock
    /// for the one that frees the first slot of a full stream. The items'
    /// second half (`a`, the peer's address from `sleep_on_error`, or
    /// anything else) passes through untouched; errors of the inner stream
    /// pass through unchanged. [`LimitOpen::stats`](crate::LimitOpen::stats)
    /// counts what it did.
    ///
    /// # Panics
    ///
    /// Panics at once if `max_open` is 0, which would never yield a
    /// connection.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{stream, Stream};
    /// use tk_listen::ListenExt;
    ///
    /// let accepts = stream::iter_ok::<_, ()>(vec![("first", ()), ("second", ())]);
    /// let limited = accepts.limit_open(1);
    /// let stats = limited.stats();
    /// let mut connections = limited.wait();
    /// let (first, ()) = connections.next().unwrap().unwrap();
    /// assert_eq!((*first, stats.open()), ("first", 1));
    /// // While `first` is open the next `next()` would wait; dropping it
    /// // frees the slot.
    /// drop(first);
    /// let (second, ()) = connections.next().unwrap().unwrap();
    /// assert_eq!((*second, stats.accepted()), ("second", 2));
    /// ```
    ///
    /// A tokio-core server that spawns each connection on the event loop
    /// itself, at most 1000 open at once:
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// use futures::{Future, Stream};
    /// use tk_listen::ListenExt;
    /// use tokio_core::net::TcpListener;
    /// use tokio_core::reactor::Core;
    ///
    /// let mut core = Core::new().unwrap();
    /// let handle = core.handle();
    /// let addr = "127.0.0.1:8080".parse().unwrap();
    /// let listener = TcpListener::bind(&addr, &handle).unwrap();
    /// let spawner = handle.clone();
    /// let server = listener
    ///     .incoming()
    ///     .sleep_on_error(Duration::from_millis(100), &handle)
    ///     .limit_open(1000)
    ///     .for_each(move |(connection, _peer)| {
    ///         // The slot is freed when the spawned future drops `connection`.
    ///         spawner.spawn(
    ///             tokio_io::io::write_all(connection, b"hello\n")
    ///                 .map(|_| ())
    ///                 .map_err(|e| log::error!("write error: {}", e)),
    ///         );
    ///         Ok(())
    ///     });
    /// core.run(server).unwrap();
    /// ```
    fn limit_open<T, A>(self, max_open: usize) -> LimitOpen<Self>
    where
        Self: Sized + Stream<Item = (T, A)>,
    {
        limit_open::new(self, max_open)
    }
}

impl<T: Stream> ListenExt for T {}
