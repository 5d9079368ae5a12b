use std::fmt;
use std::future::{self, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use ::axum::serve::{Listener, ListenerExt, TapIo};
use futures_core::Stream;
use tokio::io::{AsyncRead, AsyncWrite};

/// A tk-listen accept stream as an [`axum::serve::Listener`]: each
/// `accept()` is the stream's next connection and its peer's address.
///
/// Made by [`axum_listener`], which hands it to `axum::serve` wrapped in
/// axum's [`TapIo`] (with a tap that does nothing), because axum 0.8 gives
/// [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo) to the
/// connections of a `TcpListener` or a `TapIo` only.
pub struct AxumListener<S> {
    stream: S,
    local_addr: SocketAddr,
    ended: bool,
}

/// Serves the connections of `accepts` with `axum::serve`: the listener for
/// `axum::serve(axum_listener(accepts, local_addr), app)`.
///
/// `accepts` is any stream of accepted connections and their peers'
/// addresses, typically `incoming(listener)` after
/// [`sleep_on_error`](super::ListenExt::sleep_on_error), so that axum gets
/// this crate's error policy and the pause you chose instead of its fixed
/// one-second sleep on every accept error that isn't about one connection
/// (such as running out of descriptors); and after the caps of
/// [`limit_per_peer`](super::ListenExt::limit_per_peer) and
/// [`limit_open`](super::ListenExt::limit_open), whose connections free
/// their slot when axum drops them. `local_addr` is what
/// [`Listener::local_addr`] answers (axum's `Serve::local_addr`): take it
/// from the listening socket before it moves into the stream.
///
/// The `Addr` of each connection is its peer's [`SocketAddr`], so
/// `app.into_make_service_with_connect_info::<SocketAddr>()` gives handlers
/// [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo).
///
/// # A stream that ends
///
/// [`Listener::accept`] cannot fail and cannot end. `incoming(listener)` and
/// the adapters on it never end by themselves, but a stream that does (a
/// `take_until`, a `BindMany` whose address stream ended) has no more
/// connections to give; the listener then logs that at `error`, once, and
/// its `accept()` stays pending without waking anything: axum goes on
/// serving the open connections, accepts nothing more, and returns only
/// once the signal of its `with_graceful_shutdown` fires. To stop on a
/// signal, give the signal to `with_graceful_shutdown`, not to the stream.
///
/// # Shutdown and caps
///
/// `axum::serve` spawns every connection as a task of its own, so
/// [`listen(n)`](super::ListenExt::listen) and its drain don't apply here:
///
/// - The cap on connections is the stream's: `limit_open(n)` stops polling
///   `incoming` while `n` connections are open, and `limit_per_peer(k)`
///   closes a peer's connections over `k` before axum sees them.
/// - axum's `with_graceful_shutdown(signal)` stops accepting once `signal`
///   fires (it drops this listener, closing the listening socket, so new
///   clients are refused), calls `graceful_shutdown()` on every connection
///   (idle HTTP/1.1 keep-alive connections close at once, h2 gets a GOAWAY,
///   requests in flight complete) and resolves once they have all closed.
///   It tells its accept loop from a task of its own, so that loop may
///   still accept a client that just reconnected after its idle
///   connection was closed, and then close it before reading its request.
///   [`Drain::stop_accepting`](super::Drain::stop_accepting) on the stream
///   given here closes that window: with the drain that is axum's signal,
///   nothing is accepted once the drain has begun.
/// - It has no deadline, and [`Listen::drain_deadline`](super::Listen::drain_deadline)
///   doesn't apply: race it against a timer that starts with the signal.
///   A [`Drain`](super::Drain) is that signal for both, as in the example:
///   a future that resolves once the drain has begun, so one clone goes to
///   `with_graceful_shutdown` and another starts the timer. When the timer
///   wins, the connections still open are tasks axum spawned: they end
///   when the runtime shuts down (returning from `main` does that), and
///   [`OpenStats::open`](super::OpenStats::open) says how many there were.
///
/// # Examples
///
/// A `Router` behind the error policy, at most 8 connections per peer and
/// 1000 in all, with the peer's address in the handler, and a graceful
/// shutdown on Ctrl-C that waits at most 10 s for the requests in flight:
///
/// ```no_run
/// use std::net::SocketAddr;
/// use std::time::Duration;
///
/// use axum::extract::ConnectInfo;
/// use axum::routing::get;
/// use axum::Router;
/// use tk_listen::tokio1::{axum_listener, incoming, Drain, ListenExt};
/// use tokio::net::TcpListener;
///
/// #[tokio::main]
/// async fn main() -> std::io::Result<()> {
///     let app = Router::new().route(
///         "/",
///         get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
///             format!("hello, {}\n", peer)
///         }),
///     );
///     let tcp = TcpListener::bind("127.0.0.1:8080").await?;
///     let local_addr = tcp.local_addr()?;
///     let accepts = incoming(tcp)
///         .sleep_on_error(Duration::from_millis(100))
///         .limit_per_peer(8)
///         .limit_open(1000);
///
///     // One drain for all: the accepts, axum's graceful shutdown, and the
///     // deadline's start.
///     let drain = Drain::new(async { tokio::signal::ctrl_c().await.ok(); });
///     let accepts = drain.stop_accepting(accepts);
///     let server = axum::serve(
///         axum_listener(accepts, local_addr),
///         app.into_make_service_with_connect_info::<SocketAddr>(),
///     )
///     .with_graceful_shutdown(drain.clone());
///     tokio::select! {
///         served = server => served?,
///         () = async {
///             drain.await;
///             tokio::time::sleep(Duration::from_secs(10)).await;
///         } => eprintln!("drain deadline: dropping the connections still open"),
///     }
///     Ok(())
/// }
/// ```
#[must_use = "the listener does nothing until axum::serve accepts from it"]
pub fn axum_listener<S, IO>(
    accepts: S,
    local_addr: SocketAddr,
) -> TapIo<AxumListener<S>, fn(&mut IO)>
where
    S: Stream<Item = (IO, SocketAddr)> + Unpin + Send + 'static,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let listener = AxumListener {
        stream: accepts,
        local_addr,
        ended: false,
    };
    listener.tap_io(leave_alone::<IO> as fn(&mut IO))
}

impl<S, IO> AxumListener<S>
where
    S: Stream<Item = (IO, SocketAddr)> + Unpin,
{
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<(IO, SocketAddr)> {
        if self.ended {
            return Poll::Pending;
        }
        match ready!(Pin::new(&mut self.stream).poll_next(cx)) {
            Some(accepted) => Poll::Ready(accepted),
            None => {
                self.ended = true;
                log::error!(
                    "the accept stream on {} ended: no more connections are accepted; \
                     axum::serve returns once its graceful shutdown signal fires",
                    self.local_addr
                );
                Poll::Pending
            }
        }
    }
}

impl<S, IO> Listener for AxumListener<S>
where
    S: Stream<Item = (IO, SocketAddr)> + Unpin + Send + 'static,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Io = IO;
    type Addr = SocketAddr;

    fn accept(&mut self) -> impl Future<Output = (IO, SocketAddr)> + Send {
        // Cancel-safe: a connection is taken from the stream only in the
        // poll that returns it.
        future::poll_fn(move |cx| self.poll_accept(cx))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }
}

impl<S: fmt::Debug> fmt::Debug for AxumListener<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AxumListener")
            .field("stream", &self.stream)
            .field("local_addr", &self.local_addr)
            .field("ended", &self.ended)
            .finish()
    }
}

/// The tap of [`axum_listener`]'s `TapIo`: there only for axum's
/// `ConnectInfo`, it leaves the connection as it is.
fn leave_alone<IO>(_: &mut IO) {}
