//! The table of peers and their connection counts, shared by the stream and
//! every connection it let through, and the counters read from it.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use super::counts::{Counts, Share};
use super::key::{PeerHash, PeerKey};

/// Live counters of a [`LimitPerPeer`](crate::LimitPerPeer) stream: peers
/// and connections held now, connections let through and closed over the
/// cap.
///
/// Got from [`LimitPerPeer::stats`](crate::LimitPerPeer::stats) before the
/// stream is moved into the event loop; clone it freely and read it from any
/// thread. Each reading takes the table's lock for a moment, during which
/// the stream can't let a connection through; [`peers`](PeerStats::peers)
/// and [`connections`](PeerStats::connections) also go through the whole
/// table (1024 buckets or more), so read them for a stats page, not once per
/// connection. At any moment `peers <= connections <= accepted`, up to the
/// connections that change state between two readings;
/// `accepted - connections` have been released.
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
/// let accepts = stream::iter_ok::<_, ()>(vec![("first", client), ("second", client)]);
/// let limited = accepts.limit_per_peer(1);
/// let stats = limited.stats();
/// let held: Vec<_> = limited.wait().collect::<Result<_, _>>().unwrap();
/// assert_eq!(held.len(), 1); // "second" was closed: over the cap
/// assert_eq!((stats.peers(), stats.connections(), stats.rejected()), (1, 1, 1));
/// drop(held);
/// assert_eq!((stats.peers(), stats.connections()), (0, 0));
/// ```
#[derive(Clone)]
pub struct PeerStats {
    table: Arc<PeerTable>,
}

impl PeerStats {
    pub(super) fn new(table: &Arc<PeerTable>) -> PeerStats {
        PeerStats {
            table: table.clone(),
        }
    }

    /// The most connections one peer may hold (the `max_per_peer` given to
    /// [`limit_per_peer`](crate::ListenExt::limit_per_peer)).
    pub fn max_per_peer(&self) -> usize {
        self.table.max_per_peer
    }

    /// Peers holding at least one connection now.
    pub fn peers(&self) -> u64 {
        self.table.counts().peers() as u64
    }

    /// Connections held now: connections let through whose
    /// [`PeerConnection`](crate::PeerConnection) is not dropped yet.
    pub fn connections(&self) -> u64 {
        self.table.counts().connections()
    }

    /// Connections let through so far.
    pub fn accepted(&self) -> u64 {
        self.table.counts().accepted
    }

    /// Connections closed at once so far because their peer already held
    /// [`max_per_peer`](PeerStats::max_per_peer) connections.
    pub fn rejected(&self) -> u64 {
        self.table.counts().rejected
    }

    /// How many connections `peer` holds now.
    ///
    /// `peer` is a peer as [`LimitPerPeer::peer_of`](crate::LimitPerPeer::peer_of)
    /// and [`PeerConnection::peer`](crate::PeerConnection::peer) return it
    /// (an IPv6 peer is its /64 prefix by default, e.g. `2001:db8::`); an
    /// address with bits beyond the prefix set is no peer and holds nothing.
    pub fn connections_of(&self, peer: IpAddr) -> usize {
        self.table.counts().count_of(PeerKey::of_peer(peer))
    }
}

impl fmt::Debug for PeerStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerStats")
            .field("max_per_peer", &self.max_per_peer())
            .field("peers", &self.peers())
            .field("connections", &self.connections())
            .field("accepted", &self.accepted())
            .field("rejected", &self.rejected())
            .finish()
    }
}

/// The shared state: the peers' entries and the counters, behind one lock
/// that the stream takes to let a connection through and
/// [`PeerStats`](crate::PeerStats) to read; connections release their
/// places without it.
///
/// A `Mutex` rather than an `Rc<RefCell<..>>` because the counters may be
/// read on any thread. `parking_lot`'s rather than the standard one because
/// it has no poisoning to check on each lock and unlock (fewer instructions
/// per connection: `benches/README.md`, section `callgrind`), and
/// `parking_lot` 0.9 is in the dependency graph already (tokio-core's
/// reactor uses it). Nothing under the lock panics (it indexes within
/// bounds and only allocates), so there is nothing a poison flag would
/// protect.
pub(super) struct PeerTable {
    max_per_peer: usize,
    counts: Mutex<Counts>,
}

impl PeerTable {
    pub(super) fn new(max_per_peer: usize) -> Arc<PeerTable> {
        Arc::new(PeerTable {
            max_per_peer,
            counts: Mutex::new(Counts::new(PeerHash::random())),
        })
    }

    pub(super) fn max_per_peer(&self) -> usize {
        self.max_per_peer
    }

    /// Takes a slot for `key` if it holds fewer than `max_per_peer`
    /// connections; `None` (and a rejection counted) if not.
    #[inline(always)]
    pub(super) fn acquire(&self, key: PeerKey) -> Option<Slot> {
        let share = self.counts().acquire(key, self.max_per_peer)?;
        Some(Slot { share })
    }

    #[inline]
    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock()
    }
}

/// One connection's place in its peer's count; dropping it gives the place
/// back, without the table's lock.
pub(super) struct Slot {
    share: Share,
}

impl Slot {
    pub(super) fn key(&self) -> PeerKey {
        self.share.get()
    }
}
