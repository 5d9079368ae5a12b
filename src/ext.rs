use std::time::Duration;

use futures::{IntoFuture, Stream};
use tokio_core::reactor::Handle;

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
}

impl<T: Stream> ListenExt for T {}
