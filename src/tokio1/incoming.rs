use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// The backlog of [`bind`]: tokio-core's, where tokio's own
/// `TcpListener::bind` listens with 128 (mio's, the standard library's).
pub const DEFAULT_BACKLOG: u32 = 1024;

/// A stream of `accept()` results from a tokio 1 listener: each item is the
/// new socket and the peer's address, or the error `accept()` returned.
///
/// Made by [`incoming`]. It never ends by itself; drop it to close the
/// listening socket. It is a [`Stream`] for [`tokio::net::TcpListener`] and,
/// on unix, [`tokio::net::UnixListener`].
#[must_use = "streams do nothing unless polled"]
#[derive(Debug)]
pub struct Incoming<L> {
    listener: L,
}

/// The stream of `accept()` results of `listener`, for
/// [`sleep_on_error`](super::ListenExt::sleep_on_error).
///
/// Works with [`tokio::net::TcpListener`], yielding
/// `io::Result<(TcpStream, SocketAddr)>`, and on unix with
/// [`tokio::net::UnixListener`], yielding
/// `io::Result<(UnixStream, tokio::net::unix::SocketAddr)>`: the socket and
/// the peer's address, as tokio-core's `incoming()` does.
///
/// # The backlog
///
/// While nothing accepts (every slot of [`listen(n)`](super::ListenExt::listen)
/// is taken, or a burst comes faster than the accept loop), new clients wait
/// in the listening socket's backlog, the kernel's queue of completed
/// handshakes. tokio's `TcpListener::bind` makes it 128 long. When it is
/// full, Linux drops the SYNs of the next clients, which send them again only
/// after 1 second (then 3, 7, ... seconds): the clients of a burst beyond
/// the backlog are served a second late or more. Bind with [`bind`]
/// (1024, as tokio-core did) or [`bind_with_backlog`] to choose.
///
/// (tokio-stream's `TcpListenerStream` would do too, but it yields the socket
/// without the peer's address, and it is one more dependency for what is a
/// call to `poll_accept`.)
///
/// # Examples
///
/// ```no_run
/// use tk_listen::tokio1::{bind, incoming};
/// use tokio::net::UnixListener;
///
/// # async fn doc() -> std::io::Result<()> {
/// let tcp = incoming(bind("127.0.0.1:8080".parse().unwrap())?);
/// let unix = incoming(UnixListener::bind("/tmp/hello.sock")?);
/// # Ok(()) }
/// ```
pub fn incoming<L>(listener: L) -> Incoming<L> {
    Incoming { listener }
}

/// A listening socket on `addr` with a backlog of [`DEFAULT_BACKLOG`]
/// (1024), the way tokio-core bound: [`bind_with_backlog`]`(addr, 1024)`.
///
/// Use it instead of tokio's `TcpListener::bind`, whose backlog of 128 loses
/// the SYNs of a burst of clients (see [The backlog](incoming#the-backlog)).
/// Unlike tokio's, it takes one resolved address and is not `async`.
///
/// # Errors
///
/// The error of the socket, `bind` or `listen` call, e.g. `AddrInUse`.
///
/// # Panics
///
/// Outside a tokio runtime with I/O enabled, as `TcpSocket::listen` does.
///
/// # Examples
///
/// ```no_run
/// use tk_listen::tokio1::{bind, incoming};
///
/// # async fn doc() -> std::io::Result<()> {
/// let listener = bind("127.0.0.1:8080".parse().unwrap())?;
/// println!("listening on {}", listener.local_addr()?);
/// let connections = incoming(listener);
/// # drop(connections); Ok(()) }
/// ```
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    bind_with_backlog(addr, DEFAULT_BACKLOG)
}

/// A listening socket on `addr` whose backlog (the queue of clients that
/// connected but were not accepted yet) is `backlog` long.
///
/// The socket is made with tokio's [`TcpSocket`]: close-on-exec and
/// non-blocking, with `SO_REUSEADDR` on unix (so a restarted server binds
/// while connections of the previous one linger in `TIME_WAIT`; not on
/// Windows, where it would let another process take the port), then bound
/// and listening. Nothing else is set: no `SO_REUSEPORT`, and `IPV6_V6ONLY`
/// keeps the system's default (on Linux `net.ipv6.bindv6only`, usually off,
/// so `[::]:80` serves IPv4 clients too). The kernel may shorten the backlog:
/// Linux caps it at `net.core.somaxconn` (4096 since Linux 5.4, 128 before).
/// A backlog above `i32::MAX` is cut to it.
///
/// # Errors
///
/// The error of the socket, `bind` or `listen` call, e.g. `AddrInUse`.
///
/// # Panics
///
/// Outside a tokio runtime with I/O enabled, as `TcpSocket::listen` does.
///
/// # Examples
///
/// A listener for bursts of up to 4096 clients (raise `net.core.somaxconn`
/// too on older kernels):
///
/// ```no_run
/// use tk_listen::tokio1::{bind_with_backlog, incoming};
///
/// # async fn doc() -> std::io::Result<()> {
/// let listener = bind_with_backlog("0.0.0.0:8080".parse().unwrap(), 4096)?;
/// let connections = incoming(listener);
/// # drop(connections); Ok(()) }
/// ```
pub fn bind_with_backlog(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if cfg!(unix) {
        socket.set_reuseaddr(true)?;
    }
    socket.bind(addr)?;
    socket.listen(backlog)
}

impl<L> Incoming<L> {
    /// The listener, e.g. for its `local_addr()`.
    pub fn get_ref(&self) -> &L {
        &self.listener
    }

    /// The listener, mutably.
    pub fn get_mut(&mut self) -> &mut L {
        &mut self.listener
    }

    /// The listener.
    pub fn into_inner(self) -> L {
        self.listener
    }
}

impl Stream for Incoming<TcpListener> {
    type Item = io::Result<(TcpStream, SocketAddr)>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.listener.poll_accept(cx).map(Some)
    }
}

#[cfg(unix)]
impl Stream for Incoming<tokio::net::UnixListener> {
    type Item = io::Result<(tokio::net::UnixStream, tokio::net::unix::SocketAddr)>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.listener.poll_accept(cx).map(Some)
    }
}
