//! The table of peers and their connection counts, shared by the stream and
//! every connection it let through, and the counters read from it.

use std::collections::hash_map::{Entry, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use super::key::{PeerHashBuilder, PeerKey};

/// Live counters of a [`LimitPerPeer`](crate::LimitPerPeer) stream: peers
/// and connections held now, connections let through and closed over the
/// cap.
///
/// Got from [`LimitPerPeer::stats`](crate::LimitPerPeer::stats) before the
/// stream is moved into the event loop; clone it freely and read it from any
/// thread. At any moment `peers <= connections <= accepted`, up to the
/// connections that change state between two readings; `accepted -
/// connections` have been released.
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

    /// Peers holding at least one connection now: the entries of the table.
    pub fn peers(&self) -> u64 {
        self.table.peers.load(Relaxed)
    }

    /// Connections held now: connections let through whose
    /// [`PeerConnection`](crate::PeerConnection) is not dropped yet.
    pub fn connections(&self) -> u64 {
        self.table.connections.load(Relaxed)
    }

    /// Connections let through so far.
    pub fn accepted(&self) -> u64 {
        self.table.accepted.load(Relaxed)
    }

    /// Connections closed at once so far because their peer already held
    /// [`max_per_peer`](PeerStats::max_per_peer) connections.
    pub fn rejected(&self) -> u64 {
        self.table.rejected.load(Relaxed)
    }

    /// How many connections `peer` holds now.
    ///
    /// `peer` is a peer as [`LimitPerPeer::peer_of`](crate::LimitPerPeer::peer_of)
    /// and [`PeerConnection::peer`](crate::PeerConnection::peer) return it
    /// (an IPv6 peer is its /64 prefix by default, e.g. `2001:db8::`); an
    /// address with bits beyond the prefix set is no peer and holds nothing.
    /// Unlike the other readings, this one takes the table's lock for a
    /// moment.
    pub fn connections_of(&self, peer: IpAddr) -> usize {
        let key = PeerKey::of_peer(peer);
        self.table.counts().get(&key).copied().unwrap_or(0)
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

/// Connections held per peer.
type Counts = HashMap<PeerKey, usize, PeerHashBuilder>;

/// The shared state: connection counts per peer, and the counters.
///
/// The counts live behind a `Mutex` rather than in an `Rc<RefCell<..>>`
/// because a [`PeerConnection`](crate::PeerConnection) may be dropped on
/// another thread (a thread pool serving it). The lock is held only for one
/// lookup; the stream and the connections of one event loop never contend
/// for it.
pub(super) struct PeerTable {
    max_per_peer: usize,
    /// Connections held per peer; a peer is removed when its count drops to
    /// zero, so the table never holds more entries than connections.
    counts: Mutex<Counts>,
    /// The counters, read without the lock. `peers` is the length of
    /// `counts`, stored under the lock after every change.
    peers: AtomicU64,
    connections: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
}

impl PeerTable {
    pub(super) fn new(max_per_peer: usize) -> Arc<PeerTable> {
        Arc::new(PeerTable {
            max_per_peer,
            counts: Mutex::new(HashMap::with_hasher(PeerHashBuilder::random())),
            peers: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        })
    }

    pub(super) fn max_per_peer(&self) -> usize {
        self.max_per_peer
    }

    /// Takes a slot for `key` if it holds fewer than `max_per_peer`
    /// connections; `None` (and a rejection counted) if not.
    #[inline]
    pub(super) fn acquire(self: &Arc<PeerTable>, key: PeerKey) -> Option<Slot> {
        let mut counts = self.counts();
        let count = counts.entry(key).or_insert(0);
        // A new entry (0) always passes: `max_per_peer` is at least 1.
        if *count >= self.max_per_peer {
            drop(counts);
            self.rejected.fetch_add(1, Relaxed);
            return None;
        }
        *count += 1;
        self.peers.store(counts.len() as u64, Relaxed);
        drop(counts);
        self.connections.fetch_add(1, Relaxed);
        self.accepted.fetch_add(1, Relaxed);
        Some(Slot {
            table: self.clone(),
            key,
        })
    }

    fn release(&self, key: PeerKey) {
        let mut counts = self.counts();
        match counts.entry(key) {
            Entry::Occupied(mut count) if *count.get() > 1 => *count.get_mut() -= 1,
            Entry::Occupied(last) => {
                last.remove();
                shrink_if_mostly_empty(&mut counts);
            }
            Entry::Vacant(_) => unreachable!("a peer slot was released twice"),
        }
        self.peers.store(counts.len() as u64, Relaxed);
        drop(counts);
        self.connections.fetch_sub(1, Relaxed);
    }

    /// A poisoned lock only means a thread panicked while holding it, which
    /// none of the few lines above can do between two updates; the counts
    /// are always whole.
    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Gives memory back after a peak: a `HashMap` keeps its capacity when
/// entries are removed. Halving it once it is less than a quarter full keeps
/// the cost amortised (each rehash follows as many removals as it moves
/// entries); below [`KEPT_CAPACITY`] entries it is kept, so that a server
/// whose peers come and go doesn't shrink and grow its table all the time.
fn shrink_if_mostly_empty(counts: &mut Counts) {
    if counts.capacity() > KEPT_CAPACITY && counts.len() * 4 < counts.capacity() {
        counts.shrink_to(counts.len() * 2);
    }
}

/// The capacity below which the table never shrinks: 1024 entries of 24
/// bytes, about 28 KiB with the table's control bytes.
const KEPT_CAPACITY: usize = 1024;

/// One connection's place in the table; dropping it releases the place.
pub(super) struct Slot {
    table: Arc<PeerTable>,
    key: PeerKey,
}

impl Slot {
    pub(super) fn key(&self) -> PeerKey {
        self.key
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.release(self.key);
    }
}
