use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::net::{TcpListener, TcpStream};

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
/// (tokio-stream's `TcpListenerStream` would do too, but it yields the socket
/// without the peer's address, and it is one more dependency for what is a
/// call to `poll_accept`.)
///
/// # Examples
///
/// ```no_run
/// use tk_listen::tokio1::incoming;
/// use tokio::net::{TcpListener, UnixListener};
///
/// # async fn doc() -> std::io::Result<()> {
/// let tcp = incoming(TcpListener::bind("127.0.0.1:8080").await?);
/// let unix = incoming(UnixListener::bind("/tmp/hello.sock")?);
/// # Ok(()) }
/// ```
pub fn incoming<L>(listener: L) -> Incoming<L> {
    Incoming { listener }
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
