//! The connection a [`LimitPerPeer`](crate::LimitPerPeer) stream lets
//! through, holding its peer's slot.

use std::fmt;
use std::net::IpAddr;

use super::table::Slot;
use crate::connection_io::forward_io;

/// A connection let through by [`LimitPerPeer`](crate::LimitPerPeer), which
/// counts against its peer until it is dropped.
///
/// Made by the stream of
/// [`ListenExt::limit_per_peer`](crate::ListenExt::limit_per_peer), which
/// yields it with the peer's address. It dereferences to the socket and
/// forwards `Read`, `BufRead` (when the socket has it), `Write` and
/// tokio-io's `AsyncRead` and `AsyncWrite`, so
/// code written for a `TcpStream` (`tokio_io::io::write_all`, `read_until`,
/// `AsyncRead::split`, ...) takes it as it is. With the `tokio1` feature it
/// also forwards tokio 1's `AsyncRead`, `AsyncBufRead` and `AsyncWrite`
/// (vectored writes included, so that hyper keeps writing its headers and
/// body in one call) for a socket that is [`Unpin`], as tokio's
/// `TcpStream` is; this is what `tokio1::ListenExt::limit_per_peer`
/// yields. Dropping it (or the connection
/// future that owns it) closes the socket and releases the peer's slot, from
/// whichever thread it is dropped on.
///
/// `AsyncRead::read_buf` and `AsyncWrite::write_buf` are not forwarded (their
/// signatures need the `bytes` crate); their default versions call `read` and
/// `write` and zero a read buffer first, which is correct for any socket.
///
/// # Examples
///
/// ```
/// use std::io::Write;
/// use std::net::SocketAddr;
///
/// use futures::{stream, Stream};
/// use tk_listen::ListenExt;
///
/// let client: SocketAddr = "192.0.2.1:40000".parse().unwrap();
/// // A `Vec<u8>` stands in for a socket.
/// let accepts = stream::iter_ok::<_, ()>(vec![(Vec::new(), client)]);
/// let mut limited = accepts.limit_per_peer(1).wait();
/// let (mut connection, peer) = limited.next().unwrap().unwrap();
/// connection.write_all(b"hello\n").unwrap();
/// assert_eq!((connection.len(), peer), (6, client)); // `len` of the Vec, by `Deref`
/// ```
pub struct PeerConnection<T> {
    socket: T,
    slot: Slot,
}

pub(super) fn new<T>(socket: T, slot: Slot) -> PeerConnection<T> {
    PeerConnection { socket, slot }
}

impl<T> PeerConnection<T> {
    /// The peer this connection counts against: its IP address cut to the
    /// prefix length, e.g. `2001:db8::` for `2001:db8::7` with the default
    /// IPv6 prefix of 64 bits (see
    /// [`LimitPerPeer::peer_of`](crate::LimitPerPeer::peer_of)).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::{IpAddr, SocketAddr};
    ///
    /// use futures::{stream, Stream};
    /// use tk_listen::ListenExt;
    ///
    /// let client: SocketAddr = "[2001:db8::7]:40000".parse().unwrap();
    /// let accepts = stream::iter_ok::<_, ()>(vec![("a socket", client)]);
    /// let (connection, _) = accepts.limit_per_peer(1).wait().next().unwrap().unwrap();
    /// assert_eq!(connection.peer(), "2001:db8::".parse::<IpAddr>().unwrap());
    /// ```
    pub fn peer(&self) -> IpAddr {
        self.slot.key().addr()
    }

    /// The socket.
    pub fn get_ref(&self) -> &T {
        &self.socket
    }

    /// The socket, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.socket
    }

    /// The socket, which no longer counts against its peer: the slot is
    /// released at once.
    ///
    /// To keep the connection counted, keep the `PeerConnection` and reach
    /// the socket through `Deref`, [`get_ref`](PeerConnection::get_ref) or
    /// [`get_mut`](PeerConnection::get_mut) instead.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    ///
    /// use futures::{stream, Stream};
    /// use tk_listen::ListenExt;
    ///
    /// let client: SocketAddr = "192.0.2.1:40000".parse().unwrap();
    /// let accepts = stream::iter_ok::<_, ()>(vec![("a socket", client)]);
    /// let limited = accepts.limit_per_peer(1);
    /// let stats = limited.stats();
    /// let (connection, _) = limited.wait().next().unwrap().unwrap();
    /// let socket = connection.into_inner();
    /// assert_eq!((socket, stats.connections()), ("a socket", 0));
    /// ```
    pub fn into_inner(self) -> T {
        let PeerConnection { socket, slot } = self;
        drop(slot);
        socket
    }
}

forward_io!(PeerConnection, socket);

impl<T: fmt::Debug> fmt::Debug for PeerConnection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerConnection")
            .field("socket", &self.socket)
            .field("peer", &self.peer())
            .finish()
    }
}
