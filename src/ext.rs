use std::time::Duration;

use futures::{IntoFuture, Stream};
use tokio_core::reactor::Handle;

use crate::{listen, sleep_on_error, Listen, SleepOnError};

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
    /// free descriptors (100 ms to 1 s is typical); a zero delay retries at
    /// once and gives up that protection.
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
    /// kernel's backlog rather than taking memory and descriptors.
    ///
    /// Errors of the connection futures are ignored: log them in the future
    /// itself (`.map_err(|e| log::error!(..))`). The returned future resolves
    /// to `Ok(())` once the stream has ended and every connection has finished
    /// (a graceful drain), or to the stream's own error as soon as the stream
    /// fails, dropping the connections still running.
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
}

impl<T: Stream> ListenExt for T {}
