//! The connection a [`LimitOpen`](crate::LimitOpen) stream yields, holding
//! one of its slots.

use std::fmt;

use super::slots::OpenSlot;
use crate::connection_io::forward_io;

/// A connection yielded by [`LimitOpen`](crate::LimitOpen), which holds one
/// of its slots until it is dropped.
///
/// Made by the stream of
/// [`ListenExt::limit_open`](crate::ListenExt::limit_open) (or, with the
/// `tokio1` feature, `tokio1::ListenExt::limit_open`),
/// which yields it with the item's second half (the peer's address). It
/// dereferences to the socket and forwards I/O as
/// [`PeerConnection`](crate::PeerConnection) does: `Read`, `BufRead`,
/// `Write`, tokio-io's `AsyncRead` and `AsyncWrite` and, with the `tokio1`
/// feature, tokio 1's `AsyncRead`, `AsyncBufRead` and `AsyncWrite`
/// (vectored writes included) for an [`Unpin`] socket, so that it goes
/// wherever the socket went (`axum::serve`, hyper's `TokioIo`, ...).
/// Dropping it closes the socket and frees the slot, from whichever thread
/// it is dropped on; a stream waiting at the cap is woken.
///
/// # Examples
///
/// ```
/// use std::io::Write;
///
/// use futures::{stream, Stream};
/// use tk_listen::ListenExt;
///
/// // A `Vec<u8>` stands in for a socket.
/// let accepts = stream::iter_ok::<_, ()>(vec![(Vec::new(), "a peer")]);
/// let limited = accepts.limit_open(1);
/// let stats = limited.stats();
/// let (mut connection, peer) = limited.wait().next().unwrap().unwrap();
/// connection.write_all(b"hello\n").unwrap();
/// assert_eq!((connection.len(), peer, stats.open()), (6, "a peer", 1));
/// drop(connection);
/// assert_eq!(stats.open(), 0);
/// ```
pub struct OpenConnection<T> {
    socket: T,
    slot: OpenSlot,
}

pub(super) fn new<T>(socket: T, slot: OpenSlot) -> OpenConnection<T> {
    OpenConnection { socket, slot }
}

impl<T> OpenConnection<T> {
    /// The socket.
    pub fn get_ref(&self) -> &T {
        &self.socket
    }

    /// The socket, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.socket
    }

    /// The socket, which no longer holds a slot: the slot is freed at once.
    ///
    /// To keep the connection counted, keep the `OpenConnection` and reach
    /// the socket through `Deref`, [`get_ref`](OpenConnection::get_ref) or
    /// [`get_mut`](OpenConnection::get_mut) instead.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{stream, Stream};
    /// use tk_listen::ListenExt;
    ///
    /// let limited = stream::iter_ok::<_, ()>(vec![("a socket", ())]).limit_open(1);
    /// let stats = limited.stats();
    /// let (connection, ()) = limited.wait().next().unwrap().unwrap();
    /// let socket = connection.into_inner();
    /// assert_eq!((socket, stats.open()), ("a socket", 0));
    /// ```
    pub fn into_inner(self) -> T {
        let OpenConnection { socket, slot } = self;
        drop(slot);
        socket
    }
}

forward_io!(OpenConnection, socket);

impl<T: fmt::Debug> fmt::Debug for OpenConnection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenConnection")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}
