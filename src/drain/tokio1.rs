//! The tokio 1 adapter of the drain: polls and wakes; the decisions are in
//! `state.rs`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use futures_core::Stream;
use pin_project_lite::pin_project;

use super::state::{DrainParts, WatchParts};

/// The shutdown signal, boxed so that [`Drain`] has one type whatever it
/// wraps.
type Signal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A graceful shutdown that the connections take part in, for tokio 1.
///
/// Made by [`Drain::new`] around a shutdown signal; the same as
/// [`tk_listen::Drain`](crate::Drain) on the futures 0.1 side. A `Drain` is
/// a future that resolves once the drain has begun (the signal fired, or
/// [`begin`](Drain::begin) was called), so it is the signal given to
/// [`Listen::with_graceful_shutdown`](crate::tokio1::Listen::with_graceful_shutdown):
/// the server then stops accepting. Each connection wrapped with
/// [`watch`](Drain::watch) learns of the drain at once, even while idle, and
/// is asked to finish: for hyper, `|conn| conn.graceful_shutdown()`, which
/// closes an idle keep-alive connection at once, lets the requests in
/// flight complete, and sends GOAWAY on HTTP/2. So the drain lasts as long
/// as the requests in flight, not as long as idle clients stay connected.
/// [`drain_deadline`](crate::tokio1::Listen::drain_deadline) bounds it.
///
/// Clones share one drain; it is `Send` and `Sync`.
///
/// # Examples
///
/// An HTTP/1 and HTTP/2 server with hyper 1 and hyper-util's `auto`
/// builder that drains on Ctrl-C: the lines marked `// drain` are all it
/// takes, next to the same server without graceful shutdown.
///
/// ```no_run
/// use std::convert::Infallible;
/// use std::time::Duration;
///
/// use http_body_util::Full;
/// use hyper::body::{Bytes, Incoming};
/// use hyper::service::service_fn;
/// use hyper::{Request, Response};
/// use hyper_util::rt::{TokioExecutor, TokioIo};
/// use hyper_util::server::conn::auto::Builder;
/// use tk_listen::tokio1::{incoming, Drain, ListenExt};
/// use tokio::net::TcpListener;
/// use tokio_stream::StreamExt;
///
/// async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
///     Ok(Response::new(Full::new(Bytes::from("hello\n"))))
/// }
///
/// #[tokio::main]
/// async fn main() -> std::io::Result<()> {
///     let listener = TcpListener::bind("127.0.0.1:8080").await?;
///     let builder = Builder::new(TokioExecutor::new());
///     let drain = Drain::new(async { tokio::signal::ctrl_c().await.ok(); }); // drain
///     let watching = drain.clone(); // drain
///     incoming(listener)
///         .sleep_on_error(Duration::from_millis(100))
///         .map(move |(socket, _peer)| {
///             let conn = builder.serve_connection(TokioIo::new(socket), service_fn(hello));
///             watching.watch(conn.into_owned(), |conn| conn.graceful_shutdown()) // drain
///         })
///         .listen(1000)
///         .with_graceful_shutdown(drain) // drain
///         .drain_deadline(Duration::from_secs(30)) // drain
///         .await;
///     Ok(())
/// }
/// ```
#[must_use = "futures do nothing unless polled"]
#[derive(Clone)]
pub struct Drain {
    parts: DrainParts<Signal, Waker, Waker>,
}

impl Drain {
    /// A drain that begins when `signal` resolves; its output is ignored.
    /// The signal is polled by whoever polls the `Drain` as a future (the
    /// server, in
    /// [`with_graceful_shutdown`](crate::tokio1::Listen::with_graceful_shutdown));
    /// whichever clone polls it, its wake-up wakes every task waiting on a
    /// `Drain`, so a clone awaited elsewhere (in a `select!` with a timeout,
    /// say) does not keep the server from draining. The beginning is
    /// logged at `info`, with the number of connections told. For a drain
    /// begun only by hand, pass
    /// [`std::future::pending()`].
    ///
    /// # Examples
    ///
    /// ```
    /// use tk_listen::tokio1::Drain;
    /// use tokio::sync::oneshot;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let (stop, stopped) = oneshot::channel::<()>();
    /// let drain = Drain::new(stopped);
    /// assert!(!drain.is_draining());
    /// stop.send(()).unwrap();
    /// drain.clone().await; // resolves: the signal fired
    /// assert!(drain.is_draining());
    /// # });
    /// ```
    pub fn new<F>(signal: F) -> Drain
    where
        F: Future + Send + 'static,
    {
        // Outside tokio's cooperative budget: a poll that a spent budget
        // refused would wake the drain's handle, and so every `Drain`.
        let signal = tokio::task::coop::unconstrained(async move {
            let _ = signal.await;
        });
        Drain {
            parts: DrainParts::new(Box::pin(signal), Waker::from),
        }
    }

    /// Begins the drain now, as if the signal had fired: every watched
    /// connection is told, and the `Drain` futures resolve. Calling it
    /// again, or after the signal, does nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use tk_listen::tokio1::Drain;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let drain = Drain::new(std::future::pending::<()>());
    /// drain.begin();
    /// drain.begin(); // no effect
    /// drain.await;
    /// # });
    /// ```
    pub fn begin(&self) {
        self.parts.begin();
    }

    /// Has the drain begun?
    ///
    /// # Examples
    ///
    /// ```
    /// use tk_listen::tokio1::Drain;
    ///
    /// let drain = Drain::new(std::future::pending::<()>());
    /// assert!(!drain.is_draining());
    /// drain.clone().begin();
    /// assert!(drain.is_draining());
    /// ```
    pub fn is_draining(&self) -> bool {
        self.parts.is_draining()
    }

    /// Runs the connection future `conn`, and calls `on_drain` on it once
    /// when the drain begins (at once if it has begun already); then keeps
    /// polling `conn` until it ends. The returned future resolves to what
    /// `conn` resolves to, so [`listen`](crate::tokio1::ListenExt::listen) counts
    /// its outcome as usual.
    ///
    /// Cheap: while the drain hasn't begun, a poll costs one atomic load,
    /// and one in which `conn` is pending another (and a check that the
    /// waker is the one registered). The task's waker is registered after
    /// the first poll in which `conn` is pending, in a slab whose slots are
    /// reused, so a connection that ends in its first poll never registers.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::pin::Pin;
    ///
    /// use tk_listen::tokio1::Drain;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let drain = Drain::new(std::future::pending::<()>());
    /// // A connection that runs until told to stop.
    /// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    /// let mut stop = Some(stop);
    /// let connection = drain.watch(stopped, move |_: Pin<&mut _>| {
    ///     let _ = stop.take().unwrap().send(());
    /// });
    /// drain.begin();
    /// assert!(connection.await.is_ok());
    /// # });
    /// ```
    pub fn watch<C, F>(&self, conn: C, on_drain: F) -> Watch<C, F>
    where
        C: Future,
        F: FnOnce(Pin<&mut C>),
    {
        Watch {
            conn,
            parts: self.parts.watch(on_drain),
        }
    }

    /// Stops `accepts`, a stream of accepted connections, the moment the
    /// drain begins: for a server that spawns its own connections, such as
    /// `axum::serve` on [`axum_listener`](crate::tokio1::axum_listener).
    ///
    /// The stream yields what `accepts` yields until the drain has begun;
    /// from then on it drops `accepts` (closing its listener, so that new
    /// clients are refused, or after a handover go to the successor) and
    /// stays pending without ever ending, and without waking anyone: the
    /// code that polls it must stop by other means, as `axum::serve` does
    /// on its `with_graceful_shutdown` signal (give it the same drain). Each
    /// poll looks at the drain (one atomic load) before polling `accepts`,
    /// so a stream polled after the drain began never accepts again; the
    /// connections are told of the drain only after it began.
    ///
    /// Why it matters: a server told to drain closes its idle keep-alive
    /// connections, and their clients connect again at once. A server that
    /// learns of the drain in its accept loop later than its connections
    /// do (axum's graceful shutdown tells both from a task of its own)
    /// may accept such a client in between and then close it before
    /// reading its request, which the client sees as a failed request.
    /// `listen(n)` with
    /// [`with_graceful_shutdown`](crate::tokio1::Listen::with_graceful_shutdown)
    /// needs none of this: it stops accepting in the very poll where the
    /// drain begins.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::pin::Pin;
    /// use std::task::Poll;
    ///
    /// use tk_listen::tokio1::Drain;
    /// use tokio_stream::{Stream, StreamExt};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let drain = Drain::new(std::future::pending::<()>());
    /// let mut accepts = drain.stop_accepting(tokio_stream::iter(vec![1, 2, 3]));
    /// assert_eq!(accepts.next().await, Some(1));
    /// drain.begin();
    /// let next = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut accepts).poll_next(cx))).await;
    /// assert_eq!(next, Poll::Pending); // not 2, and not the end
    /// # });
    /// ```
    pub fn stop_accepting<S>(&self, accepts: S) -> StopAccepting<S>
    where
        S: Stream + Unpin,
    {
        StopAccepting {
            accepts: Some(accepts),
            drain: self.clone(),
        }
    }
}

/// A stream of accepted connections that stops when a drain begins.
///
/// Made by [`Drain::stop_accepting`].
#[must_use = "streams do nothing unless polled"]
pub struct StopAccepting<S> {
    /// `None` once the drain has begun.
    accepts: Option<S>,
    drain: Drain,
}

impl<S: Stream + Unpin> Stream for StopAccepting<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = &mut *self;
        if this.accepts.is_some() && this.drain.is_draining() {
            log::debug!("the drain began: no more connections are accepted");
            this.accepts = None;
        }
        match &mut this.accepts {
            Some(accepts) => Pin::new(accepts).poll_next(cx),
            None => Poll::Pending,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for StopAccepting<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopAccepting")
            .field("accepts", &self.accepts)
            .field("drain", &self.drain)
            .finish()
    }
}

impl Future for Drain {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let begun = self.parts.poll(&*cx, |signal, waker| {
            signal
                .as_mut()
                .poll(&mut Context::from_waker(waker))
                .is_ready()
        });
        if begun {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl fmt::Debug for Drain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.parts.fmt(f)
    }
}

pin_project! {
    /// A connection future that takes part in a [`Drain`].
    ///
    /// Made by [`Drain::watch`]. It resolves to what the connection resolves
    /// to.
    #[must_use = "futures do nothing unless polled"]
    pub struct Watch<C, F> {
        #[pin]
        conn: C,
        parts: WatchParts<F, Waker>,
    }
}

impl<C, F> Watch<C, F> {
    /// The connection future.
    pub fn get_ref(&self) -> &C {
        &self.conn
    }

    /// The connection future, pinned.
    pub fn get_pin_mut(self: Pin<&mut Self>) -> Pin<&mut C> {
        self.project().conn
    }
}

impl<C, F> Future for Watch<C, F>
where
    C: Future,
    F: FnOnce(Pin<&mut C>),
{
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let mut this = self.project();
        if let Some(on_drain) = this.parts.told_before_poll() {
            on_drain(this.conn.as_mut());
        }
        if let Poll::Ready(output) = this.conn.as_mut().poll(cx) {
            return Poll::Ready(output);
        }
        match this.parts.told_after_pending(cx) {
            // The drain began since the first check: tell, and poll again.
            Some(on_drain) => {
                on_drain(this.conn.as_mut());
                this.conn.poll(cx)
            }
            None => Poll::Pending,
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
    use std::future::{self, Future};
    use std::pin::{pin, Pin};
    use std::task::{Context, Poll, Waker};

    use super::Drain;

    fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_connection_that_ends_in_its_first_poll_never_registers() {
        let drain = Drain::new(future::pending::<()>());
        let conn = pin!(drain.watch(future::ready(1), |_| {}));
        assert_eq!(poll_once(conn), Poll::Ready(1));
        assert_eq!(drain.parts.slab(), (0, 0));
    }

    #[test]
    fn a_waiting_connection_holds_a_slot_until_it_is_dropped() {
        let drain = Drain::new(future::pending::<()>());
        let mut conn = Box::pin(drain.watch(future::pending::<()>(), |_| {}));
        assert_eq!(poll_once(conn.as_mut()), Poll::Pending);
        assert_eq!(drain.parts.slab(), (1, 1));
        drop(conn);
        assert_eq!(drain.parts.slab(), (1, 0));
    }

    /// A connection that begins the drain in its first poll, then waits
    /// until it is told; counts its polls.
    struct BeginsTheDrain {
        drain: Drain,
        told: bool,
        polls: usize,
    }

    impl Future for BeginsTheDrain {
        type Output = usize;

        fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<usize> {
            self.polls += 1;
            if self.told {
                return Poll::Ready(self.polls);
            }
            self.drain.begin();
            Poll::Pending
        }
    }

    #[test]
    fn a_drain_begun_during_the_poll_is_told_and_polled_again_at_once() {
        let drain = Drain::new(future::pending::<()>());
        let conn = BeginsTheDrain {
            drain: drain.clone(),
            told: false,
            polls: 0,
        };
        let watched = pin!(drain.watch(conn, |conn: Pin<&mut BeginsTheDrain>| {
            conn.get_mut().told = true;
        }));
        assert_eq!(poll_once(watched), Poll::Ready(2), "told, polled twice");
        assert_eq!(drain.parts.slab(), (0, 0), "nothing registered");
    }
}
