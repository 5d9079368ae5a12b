//! The peers holding connections: an open-addressing table of their shared
//! keys, with the counters of [`PeerStats`](crate::PeerStats) that only the
//! stream writes.

use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

use super::key::{PeerHash, PeerKey, SharedKey};

/// One connection's share of its peer's entry: the connections a peer
/// holds are the strong references to its `Arc<SharedKey>` other than the
/// table's own.
///
/// So a connection gives its place back by dropping its reference: one
/// atomic decrement, without the table's lock, from whichever thread drops
/// it. Only the stream adds references (under the table's lock, and nothing
/// else clones them), so a count it reads can only have gone down since.
pub(super) type Share = Arc<SharedKey>;

/// The peers' entries in an open-addressing table with linear probing, and
/// the counters only the stream writes.
///
/// A peer whose connections are all dropped holds nothing at once (its
/// entry's count is 0), and its entry stays in the table until the next
/// rebuild, so that a peer that comes back finds it. The table is rebuilt
/// when a new entry makes more than half its buckets used: the rebuild keeps
/// only the entries of peers holding connections, sets up to half its
/// buckets' worth of the others aside for new peers, and is resized to the
/// power of two at least four times the entries kept (at least
/// `FIRST_CAPACITY`) when they need more than a quarter of it or less than
/// a sixteenth. So a table has at most sixteen buckets (8 bytes each) and
/// sixteen entries per peer that held connections at its last rebuild, or
/// `FIRST_CAPACITY` of each; and a rebuild, which goes through every
/// bucket, comes only after at least a quarter of the buckets took new
/// peers, so its cost is spread over those new peers' connections.
///
/// Written here rather than as a `HashMap<PeerKey, Share>` for the bulk
/// drop of idle entries at a rebuild and for a lookup of a few instructions
/// (`benches/README.md`, section `callgrind`, has the counts).
pub(super) struct Counts {
    /// A power of two in length; `None` is an empty bucket.
    buckets: Box<[Option<Share>]>,
    hash: PeerHash,
    /// 64 minus the bits of an index: a key's home is the top bits of its
    /// hash.
    shift: u32,
    /// Buckets holding an entry, idle or not.
    used: usize,
    /// Idle entries taken out by the last rebuilds, no more than half the
    /// buckets, each shared with no connection: new peers take them instead
    /// of allocating.
    spare: Vec<Share>,
    /// The entries a rebuild moves (kept for its allocation).
    moving: Vec<Share>,
    /// The counters of [`PeerStats`](crate::PeerStats) that only the stream
    /// writes.
    pub(super) accepted: u64,
    pub(super) rejected: u64,
}

impl Counts {
    pub(super) fn new(hash: PeerHash) -> Counts {
        Counts {
            buckets: empty_buckets(FIRST_CAPACITY),
            hash,
            shift: shift_for(FIRST_CAPACITY),
            used: 0,
            spare: Vec::new(),
            moving: Vec::new(),
            accepted: 0,
            rejected: 0,
        }
    }

    /// Counts one more connection of `key` if it holds fewer than `max`, and
    /// returns the connection's share; counts a rejection if not.
    #[inline]
    pub(super) fn acquire(&mut self, key: PeerKey, max: usize) -> Option<Share> {
        let mask = self.buckets.len() - 1;
        let mut index = self.home(key);
        while let Some(entry) = &self.buckets[index] {
            if entry.get() == key {
                // `held(entry) >= max`, one subtraction fewer.
                if Arc::strong_count(entry) > max {
                    self.rejected += 1;
                    return None;
                }
                self.accepted += 1;
                return Some(entry.clone());
            }
            index = (index + 1) & mask;
        }
        self.accepted += 1;
        Some(self.insert(index, key))
    }

    /// Puts a new entry for `key` in the empty bucket at `index`.
    #[cold]
    fn insert(&mut self, index: usize, key: PeerKey) -> Share {
        let entry = match self.spare.pop() {
            // A spare entry is shared with no connection.
            Some(entry) => {
                entry.set(key);
                entry
            }
            None => Arc::new(SharedKey::new(key)),
        };
        self.buckets[index] = Some(entry.clone());
        self.used += 1;
        if self.used * 2 > self.buckets.len() {
            self.rebuild();
        }
        entry
    }

    /// Puts the entries of peers holding connections back into the table,
    /// resized if they would use more than a quarter of its buckets or less
    /// than a sixteenth, and the others among the spares.
    #[cold]
    fn rebuild(&mut self) {
        let mut moving = std::mem::take(&mut self.moving);
        let spare_at_most = self.buckets.len() / 2;
        for entry in self.buckets.iter_mut().filter_map(Option::take) {
            if held(&entry) > 0 {
                moving.push(entry);
            } else if self.spare.len() < spare_at_most {
                self.spare.push(entry);
            }
        }
        // Orders the reads of a spare's key by its last connection, which
        // dropped its reference after them, before `insert` rekeys it.
        fence(Ordering::Acquire);
        let live = moving.len();
        let capacity = self.buckets.len();
        if live * 4 > capacity || (live * 16 < capacity && capacity > FIRST_CAPACITY) {
            let capacity = (live * 4).next_power_of_two().max(FIRST_CAPACITY);
            self.buckets = empty_buckets(capacity);
            self.shift = shift_for(capacity);
            self.spare.truncate(capacity / 2);
            self.spare.shrink_to(capacity / 2);
            moving.shrink_to(capacity / 4);
        }
        self.used = live;
        let mask = self.buckets.len() - 1;
        for entry in moving.drain(..) {
            let mut index = self.home(entry.get());
            while self.buckets[index].is_some() {
                index = (index + 1) & mask;
            }
            self.buckets[index] = Some(entry);
        }
        self.moving = moving;
    }

    /// The connections held by each peer holding any.
    fn held(&self) -> impl Iterator<Item = usize> + '_ {
        self.buckets
            .iter()
            .flatten()
            .map(held)
            .filter(|&count| count > 0)
    }

    /// Peers holding at least one connection now.
    pub(super) fn peers(&self) -> usize {
        self.held().count()
    }

    /// Connections held now.
    pub(super) fn connections(&self) -> u64 {
        self.held().map(|count| count as u64).sum()
    }

    /// How many connections `key` holds.
    pub(super) fn count_of(&self, key: PeerKey) -> usize {
        let mask = self.buckets.len() - 1;
        let mut index = self.home(key);
        while let Some(entry) = &self.buckets[index] {
            if entry.get() == key {
                return held(entry);
            }
            index = (index + 1) & mask;
        }
        0
    }

    /// Where `key`'s probe sequence starts.
    #[inline]
    fn home(&self, key: PeerKey) -> usize {
        (self.hash.hash(key) >> self.shift) as usize
    }
}

/// The connections `entry` stands for.
#[inline]
fn held(entry: &Share) -> usize {
    Arc::strong_count(entry) - 1
}

fn empty_buckets(capacity: usize) -> Box<[Option<Share>]> {
    std::iter::repeat_with(|| None).take(capacity).collect()
}

/// [`Counts::shift`] for a table of `capacity` buckets, a power of two.
fn shift_for(capacity: usize) -> u32 {
    64 - capacity.trailing_zeros()
}

/// The size of a new table, and of the smallest, in buckets.
const FIRST_CAPACITY: usize = 1024;

#[cfg(test)]
mod tests;
