//! `limit_per_peer`: at most `n` connections from one client address.

mod connection;
mod counts;
mod key;
mod table;
#[cfg(feature = "tokio1")]
mod tokio1;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use futures::{Async, Poll, Stream};
use log::debug;

use crate::limits::{yield_to_other_tasks, POLL_BUDGET};

pub use self::connection::PeerConnection;
use self::key::Prefixes;
pub use self::table::PeerStats;
use self::table::PeerTable;

/// A stream of accepted connections in which no peer holds more than
/// `max_per_peer` connections at once.
///
/// Made by [`ListenExt::limit_per_peer`](crate::ListenExt::limit_per_peer)
/// (futures 0.1) or, with the `tokio1` feature,
/// `tokio1::ListenExt::limit_per_peer` (a `futures_core` stream), from a stream of `(socket, peer address)`
/// pairs; the peers, prefixes and counters are the same on both. It yields
/// `(PeerConnection<socket>, peer address)`; a connection over its peer's cap
/// is dropped (closed) instead of yielded. Errors of the inner stream pass
/// through unchanged, and it ends when the inner stream ends.
///
/// A peer is an IP address cut to a prefix: the whole IPv4 address (`/32`)
/// and the first 64 bits of an IPv6 address (`/64`) by default, see
/// [`ipv6_prefix`](LimitPerPeer::ipv6_prefix) for why and how to change it.
#[must_use = "streams do nothing unless polled"]
pub struct LimitPerPeer<S> {
    stream: S,
    table: Arc<PeerTable>,
    prefixes: Prefixes,
}

pub(crate) fn new<S>(stream: S, max_per_peer: usize) -> LimitPerPeer<S> {
    assert!(
        max_per_peer > 0,
        "limit_per_peer(0) would close every connection; allow at least 1 per peer"
    );
    LimitPerPeer {
        stream,
        table: PeerTable::new(max_per_peer),
        prefixes: Prefixes::new(32, 64),
    }
}

impl<S> LimitPerPeer<S> {
    /// Counts IPv4 peers by their first `bits` bits (32 by default: one peer
    /// per address). Applies to IPv4-mapped IPv6 addresses
    /// (`::ffff:192.0.2.1`) too, which count as the IPv4 address they carry.
    ///
    /// A shorter prefix groups neighbours: `24` makes a whole `/24` one peer.
    /// `0` makes all IPv4 clients one peer.
    ///
    /// # Panics
    ///
    /// Panics if `bits` is over 32, the length of an IPv4 address.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    ///
    /// use futures::stream;
    /// use tk_listen::ListenExt;
    ///
    /// let accepts = stream::empty::<((), SocketAddr), ()>();
    /// let limited = accepts.limit_per_peer(8).ipv4_prefix(24);
    /// let client = "192.0.2.77:40000".parse().unwrap();
    /// assert_eq!(limited.peer_of(client), "192.0.2.0".parse::<std::net::IpAddr>().unwrap());
    /// ```
    pub fn ipv4_prefix(mut self, bits: u8) -> LimitPerPeer<S> {
        assert!(
            bits <= 32,
            "ipv4_prefix({bits}): an IPv4 address has only 32 bits; use 0 to 32"
        );
        self.prefixes = Prefixes::new(bits, self.prefixes.ipv6());
        self
    }

    /// Counts IPv6 peers by their first `bits` bits (64 by default).
    ///
    /// Why 64: an ISP hands one subscriber at least a `/64` (often a `/56` or
    /// `/48`), and a host picks its own addresses inside it (privacy
    /// extensions, SLAAC), so one machine can connect from as many addresses
    /// as it likes. Counting full addresses would let it take every slot;
    /// counting `/64`s gives it one peer's share, like an IPv4 address. Use
    /// `56` or `48` to group whole subscribers (at the cost of treating a
    /// site's hosts as one peer), `128` for one peer per address.
    /// IPv4-mapped addresses are not affected: they follow
    /// [`ipv4_prefix`](LimitPerPeer::ipv4_prefix). Behind a NAT64 or SIIT
    /// translator, IPv4 clients arrive as addresses in one `/96`
    /// (`64:ff9b::/96` or the site's own), so all of them are one peer by
    /// default; `128` counts them by address again.
    ///
    /// # Panics
    ///
    /// Panics if `bits` is over 128, the length of an IPv6 address.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::{IpAddr, SocketAddr};
    ///
    /// use futures::stream;
    /// use tk_listen::ListenExt;
    ///
    /// let accepts = stream::empty::<((), SocketAddr), ()>();
    /// let limited = accepts.limit_per_peer(8).ipv6_prefix(48);
    /// let client = "[2001:db8:1:2:3:4:5:6]:40000".parse().unwrap();
    /// assert_eq!(limited.peer_of(client), "2001:db8:1::".parse::<IpAddr>().unwrap());
    /// ```
    pub fn ipv6_prefix(mut self, bits: u8) -> LimitPerPeer<S> {
        assert!(
            bits <= 128,
            "ipv6_prefix({bits}): an IPv6 address has only 128 bits; use 0 to 128"
        );
        self.prefixes = Prefixes::new(self.prefixes.ipv4(), bits);
        self
    }

    /// The peer a connection from `addr` counts against: its IP address with
    /// the bits beyond the prefix cleared, an IPv4-mapped IPv6 address as
    /// IPv4. The port doesn't matter.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::{IpAddr, SocketAddr};
    ///
    /// use futures::stream;
    /// use tk_listen::ListenExt;
    ///
    /// let limited = stream::empty::<((), SocketAddr), ()>().limit_per_peer(8);
    /// let peer = |addr: &str| limited.peer_of(addr.parse().unwrap());
    /// let ip = |ip: &str| ip.parse::<IpAddr>().unwrap();
    /// assert_eq!(peer("192.0.2.1:40000"), ip("192.0.2.1"));
    /// assert_eq!(peer("[::ffff:192.0.2.1]:40001"), ip("192.0.2.1"));
    /// assert_eq!(peer("[2001:db8::1:2:3:4]:40000"), ip("2001:db8::"));
    /// ```
    pub fn peer_of(&self, addr: SocketAddr) -> IpAddr {
        self.prefixes.key(&addr).addr()
    }

    /// A handle to this stream's live counters: peers and connections held
    /// now, connections let through and closed over the cap. Take it before
    /// the stream moves into the event loop; it can be read from any thread.
    pub fn stats(&self) -> PeerStats {
        PeerStats::new(&self.table)
    }

    /// The inner stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The inner stream, mutably.
    ///
    /// Take care not to pull connections out of it directly: they would not
    /// count against their peers.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The inner stream. Connections already let through keep counting
    /// against their peers until they are dropped, but nothing limits the
    /// new ones any more.
    pub fn into_inner(self) -> S {
        self.stream
    }
}

impl<S, T> Stream for LimitPerPeer<S>
where
    S: Stream<Item = (T, SocketAddr)>,
{
    type Item = (PeerConnection<T>, SocketAddr);
    type Error = S::Error;

    #[inline]
    fn poll(&mut self) -> Poll<Option<Self::Item>, S::Error> {
        for _ in 0..POLL_BUDGET {
            // A `match` rather than `?`, and the pair taken apart only once
            // it has its place: each saves moves of the connection
            // (`benches/README.md`, section `callgrind`).
            let accepted = match self.stream.poll() {
                Ok(Async::Ready(Some(accepted))) => accepted,
                Ok(Async::Ready(None)) => return Ok(Async::Ready(None)),
                Ok(Async::NotReady) => return Ok(Async::NotReady),
                Err(error) => return Err(error),
            };
            if let Some(ready) = self.admit(accepted, |admitted| Ok(Async::Ready(Some(admitted)))) {
                return ready;
            }
        }
        Ok(yield_to_other_tasks())
    }
}

impl<S> LimitPerPeer<S> {
    /// The decision both stacks' adapters apply to each accepted pair: its
    /// connection with its peer's slot, handed to `ready` (which builds the
    /// adapter's return value in place: a move of the connection fewer,
    /// `benches/README.md`), or `None` once it is closed over its peer's
    /// cap.
    #[inline(always)]
    fn admit<T, R>(
        &self,
        accepted: (T, SocketAddr),
        ready: impl FnOnce((PeerConnection<T>, SocketAddr)) -> R,
    ) -> Option<R> {
        let key = self.prefixes.key(&accepted.1);
        match self.table.acquire(key) {
            Some(slot) => {
                let (socket, addr) = accepted;
                Some(ready((connection::new(socket, slot), addr)))
            }
            None => {
                reject(accepted, key.addr(), self.table.max_per_peer());
                None
            }
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for LimitPerPeer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimitPerPeer")
            .field("stream", &self.stream)
            .field("ipv4_prefix", &self.prefixes.ipv4())
            .field("ipv6_prefix", &self.prefixes.ipv6())
            .field("stats", &self.stats())
            .finish()
    }
}

/// Closes a connection over its peer's cap (out of line: the path taken by
/// every connection is kept short).
#[cold]
#[inline(never)]
fn reject<T>((socket, addr): (T, SocketAddr), peer: IpAddr, max_per_peer: usize) {
    debug!(
        "connection from {} closed: its peer {} already holds {} connections",
        addr, peer, max_per_peer
    );
    drop(socket);
}
