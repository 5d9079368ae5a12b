//! The counts of connections per peer: an open-addressing table of its
//! own, with the counters of [`PeerStats`](crate::PeerStats).

use super::key::{PeerHash, PeerKey};

/// Connections held per peer, in an open-addressing table with linear
/// probing, and the counters.
///
/// Written here rather than a `HashMap<PeerKey, usize>` because a
/// connection's slot can then be released at the index it was taken at,
/// without hashing or probing while the entry stays put, and because
/// removing the last connection of a peer is a short backward shift instead
/// of a general-purpose erase (`benches/README.md`, section `callgrind`, has
/// the instruction counts of both).
///
/// An entry with a count of 0 is free: a peer's entry is removed (its
/// successors in the probe sequence shifted back over it) when its count
/// drops to 0, so there are no tombstones and the table never holds more
/// entries than connections. The table doubles when more than half full and
/// halves once less than an eighth full, but not below [`KEPT_CAPACITY`]:
/// growing and shrinking are each amortised over as many connections as the
/// entries they move.
pub(super) struct Counts {
    /// A power of two in length.
    entries: Box<[Entry]>,
    hash: PeerHash,
    /// 64 minus the bits of an index: a key's home is the top bits of its
    /// hash times [`FIBONACCI`].
    shift: u32,
    /// The table halves when fewer peers than this are left: an eighth of
    /// its entries, or 0 at [`KEPT_CAPACITY`] and below.
    shrink_below: usize,
    /// Entries in use: peers holding a connection.
    pub(super) peers: usize,
    /// The counters of [`PeerStats`].
    pub(super) connections: u64,
    pub(super) accepted: u64,
    pub(super) rejected: u64,
}

/// A peer and its connections; free if `count` is 0.
#[derive(Clone, Copy, Default)]
struct Entry {
    key: PeerKey,
    count: usize,
}

impl Counts {
    pub(super) fn new(hash: PeerHash) -> Counts {
        Counts {
            entries: vec![Entry::default(); FIRST_CAPACITY].into_boxed_slice(),
            hash,
            shift: shift_for(FIRST_CAPACITY),
            shrink_below: 0,
            peers: 0,
            connections: 0,
            accepted: 0,
            rejected: 0,
        }
    }

    /// Counts one more connection of `key` if it holds fewer than `max`, and
    /// returns the index of its entry; counts a rejection if not.
    #[inline]
    pub(super) fn acquire(&mut self, key: PeerKey, max: usize) -> Option<usize> {
        let mask = self.entries.len() - 1;
        let mut index = self.home(key);
        loop {
            let entry = &mut self.entries[index];
            if entry.count == 0 {
                *entry = Entry { key, count: 1 };
                self.peers += 1;
                break;
            }
            if entry.key == key {
                if entry.count >= max {
                    self.rejected += 1;
                    return None;
                }
                entry.count += 1;
                break;
            }
            index = (index + 1) & mask;
        }
        self.connections += 1;
        self.accepted += 1;
        if self.peers * 2 > self.entries.len() {
            self.resize(self.entries.len() * 2);
            index = self.find(key).expect("an entry just counted");
        }
        Some(index)
    }

    /// Counts one connection of `key` less, whose entry was at `hint`.
    ///
    /// # Panics
    ///
    /// Panics if `key` holds no connection: a slot released twice.
    #[inline]
    pub(super) fn release(&mut self, key: PeerKey, hint: usize) {
        let (index, entry) = match self.entries.get_mut(hint) {
            Some(entry) if entry.count > 0 && entry.key == key => (hint, entry),
            _ => {
                let index = self.find(key).expect("a peer slot was released twice");
                (index, &mut self.entries[index])
            }
        };
        entry.count -= 1;
        self.connections -= 1;
        if entry.count == 0 {
            self.remove(index);
        }
    }

    /// How many connections `key` holds.
    pub(super) fn count_of(&self, key: PeerKey) -> usize {
        self.find(key).map_or(0, |index| self.entries[index].count)
    }

    /// The index of `key`'s entry, if it holds a connection.
    fn find(&self, key: PeerKey) -> Option<usize> {
        let mask = self.entries.len() - 1;
        let mut index = self.home(key);
        loop {
            let entry = &self.entries[index];
            if entry.count == 0 {
                return None;
            }
            if entry.key == key {
                return Some(index);
            }
            index = (index + 1) & mask;
        }
    }

    /// Frees the entry at `index`: shifts back each entry after it in the
    /// run of entries that may move into the gap (one whose home is not
    /// between the gap and itself), so that every entry stays reachable
    /// from its home without tombstones.
    fn remove(&mut self, index: usize) {
        self.peers -= 1;
        let mask = self.entries.len() - 1;
        let mut gap = index;
        let mut next = (index + 1) & mask;
        loop {
            let entry = self.entries[next];
            if entry.count == 0 {
                break;
            }
            let home = self.home(entry.key);
            // The probe distance of `entry` is at least that of the gap.
            if next.wrapping_sub(home) & mask >= next.wrapping_sub(gap) & mask {
                self.entries[gap] = entry;
                gap = next;
            }
            next = (next + 1) & mask;
        }
        self.entries[gap].count = 0;
        if self.peers < self.shrink_below {
            self.resize(self.entries.len() / 2);
        }
    }

    /// Moves every entry into a new table of `capacity` entries.
    #[cold]
    fn resize(&mut self, capacity: usize) {
        let old = std::mem::replace(
            &mut self.entries,
            vec![Entry::default(); capacity].into_boxed_slice(),
        );
        self.shift = shift_for(capacity);
        self.shrink_below = if capacity > KEPT_CAPACITY {
            capacity / 8
        } else {
            0
        };
        let mask = capacity - 1;
        for entry in old.iter().filter(|entry| entry.count > 0) {
            let mut index = self.home(entry.key);
            while self.entries[index].count > 0 {
                index = (index + 1) & mask;
            }
            self.entries[index] = *entry;
        }
    }

    /// Where `key`'s probe sequence starts.
    fn home(&self, key: PeerKey) -> usize {
        (self.hash.hash(key).wrapping_mul(FIBONACCI) >> self.shift) as usize
    }
}

/// 2^64 divided by the golden ratio, odd: multiplying a hash by it and
/// keeping the top bits spreads every bit of the hash over the index.
/// Without it, a seed with trailing zero bits leaves the low bits of the
/// hash of neighbouring addresses (127.0.0.2, 127.0.0.3, ...) alike, and
/// linear probing turns that into long runs: under callgrind, one seed in a
/// few made a connection cost 3 to 10 times more in the table.
const FIBONACCI: u64 = 0x9e37_79b9_7f4a_7c15;

/// [`Counts::shift`] for a table of `capacity` entries, a power of two.
fn shift_for(capacity: usize) -> u32 {
    64 - capacity.trailing_zeros()
}

/// The size of a new table, in entries: room for 8 peers.
const FIRST_CAPACITY: usize = 16;

/// The size, in entries of 24 bytes (24 KiB), below which the table never
/// shrinks: a server whose peers come and go doesn't resize it all the
/// time.
const KEPT_CAPACITY: usize = 1024;

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::IpAddr;

    use proptest::prelude::*;

    use super::*;

    /// A key with the given halves; with [`PeerHash::with_seeds`]`([0, 0])`
    /// it hashes to `high * low` folded, so keys can be aimed at one home.
    fn key(high: u64, low: u64) -> PeerKey {
        PeerKey::of_peer(IpAddr::V6(
            (u128::from(high) << 64 | u128::from(low)).into(),
        ))
    }

    /// `n` keys whose home is `home` in a new table.
    fn keys_at(home: usize, n: usize) -> Vec<PeerKey> {
        let counts = colliding();
        (1..)
            .map(|low| key(1, low))
            .filter(|&k| counts.home(k) == home)
            .take(n)
            .collect()
    }

    /// Every IPv4 key hashes to 0 with these seeds.
    fn colliding() -> Counts {
        Counts::new(PeerHash::with_seeds([0, 0]))
    }

    fn ipv4(n: u32) -> PeerKey {
        PeerKey::of_peer(IpAddr::V4(n.into()))
    }

    fn count(counts: &Counts, key: PeerKey) -> usize {
        counts
            .find(key)
            .map_or(0, |index| counts.entries[index].count)
    }

    /// Every entry in use is reachable from its home, once.
    fn assert_whole(counts: &Counts) {
        let live: Vec<_> = counts.entries.iter().filter(|e| e.count > 0).collect();
        assert_eq!(live.len(), counts.peers);
        for entry in live {
            let index = counts.find(entry.key).expect("an entry out of reach");
            assert_eq!(counts.entries[index].count, entry.count);
        }
    }

    #[test]
    fn removing_the_first_of_colliding_peers_shifts_the_others_back() {
        let mut counts = colliding();
        let hints: Vec<_> = (1..=4)
            .map(|n| counts.acquire(ipv4(n), 8).unwrap())
            .collect();
        assert_eq!(hints, [0, 1, 2, 3]);
        counts.release(ipv4(1), hints[0]);
        assert_whole(&counts);
        assert_eq!(counts.find(ipv4(2)), Some(0));
        assert_eq!(counts.find(ipv4(4)), Some(2));
        assert_eq!(counts.entries[3].count, 0);
        // The stale hints of the moved peers are checked against the key.
        counts.release(ipv4(4), hints[3]);
        counts.release(ipv4(2), hints[1]);
        counts.release(ipv4(3), hints[2]);
        assert_eq!((counts.peers, counts.connections), (0, 0));
        assert!(counts.entries.iter().all(|e| e.count == 0));
    }

    #[test]
    fn a_run_that_wraps_around_the_end_of_the_table_shifts_back_across_it() {
        let mut counts = colliding();
        let last = counts.entries.len() - 1;
        let keys = keys_at(last, 4);
        let hints: Vec<_> = keys
            .iter()
            .map(|&k| counts.acquire(k, 1).unwrap())
            .collect();
        assert_eq!(hints, [last, 0, 1, 2]);
        // A peer at its home just after the run stays put.
        let at_home = keys_at(3, 1)[0];
        assert_eq!(counts.acquire(at_home, 1), Some(3));
        counts.release(keys[0], hints[0]);
        assert_whole(&counts);
        assert_eq!(counts.find(keys[1]), Some(last));
        assert_eq!(counts.find(keys[3]), Some(1));
        assert_eq!(counts.find(at_home), Some(3));
        assert_eq!(counts.entries[2].count, 0);
        assert_eq!(counts.acquire(keys[1], 1), None, "the cap still holds");
    }

    #[test]
    fn a_hint_that_names_another_peer_is_not_taken() {
        let mut counts = colliding();
        let first = counts.acquire(ipv4(1), 8).unwrap();
        counts.release(ipv4(1), first);
        let other = counts.acquire(ipv4(2), 8).unwrap();
        assert_eq!(other, first);
        let again = counts.acquire(ipv4(1), 8).unwrap();
        // `ipv4(1)` released with the index `ipv4(2)` now holds.
        counts.release(ipv4(1), other);
        assert_eq!((count(&counts, ipv4(1)), count(&counts, ipv4(2))), (0, 1));
        assert_eq!(again, 1);
    }

    #[test]
    #[should_panic(expected = "released twice")]
    fn releasing_a_peer_that_holds_nothing_panics() {
        let mut counts = colliding();
        counts.release(ipv4(1), 0);
    }

    #[test]
    fn the_table_grows_with_its_peers_and_shrinks_back_once_they_leave() {
        let mut counts = Counts::new(PeerHash::random());
        let peers = 10 * KEPT_CAPACITY as u32;
        let hints: Vec<_> = (0..peers)
            .map(|n| counts.acquire(ipv4(n), 2).unwrap())
            .collect();
        assert!(counts.entries.len() >= 2 * peers as usize);
        assert_whole(&counts);
        for (n, &hint) in (0..peers).zip(&hints).rev() {
            counts.release(ipv4(n), hint);
            if n % 1000 == 0 {
                assert_whole(&counts);
                assert!(counts.entries.len() <= (8 * n as usize).max(KEPT_CAPACITY));
            }
        }
        assert_eq!((counts.peers, counts.connections), (0, 0));
        assert_eq!(counts.entries.len(), KEPT_CAPACITY);
        assert_eq!((counts.accepted, counts.rejected), (u64::from(peers), 0));
    }

    #[test]
    fn neighbouring_addresses_spread_over_the_table_whatever_the_seeds() {
        let seeds = [
            [1 << 40, 1 << 40],
            [1 << 63, 0],
            [3 << 20, u64::MAX],
            [0x1234_5678, 0],
        ];
        for seeds in seeds {
            let mut counts = Counts::new(PeerHash::with_seeds(seeds));
            let keys: Vec<_> = (0..100).map(|n| ipv4(0x7f00_0002 + n)).collect();
            for &key in &keys {
                counts.acquire(key, 1).unwrap();
            }
            let mask = counts.entries.len() - 1;
            let longest = keys
                .iter()
                .map(|&key| counts.find(key).unwrap().wrapping_sub(counts.home(key)) & mask)
                .max();
            // 100 peers in 256 entries.
            assert!(
                longest < Some(12),
                "seeds {seeds:x?}: a probe of {longest:?}"
            );
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// A connection of peer `n` (of a few, to collide and repeat).
        Acquire(u8),
        /// The connection at this index of those held ends.
        Release(usize),
    }

    proptest! {
        #[test]
        fn the_counts_match_a_map_under_any_churn(
            colliding_seeds in any::<bool>(),
            ops in proptest::collection::vec(prop_oneof![
                3 => (0u8..40).prop_map(Op::Acquire),
                2 => any::<usize>().prop_map(Op::Release),
            ], 0..400),
        ) {
            let seeds = if colliding_seeds { [0, 0] } else { [0x9e37_79b9, 0x7f4a_7c15] };
            let mut counts = Counts::new(PeerHash::with_seeds(seeds));
            let mut model: HashMap<u8, usize> = HashMap::new();
            let mut held: Vec<(u8, usize)> = Vec::new();
            for op in ops {
                match op {
                    Op::Acquire(n) => {
                        let taken = counts.acquire(ipv4(n.into()), 3);
                        let before = model.entry(n).or_insert(0);
                        prop_assert_eq!(taken.is_some(), *before < 3);
                        if let Some(hint) = taken {
                            // Where the entry is, even after a resize.
                            prop_assert!(counts.entries[hint].key == ipv4(n.into()));
                            *before += 1;
                            held.push((n, hint));
                        }
                    }
                    Op::Release(i) if !held.is_empty() => {
                        let (n, hint) = held.swap_remove(i % held.len());
                        counts.release(ipv4(n.into()), hint);
                        *model.get_mut(&n).unwrap() -= 1;
                    }
                    Op::Release(_) => {}
                }
                model.retain(|_, count| *count > 0);
                assert_whole(&counts);
                prop_assert_eq!(counts.peers, model.len());
                prop_assert_eq!(counts.connections, held.len() as u64);
                for n in 0..40 {
                    let expected = model.get(&n).copied().unwrap_or(0);
                    prop_assert_eq!(count(&counts, ipv4(n.into())), expected);
                }
            }
        }
    }
}
