//! Connections that take part in a graceful shutdown: [`Drain`] tells each
//! connection it watches that the drain began, so that it can finish what
//! it is doing and close. The decisions are in `state.rs`, shared with the
//! tokio 1 `Drain` (`tokio1.rs`); this file is the futures 0.1 adapter.

use std::fmt;

use futures::executor::{self, NotifyHandle};
use futures::{task, Async, Future, IntoFuture, Poll};

use self::state::{Current01, DrainParts, WatchParts};

pub(crate) mod state;
#[cfg(feature = "tokio1")]
pub(crate) mod tokio1;

/// The shutdown signal, boxed so that [`Drain`] has one type whatever it
/// wraps.
type Signal = Box<dyn Future<Item = (), Error = ()> + Send>;

/// A graceful shutdown that the connections take part in.
///
/// Made by [`Drain::new`] around a shutdown signal. A `Drain` is itself a
/// future that resolves once the drain has begun (when the signal fires, or
/// [`begin`](Drain::begin) was called), so it is the signal given to
/// [`Listen::with_graceful_shutdown`](crate::Listen::with_graceful_shutdown):
/// the server then stops accepting. Each connection wrapped with
/// [`watch`](Drain::watch) learns of the drain at once, even while it is
/// idle, and is asked to finish (an HTTP connection closes once its
/// requests in flight are answered, and an idle keep-alive connection closes
/// at once). With
/// [`drain_deadline`](crate::WithGracefulShutdown::drain_deadline), the
/// connections still running after a while are dropped.
///
/// Clones share one drain. It is `Send` and `Sync`: any thread may call
/// [`begin`](Drain::begin).
///
/// # Examples
///
/// A server whose connections greet their client, then echo until it
/// closes, or until the drain begins:
///
/// ```no_run
/// use std::time::Duration;
///
/// use futures::sync::oneshot;
/// use futures::{Future, Stream};
/// use tk_listen::{Drain, ListenExt};
/// use tokio_core::net::TcpListener;
/// use tokio_core::reactor::Core;
/// use tokio_io::AsyncRead;
///
/// let mut core = Core::new().unwrap();
/// let handle = core.handle();
/// let addr = "127.0.0.1:8080".parse().unwrap();
/// let listener = TcpListener::bind(&addr, &handle).unwrap();
/// let (stop, stopped) = oneshot::channel::<()>();
/// // Hand `stop` to whatever decides to shut down.
/// # drop(stop);
/// let drain = Drain::new(stopped);
///
/// let watching = drain.clone();
/// let server = listener
///     .incoming()
///     .sleep_on_error(Duration::from_millis(100), &handle)
///     .map(move |(socket, _peer)| {
///         let (reader, writer) = socket.split();
///         let echo = tokio_io::io::copy(reader, writer)
///             .map(|_| ())
///             .map_err(|e| log::debug!("echo: {}", e));
///         // On drain, stop echoing: this connection closes at once.
///         watching
///             .watch(Some(echo), |echo| *echo = None)
///             .map(|_| ())
///     })
///     .listen(1000)
///     .with_graceful_shutdown(drain)
///     .drain_deadline(Duration::from_secs(10), &handle);
/// core.run(server).unwrap();
/// ```
#[must_use = "futures do nothing unless polled"]
#[derive(Clone)]
pub struct Drain {
    parts: DrainParts<Signal, task::Task, NotifyHandle>,
}

impl Drain {
    /// A drain that begins when `signal` resolves or fails (a dropped
    /// [`oneshot::Sender`](futures::sync::oneshot::Sender) begins it too);
    /// its value and error are ignored. The signal is polled by whoever
    /// polls the `Drain` as a future (the server, in
    /// [`with_graceful_shutdown`](crate::Listen::with_graceful_shutdown));
    /// whichever clone polls it, its wake-up wakes every task waiting on a
    /// `Drain`, so a clone awaited elsewhere (in a `select` with a timeout,
    /// say) does not keep the server from draining. The beginning is
    /// logged at `info`, with the number of connections told. For a drain
    /// begun only by hand, pass
    /// [`future::empty()`](futures::future::empty).
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::sync::oneshot;
    /// use futures::Future;
    /// use tk_listen::Drain;
    ///
    /// let (stop, stopped) = oneshot::channel::<()>();
    /// let drain = Drain::new(stopped);
    /// assert!(!drain.is_draining());
    /// stop.send(()).unwrap();
    /// drain.clone().wait().unwrap(); // resolves: the signal fired
    /// assert!(drain.is_draining());
    /// ```
    pub fn new<F>(signal: F) -> Drain
    where
        F: IntoFuture,
        F::Future: Send + 'static,
    {
        let signal = signal.into_future().then(|_| Ok(()));
        Drain {
            parts: DrainParts::new(Box::new(signal), NotifyHandle::from),
        }
    }

    /// Begins the drain now, as if the signal had fired: every watched
    /// connection is told, and the `Drain` futures resolve. Calling it
    /// again, or after the signal, does nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{future, Future};
    /// use tk_listen::Drain;
    ///
    /// let drain = Drain::new(future::empty::<(), ()>());
    /// drain.begin();
    /// drain.begin(); // no effect
    /// assert!(drain.is_draining());
    /// drain.wait().unwrap();
    /// ```
    pub fn begin(&self) {
        self.parts.begin();
    }

    /// Has the drain begun?
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::future;
    /// use tk_listen::Drain;
    ///
    /// let drain = Drain::new(future::empty::<(), ()>());
    /// assert!(!drain.is_draining());
    /// drain.clone().begin();
    /// assert!(drain.is_draining());
    /// ```
    pub fn is_draining(&self) -> bool {
        self.parts.is_draining()
    }

    /// Runs the connection future `conn`, and calls `on_drain` on it once
    /// when the drain begins (at once if it has begun already); then keeps
    /// polling `conn` until it ends. The returned future resolves as `conn`
    /// does.
    ///
    /// `on_drain` asks the connection to finish: it may set a flag the
    /// connection reads, or replace part of it, as the example does. Cheap:
    /// while the drain hasn't begun, a poll costs one atomic load, and one
    /// in which `conn` is not ready another (and a check that the task is
    /// the one registered). The connection's task is registered to be woken
    /// after the first poll in which `conn` is not ready, in a slab whose
    /// slots are reused, so a connection that ends in its first poll never
    /// registers.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::cell::Cell;
    ///
    /// use futures::{future, Future};
    /// use tk_listen::Drain;
    ///
    /// let told = Cell::new(false);
    /// let drain = Drain::new(future::empty::<(), ()>());
    /// drain.begin();
    /// let connection = drain.watch(future::ok::<u8, ()>(7), |_| told.set(true));
    /// assert_eq!(connection.wait(), Ok(7));
    /// assert!(told.get());
    /// ```
    pub fn watch<C, F>(&self, conn: C, on_drain: F) -> Watch<C, F>
    where
        C: Future,
        F: FnOnce(&mut C),
    {
        Watch {
            conn,
            parts: self.parts.watch(on_drain),
        }
    }
}

impl Future for Drain {
    type Item = ();
    type Error = ();

    fn poll(&mut self) -> Poll<(), ()> {
        let begun = self.parts.poll(&Current01, |signal, wake| {
            executor::with_notify(wake, 0, || !matches!(signal.poll(), Ok(Async::NotReady)))
        });
        Ok(if begun {
            Async::Ready(())
        } else {
            Async::NotReady
        })
    }
}

impl fmt::Debug for Drain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.parts.fmt(f)
    }
}

/// A connection future that takes part in a [`Drain`].
///
/// Made by [`Drain::watch`]. It resolves as the connection does.
#[must_use = "futures do nothing unless polled"]
pub struct Watch<C, F> {
    conn: C,
    parts: WatchParts<F, task::Task>,
}

impl<C, F> Watch<C, F> {
    /// The connection future.
    pub fn get_ref(&self) -> &C {
        &self.conn
    }

    /// The connection future, mutably.
    pub fn get_mut(&mut self) -> &mut C {
        &mut self.conn
    }

    /// The connection future; it no longer takes part in the drain.
    pub fn into_inner(self) -> C {
        self.conn
    }
}

impl<C, F> Future for Watch<C, F>
where
    C: Future,
    F: FnOnce(&mut C),
{
    type Item = C::Item;
    type Error = C::Error;

    fn poll(&mut self) -> Poll<C::Item, C::Error> {
        if let Some(on_drain) = self.parts.told_before_poll() {
            on_drain(&mut self.conn);
        }
        match self.conn.poll() {
            Ok(Async::NotReady) => {}
            ended => return ended,
        }
        match self.parts.told_after_pending(&Current01) {
            // The drain began since the first check: tell, and poll again.
            Some(on_drain) => {
                on_drain(&mut self.conn);
                self.conn.poll()
            }
            None => Ok(Async::NotReady),
        }
    }
}

impl<C: fmt::Debug, F> fmt::Debug for Watch<C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.parts.fmt_watch(&self.conn, f)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;
    use std::sync::Arc;

    use futures::executor::{self, Notify};
    use futures::future::{self, Future};
    use futures::{Async, Poll};

    use super::Drain;

    struct Nobody;

    impl Notify for Nobody {
        fn notify(&self, _: usize) {}
    }

    fn poll_once<F: Future>(future: F) -> (Poll<F::Item, F::Error>, executor::Spawn<F>) {
        let mut spawned = executor::spawn(future);
        let polled = spawned.poll_future_notify(&Arc::new(Nobody), 0);
        (polled, spawned)
    }

    #[test]
    fn a_connection_that_ends_in_its_first_poll_never_registers() {
        let drain = Drain::new(future::empty::<(), ()>());
        let (polled, _) = poll_once(drain.watch(future::ok::<u8, ()>(1), |_| {}));
        assert_eq!(polled, Ok(Async::Ready(1)));
        assert_eq!(drain.parts.slab(), (0, 0));
    }

    #[test]
    fn a_waiting_connection_holds_a_slot_until_it_is_dropped() {
        let drain = Drain::new(future::empty::<(), ()>());
        let (polled, conn) = poll_once(drain.watch(future::empty::<(), ()>(), |_| {}));
        assert_eq!(polled, Ok(Async::NotReady));
        assert_eq!(drain.parts.slab(), (1, 1));
        drop(conn);
        assert_eq!(drain.parts.slab(), (1, 0));
    }

    /// A connection that begins the drain in its first poll, as a request
    /// for shutdown served by the server itself does, then waits until it
    /// is told.
    struct BeginsTheDrain {
        drain: Drain,
        told: bool,
        polls: Rc<Cell<usize>>,
    }

    impl Future for BeginsTheDrain {
        type Item = ();
        type Error = ();

        fn poll(&mut self) -> Poll<(), ()> {
            self.polls.set(self.polls.get() + 1);
            if self.told {
                return Ok(Async::Ready(()));
            }
            self.drain.begin();
            Ok(Async::NotReady)
        }
    }

    #[test]
    fn a_drain_begun_during_the_poll_is_told_and_polled_again_at_once() {
        let drain = Drain::new(future::empty::<(), ()>());
        let polls = Rc::new(Cell::new(0));
        let conn = BeginsTheDrain {
            drain: drain.clone(),
            told: false,
            polls: polls.clone(),
        };
        let told = Rc::new(Cell::new(0));
        let counted = told.clone();
        let watched = drain.watch(conn, move |conn| {
            counted.set(counted.get() + 1);
            conn.told = true;
        });
        let (polled, _) = poll_once(watched);
        assert_eq!(polled, Ok(Async::Ready(())));
        assert_eq!((told.get(), polls.get()), (1, 2));
        assert_eq!(drain.parts.slab(), (0, 0), "nothing registered");
    }
}
